"""Hourly and daily KPI points written back to the store (measurement ``kpi``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dcim.cli import main
from dcim.config import load_config
from dcim.kpi.period import compute_kpis
from dcim.kpi.series import periods
from dcim.storage import make_store
from dcim.timeutil import NS, parse_time
from dcim.twin.site import paris_chapelle


def test_periods_follow_hours_and_local_days() -> None:
    tz = "Europe/Paris"
    a, b = parse_time("2026-03-28T22:30", tz), parse_time("2026-03-30T01:00", tz)
    hours = periods(a, b, "hourly", tz)
    assert hours[0][0] == parse_time("2026-03-28T23:00", tz)
    assert all(y - x == 3600 * NS for x, y in hours[:-1])
    days = periods(a, b, "daily", tz)
    assert [x for x, _ in days] == [parse_time("2026-03-29", tz), parse_time("2026-03-30", tz)]
    assert days[0][1] - days[0][0] == 23 * 3600 * NS  # the spring DST change
    assert days[1][1] == b


def test_hourly_series_written_and_read_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = paris_chapelle(
        racks=1,
        servers_per_rack=1,
        interval_s=60.0,
        spool_dir=str(tmp_path / "spool"),
        sink={"type": "embedded", "path": str(tmp_path / "s.sqlite")},
    )
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert (
        main(["twin", "backfill", str(path), "--from", "2026-02-01", "--to", "2026-02-01T05:00"])
        == 0
    )
    args = ["kpi", str(path), "--from", "2026-02-01T01:00", "--to", "2026-02-01T04:00"]
    assert main([*args, "--series", "hourly"]) == 0
    assert "3 hourly 'kpi' point(s) written" in capsys.readouterr().out
    cfg = load_config(path)
    start, end = (
        parse_time("2026-02-01T01:00", "Europe/Paris"),
        parse_time("2026-02-01T04:00", "Europe/Paris"),
    )
    store = make_store(cfg.storage, read_only=True)
    try:
        rows = store.aggregate(
            measurement="kpi",
            field="pue",
            start_ns=start,
            end_ns=end,
            fn="last",
            every_s=3600,
            where={"resolution": "hourly"},
        )
        assert [r.time_ns for r in rows] == [start + k * 3600 * NS for k in range(3)]
        for r in rows:
            expected = compute_kpis(store, cfg, r.time_ns, r.time_ns + 3600 * NS).figure("pue")
            assert r.value == pytest.approx(expected.value)
        done = store.aggregate(
            measurement="kpi", field="pue_completeness", start_ns=start, end_ns=end, fn="min"
        )
        assert done[0].value is not None and done[0].value > 0.95
    finally:
        store.close()
