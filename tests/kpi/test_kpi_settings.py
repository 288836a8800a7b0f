"""The ``kpi:`` section of the site config: defaults and validation messages."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from dcim.config import ConfigError, KpiSettings, parse_config
from dcim.kpi.period import boundary_warnings
from dcim.twin.site import paris_chapelle


def test_defaults() -> None:
    k = KpiSettings()
    assert k.grid_carbon_kg_per_kwh == 0.052  # ADEME Base Empreinte 2022, French mix
    assert k.renewable == []
    assert k.min_completeness == 0.9
    assert k.max_gap_extrapolation_intervals == 3
    assert k.balance_tolerance == 0.15
    assert k.ups_input_meters == []


def test_reference_site_has_default_kpi_settings() -> None:
    cfg = parse_config(yaml.safe_dump(paris_chapelle(racks=1, servers_per_rack=1)))
    assert cfg.kpi == KpiSettings()


@pytest.mark.parametrize(
    ("kpi", "message"),
    [
        ({"renewable": [{"kind": "ppa", "share": 1.5}]}, "less than or equal to 1"),
        (
            {"renewable": [{"kind": "ppa", "share": 0.6}, {"kind": "onsite", "share": 0.5}]},
            "add up to 1.1, more than all of E_DC",
        ),
        ({"renewable": [{"kind": "ppa"}]}, "exactly one of 'kwh_per_year'"),
        (
            {"renewable": [{"kind": "ppa", "share": 0.1, "kwh_per_year": 5.0}]},
            "exactly one of 'kwh_per_year'",
        ),
        ({"renewable": [{"kind": "wind", "share": 0.1}]}, "guarantees_of_origin"),
        ({"renewable": [{"kind": "ppa", "kwh_per_year": -1}]}, "greater than or equal to 0"),
        ({"min_completeness": 1.2}, "less than or equal to 1"),
        ({"grid_carbon_kg_per_kwh": 52}, "less than or equal to 2"),
        ({"balance_tolerance": 0}, "greater than 0"),
        ({"max_gap_extrapolation_intervals": -1}, "greater than or equal to 0"),
    ],
)
def test_invalid_settings(kpi: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as err:
        KpiSettings.model_validate(kpi)
    assert message in str(err.value)


def _doc(kpi: dict[str, Any], extra_devices: list[dict[str, Any]] | None = None) -> str:
    doc = paris_chapelle(racks=1, servers_per_rack=1)
    doc["kpi"] = kpi
    doc["devices"] += extra_devices or []
    return yaml.safe_dump(doc, sort_keys=False)


def test_errors_name_their_place() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_doc({"renewable": [{"kind": "ppa", "share": 2}]}), filename="site.yaml")
    msgs = [str(i) for i in err.value.issues]
    assert any("site.yaml:" in m and "kpi.renewable[0].share" in m for m in msgs), msgs


def test_ups_input_meters_must_exist_and_count_energy() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_doc({"ups_input_meters": ["nope", "ups-a"]}), filename="site.yaml")
    msgs = sorted(str(i) for i in err.value.issues)
    assert any("kpi.ups_input_meters[0]" in m and "not a device" in m for m in msgs), msgs
    assert any("kpi.ups_input_meters[1]" in m and "needs an energy counter" in m for m in msgs), (
        msgs
    )
    cfg = parse_config(_doc({"ups_input_meters": ["meter-aux"]}))
    assert cfg.kpi.ups_input_meters == ["meter-aux"]


def test_onsite_declared_and_metered_is_an_error() -> None:
    pv = {
        "name": "meter-pv",
        "protocol": "modbus",
        "profile": "energy_meter_3ph",
        "host": "127.0.0.1",
        "port": 30000,
        "modbus": {"unit_id": 9},
        "role": "renewable_onsite",
    }
    with pytest.raises(ConfigError) as err:
        parse_config(_doc({"renewable": [{"kind": "onsite", "share": 0.02}]}, [pv]))
    assert "would count it twice" in str(err.value)
    cfg = parse_config(_doc({"renewable": [{"kind": "ppa", "share": 0.3}]}, [pv]))
    assert cfg.kpi.renewable[0].share == 0.3


def test_heat_pump_board_without_upstream_is_not_a_config_error() -> None:
    doc = paris_chapelle(racks=1, servers_per_rack=1)
    for d in doc["devices"]:
        d.pop("upstream", None)
    cfg = parse_config(yaml.safe_dump(doc))  # a warning in the KPI report instead
    assert any("meter-heatpumps" in w for w in boundary_warnings(cfg))
