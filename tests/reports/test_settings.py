"""The site file's ``reports: heat:`` section: valid without it, errors with file:line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dcim.config import ConfigError, load_config
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
