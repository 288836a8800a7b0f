"""The twin obeys the first and second laws: a year of the reference site checked at every
5-minute step, a backfilled day in each season checked at every 10 s poll from the readings,
the case of issue 11 (15 January, 15:00), and the checker itself catching each kind of breach.

Why 5 minutes for the year: the plant state is a pure function of the time (no state carried
from one step to the next, :func:`dcim.twin.physics.plant_state`), so a step checked is a step
proven whatever the steps around it; the fastest things the plant follows are the seeded load
waves (periods from 5 minutes up) and the weather (hours), so a 5-minute grid over the whole
year (105,120 steps) visits every regime: the heat pumps off, one or two running, the dry
coolers idle to full speed, the adiabatic spray, the trim chiller, the network curve from its
winter to its summer end. The backfilled days at the collectors' 10 s cadence check the same
laws on what the instruments report (the values a collector stores), one day per season.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import numpy as np
import pytest

from dcim.config import SiteConfig
from dcim.reading import Reading
from dcim.twin import physics as ph
from dcim.twin.laws import violations
from dcim.twin.model import SiteModel, backfill
from dcim.twin.site import CPCU, HeatNetwork, paris_chapelle

NS = 1_000_000_000
YEAR0 = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
ISSUE = datetime(2026, 1, 15, 15, 0, tzinfo=UTC).timestamp()  # issue 11's figures, UTC
SEASON_DAYS = [
    datetime(2026, m, d, tzinfo=UTC).timestamp() for m, d in ((1, 20), (4, 15), (7, 22), (10, 14))
]
PLANT = (
    "hx-1",
    "hp-1",
    "hp-2",
    "drycooler-1",
    "drycooler-2",
    "hm-recovery",
    "hm-cpcu",
    "hm-greenhouse",
)


@pytest.fixture(scope="module")
def cfg() -> SiteConfig:
    return SiteConfig.model_validate(paris_chapelle())  # the reference site, full size


@pytest.fixture(scope="module")
def model(cfg: SiteConfig) -> SiteModel:
    return SiteModel(cfg, t0=YEAR0, seed=1)


@pytest.fixture(scope="module")
def year(model: SiteModel) -> dict[str, np.ndarray]:
    ts = YEAR0 + np.arange(0.0, 365 * 86400.0, 300.0)
    return ph.At(model, ts).plant


def test_a_year_at_every_5_minutes_obeys_both_laws(year: dict[str, np.ndarray]) -> None:
    assert year["q_loop"].size == 105_120
    found = violations(year)
    assert found == [], "\n".join(map(str, found[:20]))
    # ... and the year went through every regime the checks are about
    n_run = year["running"].sum(0)
    assert set(np.unique(n_run).tolist()) == {1.0, 2.0}  # (the network always draws some)
    assert (year["q_trim"] > 0).mean() > 0.05  # the trim chiller ran (summer afternoons)
    assert (year["q_trim"] == 0).mean() > 0.5  # free cooling held the set point most of the year
    assert 0.05 < year["spray"].mean() < 0.6
    assert year["dc_speed"].max() == 1.0 and year["dc_speed"].min() < 0.05
    assert year["t_supply"].min() == 60.0 and year["t_supply"].max() == 65.0
    assert year["m_byp"].max() == 0.0  # a heat pump always runs: its evaporators take it all


def test_a_backfilled_year_reads_both_laws_at_every_5_minutes(
    cfg: SiteConfig, model: SiteModel
) -> None:
    """The readings ``backfill`` writes for a year (the plant devices without counters, whose
    integration would take minutes), checked on what the instruments report."""
    crahs = [d.name for d in cfg.devices if d.profile == "crah"]
    keep = {
        "hx-1": (
            "primary_supply_temp_c",
            "primary_return_temp_c",
            "secondary_supply_temp_c",
            "secondary_return_temp_c",
            "heat_power_w",
        ),
        **{c: ("supply_air_temp_c", "return_air_temp_c", "cooling_power_w") for c in crahs},
        **{
            d: ("water_inlet_temp_c", "water_outlet_temp_c", "heat_rejected_w")
            for d in ("drycooler-1", "drycooler-2")
        },
    }
    parts: dict[tuple[str, str], list[np.ndarray]] = {}
    for batch in backfill(
        cfg, model, YEAR0, YEAR0 + 365 * 86400 - 300, interval_s=300, devices=list(keep)
    ):
        for dev, fields in keep.items():
            rows = [r.fields for r in batch if r.tags["device"] == dev]
            for f in fields:
                parts.setdefault((dev, f), []).append(np.array([x[f] for x in rows], dtype=float))
    v = {k: np.concatenate(x) for k, x in parts.items()}
    assert {x.size for x in v.values()} == {105_120}
    hx = {f: v[("hx-1", f)] for f in keep["hx-1"]}
    assert (hx["primary_supply_temp_c"] > hx["secondary_supply_temp_c"]).all()
    assert (hx["primary_return_temp_c"] > hx["secondary_return_temp_c"]).all()
    for c in crahs:
        assert (v[(c, "supply_air_temp_c")] > hx["primary_return_temp_c"]).all(), c
        assert (v[(c, "return_air_temp_c")] > v[(c, "supply_air_temp_c")]).all(), c
    warmest = np.max([v[(c, "return_air_temp_c")] for c in crahs], axis=0)
    assert (warmest > hx["primary_supply_temp_c"]).all()
    cooled = np.sum([v[(c, "cooling_power_w")] for c in crahs], axis=0)
    np.testing.assert_allclose(cooled, hx["heat_power_w"], rtol=1e-4)
    for d in ("drycooler-1", "drycooler-2"):
        assert (v[(d, "water_inlet_temp_c")] >= v[(d, "water_outlet_temp_c")]).all(), d
        assert (v[(d, "heat_rejected_w")] >= 0).all(), d
    # the dry coolers never take the loop below its set point: the trim chiller does the rest
    assert (v[("drycooler-1", "water_outlet_temp_c")] >= hx["secondary_return_temp_c"] - 1e-9).all()


def test_the_heat_pumps_cop_follows_their_lift(
    year: dict[str, np.ndarray], model: SiteModel
) -> None:
    run = year["running"][0] > 0
    cop, t_sup, t_eo = year["cop"][0][run], year["t_supply"][run], year["t_eo"][0][run]
    eta = model.plant.hp_eta[0]
    expected = eta * (t_sup + 3 + 273.15) / ((t_sup + 3) - (t_eo - 3))
    np.testing.assert_allclose(cop, np.clip(expected, *ph.HP_COP_LIMITS), rtol=0.02)
    assert np.corrcoef(cop, (t_sup - t_eo))[0, 1] < -0.9  # lower lift, higher COP
    month = (year["t_out"] * 0).astype(int)  # placeholder shape
    del month
    ts = YEAR0 + np.arange(0.0, 365 * 86400.0, 300.0)
    jan, jul = ts < YEAR0 + 31 * 86400, (ts >= YEAR0 + 181 * 86400) & (ts < YEAR0 + 212 * 86400)

    def seasonal_cop(m: np.ndarray) -> float:
        return float(year["hp_heat"][:, m].sum() / year["hp_elec"][:, m].sum())

    assert 3.0 < seasonal_cop(jan) < seasonal_cop(jul) < 4.8


def _columns(
    rows: list[Reading], step_ns: int
) -> tuple[np.ndarray, dict[str, dict[str, np.ndarray]]]:
    """(poll ticks, device -> field -> values at each tick) from time-ordered readings."""
    ticks = sorted({r.time_ns // step_ns for r in rows})
    cols: dict[str, dict[str, list[float]]] = {}
    for r in rows:
        dev = cols.setdefault(r.tags["device"], {})
        for f, x in r.fields.items():
            dev.setdefault(f, []).append(float(x))
    out = {d: {f: np.asarray(x) for f, x in fs.items()} for d, fs in cols.items()}
    assert all(len(x) == len(ticks) for fs in out.values() for x in fs.values())
    return np.asarray(ticks), out


@pytest.mark.parametrize("day", SEASON_DAYS, ids=["jan", "apr", "jul", "oct"])
def test_a_backfilled_day_per_season_obeys_both_laws_at_every_poll(
    cfg: SiteConfig, day: float
) -> None:
    model = SiteModel(cfg, t0=day, seed=1)  # the same plant as the year's (t0 sets counters)
    crahs = [d.name for d in cfg.devices if d.profile == "crah"]
    got = backfill(cfg, model, day, day + 86400 - 10, interval_s=10, devices=[*PLANT, *crahs])
    ticks, v = _columns([r for b in got for r in b], 10 * NS)
    assert ticks.size == 8640
    h = ph.enthalpy
    hx = v["hx-1"]
    # plate heat exchanger: positive approach at both ends
    assert (hx["primary_supply_temp_c"] > hx["secondary_supply_temp_c"]).all()
    assert (hx["primary_return_temp_c"] > hx["secondary_return_temp_c"]).all()
    for c in crahs:  # coils: supply air above the water entering them, air cooled
        assert (v[c]["supply_air_temp_c"] > hx["primary_return_temp_c"]).all(), c
        assert (v[c]["return_air_temp_c"] > v[c]["supply_air_temp_c"] + 5.0).all(), c
    # the primary loop's water leaves the coils below the warmest return air
    warmest = np.max([v[c]["return_air_temp_c"] for c in crahs], axis=0)
    assert (warmest > hx["primary_supply_temp_c"]).all()
    # the secondary loop's mass flow (from the exchanger) and what the evaporators take
    q = hx["heat_power_w"]
    m_s = q / (h(hx["secondary_supply_temp_c"]) - h(hx["secondary_return_temp_c"]))
    m_ev, src = np.zeros_like(q), np.zeros_like(q)
    for hp in ("hp-1", "hp-2"):
        x = v[hp]
        run = x["running"] > 0
        assert (x["electrical_power_w"][~run] == 0).all() and (x["heat_output_w"][~run] == 0).all()
        s = x["heat_output_w"] - x["electrical_power_w"]
        src += s
        t_in, t_out = x["source_inlet_temp_c"], x["source_outlet_temp_c"]
        assert (t_in[run] > t_out[run]).all(), hp
        m_ev[run] += s[run] / (h(t_in[run]) - h(t_out[run]))
        t_sup = x["supply_temp_c"] + 273.15
        carnot = t_sup / (t_sup - (t_out + 273.15))
        assert ((x["cop"][run] > 1.0) & (x["cop"][run] < carnot[run])).all(), hp
        assert (x["supply_temp_c"] > x["return_temp_c"]).all()
    assert (m_ev <= m_s * (1 + 1e-4)).all()  # mass: the evaporators are in the loop
    rej = np.zeros_like(q)
    for dc in ("drycooler-1", "drycooler-2"):
        x = v[dc]
        assert (x["heat_rejected_w"] >= 0).all()
        assert (x["water_inlet_temp_c"] >= x["water_outlet_temp_c"]).all(), dc
        rej += x["heat_rejected_w"]
    # first law: what the loop brings = heat pumps' source + dry coolers + trim (>= 0)
    rec = v["hm-recovery"]["heat_power_w"]
    np.testing.assert_allclose(rec, q, rtol=1e-4)
    assert (src + rej <= rec * (1 + 1e-4)).all()
    hp_heat = v["hp-1"]["heat_output_w"] + v["hp-2"]["heat_output_w"]
    delivered = v["hm-cpcu"]["heat_power_w"] + v["hm-greenhouse"]["heat_power_w"]
    np.testing.assert_allclose(delivered, hp_heat, rtol=1e-4, atol=1e-3)
    for hm in ("hm-recovery", "hm-cpcu", "hm-greenhouse"):
        on = v[hm]["heat_power_w"] > 0
        assert (v[hm]["supply_temp_c"][on] > v[hm]["return_temp_c"][on]).all(), hm
    # the state behind those readings, at every poll tick, checked in full
    found = violations(ph.At(model, ticks.astype(np.float64) * 10.0).plant)
    assert found == [], "\n".join(map(str, found[:20]))


def test_issue_11_case_15_january_1500_is_consistent(cfg: SiteConfig) -> None:
    """Was: supply air 21.1 degC from 27.5 degC coil water, coil water leaving at 36.7 degC
    above the 32.5 degC return air, evaporators taking 20.8 m3/h from a 17.4 m3/h loop."""
    t = ISSUE
    model = SiteModel(cfg, t0=t - 600, seed=1)  # the year's plant (t0 only sets the counters)
    s = ph.At(model, np.array([t])).plant
    assert violations(s) == []
    hx = model.values("hx-1", t)
    for c in (d.name for d in cfg.devices if d.profile == "crah"):
        crah = model.values(c, t)
        assert crah["supply_air_temp_c"] == pytest.approx(22.0, abs=0.31)
        assert crah["supply_air_temp_c"] - hx["primary_return_temp_c"] >= 2.69  # cold end
        assert crah["return_air_temp_c"] > crah["supply_air_temp_c"] + 10.0
    # every coil's leaving water below its return air, and the primary loop is their mix
    assert (s["t_ra"][:, 0] - s["t_wo"][:, 0]).min() > 2.0
    assert s["t_wo"][:, 0].min() < hx["primary_supply_temp_c"] < s["t_ra"][:, 0].min()
    # the evaporators take the secondary loop's flow, no more: both running, bypass closed
    rho = ph.density(s["t_eo"][:, 0])
    v_ev = float((s["m_ev"][:, 0] / rho * 3600).sum())
    v_s = float(s["m_s"][0] / ph.density(s["t_sr"])[0] * 3600)
    assert s["running"][:, 0].tolist() == [1.0, 1.0]
    assert v_ev == pytest.approx(v_s, rel=2e-3) and v_s == pytest.approx(
        hx["primary_flow_m3_per_h"], rel=0.01
    )
    assert 10.0 < v_s < 16.0
    # January: the network at its winter supply, the heat pumps' COP from their lift
    cpcu = model.values("hm-cpcu", t)
    assert cpcu["supply_temp_c"] == pytest.approx(65.0, abs=0.1)
    assert cpcu["return_temp_c"] == pytest.approx(40.0, abs=0.1)
    for i, hp in enumerate(("hp-1", "hp-2")):
        x = model.values(hp, t)
        lift = (x["supply_temp_c"] + 3.0) - (float(s["t_ev"][i, 0]))
        assert x["cop"] == pytest.approx(
            model.plant.hp_eta[i] * (x["supply_temp_c"] + 276.15) / lift
        )
        assert 3.0 < x["cop"] < 4.0
    # the dry coolers reject the rest with free cooling (8 degC outside), no trim needed
    assert s["q_trim"][0] == 0.0 and s["q_rej"][0] > 0


def test_the_checker_finds_each_breach(model: SiteModel) -> None:
    ts = np.array([ISSUE, SEASON_DAYS[2] + 15 * 3600])
    good = ph.At(model, ts).plant
    assert violations(good) == []

    def broken(**change: np.ndarray) -> set[str]:
        return {v.check for v in violations({**good, **change})}

    # the old model's coil water: 27.5 in, 36.7 out, against 21.1/32.5 air
    old = broken(t_pr=np.full(2, 27.5), t_wo=np.full_like(good["t_wo"], 36.7))
    assert "crah cold end: supply air > entering water" in old
    assert "crah hot end: return air > leaving water" in old
    assert "crah: air-side heat = water-side heat" in old  # the flows no longer carry the heat
    # evaporators taking more than the loop carries
    m_ev = good["m_ev"] * 1.2
    assert "evaporator bypass flow >= 0" in broken(m_ev=m_ev, m_byp=good["m_s"] - m_ev.sum(0))
    assert "evaporator split: mass (evaporators + bypass = loop)" in broken(m_ev=m_ev)
    # a heat pump beating Carnot, heat out of nothing, heat flowing uphill
    assert "heat pump: COP < Carnot between its waters" in broken(
        cop=good["cop"] * 3,
        hp_elec=good["hp_heat"] / (good["cop"] * 3),
        hp_src=good["hp_heat"] * (1 - 1 / (good["cop"] * 3)),
    )
    assert "heat pump: heat = source + electricity" in broken(hp_elec=good["hp_elec"] * 0.9)
    assert "hx hot end: primary in > secondary out" in broken(t_ss=good["t_ps"] + 0.5)
    assert "dry coolers: leaving water > entering air" in broken(t_air=good["t_dco"] + 1.0)
    assert "secondary loop: heat in = heat pumps + dry coolers + trim" in broken(
        q_trim=good["q_trim"] + 1000.0
    )
    assert "room heat = IT heat (UPS output)" in broken(ups_out=good["ups_out"] * 1.01)
    v = violations({**good, "t_pr": np.full(2, 27.5)})
    assert v and all(x.step in (0, 1) for x in v) and "law" in str(v[0])


def test_the_network_curve_is_a_site_parameter(cfg: SiteConfig) -> None:
    assert (CPCU.supply_c(-3.0), CPCU.supply_c(10.0), CPCU.supply_c(25.0)) == (65.0, 62.5, 60.0)
    assert (CPCU.return_c(-3.0), CPCU.return_c(25.0)) == (40.0, 45.0)
    with pytest.raises(ValueError, match="winter return 70.0 degC must be below its supply"):
        HeatNetwork(return_winter_c=70.0)
    with pytest.raises(ValueError, match="winter knot 20.0 degC must be below the summer knot"):
        HeatNetwork(winter_below_c=20.0)
    # an older, hotter loop: the heat pumps lift more, so use more electricity per heat
    hot = dataclasses.replace(
        CPCU, supply_winter_c=75.0, supply_summer_c=70.0, return_winter_c=45.0, return_summer_c=50.0
    )
    t0 = SEASON_DAYS[0]
    base, older = SiteModel(cfg, t0=t0), SiteModel(cfg, t0=t0, network=hot)
    ts = t0 + np.arange(0, 86400, 600.0)
    a, b = ph.At(base, ts).plant, ph.At(older, ts).plant
    assert violations(b) == []
    assert b["t_supply"].min() >= 70.0 and model_values_differ(older, base, t0 + 3600)
    assert b["hp_elec"].sum() / b["hp_heat"].sum() > 1.1 * a["hp_elec"].sum() / a["hp_heat"].sum()


def model_values_differ(a: SiteModel, b: SiteModel, t: float) -> bool:
    return a.values("hm-cpcu", t)["supply_temp_c"] > b.values("hm-cpcu", t)["supply_temp_c"] + 5
