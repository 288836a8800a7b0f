"""Heat integrated from flow and temperatures against the twin's truth and the registers."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dcim.cli import main
from dcim.config import load_config
from dcim.kpi.energy import meter_energies
from dcim.kpi.heat import integrated_heat, reconcile, window_energy_wh, window_for
from dcim.storage import make_store
from dcim.timeutil import NS, parse_time
from dcim.twin.model import SiteModel
from dcim.twin.site import paris_chapelle

DAY = ("2026-01-15", "2026-01-16")


@pytest.fixture(scope="module")
def backfilled_day(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("heat")
    doc = paris_chapelle(
        racks=2,
        servers_per_rack=1,
        interval_s=60.0,
        spool_dir=str(tmp / "spool"),
        sink={"type": "embedded", "path": str(tmp / "day.sqlite")},
    )
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert main(["twin", "backfill", str(path), "--from", DAY[0], "--to", DAY[1]]) == 0
    return path


def test_integrated_heat_matches_truth_and_reconciles_with_the_register(
    backfilled_day: Path,
) -> None:
    cfg = load_config(backfilled_day)
    tz = cfg.site.timezone
    start, end = parse_time(f"{DAY[0]}T01:00", tz), parse_time(f"{DAY[0]}T23:00", tz)
    truth = SiteModel(cfg, t0=parse_time(DAY[0], tz) / NS, seed=1).truth(start / NS, end / NS)
    store = make_store(cfg.storage, read_only=True)
    try:
        for name, role in (
            ("hm-cpcu", "heat_export_cpcu"),
            ("hm-greenhouse", "heat_export_greenhouse"),
        ):
            got = integrated_heat(
                store, cfg, cfg.device(name), start, end, measurement="heat_meter"
            )
            true_wh = truth.counters[(name, "heat_energy_wh_total")]
            assert got.value_wh == pytest.approx(true_wh, rel=1e-3), name
            assert got.completeness == 1.0
            (reg,) = [m for m in meter_energies(store, cfg, role, start, end) if m.device == name]
            rec = reconcile(name, reg.value, got.value_wh, tolerance=0.005)
            assert rec.ok, rec
            # The flow sensor declared in the wrong pipe: ~1.5 % off, and reconciliation says so.
            wrong = cfg.device(name).model_copy(update={"flow_sensor": "supply"})
            bad = integrated_heat(store, cfg, wrong, start, end, measurement="heat_meter")
            assert reconcile(name, reg.value, bad.value_wh, tolerance=0.005).ok is False
    finally:
        store.close()


def test_a_gap_is_not_filled(backfilled_day: Path) -> None:
    cfg = load_config(backfilled_day)
    tz = cfg.site.timezone
    start = parse_time(f"{DAY[0]}T01:00", tz)
    store = make_store(cfg.storage, read_only=True)
    try:
        dev = cfg.device("hm-cpcu")
        full = integrated_heat(
            store, cfg, dev, start, start + 4 * 3600 * NS, measurement="heat_meter"
        )
        # The same 4 hours, but the store has nothing after the backfill's end: half missing.
        late = parse_time(DAY[1], tz) - 2 * 3600 * NS
        half = integrated_heat(
            store, cfg, dev, late, late + 4 * 3600 * NS, measurement="heat_meter"
        )
        assert full.completeness == 1.0 and half.completeness == pytest.approx(0.5, abs=0.01)
        assert half.value_wh is not None and full.value_wh is not None
        assert half.value_wh < 0.6 * full.value_wh
    finally:
        store.close()


def test_reconcile_flags_a_difference_above_tolerance() -> None:
    assert reconcile("hm", 1010.0, 1000.0, 0.005).ok is False
    assert reconcile("hm", 1004.0, 1000.0, 0.005).ok is True
    assert reconcile("hm", None, 1000.0, 0.005).ok is None
    assert window_for(31 * 86400, 10) == 60 and window_for(365 * 86400, 10) == 3600


def test_windows_that_are_not_water_are_left_out_and_named() -> None:
    step = 60 * NS
    times = [i * step for i in range(10)]
    n = len(times)
    supply, ret = [45.0] * n, [35.0] * n
    ret[3] = ret[4] = -327.68  # the int16 fault value of a 0.01 degC register
    ret[5] = -85.9  # a window half faulty: its mean is no water temperature either
    supply[8] = 180.0
    got = window_energy_wh(times, [10.0] * n, supply, ret, "return", step, 0, n * step)
    whole = window_energy_wh(times, [10.0] * n, [45.0] * n, [35.0] * n, "return", step, 0, n * step)
    assert got.usable == 6 and whole.usable == 10
    assert got.wh == pytest.approx(whole.wh * 6 / 10, rel=1e-12)
    (r, s) = got.invalid
    assert (r.field, r.start_ns, r.end_ns, r.windows) == ("return_temp_c", 3 * step, 6 * step, 3)
    assert (r.low, r.high) == (-327.68, -85.9)
    assert (s.field, s.start_ns, s.end_ns, s.low) == ("supply_temp_c", 8 * step, 9 * step, 180.0)
    text = r.describe("hm-1", 60)
    assert text.startswith(
        "hm-1 return_temp_c, window means -327.68 to -85.90, from 1970-01-01T00:03:00Z to"
    )
    assert "3 window(s) of 60 s" in text and "not liquid water" in text


def test_a_negative_flow_window_is_left_out_and_named() -> None:
    step = 60 * NS
    times = [i * step for i in range(4)]
    flow = [10.0, -327.68, 10.0, 10.0]
    got = window_energy_wh(times, flow, [45.0] * 4, [35.0] * 4, "supply", step, 0, 4 * step)
    assert got.usable == 3
    (f,) = got.invalid
    assert (f.field, f.start_ns, f.end_ns, f.low) == ("flow_m3_per_h", step, 2 * step, -327.68)
    assert "negative flow" in f.describe("hm-1", 60)
