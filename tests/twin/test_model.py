"""The twin's physics model: first law, counters vs truth, plausible ranges, determinism."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest
from iapws import IAPWS97

from dcim.config import SiteConfig
from dcim.twin import physics as ph
from dcim.twin.model import GLOSSARY, SiteModel
from dcim.twin.site import paris_chapelle

JAN = datetime(2026, 1, 12, tzinfo=UTC).timestamp()  # a Monday
JUL = datetime(2026, 7, 13, tzinfo=UTC).timestamp()
OCT = datetime(2026, 10, 5, tzinfo=UTC).timestamp()


def small(**kw: int) -> SiteConfig:
    return SiteConfig.model_validate(
        paris_chapelle(racks=kw.get("racks", 4), servers_per_rack=kw.get("spr", 3))
    )


@pytest.fixture(scope="module")
def cfg() -> SiteConfig:
    return small()


@pytest.fixture(scope="module")
def model(cfg: SiteConfig) -> SiteModel:
    return SiteModel(cfg, t0=OCT, seed=1)


def times(t0: float, n: int = 40, span: float = 7 * 86400) -> list[float]:
    rng = np.random.default_rng(7)
    return sorted((t0 + rng.uniform(0, span, n)).tolist())


def test_every_device_has_its_glossary_fields(cfg: SiteConfig, model: SiteModel) -> None:
    for d in cfg.devices:
        v = model.values(d.name, OCT + 123.4)
        assert tuple(v) == GLOSSARY[d.profile][1], d.name
        assert all(isinstance(x, int | float) and math.isfinite(x) for x in v.values())


def test_first_law(model: SiteModel) -> None:
    for t in times(OCT):
        v = {d: model.values(d, t) for d in model.devices}
        ups_in = v["ups-a"]["input_power_w"] + v["ups-b"]["input_power_w"]
        parts = ups_in + sum(
            v[m]["power_w"] for m in ("meter-cooling", "meter-heatpumps", "meter-aux")
        )
        assert v["meter-incomer"]["power_w"] == pytest.approx(parts, rel=1e-12)
        for u, m in (("ups-a", "meter-ups-a-out"), ("ups-b", "meter-ups-b-out")):
            assert v[m]["power_w"] == pytest.approx(v[u]["output_power_w"], rel=1e-12)
            assert 0.94 <= v[u]["output_power_w"] / v[u]["input_power_w"] <= 0.97
        pdus = sum(x["power_w"] for d, x in v.items() if d.startswith("pdu-"))
        ups_out = v["ups-a"]["output_power_w"] + v["ups-b"]["output_power_w"]
        assert ups_out == pytest.approx(pdus * 1.005, rel=1e-12)
        srv = sum(x["power_w"] for d, x in v.items() if d.startswith("srv-"))
        assert srv < pdus  # racks also hold storage and network gear
        hps = [v["hp-1"], v["hp-2"]]
        elec = sum(h["electrical_power_w"] for h in hps)
        heat = sum(h["heat_output_w"] for h in hps)
        assert v["meter-heatpumps"]["power_w"] == pytest.approx(elec, rel=1e-12)
        source = heat - elec
        rejected = v["drycooler-1"]["heat_rejected_w"] + v["drycooler-2"]["heat_rejected_w"]
        recovered = v["hm-recovery"]["heat_power_w"]
        trim = float(ph.At(model, np.array([t])).plant["q_trim"][0])  # no meter on the chiller
        assert recovered == pytest.approx(source + rejected + trim, rel=1e-9)
        assert rejected >= 0.0 and source >= 0.0 and trim >= 0.0
        delivered = v["hm-cpcu"]["heat_power_w"] + v["hm-greenhouse"]["heat_power_w"]
        assert heat == pytest.approx(delivered, rel=1e-9, abs=1e-6)
        assert v["hx-1"]["heat_power_w"] == pytest.approx(recovered, rel=1e-12)
        crah = sum(x["cooling_power_w"] for d, x in v.items() if d.startswith("crah-"))
        assert crah == pytest.approx(recovered, rel=1e-9)
        assert recovered == pytest.approx(ups_out, rel=0.12)  # IT heat, plus the CRAH fans
        fans = sum(x["fan_power_w"] for d, x in v.items() if d.startswith("crah-"))
        assert recovered == pytest.approx(ups_out + fans, rel=1e-9)


def test_heat_meters_follow_en1434(model: SiteModel) -> None:
    for t in times(OCT, 8):
        for hm in ("hm-recovery", "hm-cpcu", "hm-greenhouse"):
            v = model.values(hm, t)
            if v["heat_power_w"] == 0:
                assert v["flow_m3_per_h"] == 0
                continue
            s = IAPWS97(T=v["supply_temp_c"] + 273.15, P=0.3)
            r = IAPWS97(T=v["return_temp_c"] + 273.15, P=0.3)
            q = r.rho * v["flow_m3_per_h"] / 3600 * (s.h - r.h) * 1000
            assert q == pytest.approx(v["heat_power_w"], rel=2e-4)
            assert v["supply_temp_c"] > v["return_temp_c"]
        cpcu = model.values("hm-cpcu", t)
        # the network's curve: 60 degC in summer to 65 in winter, what the heat pumps deliver
        assert 60.0 <= cpcu["supply_temp_c"] <= 65.0
        assert cpcu["supply_temp_c"] == model.values("hp-1", t)["supply_temp_c"]
        assert 40.0 <= cpcu["return_temp_c"] <= 45.0


def test_electrical_meters_are_consistent(model: SiteModel) -> None:
    for t in times(OCT, 5):
        for m in ("meter-incomer", "meter-cooling", "meter-aux", "meter-ups-a-out"):
            v = model.values(m, t)
            p = (
                sum(v[f"voltage_l{k}_v"] * v[f"current_l{k}_a"] for k in (1, 2, 3))
                * v["power_factor"]
            )
            assert p == pytest.approx(v["power_w"], rel=1e-9)
            assert 0.9 < v["power_factor"] < 1.0
            assert 49.9 < v["frequency_hz"] < 50.1
            assert all(220 < v[f"voltage_l{k}_v"] < 240 for k in (1, 2, 3))
        pdu = model.values("pdu-R01-A", t)
        assert pdu["current_a"] * pdu["voltage_v"] * 0.98 == pytest.approx(pdu["power_w"])


def test_counters_equal_truth_exactly(model: SiteModel) -> None:
    t1, t2 = OCT + 3600.25, OCT + 2 * 86400 + 17.7
    truth = model.truth(t1, t2)
    n = 0
    for dev in model.devices:
        a, b = model.values(dev, t1), model.values(dev, t2)
        for f in a:
            if f.endswith("_total"):
                assert truth.counters[(dev, f)] == b[f] - a[f], (dev, f)
                assert b[f] > a[f] > 0 or f.startswith("electrical") or f.startswith("heat_en")
                n += 1
    assert n == len(truth.counters) > 10


def test_counters_integrate_their_rate(model: SiteModel) -> None:
    """Counter increase over an hour == the power's mean over that hour (fine sampling)."""
    t1 = OCT + 5 * 3600 + 0.5
    ts = np.linspace(t1, t1 + 3600, 3601)
    pairs = [
        ("meter-incomer", "power_w", "energy_wh_total", 1 / 3600),
        ("pdu-R02-B", "power_w", "energy_wh_total", 1 / 3600),
        ("hm-recovery", "heat_power_w", "heat_energy_wh_total", 1 / 3600),
        ("hm-recovery", "flow_m3_per_h", "volume_m3_total", 1 / 3600),
        ("hp-1", "electrical_power_w", "electrical_energy_wh_total", 1 / 3600),
    ]
    for dev, rate, counter, scale in pairs:
        s = model.series(dev, ts)
        expected = np.trapezoid(s[rate], ts) * scale
        assert s[counter][-1] - s[counter][0] == pytest.approx(expected, rel=1e-6, abs=1e-9), dev


