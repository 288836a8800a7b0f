"""compute_kpis on a fake store holding linear counters, so every figure has an exact value.

The period is one hour, so a meter at P watts gives exactly P Wh (and P/1000 kWh).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from dcim.config import SiteConfig
from dcim.kpi.energy import counter_energies
from dcim.kpi.period import compute_kpis
from dcim.kpi.render import render_table
from tests.kpi.fakestore import FakeStore

S = 1_000_000_000
START, END = 3600, 7200  # s
INTERVAL = 60
TIMES = range(0, 3 * 3600 + 1, INTERVAL)
SITE = "lab"

# name, profile, role, upstream, power (W, or m3/h for water)
METERS: list[tuple[str, str, str | None, str | None, float]] = [
    ("incomer", "energy_meter_3ph", "grid_incomer", None, 155_000.0),
    ("ups-out", "energy_meter_3ph", "ups_output", None, 100_000.0),
    ("ups-in", "energy_meter_3ph", None, None, 104_000.0),
    ("cooling", "energy_meter_3ph", "cooling_board", None, 25_000.0),
    ("hp-board", "energy_meter_3ph", "heat_pump_board", "incomer", 20_000.0),
    ("hm-rec", "heat_meter_en1434", "heat_recovered", None, 95_000.0),
    ("hm-cpcu", "heat_meter_en1434", "heat_export_cpcu", None, 60_000.0),
    ("hm-gh", "heat_meter_en1434", "heat_export_greenhouse", None, 20_000.0),
    ("wm", "water_meter", "water", None, 0.1),
]
MEASUREMENT = {
    "energy_meter_3ph": ("energy_meter", "energy_wh_total"),
    "heat_meter_en1434": ("heat_meter", "heat_energy_wh_total"),
    "water_meter": ("water_meter", "volume_m3_total"),
}


def site(
    meters: list[tuple[str, str, str | None, str | None, float]] = METERS,
    heat_pumps: int = 1,
    **kpi: Any,
) -> SiteConfig:
    devices: list[dict[str, Any]] = []
    for i, (name, profile, role, upstream, _) in enumerate(meters):
        dev: dict[str, Any] = {
            "name": name,
            "protocol": "modbus",
            "profile": profile,
            "host": "127.0.0.1",
            "port": 20000 + i,
        }
        if role:
            dev["role"] = role
        if upstream:
            dev["upstream"] = upstream
        devices.append(dev)
    for i in range(1, heat_pumps + 1):
        devices.append(
            {
                "name": f"hp-{i}",
                "protocol": "modbus",
                "profile": "heat_pump",
                "host": "127.0.0.1",
                "port": 21000 + i,
            }
        )
    kpi.setdefault("ups_input_meters", ["ups-in"])
    return SiteConfig.model_validate(
        {
            "site": {"name": SITE},
            "defaults": {"interval_s": INTERVAL},
            "devices": devices,
            "kpi": kpi,
        }
    )


def store_for(
    cfg: SiteConfig,
    meters: list[tuple[str, str, str | None, str | None, float]] = METERS,
    *,
    skip: dict[str, set[int]] | None = None,
    hp_heat_start: float = 5_000_000.0,
) -> FakeStore:
    st = FakeStore()
    for name, profile, role, _, power in meters:
        measurement, fld = MEASUREMENT[profile]
        tags = {"site": SITE, "device": name} | ({"role": role} if role else {})
        times = [t for t in TIMES if t not in (skip or {}).get(name, set())]
        st.counter(measurement, tags, fld, power=power, times_s=times)
    for d in cfg.devices:
        if d.profile == "heat_pump":
            tags = {"site": SITE, "device": d.name}
            st.counter(
                "heat_pump", tags, "electrical_energy_wh_total", power=20_000.0, times_s=TIMES
            )
            st.counter(
                "heat_pump",
                tags,
                "heat_energy_wh_total",
                power=80_000.0,
                start_index=hp_heat_start,
                times_s=TIMES,
                wrap_at=2.0**32,
            )
    return st


def kpis(cfg: SiteConfig, st: FakeStore | None = None) -> Any:
    return compute_kpis(st or store_for(cfg), cfg, START * S, END * S, category=1)


def test_reference_figures_have_their_worked_values() -> None:
    cfg = site(renewable=[{"kind": "ppa", "share": 0.5}])
    rep = kpis(cfg)
    v = {f.name: f.value for f in rep.figures}
    assert v["e_dc_kwh"] == pytest.approx(135.0)  # 155 incomer - 20 heat-pump board
    assert v["e_heat_pump_kwh"] == pytest.approx(20.0)
    assert v["e_it_cat1_kwh"] == pytest.approx(100.0)
    assert v["pue_cat1"] == v["pue"] == pytest.approx(1.35)
    # Reuse at the DC boundary: 80 kWh exported less the heat pumps' 20 kWh (outside E_DC).
    assert v["e_reuse_kwh"] == pytest.approx(60.0)
    assert v["erf"] == pytest.approx(60.0 / 135.0)
    assert v["ere"] == pytest.approx(0.75)  # (135 - 60) / 100
    assert v["ppue_cooling"] == pytest.approx(1.25)
    assert v["ppue_distribution"] == pytest.approx(1.04)
    assert v["e_renewable_kwh"] == pytest.approx(67.5)
    assert v["ref"] == pytest.approx(0.5)
    assert v["co2_kg"] == pytest.approx(67.5 * 0.052)
    assert v["cue"] == pytest.approx(67.5 * 0.052 / 100.0)
    assert v["water_m3"] == pytest.approx(0.1)
    assert v["wue"] == pytest.approx(1.0)  # 100 L / 100 kWh
    assert v["heat_recovery_ratio"] == v["energy_balance"] == pytest.approx(0.95)
    assert v["seasonal_cop_hp-1"] == v["seasonal_cop"] == pytest.approx(4.0)
    assert all(f.completeness == pytest.approx(1.0) for f in rep.figures if f.value is not None)
    assert not any(f.flagged for f in rep.figures)
    assert not rep.warnings
    assert "within 1 \u00b1 0.15" in rep.figure("energy_balance").note


def test_existing_figures_keep_their_names() -> None:
    names = {f.name for f in kpis(site()).figures}
    assert {
        "e_dc_kwh",
        "e_it_cat1_kwh",
        "pue_cat1",
        "pue",
        "heat_cpcu_kwh",
        "heat_greenhouse_kwh",
        "heat_recovered_kwh",
        "erf",
    } <= names


def test_incomplete_data_is_withheld_not_shown_as_exact() -> None:
    cfg = site()
    # every other sample of the incomer missing inside the period (boundaries kept)
    gaps = {t for t in range(START + INTERVAL, END, 2 * INTERVAL)}
    rep = kpis(cfg, store_for(cfg, skip={"incomer": gaps}))
    incomer = next(m for m in rep.meters if m.device == "incomer")
    assert incomer.value == pytest.approx(155_000.0)  # the counter itself is still right
    pct = int(incomer.completeness * 100)
    for name in ("e_dc_kwh", "pue", "pue_cat1", "erf", "ere", "ref", "co2_kg", "cue"):
        f = rep.figure(name)
        assert f.value is None, name
        assert f.completeness == pytest.approx(incomer.completeness)  # still shown
        assert f.note.startswith(f"insufficient data: {pct} % of expected samples"), f.note
    # figures that do not depend on the incomer keep their values
    assert rep.figure("e_it_cat1_kwh").value == pytest.approx(100.0)
    assert rep.figure("seasonal_cop").value == pytest.approx(4.0)
    # a lower threshold accepts the same data
    cfg2 = site(min_completeness=0.4)
    rep2 = kpis(cfg2, store_for(cfg2, skip={"incomer": gaps}))
    assert rep2.figure("pue").value == pytest.approx(1.35)
    assert rep2.figure("pue").completeness < 0.9


def test_heat_pump_board_without_upstream_is_flagged() -> None:
    meters = [m if m[0] != "hp-board" else (*m[:3], None, m[4]) for m in METERS]
    cfg = site(meters)
    rep = kpis(cfg, store_for(cfg, meters))
    dc = rep.figure("e_dc_kwh")
    assert dc.value == pytest.approx(155.0)  # not taken out: it may be inside
    assert dc.flagged and "may be inside E_DC" in dc.note and "hp-board" in dc.note
    assert rep.figure("pue").flagged
    assert any("hp-board" in w and "upstream" in w for w in rep.warnings)


def test_heat_pump_board_fed_from_another_meter_is_flagged() -> None:
    meters = [m if m[0] != "hp-board" else (*m[:3], "cooling", m[4]) for m in METERS]
    cfg = site(meters)
    rep = kpis(cfg, store_for(cfg, meters))
    assert rep.figure("e_dc_kwh").flagged
    assert "upstream cooling is not a grid incomer" in rep.figure("e_dc_kwh").note
    assert any("not a grid incomer" in w for w in rep.warnings)


def test_heat_pumps_without_board_meter_are_flagged() -> None:
    meters = [m for m in METERS if m[0] != "hp-board"]
    cfg = site(meters)
    rep = kpis(cfg, store_for(cfg, meters))
    assert rep.figure("e_dc_kwh").flagged
    assert "20 kWh" in rep.figure("e_dc_kwh").note  # the heat pumps' own counters
    assert any("hp-1" in w for w in rep.warnings)


def test_energy_balance_flags_a_broken_heat_meter() -> None:
    meters = [m if m[0] != "hm-rec" else (*m[:4], 50_000.0) for m in METERS]
    cfg = site(meters)
    rep = kpis(cfg, store_for(cfg, meters))
    bal = rep.figure("energy_balance")
    assert bal.value == pytest.approx(0.5) and bal.flagged
    assert "0.500" in bal.note and "hm-rec" in bal.note and "broken" in bal.note
    # a wider tolerance accepts it
    cfg2 = site(meters, balance_tolerance=0.6)
    assert not kpis(cfg2, store_for(cfg2, meters)).figure("energy_balance").flagged


def test_unavailable_figures_say_why() -> None:
    meters = [m for m in METERS if m[0] not in ("cooling", "wm")]
    cfg = site(meters, ups_input_meters=[])
    rep = kpis(cfg, store_for(cfg, meters))
    for name, why in (
        ("ppue_distribution", "UPS input not metered"),
        ("ppue_cooling", "no cooling_board meter"),
        ("wue", "no water meter"),
    ):
        f = rep.figure(name)
        assert f.value is None and why in f.note and "insufficient" not in f.note


def test_renewable_declarations() -> None:
    cfg = site(
        renewable=[
            {"kind": "guarantees_of_origin", "kwh_per_year": 365.2425 * 24 * 10.0},  # 10 kWh/h
            {"kind": "ppa", "share": 0.2},
        ]
    )
    rep = kpis(cfg)
    assert rep.figure("e_renewable_kwh").value == pytest.approx(10.0 + 27.0)
    assert rep.figure("e_renewable_kwh").estimated  # pro rata of a yearly amount
    assert rep.figure("ref").value == pytest.approx(37.0 / 135.0)
    assert rep.figure("co2_kg").value == pytest.approx((135.0 - 37.0) * 0.052)


def test_no_renewable_means_ref_zero_and_all_grid_carbon() -> None:
    rep = kpis(site(grid_carbon_kg_per_kwh=0.1))
    assert rep.figure("ref").value == 0.0
    assert "none declared" in rep.figure("e_renewable_kwh").note
    assert rep.figure("cue").value == pytest.approx(135.0 * 0.1 / 100.0)


def test_metered_onsite_renewable_counts() -> None:
    meters = [*METERS, ("pv", "energy_meter_3ph", "renewable_onsite", None, 13_500.0)]
    cfg = site(meters)
    rep = kpis(cfg, store_for(cfg, meters))
    assert rep.figure("ref").value == pytest.approx(0.1)


def test_extrapolation_limit_is_configurable() -> None:
    # the incomer's data stops two intervals before the end of the period
    gaps = {t for t in TIMES if t > END - 2 * INTERVAL}
    cfg = site()
    rep = kpis(cfg, store_for(cfg, skip={"incomer": gaps}))
    assert rep.figure("e_dc_kwh").value == pytest.approx(135.0)
    assert rep.figure("e_dc_kwh").estimated
    cfg1 = site(max_gap_extrapolation_intervals=1)
    rep1 = kpis(cfg1, store_for(cfg1, skip={"incomer": gaps}))
    assert rep1.figure("e_dc_kwh").value is None


def test_heat_pump_counter_wraps_at_32_bits() -> None:
    cfg = site()
    # the heat counter passes 2^32 Wh in the middle of the period
    start_index = 2.0**32 - 80_000.0 * 1.5
    rep = kpis(cfg, store_for(cfg, hp_heat_start=start_index))
    assert rep.figure("seasonal_cop_hp-1").value == pytest.approx(4.0)
    heat = next(m for m in rep.meters if m.device == "hp-1" and m.field.startswith("heat"))
    assert heat.resets == 1


def test_counter_energies_for_any_device_and_field() -> None:
    cfg = site()
    got = counter_energies(
        store_for(cfg), cfg, [cfg.device("hp-1")], "electrical_energy_wh_total", START * S, END * S
    )
    assert len(got) == 1 and got[0].value == pytest.approx(20_000.0)
    assert got[0].completeness == 1.0


def test_json_and_table_show_everything() -> None:
    meters = [m if m[0] != "hp-board" else (*m[:3], None, m[4]) for m in METERS]
    cfg = site(meters, ups_input_meters=[])
    rep = kpis(cfg, store_for(cfg, meters))
    d = json.loads(json.dumps(rep.to_dict()))
    assert d["settings"]["grid_carbon_kg_per_kwh"] == 0.052
    assert d["warnings"] and any(f["flagged"] for f in d["figures"])
    names = {f["name"] for f in d["figures"]}
    assert {"ere", "ref", "cue", "wue", "seasonal_cop", "energy_balance"} <= names
    text = render_table(rep, "Europe/Paris")
    for name in names:
        assert name in text
    assert "n/a" in text and "CHECK" in text and "warning: heat-pump board hp-board" in text
    assert "L/kWh" in text and "kgCO2eq" in text


def test_reset_inside_a_long_window_loses_only_the_poll_before_it() -> None:
    # A day at 10 s polls is read in 300 s windows; the counter restarts from zero at a poll
    # in the middle of a window. Only the energy between the poll before and the restart
    # (10 s) is unknowable; the rest of the window before the restart must not be lost.
    cfg = SiteConfig.model_validate(
        {
            "site": {"name": SITE},
            "defaults": {"interval_s": 10},
            "devices": [
                {
                    "name": "incomer",
                    "protocol": "modbus",
                    "profile": "energy_meter_3ph",
                    "host": "127.0.0.1",
                    "port": 20000,
                    "role": "grid_incomer",
                }
            ],
        }
    )
    power, t_reset = 36_000.0, 43_210 + 150  # W; mid-window
    st = FakeStore()
    tags = {"site": SITE, "device": "incomer", "role": "grid_incomer"}
    base = 1_000_000.0 + power * t_reset / 3600.0
    for t in range(-60, 86_400 + 61, 10):
        v = 1_000_000.0 + power * t / 3600.0
        st.points[("energy_meter", "energy_wh_total")].append(
            (tags, t * S, v - base if t >= t_reset else v)
        )
    got = counter_energies(
        st, cfg, cfg.devices, "energy_wh_total", 0, 86_400 * S, role="grid_incomer"
    )
    assert got[0].resets == 1
    assert got[0].value == pytest.approx(power * (86_400 - 10) / 3600.0, rel=1e-12)
