"""The ``dcim`` command as a user runs it: check-config, kpi (table and JSON), bad arguments."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from dcim.cli import main
from dcim.twin.site import paris_chapelle


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("cli")
    doc = paris_chapelle(
        racks=1,
        servers_per_rack=1,
        interval_s=60.0,
        spool_dir=str(tmp / "spool"),
        sink={"type": "embedded", "path": str(tmp / "cli.sqlite")},
    )
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert main(["twin", "backfill", str(path), "--from", "2026-02-01", "--to", "2026-02-02"]) == 0
    return path


def test_check_config_ok(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(site)]) == 0
    assert "OK, site paris-chapelle" in capsys.readouterr().out


def test_kpi_for_a_day_prints_a_table_and_writes_json(
    site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "kpi.json"
    # The backfill starts the meters at 00:00 local: the day from 01:00 has data both sides.
    args = ["kpi", str(site), "--from", "2026-02-01T01:00", "--to", "2026-02-01T23:00"]
    assert main([*args, "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "interim" in table and "pue_cat1" in table and "heat_cpcu_kwh" in table
    doc = json.loads(out.read_text())
    figures = {f["name"]: f for f in doc["figures"]}
    assert 1.05 < figures["pue"]["value"] < 2.0
    assert figures["pue"]["completeness"] > 0.99
    assert figures["heat_cpcu_kwh"]["value"] > 0
    assert {m["device"] for m in doc["meters"]} >= {"meter-incomer", "hm-cpcu"}


def test_kpi_without_data_says_so_instead_of_a_number(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["kpi", str(site), "--period", "2026-03-01"]) == 0
    table = capsys.readouterr().out
    pue_line = next(line for line in table.splitlines() if line.startswith("pue_cat1"))
    assert "n/a" in pue_line and "0.0%" in pue_line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--period", "2026-13"], "period"),
        (["--last", "5 minutes"], "duration"),
        (["--from", "2026-02-02", "--to", "2026-02-01"], "--to must be after --from"),
        ([], "give --period"),
    ],
)
def test_kpi_bad_arguments_are_explained(
    site: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        rc = main(["kpi", str(site), *args])
    except SystemExit as exc:
        rc, text = 2, str(exc.code)
    else:
        text = capsys.readouterr().err
    assert rc == 2 and message in text