def test_truth_balances(model: SiteModel) -> None:
    t = model.truth(OCT + 100, OCT + 3 * 86400)
    c = t.counters
    incomer = c[("meter-incomer", "energy_wh_total")]
    assert t.e_dc_wh + t.e_heat_pump_wh == pytest.approx(incomer, rel=1e-12)
    assert t.e_heat_pump_wh == pytest.approx(c[("meter-heatpumps", "energy_wh_total")], rel=1e-12)
    hp_heat = c[("hp-1", "heat_energy_wh_total")] + c[("hp-2", "heat_energy_wh_total")]
    assert hp_heat == pytest.approx(t.heat_cpcu_wh + t.heat_greenhouse_wh, rel=1e-9)
    assert t.heat_recovered_wh == c[("hm-recovery", "heat_energy_wh_total")]
    assert t.e_it_wh[1] == pytest.approx(t.e_it_wh[2] * 1.005, rel=1e-9)
    assert t.pue(2) > t.pue(1)


@pytest.mark.parametrize("t0", [JAN, JUL, OCT])
def test_pue_cop_and_heat_split_are_plausible(cfg: SiteConfig, t0: float) -> None:
    m = SiteModel(cfg, t0=t0)
    t = m.truth(t0, t0 + 7 * 86400)
    assert 1.2 <= t.pue(1) <= 1.6
    assert t.heat_recovered_wh > t.heat_cpcu_wh + t.heat_greenhouse_wh - t.e_heat_pump_wh
    cop = (t.heat_cpcu_wh + t.heat_greenhouse_wh) / t.e_heat_pump_wh
    assert 3.0 <= cop <= 4.5
    for ts in times(t0, 12):
        hp = m.values("hp-1", ts)
        if hp["running"]:
            assert 3.0 <= hp["cop"] <= 4.5
            assert hp["heat_output_w"] == pytest.approx(hp["electrical_power_w"] * hp["cop"])
        for s in ("srv-R01-01", "srv-R04-03"):
            assert 19.0 <= m.values(s, ts)["inlet_temp_c"] <= 27.0
    if t0 == JAN:  # winter: most of the heat is reused
        assert t.heat_cpcu_wh + t.heat_greenhouse_wh > 0.9 * t.heat_recovered_wh
    if t0 == JUL:  # summer: the dry coolers take most of it, no greenhouse heating at noon
        assert t.heat_cpcu_wh < 0.5 * t.heat_recovered_wh


