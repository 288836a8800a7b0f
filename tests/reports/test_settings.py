"""The site file's ``reports:`` section (heat, eed): valid without it, errors with file:line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dcim.config import ConfigError, load_config
from dcim.reports.l10n import fmt_number, fmt_percent
from dcim.testing.heat_month import reports_section
from dcim.twin.site import paris_chapelle


def write(tmp: Path, doc: dict) -> Path:
    p = tmp / "site.yaml"
    p.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    return p


def test_absent_section_keeps_site_files_valid(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, paris_chapelle(racks=1, servers_per_rack=1)))
    assert cfg.reports.heat is None


def test_section_loads(tmp_path: Path) -> None:
    doc = paris_chapelle(racks=1, servers_per_rack=1)
    doc["reports"] = reports_section()
    heat = load_config(write(tmp_path, doc)).reports.heat
    assert heat is not None and [p.name for p in heat.points] == ["cpcu", "serres"]


def test_errors_name_the_place(tmp_path: Path) -> None:
    doc = paris_chapelle(racks=1, servers_per_rack=1)
    doc["reports"] = reports_section()
    points = doc["reports"]["heat"]["points"]
    points[0]["device"] = "hm-nowhere"
    points[1]["device"] = "meter-aux"  # an electricity meter
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, doc))
    text = "\n".join(str(i) for i in err.value.issues)
    assert "site.yaml:" in text and "reports.heat.points[0](cpcu).device" in text
    assert "'hm-nowhere' is not a device of this site" in text
    assert "is not a heat meter" in text
    assert all(i.line is not None for i in err.value.issues)


def test_contract_powers(tmp_path: Path) -> None:
    doc = paris_chapelle(racks=1, servers_per_rack=1)
    doc["reports"] = reports_section()
    doc["reports"]["heat"]["points"][0]["contract"]["min_power_kw"] = 500.0
    with pytest.raises(ConfigError, match="must be below max_power_kw"):
        load_config(write(tmp_path, doc))


def write_with(tmp: Path, **extra: object) -> Path:
    doc = paris_chapelle(racks=1, servers_per_rack=1, spool_dir=str(tmp / "spool"))
    doc.update(extra)
    p = tmp / "site.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


def test_a_site_without_reports_is_valid(tmp_path: Path) -> None:
    cfg = load_config(write_with(tmp_path))
    assert cfg.reports.eed.total_floor_area_m2 is None


def test_declared_values_are_read(tmp_path: Path) -> None:
    eed = {
        "computer_room_floor_area_m2": 760,
        "storage_capacity_pb": 2.5,
        "refrigerants": ["R-1234ze"],
    }
    cfg = load_config(write_with(tmp_path, reports={"eed": eed}))
    assert cfg.reports.eed.computer_room_floor_area_m2 == 760
    assert cfg.reports.eed.refrigerants == ["R-1234ze"]


def test_errors_name_file_line_and_key(tmp_path: Path) -> None:
    p = write_with(tmp_path, reports={"eed": {"total_floor_area_m2": -5, "floor_area": 3}})
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    lines = p.read_text().splitlines()
    msgs = [str(i) for i in exc.value.issues]
    bad = next(m for m in msgs if "reports.eed.total_floor_area_m2" in m)
    unknown = next(m for m in msgs if "reports.eed.floor_area" in m)
    assert "greater than 0" in bad and "unknown key" in unknown
    line = int(bad.split(":")[1])
    assert lines[line - 1].strip().startswith("total_floor_area_m2")


def test_numbers_in_french_and_english() -> None:
    assert fmt_number(122025.8, 0, "en") == "122,026"
    assert fmt_number(122025.8, 0, "fr") == "122\u202f026"
    assert fmt_number(1.28213, 3, "fr") == "1,282"
    assert fmt_number(None, 3, "fr") == "n.d."
    assert fmt_percent(0.9876, 1, "en") == "98.8%"
    assert fmt_percent(0.9876, 1, "fr") == "98,8\u00a0%"
