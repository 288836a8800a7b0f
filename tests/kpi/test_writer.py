"""The collector's kpi points (dcim.kpi.writer): each hour and local day written once it has
closed, not before, not again while its data stays the same, and again when late data for it
arrives; on the embedded store and on a real InfluxDB (after `dcim db init`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from dcim.config import SiteConfig
from dcim.dbinit import init_sink
from dcim.kpi.gather import heat_pumps
from dcim.kpi.writer import KpiWriter
from dcim.storage import ROLLUPS_DUE_FILE, latehours, make_store
from dcim.storage.base import NS, Store
from dcim.storage.rollupcalc import SuppliedRollups
from dcim.testing.servers import InfluxServer
from dcim.twin.backfill import backfill
from dcim.twin.model import SiteModel
from dcim.twin.site import paris_chapelle

HOUR = 3600 * NS


def _completeness(store: Store, start: int, end: int, res: str) -> dict[int, float]:
    rows = store.aggregate(
        measurement="kpi",
        field="e_dc_kwh_completeness",
        start_ns=start,
        end_ns=end,
        fn="last",
        every_s=3600,
        where={"resolution": res},
    )
    return {r.time_ns: float(r.value) for r in rows if r.value is not None}


@pytest.mark.parametrize(
    "kind", ["embedded", pytest.param("influxdb", marks=pytest.mark.slow)]
)  # InfluxDB: the server rolls up the late hours of the day's kpi points (their series only)
def test_points_written_once_closed_and_again_on_late_data(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    sink: dict[str, Any] = {"type": "embedded", "path": str(tmp_path / "s.sqlite")}
    if kind == "influxdb":
        srv: InfluxServer = request.getfixturevalue("influxdb")
        # the late-hour rollups of the kpi points are slow on a loaded machine: a long timeout
        sink = {"type": "influxdb", "url": srv.url, "database": "kpiwriter", "timeout_s": 120}
    doc = paris_chapelle(racks=1, servers_per_rack=1, interval_s=60.0,
                         spool_dir=str(tmp_path / "spool"), sink=sink)  # fmt: skip
    cfg = SiteConfig.model_validate(doc)
    if kind == "influxdb":
        init_sink(cfg.storage.sink)
        cfg.storage.spool_dir.mkdir()  # the store keeps its hours due for rollup there
    tz = ZoneInfo(cfg.site.timezone)
    today = datetime.now(tz).replace(hour=0, minute=0, second=0, microsecond=0)
    day0 = today - timedelta(days=2)  # a whole local day, two days ago
    a = int(day0.timestamp())
    b = int((day0 + timedelta(days=1)).timestamp())
    hole = (a + 5 * 3600) * NS  # the grid incomer's readings of this hour arrive late
    model = SiteModel(cfg, t0=a - 7200, seed=1)
    # The devices the KPIs read (as `dcim twin backfill` writes by default): on InfluxDB each
    # late hour is rolled up again by the server's statement, at a cost per series and window.
    inputs = [d.name for d in cfg.devices if d.role] + [d.name for d in heat_pumps(cfg)]
    late, keep = [], []
    for batch in backfill(cfg, model, a, b + 3600, interval_s=60.0, devices=inputs):
        for r in batch:
            if r.tags["device"] == "meter-incomer" and hole <= r.time_ns < hole + HOUR:
                late.append(r)
            else:
                keep.append(r)
    assert late
    # The day written as `dcim twin backfill` writes it: the raw points, and on InfluxDB the
    # rollups of its whole hours computed by the writer (dcim.storage.rollupcalc, the same as
    # the server's statement: tests/storage/test_rollupcalc.py). The kpi points and the late
    # points below are late points of the collector's store: the server rolls their hours up.
    backfilled = make_store(cfg.storage)
    try:
        rollups = SuppliedRollups(backfilled, a * NS, (b + 3600) * NS)
        backfilled.write(keep)
        rollups.add(keep)
        rollups.close()
    finally:
        backfilled.close()
    store = make_store(cfg.storage)
    try:
        writer = KpiWriter(store, cfg, settle_s=120.0, lookback_s=3 * 86400.0)
        now = (b + 3600 + 300) * NS  # the day and the hour after it have closed
        first = writer.run_once(now)
        daily = [t for res, t in first if res == "daily"]
        hourly = sorted(t for res, t in first if res == "hourly")
        assert daily == [a * NS]  # the day with data; today's (open) day is not written
        assert hourly == [a * NS + k * HOUR for k in range(25)]  # every closed hour
        if kind == "influxdb":  # late points: their hours are due, of the kpi series only
            due = latehours.load(cfg.storage.spool_dir / ROLLUPS_DUE_FILE)
            assert {m for m, _ in due} == {"kpi"}
            assert {h for _, h in due} >= set(hourly)
        before = _completeness(store, a * NS, b * NS, "hourly")
        assert before[hole] < min(v for t, v in before.items() if t != hole)
        assert writer.run_once(now + 60 * NS) == []  # closed: the same data is not recomputed

        store.write(late)  # the hour's readings come in late (a spool backlog)
        again = writer.run_once(now + 120 * NS)
        assert sorted(again) == [("daily", a * NS), ("hourly", hole)]
        after = _completeness(store, a * NS, b * NS, "hourly")
        assert after[hole] == pytest.approx(after[hole + HOUR])
        assert after[hole] > before[hole]
        assert {t: v for t, v in after.items() if t != hole} == {
            t: v for t, v in before.items() if t != hole
        }
        day = _completeness(store, a * NS, b * NS, "daily")
        assert day[a * NS] > 0.99
    finally:
        store.close()