def test_outdoor_temperature_is_parisian(cfg: SiteConfig) -> None:
    for t0, lo, hi in ((JAN, -8, 16), (JUL, 10, 36)):
        m = SiteModel(cfg, t0=t0)
        temps = [m.values("drycooler-1", t)["outdoor_temp_c"] for t in times(t0, 60, 14 * 86400)]
        assert lo < min(temps) and max(temps) < hi
    assert (
        np.mean(
            [
                SiteModel(cfg, t0=JAN).values("drycooler-1", t)["outdoor_temp_c"]
                for t in times(JAN, 60)
            ]
        )
        < 10
    )


def test_office_hours_raise_the_it_load(model: SiteModel) -> None:
    # Tuesday 2026-10-06, local (UTC+2) 05:00 vs 14:00; servers are ~half of this small site
    night = model.values("meter-ups-a-out", OCT + 86400 + 3 * 3600)["power_w"]
    day = model.values("meter-ups-a-out", OCT + 86400 + 12 * 3600)["power_w"]
    assert day > 1.08 * night
    srv = [model.values("srv-R01-01", OCT + 86400 + h * 3600)["power_w"] for h in (3, 12)]
    assert srv[1] > 1.15 * srv[0]


def test_deterministic_and_order_independent(cfg: SiteConfig, model: SiteModel) -> None:
    ts = times(OCT, 10, 20 * 86400)
    first = [model.values("meter-incomer", t) for t in reversed(ts)]
    other = SiteModel(cfg, t0=OCT, seed=1)
    again = [other.values("meter-incomer", t) for t in reversed(ts)]
    assert first == again
    assert [model.values("meter-incomer", t) for t in reversed(ts)] == first
    assert SiteModel(cfg, t0=OCT, seed=2).values("srv-R01-01", ts[0]) != model.values(
        "srv-R01-01", ts[0]
    )


def test_before_start_and_unknown_device(model: SiteModel) -> None:
    with pytest.raises(ValueError):
        model.values("meter-incomer", OCT - 1)
    with pytest.raises(KeyError):
        model.values("no-such-device", OCT + 1)


def test_works_for_partial_and_large_sites() -> None:
    doc = paris_chapelle(racks=2, servers_per_rack=1)
    doc["devices"] = [
        d for d in doc["devices"] if d["profile"] in ("energy_meter_3ph", "heat_meter_en1434")
    ]
    m = SiteModel(SiteConfig.model_validate(doc), t0=OCT)
    t = m.truth(OCT, OCT + 86400)
    assert 1.15 < t.pue(1) < 1.6 and t.heat_cpcu_wh > 0
    big = SiteModel(small(racks=60, spr=10), t0=OCT)
    assert big.plant.nom > 10 * m.plant.nom
    assert 1.15 < big.truth(OCT, OCT + 86400).pue(1) < 1.6
