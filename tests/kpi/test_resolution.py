"""A figure whose registers are too coarse for its period says so, with its bound, instead of
a number to trust or a meter to accuse ('dcim kpi --last 1m' on the demo: a PDU's energy
register steps by 0.1 kWh, a PDU draws ~1.2 kW: one step every 5 minutes)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from dcim.config import SiteConfig
from dcim.kpi.energy import Energy, MeterEnergy, register_step
from dcim.kpi.figures_heat import heat_check
from dcim.kpi.heat import IntegratedHeat
from dcim.kpi.period import KpiReport, compute_kpis
from dcim.kpi.report import Figures
from dcim.profiles import load_profiles
from tests.kpi.fakestore import FakeStore

S = 1_000_000_000
PROFILES = Path(__file__).resolve().parents[2] / "collectors" / "profiles"


def test_register_step_from_the_profile() -> None:
    p = load_profiles((PROFILES,))
    assert register_step(p["apc_rpdu2"], "energy_wh_total") == 100.0  # Integer32 x 100 Wh
    assert register_step(p["heat_meter_en1434"], "heat_energy_wh_total") == 1.0  # uint32 Wh
    assert register_step(p["energy_meter_3ph"], "energy_wh_total") == 1.0  # int64 Wh
    assert register_step(p["energy_meter_3ph"], "power_w") == 0.0  # float32: no known step


def _figures(minutes: float) -> Figures:
    return Figures(KpiReport(0, int(minutes * 60 * S)), 0.9)


def test_a_ratio_within_one_percent_is_printed_as_is() -> None:
    figs = _figures(60 * 24)
    it = Energy(1_000_000.0, 1.0, False, (), 100.0)  # 0.01 %
    figs.ratio("pue", 1.2, [("E_DC", Energy(1_200_000.0, 1.0, False)), ("E_IT", it)], 1.0)
    f = figs.rep.figure("pue")
    assert f.value == 1.2 and "resolution" not in f.note and not f.flagged


def test_a_ratio_within_five_percent_carries_its_bound() -> None:
    figs = _figures(60)
    it = Energy(5_000.0, 1.0, False, (), 100.0)  # 2 %
    figs.ratio("pue", 1.2, [("E_DC", Energy(6_000.0, 1.0, False)), ("E_IT", it)], 1.0)
    f = figs.rep.figure("pue")
    assert f.value == 1.2 and "\u00b1 0.024 from the registers' resolution" in f.note


def test_a_ratio_beyond_five_percent_is_withheld_with_the_period_that_would_do() -> None:
    figs = _figures(1)
    it = Energy(2_400.0, 1.0, False, (), 6_000.0)  # 60 PDUs x 100 Wh over a minute
    figs.ratio("pue_cat2", 1.41, [("E_DC", Energy(3_400.0, 1.0, False)), ("E_IT", it)], 1.0)
    f = figs.rep.figure("pue_cat2")
    assert f.value is None and not f.flagged
    assert f.note.startswith("n/a: 1.41 \u00b1 3.52 (250%) from the registers' resolution")
    assert "E_IT \u00b1 6.0 kWh" in f.note and "a period of 5 h or more gives \u00b1 1 %" in f.note


def _meter(value: float, resolution: float) -> MeterEnergy:
    return MeterEnergy("hm", "heat_recovered", "heat_energy_wh_total", value, 6, 6, 1.0,
                       True, False, 0, 0, resolution)  # fmt: skip


@pytest.mark.parametrize(
    ("resolution", "completeness", "flagged"),
    [(1.0, 1.0, True), (1000.0, 1.0, False), (1.0, 0.5, False)],
    ids=["fine-register-accused", "1-kWh-register-within-its-step", "too-little-data"],
)
def test_a_heat_meter_is_accused_only_beyond_its_step_and_on_enough_data(
    resolution: float, completeness: float, flagged: bool
) -> None:
    figs = _figures(1)
    got = IntegratedHeat("hm", 2_500.0, 6, 6, completeness)  # register says 3 kWh: +20 %
    heat_check(figs, SiteConfig.model_validate(_site()).devices[0], _meter(3_000.0, resolution),
               got, 0.03, 0.9)  # fmt: skip
    f = figs.rep.figure("heat_check_hm")
    assert f.flagged is flagged and ("CHECK" in f.note) is flagged
    assert f.value == (None if completeness < 0.9 else pytest.approx(0.2))  # withheld
    if resolution == 1000.0:
        assert "\u00b1 33% from the register's step (1000 Wh)" in f.note


def _site(profile_dir: Path | None = None) -> dict[str, object]:
    devices = [{"name": "hm", "protocol": "modbus", "profile": "heat_meter_en1434",
                "host": "127.0.0.1", "port": 20000, "role": "heat_recovered"}]  # fmt: skip
    doc: dict[str, object] = {"site": {"name": "lab"}, "defaults": {"interval_s": 10},
                              "devices": devices}  # fmt: skip
    if profile_dir is not None:
        doc["profile_dirs"] = [str(profile_dir)]
    return doc


def test_pue_takes_the_highest_category_the_period_resolves(tmp_path: Path) -> None:
    """Over two minutes, category 2 (PDUs with 100 Wh registers) is withheld with its bound
    and ``pue`` is category 1, saying why; over a day, category 2 is the one."""
    coarse = yaml.safe_load((PROFILES / "energy_meter_3ph.yaml").read_text())
    coarse["name"] = "coarse_meter"
    for f in coarse["fields"]:
        if f["name"] == "energy_wh_total":
            f.update(type="uint32", scale=100)
    (tmp_path / "coarse_meter.yaml").write_text(yaml.safe_dump(coarse))
    doc = _site(tmp_path)
    meters = [("incomer", "energy_meter_3ph", "grid_incomer", 25_000.0),
              ("ups", "energy_meter_3ph", "ups_output", 20_000.0)]  # fmt: skip
    meters += [(f"pdu-{i}", "coarse_meter", "pdu_output", 19_000.0 / 4) for i in range(4)]
    doc["devices"] = [
        {
            "name": n,
            "protocol": "modbus",
            "profile": p,
            "host": "127.0.0.1",
            "port": 20001 + i,
            "role": r,
        }
        for i, (n, p, r, _) in enumerate(meters)  # fmt: skip
    ]
    cfg = SiteConfig.model_validate(doc)
    st = FakeStore()
    day = range(0, 86400 + 3600, 10)
    for name, profile, role, watts in meters:
        tags = {"site": "lab", "device": name, "role": role}
        step = 100.0 if profile == "coarse_meter" else 1.0
        for t in day:  # as the register reads: whole steps
            v = math.floor((1_000_000.0 + watts * t / 3600.0) / step) * step
            st.points[("energy_meter", "energy_wh_total")].append((tags, t * S, v))
    short = compute_kpis(st, cfg, 3600 * S, 3720 * S)
    assert short.pue_category == 1
    pue, cat2 = short.figure("pue"), short.figure("pue_cat2")
    assert pue.value == pytest.approx(25 / 20, rel=0.01)
    assert "category 2: its meters' resolution is too coarse for this period" in pue.note
    assert cat2.value is None and "from the registers' resolution" in cat2.note
    assert "E_IT \u00b1 0.4 kWh" in cat2.note and "a period of 2 h or more" in cat2.note
    idle = compute_kpis(st, cfg, 3600 * S, 3660 * S)  # a PDU register may not move at all
    assert idle.figure("pue_cat2").value is None
    whole = compute_kpis(st, cfg, 0, 86400 * S)
    assert whole.pue_category == 2 and whole.figure("pue").value is not None
