"""``dcim report eed``'s mistakes and failures: one line, an exit status, no file written."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dcim.cli import main
from dcim.twin.site import paris_chapelle


@pytest.fixture
def site(tmp_path: Path) -> Path:
    sink = {"type": "embedded", "path": str(tmp_path / "none.sqlite")}
    doc = paris_chapelle(racks=1, servers_per_rack=1, spool_dir=str(tmp_path / "s"), sink=sink)
    p = tmp_path / "site.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


def test_nothing_collected_fails_and_writes_nothing(
    site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    assert main(["report", "eed", str(site), "--year", "2025", "--out", str(out)]) == 1
    assert "nothing collected yet" in capsys.readouterr().err
    assert list(out.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--year", "25"], "--year 25: give a calendar year"),
        (["--year", "2025", "--out", "missing"], "not a folder"),
    ],
)
def test_usage_errors(
    site: Path, args: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "eed", str(site), *args]) == 2
    assert said in capsys.readouterr().err


def test_year_is_required(site: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["report", "eed", str(site)])
    assert exc.value.code == 2
