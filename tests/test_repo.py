"""The repository stands alone in a clone: no tracked file points outside it (the design lives
in docs/design.md), and the benchmarks import nothing from tests/."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTSIDE = "../" + "shared"  # spelt in two parts so this file does not match itself


def tracked_files() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    return [ROOT / name for name in out.split("\0") if name]


def test_no_tracked_file_points_outside_the_repo() -> None:
    files = tracked_files()
    assert any(f.name == "README.md" for f in files), "git ls-files found no README.md"
    hits = []
    for path in files:
        if not path.is_file():
            continue
        text = path.read_bytes().decode("utf-8", errors="replace")
        for n, line in enumerate(text.splitlines(), 1):
            if OUTSIDE in line:
                hits.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not hits, "a clone has no " + OUTSIDE + " (see docs/design.md):\n" + "\n".join(hits)


def test_docs_point_at_the_design_page() -> None:
    assert (ROOT / "docs" / "design.md").is_file()
    for doc in ("README.md", "docs/architecture.md"):
        assert "docs/design.md" in (ROOT / doc).read_text(), doc


def test_benchmarks_import_nothing_from_tests() -> None:
    bad = []
    for path in sorted((ROOT / "benchmarks").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            bad += [f"{path.name}:{node.lineno}: {n}" for n in names if n.split(".")[0] == "tests"]
    assert not bad, bad
