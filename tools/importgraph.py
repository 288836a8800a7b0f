"""The import graph of dcim and collectors, read from the code with ``ast``.

Every ``import`` is an edge: at module level (``runtime``), inside a function (``lazy``: runs
when the function is called) or under ``if TYPE_CHECKING:`` (``typing``: mypy only). Modules
are grouped into layers, lowest first::

    foundation < core < plugins < application

and two rules hold:

- no cycle among modules through runtime or lazy imports (a cycle through ``typing`` imports
  only is allowed: it never runs);
- no module imports a module of a higher layer, in any kind of import (the core never imports
  ``collectors``; only the application layer composes everything).

``python tools/importgraph.py`` writes the package graph (Mermaid) and the layer table into
docs/architecture.md between the markers; ``--check`` writes nothing and exits 1 if the doc is
out of date or a rule is broken. ``tests/test_importgraph.py`` runs the check, so the doc
cannot drift from the code.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("dcim", "collectors")
DOC = ROOT / "docs" / "architecture.md"
START, END = "<!-- importgraph:start -->", "<!-- importgraph:end -->"

LAYERS = ("foundation", "core", "plugins", "application")
# Module -> layer, by the longest matching prefix (a module, or a package and all under it).
# A dcim module named nowhere here is in the core: a new module starts there and the rules
# check it.
# dcim.protocols (the plugin contract) is core, not foundation: it names the config and profile
# models a plugin is given.
LAYER_OF = {
    "dcim.reading": "foundation",
    "dcim.timeutil": "foundation",
    "dcim": "core",
    "collectors": "plugins",
    "dcim.twin": "application",
    "dcim.demo": "application",
    "dcim.cli": "application",
    "dcim.testing": "application",
}
FOUNDATION_INIT = {"dcim"}  # the bare package ``dcim`` (its __init__) is foundation

KIND_RANK = {"runtime": 0, "lazy": 1, "typing": 2}


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    kind: str  # runtime | lazy | typing
    where: str  # file:line of the import


@dataclass
class Graph:
    modules: dict[str, Path]
    edges: list[Edge] = field(default_factory=list)

    def strongest(self) -> dict[tuple[str, str], Edge]:
        """One edge per (src, dst): the one that runs earliest (runtime, then lazy, then
        typing)."""
        out: dict[tuple[str, str], Edge] = {}
        for e in self.edges:
            key = (e.src, e.dst)
            if key not in out or KIND_RANK[e.kind] < KIND_RANK[out[key].kind]:
                out[key] = e
        return out


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def find_modules() -> dict[str, Path]:
    """Every module, by its .py file or, for a compiled one (a C extension), its .pyi stub."""
    mods = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            mods[module_name(path)] = path
        for path in sorted((ROOT / pkg).rglob("*.pyi")):
            mods.setdefault(module_name(path), path)
    return mods


def layer_of(module: str) -> str:
    if module in FOUNDATION_INIT:
        return "foundation"
    best = ""
    for prefix in LAYER_OF:
        if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
            best = prefix
    if not best:
        raise KeyError(f"{module}: not in a package the import graph knows ({PACKAGES})")
    return LAYER_OF[best]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module) -> Iterable[tuple[ast.Import | ast.ImportFrom, str]]:
    """Every import statement with its kind."""

    def walk(
        nodes: Iterable[ast.AST], kind: str
    ) -> Iterable[tuple[ast.Import | ast.ImportFrom, str]]:
        for node in nodes:
            if isinstance(node, ast.Import | ast.ImportFrom):
                yield node, kind
            elif isinstance(node, ast.If) and _is_type_checking(node.test):
                yield from walk(node.body, "typing")
                yield from walk(node.orelse, kind)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                inner = "typing" if kind == "typing" else "lazy"
                yield from walk(ast.iter_child_nodes(node), inner)
            else:
                yield from walk(ast.iter_child_nodes(node), kind)

    yield from walk(tree.body, "runtime")


def _targets(
    node: ast.Import | ast.ImportFrom, module: str, is_pkg: bool, modules: dict[str, Path]
) -> list[str]:
    """The project modules an import statement loads (the deepest that exists)."""

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    if isinstance(node, ast.Import):
        found = [known(a.name) for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            pkg = module if is_pkg else module.rpartition(".")[0]
            for _ in range(node.level - 1):
                pkg = pkg.rpartition(".")[0]
            base = f"{pkg}.{base}".rstrip(".") if base else pkg
        found = []
        for a in node.names:
            sub = f"{base}.{a.name}"
            found.append(sub if sub in modules else known(base))
    return sorted({t for t in found if t})


def build() -> Graph:
    modules = find_modules()
    g = Graph(modules)
    for mod, path in modules.items():
        if path.suffix == ".pyi":  # compiled: its stub's imports are for mypy only
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node, kind in _imports(tree):
            for dst in _targets(node, mod, path.name == "__init__.py", modules):
                if dst != mod:
                    rel = path.relative_to(ROOT)
                    g.edges.append(Edge(mod, dst, kind, f"{rel}:{node.lineno}"))
    return g


def cycles(g: Graph) -> list[list[str]]:
    """Strongly connected components of more than one module, over runtime and lazy edges
    (Tarjan)."""
    succ: dict[str, set[str]] = defaultdict(set)
    for e in g.edges:
        if e.kind != "typing":
            succ[e.src].add(e.dst)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(succ[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(g.modules):
        if v not in index:
            visit(v)
    return sorted(out)


def violations(g: Graph) -> dict[tuple[str, str], Edge]:
    """Imports of a higher layer, one per (importer, imported)."""
    rank = {name: i for i, name in enumerate(LAYERS)}
    return {k: e for k, e in g.strongest().items() if rank[layer_of(e.src)] < rank[layer_of(e.dst)]}


def problems(g: Graph) -> list[str]:
    out = [f"import cycle: {' -> '.join(c)}" for c in cycles(g)]
    for _key, e in sorted(violations(g).items()):
        out.append(
            f"{e.where}: {e.src} ({layer_of(e.src)}) imports {e.dst} ({layer_of(e.dst)}), "
            "a higher layer"
        )
    return out


# -- the doc -----------------------------------------------------------------------------------


def group(module: str) -> str:
    """The node a module is drawn in: its subpackage of dcim, ``collectors``, or itself."""
    parts = module.split(".")
    if parts[0] == "collectors":
        return "collectors"
    if len(parts) >= 2 and (ROOT / "dcim" / parts[1]).is_dir():
        return ".".join(parts[:2])
    return module


def _node_id(name: str) -> str:
    return name.replace(".", "_")


def mermaid(g: Graph) -> str:
    groups: dict[str, str] = {}
    for mod in g.modules:
        groups[group(mod)] = layer_of(mod) if group(mod) == mod else layer_of(group(mod))
    edges: dict[tuple[str, str], str] = {}
    bad: set[tuple[str, str]] = set()
    found = violations(g)
    for (src, dst), e in g.strongest().items():
        key = (group(src), group(dst))
        if key[0] == key[1]:
            continue
        if key not in edges or KIND_RANK[e.kind] < KIND_RANK[edges[key]]:
            edges[key] = e.kind
        if (src, dst) in found:
            bad.add(key)
    lines = ["```mermaid", "flowchart TB"]
    for layer in reversed(LAYERS):
        lines.append(f"  subgraph {layer}")
        for name in sorted(n for n, lay in groups.items() if lay == layer):
            label = name + ("/" if (ROOT / name.replace(".", "/")).is_dir() else "")
            lines.append(f'    {_node_id(name)}["{label}"]')
        lines.append("  end")
    arrow = {"runtime": "-->", "lazy": "-.->", "typing": "-.->|type|"}
    red = []
    for i, ((src, dst), kind) in enumerate(sorted(edges.items())):
        lines.append(f"  {_node_id(src)} {arrow[kind]} {_node_id(dst)}")
        if (src, dst) in bad:
            red.append(str(i))
    if red:
        lines.append(f"  linkStyle {','.join(red)} stroke:#d00,stroke-width:2px")
    lines.append("```")
    return "\n".join(lines)


def section(g: Graph) -> str:
    layer_rows = []
    for layer in LAYERS:
        mods = sorted({group(m) for m in g.modules if layer_of(group(m)) == layer})
        layer_rows.append(f"| {layer} | {', '.join(f'`{m}`' for m in mods)} |")
    return "\n".join(
        [
            START,
            "<!-- generated by tools/importgraph.py from the code's imports; do not edit -->",
            "",
            "| layer (lowest first) | packages and modules |",
            "|---|---|",
            *layer_rows,
            "",
            mermaid(g),
            "",
            "Solid arrow: a module-level import; dotted: an import inside a function (runs when "
            "it is called); `type`: under `if TYPE_CHECKING` only. A module imports only its own "
            "layer or lower ones, and no modules import each other in a cycle (runtime or "
            "function-level imports).",
            END,
        ]
    )


def render_doc(g: Graph, text: str) -> str:
    if START not in text or END not in text:
        raise ValueError(f"{DOC.relative_to(ROOT)} has no {START} ... {END} markers")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return head + section(g) + tail


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if out of date")
    args = p.parse_args(argv)
    g = build()
    errors = problems(g)
    text = DOC.read_text()
    new = render_doc(g, text)
    if args.check:
        if new != text:
            errors.append(f"{DOC.relative_to(ROOT)} is out of date: run tools/importgraph.py")
    elif new != text:
        DOC.write_text(new)
        print(f"{DOC.relative_to(ROOT)}: import graph updated")
    for e in errors:
        print(e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
