"""The split of ``compute_kpis`` into one function per figure changed no number: on every
case of tests/kpi/golden_cases.py the report is the one captured before the split (every
figure's name, value, unit, completeness, estimated flag, note and flag; the meters; the
category, warnings and settings).

Values are compared exactly, except the heat checks ((register - integrated) / integrated),
within 1e-12: the integration's sum is now ``math.fsum`` (exactly rounded) where it was numpy's
pairwise sum, and the IF97 region 1 equation is coded in dcim.kpi.if97 where it was iapws's
numpy code: the integrated heat moves by ~2e-14 of itself.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.kpi.golden_cases import CASES, GOLDEN, as_json, report

NEW_METER_KEYS = {"glitches"}  # added with the glitch rule (0 on every golden case)


@pytest.mark.parametrize("name", sorted(CASES))
def test_report_is_the_golden_one(name: str) -> None:
    want: dict[str, Any] = json.loads((GOLDEN / f"{name}.json").read_text())
    got = as_json(report(name))
    assert [f["name"] for f in got["figures"]] == [f["name"] for f in want["figures"]]
    for g, w in zip(got["figures"], want["figures"], strict=True):
        if g["name"].startswith("heat_check_") and w["value"] is not None:
            assert g["value"] == pytest.approx(w["value"], rel=0, abs=1e-12), g["name"]
            g = {**g, "value": w["value"]}
        assert g == w
    assert all(m["glitches"] == 0 for m in got["meters"])

    def old_keys(meters: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in m.items() if k not in NEW_METER_KEYS} for m in meters]

    assert old_keys(got["meters"]) == old_keys(want["meters"])
    rest = {k: v for k, v in got.items() if k not in ("figures", "meters")}
    assert rest == {k: v for k, v in want.items() if k not in ("figures", "meters")}


def test_the_golden_cases_cover_every_figure() -> None:
    names = {f["name"] for p in GOLDEN.glob("*.json") for f in json.loads(p.read_text())["figures"]}
    assert {
        "e_dc_kwh", "e_heat_pump_kwh", "e_it_cat1_kwh", "pue_cat1", "pue", "heat_cpcu_kwh",
        "heat_greenhouse_kwh", "heat_recovered_kwh", "heat_check_hm-rec", "e_reuse_kwh", "erf",
        "ere", "ppue_cooling", "ppue_distribution", "e_renewable_kwh", "ref", "co2_kg", "cue",
        "water_m3", "wue", "heat_recovery_ratio", "energy_balance", "seasonal_cop_hp-1",
        "seasonal_cop",
    } <= names  # fmt: skip
    checks = [f for p in GOLDEN.glob("*.json") for f in json.loads(p.read_text())["figures"]
              if f["name"].startswith("heat_check_") and f["value"] is not None]  # fmt: skip
    assert checks and any(f["flagged"] for f in checks)  # values, and a failed check
