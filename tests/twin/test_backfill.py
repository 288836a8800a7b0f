"""Backfill: the readings equal the model's values at the same instants, poll-like times."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dcim.config import SiteConfig
from dcim.reading import Reading
from dcim.twin.model import GLOSSARY, SiteModel, backfill
from dcim.twin.site import paris_chapelle

NS = 1_000_000_000
T0 = datetime(2026, 3, 29, 0, 0, 7, tzinfo=UTC).timestamp()  # DST change at 01:00 UTC


@pytest.fixture(scope="module")
def cfg() -> SiteConfig:
    return SiteConfig.model_validate(paris_chapelle(racks=3, servers_per_rack=2))


def collect(
    cfg: SiteConfig, model: SiteModel, start: float, end: float, **kw: object
) -> list[Reading]:
    out: list[Reading] = []
    for b in backfill(cfg, model, start, end, **kw):  # type: ignore[arg-type]
        assert 0 < len(b) <= int(kw.get("batch", 10_000))  # type: ignore[call-overload]
        out.extend(b)
    return out


def test_rows_equal_values(cfg: SiteConfig) -> None:
    model = SiteModel(cfg, t0=T0)
    rows = collect(cfg, model, T0, T0 + 2 * 3600, interval_s=30, batch=997)
    names = [d.name for d in cfg.devices]
    assert len(rows) == len(names) * 240  # ticks at :00/:30 from T0 (not aligned) to the end
    profiles = cfg.profiles()
    for r in rows:
        dev = cfg.device(r.tags["device"])
        assert r.tags == cfg.tags_of(dev)
        meas = (
            profiles[dev.profile].measurement
            if dev.profile in profiles
            else GLOSSARY[dev.profile][0]
        )
        assert r.measurement == meas
        assert r.fields == model.values(dev.name, r.time_ns / 1e9)
        delay = r.time_ns % (30 * NS)
        assert 1_000_000 <= delay < 25_000_000  # the poll's few ms after the tick


def test_time_order_and_counters_match_truth(cfg: SiteConfig) -> None:
    model = SiteModel(cfg, t0=T0)
    meters = [d.name for d in cfg.devices if d.role]
    rows = collect(cfg, model, T0, T0 + 86400, interval_s=60, devices=meters, batch=5000)
    ticks = [r.time_ns // (60 * NS) for r in rows]
    assert ticks == sorted(ticks)  # time ordered (to the poll tick)
    by_dev: dict[str, list[Reading]] = {}
    for r in rows:
        by_dev.setdefault(r.tags["device"], []).append(r)
    assert set(by_dev) == set(meters)
    for name, rs in by_dev.items():
        a, b = rs[3], rs[-2]
        truth = model.truth(a.time_ns / 1e9, b.time_ns / 1e9)  # the model time of a reading
        for f, v in b.fields.items():
            if f.endswith("_total"):
                assert truth.counters[(name, f)] == v - a.fields[f], (name, f)


def test_consecutive_backfills_agree(cfg: SiteConfig) -> None:
    model = SiteModel(cfg, t0=T0)
    whole = collect(cfg, model, T0, T0 + 3600, interval_s=10, devices=["meter-incomer", "hp-1"])
    fresh = SiteModel(cfg, t0=T0)
    part = collect(
        cfg, fresh, T0 + 1800, T0 + 3600, interval_s=10, devices=["meter-incomer", "hp-1"]
    )
    assert part == whole[-len(part) :]
    assert collect(cfg, model, T0 + 10, T0, interval_s=10) == []
    assert (
        collect(cfg, model, T0 - 3600, T0 + 5, interval_s=10, devices=["wm-1"])[0].time_ns > T0 * NS
    )


def test_outage_and_meter_swap() -> None:
    """A collector outage leaves no reading of any device; a declared meter swap restarts the
    counter at the new meter's first index (``meter_swaps=True``), on the true increase."""
    doc = paris_chapelle(racks=1, servers_per_rack=1)
    at = T0 + 1800
    swap = {"at": datetime.fromtimestamp(at, UTC).isoformat(), "field": "heat_energy_wh_total",
            "old_last_index": 1.0, "new_first_index": 100.0}  # fmt: skip
    for d in doc["devices"]:
        if d["name"] == "hm-cpcu":
            d["replacements"] = [swap]
    cfg = SiteConfig.model_validate(doc)
    model = SiteModel(cfg, t0=T0)
    out = (T0 + 600, T0 + 1200)
    kw = {"interval_s": 60, "devices": ["hm-cpcu", "meter-incomer"], "outages": [out]}
    rows = collect(cfg, model, T0, T0 + 3600, meter_swaps=True, **kw)
    assert rows and not any(out[0] <= r.time_ns / NS < out[1] for r in rows)
    assert len(rows) == 2 * (60 - 10)
    base = model.values("hm-cpcu", at)["heat_energy_wh_total"]
    for r in rows:
        if r.tags["device"] != "hm-cpcu":
            continue
        true = model.values("hm-cpcu", r.time_ns / NS)["heat_energy_wh_total"]
        want = true - base + 100.0 if r.time_ns / NS >= at else true
        assert r.fields["heat_energy_wh_total"] == pytest.approx(want, rel=1e-12, abs=1e-6)
    # off by default: the counters run on as one meter
    plain = collect(cfg, model, T0, T0 + 3600, **kw)
    last = [r for r in plain if r.tags["device"] == "hm-cpcu"][-1]
    assert last.fields["heat_energy_wh_total"] == pytest.approx(
        model.values("hm-cpcu", last.time_ns / NS)["heat_energy_wh_total"], rel=1e-12
    )
