"""Backfill: the twin's history of the reference site into a real InfluxDB 1.6.7, as
``dcim twin backfill`` writes it (generator -> pipeline -> spool -> forwarder -> InfluxDB
store, after ``dcim db init``: every point is late), against the same points posted by curl
with no rollup work (the reference, measured in the same run on an InfluxDB of its own).
The backfill computes the rollups of its span's whole hours itself
(``dcim.storage.rollupcalc.SuppliedRollups``, exactly as InfluxDB's statement) and writes
them to ``rp_1m``/``rp_1h``; the store rolls up the other hours (the last two, which the CQs
still recompute) with the statement.

Printed for each: points/s (one point = one field value), wall time, influxd CPU seconds, and
for the collector's path the rollup statements run and the rollup points the backfill wrote.
Goal: a month of the reference site in under 10 minutes (``--days 30``); by default one day,
and the month extrapolated.

    .venv/bin/python benchmarks/backfill.py [--days 1] [--by-statement] [--per-write]
                                            [--skip-curl]

``--by-statement``: every late hour rolled up by the store's statement, once after the
batches (the previous behaviour); ``--per-write``: the one before (after every write:
``ROLLUP_DEBOUNCE_S = 0``). The devices are those ``dcim twin backfill`` writes by default
(the ones with a KPI role: 69 of the site's 387), every 10 s.

Figures on the 2-core development machine shared with another session (2026-12-04), one
day = 2,825,280 points: by statement 60.1 s (28 statements, 48.3 s of them; influxd CPU
51.3 s; a month extrapolated 30 min); rollups computed by the backfill 21.6 and 26.2 s in
two runs (4 statements for the last two hours, 3.0-3.6 s; influxd CPU 12.2 s); curl, no
rollups, 4.4-5.4 s. A month
(``--days 30``, 84,758,400 points) measured: 534.1 s = 8.9 min, influxd CPU 288.6 s, all
15,552,000 pdu.power_w values in the hourly rollups; curl 134.3 s. The statement costs
influxd ~1.5 s per hour of the reference site for the 1-minute rollups whatever its shape
(one function per statement, one measurement per statement, several hours per statement:
the same; its cost is per output window: ``count(*)`` over 1-minute windows 0.18 s, over
1-hour windows 0.05 s).

Needs ``influxd`` (Debian ``influxdb``) and ``curl``. InfluxDB is started with the launcher
in ``dcim.testing.servers``, the tests' own.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ingest import CpuMeter, influx_query  # noqa: E402  (benchmarks/ingest.py)

from dcim.config import InfluxSink, SiteConfig
from dcim.dbinit import init_sink
from dcim.forwarder import Forwarder
from dcim.pipeline import Pipeline
from dcim.reading import Reading
from dcim.spool import Spool
from dcim.storage import influx
from dcim.storage.influx import InfluxStore
from dcim.storage.lineprotocol import encode_many
from dcim.storage.rollupcalc import SuppliedRollups
from dcim.testing.servers import InfluxServer, start_influxdb  # noqa: E402
from dcim.twin.model import SiteModel, backfill
from dcim.twin.site import paris_chapelle

NS = 1_000_000_000
INTERVAL_S = 10.0
GOAL_S = 600.0  # a month in under 10 minutes
MONTH_DAYS = 30
BY_STATEMENT = False


def site() -> SiteConfig:
    return SiteConfig.model_validate(paris_chapelle())


def generate(cfg: SiteConfig, start: float, end: float) -> Iterator[list[Reading]]:
    """The readings ``dcim twin backfill`` writes by default (devices with a role)."""
    devices = [d.name for d in cfg.devices if d.role]
    model = SiteModel(cfg, t0=start, seed=1)
    yield from backfill(cfg, model, start, end, interval_s=INTERVAL_S, devices=devices)


def points(batch: list[Reading]) -> int:
    return sum(len(r.fields) for r in batch)


def through_dcim(srv: InfluxServer, cfg: SiteConfig, span: tuple[float, float], work: Path) -> Any:
    """The twin's backfill through the collector's path; returns its figures."""
    # Raw points kept longer than the span (the default 30d would refuse a month's first day).
    keep = f"{int((span[1] - span[0]) / 86400) + 7}d"
    sink = InfluxSink(
        type="influxdb", url=srv.url, database="backfill", timeout_s=600, retention_raw=keep
    )
    init_sink(sink)
    store = InfluxStore(sink)
    spool = Spool(work / "spool")
    fwd = Forwarder(spool, store, batch_size=cfg.storage.batch_size, flush_interval_s=0.2)
    pipe = Pipeline(spool)
    # the rollups of the whole hours computed by the backfill (--by-statement: by the store)
    rollups = SuppliedRollups(
        store if not BY_STATEMENT else None, int(span[0] * NS), int(span[1] * NS)
    )
    n_points = n_readings = 0
    meter = CpuMeter(srv)
    with meter:
        t0 = time.perf_counter()
        fwd.start()
        try:
            for batch in generate(cfg, *span):
                kept: list[Reading] = []
                n_readings += pipe.accept(batch, kept=kept)
                rollups.add(kept)
                n_points += points(batch)
            assert fwd.flush(24 * 3600), "the spool did not drain"
            rollups.close()
        finally:
            fwd.stop()
            spool.close()
            store.close()  # rolls up the hours still due
        wall = time.perf_counter() - t0
    # The rollups hold every point: the counts of one field, raw and 1-hour rollups.
    raw = influx_query(srv, 'SELECT COUNT("power_w") FROM "raw"."pdu"', "backfill")
    hourly = influx_query(srv, 'SELECT SUM("count_power_w") FROM "rp_1h"."pdu"', "backfill")
    counts = tuple(s[0]["values"][0][1] if s else 0 for s in (raw, hourly))
    stmts = (store.rollup_statements, store.rollup_seconds, rollups.written)
    return n_readings, n_points, wall, meter.influxd, stmts, counts


def through_curl(srv: InfluxServer, cfg: SiteConfig, span: tuple[float, float], work: Path) -> Any:
    """The same points posted by curl in batches of the forwarder's size, a day of files
    generated at a time (not timed), no rollup work."""
    influx_query(srv, 'CREATE DATABASE "ref"')
    url = f"{srv.url}/write?db=ref&precision=ns"
    size = cfg.storage.batch_size
    n_points = 0
    wall = cpu = 0.0
    start, end = span
    day = start
    while day < end:
        files: list[Path] = []
        pending: list[Reading] = []
        for batch in generate(cfg, day, min(end, day + 86400) - 1e-3):
            pending.extend(batch)
            n_points += points(batch)
            while len(pending) >= size:
                files.append(work / f"{len(files):06d}.lp")
                files[-1].write_bytes(encode_many(pending[:size]))
                del pending[:size]
        if pending:
            files.append(work / f"{len(files):06d}.lp")
            files[-1].write_bytes(encode_many(pending))
        meter = CpuMeter(srv)
        with meter:
            t0 = time.perf_counter()
            for f in files:
                subprocess.run(["curl", "-sSf", "--data-binary", f"@{f}", url], check=True)
            wall += time.perf_counter() - t0
        cpu += meter.influxd
        for f in files:
            f.unlink()
        day += 86400
    return n_points, wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=float, default=1.0)
    ap.add_argument("--per-write", action="store_true", help="rollups after every write")
    ap.add_argument("--skip-curl", action="store_true", help="no reference run")
    ap.add_argument(
        "--by-statement", action="store_true", help="rollups by InfluxDB's statement (before)"
    )
    args = ap.parse_args()
    global BY_STATEMENT
    BY_STATEMENT = args.by_statement or args.per_write
    # SIGTERM (timeout, kill): through the finally clauses, so that influxd is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.per_write:
        influx.ROLLUP_DEBOUNCE_S = 0.0
    cfg = site()
    end = time.time() // 3600 * 3600 - 3600  # an hour ago: every point is late
    span = (end - args.days * 86400, end - 1e-3)
    work = Path(tempfile.mkdtemp(prefix="dcim-backfill-"))
    month = MONTH_DAYS / args.days
    how = (
        "rollups after every write"
        if args.per_write
        else "rollups batched, by InfluxDB"
        if args.by_statement
        else "whole hours' rollups computed by the backfill"
    )
    print(f"backfill of {args.days:g} day(s) of the reference site (69 devices every 10 s)")
    try:
        srv = start_influxdb(work / "influx-dcim")
        try:
            n, p, wall, cpu, (stmts, rsecs, own), (raw, hourly) = through_dcim(srv, cfg, span, work)
        finally:
            srv.stop()
        print(
            f"  dcim twin backfill path ({how}): {n:,} readings, {p:,} points in {wall:.1f} s "
            f"= {p / wall:,.0f} points/s; influxd CPU {cpu:.1f} s; {stmts} rollup statements "
            f"taking {rsecs:.1f} s; {own:,} rollup points computed by the backfill; "
            f"rollups hold {hourly:,} of {raw:,} raw pdu.power_w values"
        )
        verdict = "meets" if wall * month < GOAL_S else "misses"
        print(
            f"    a month extrapolated: {wall * month / 60:.1f} min wall, influxd CPU "
            f"{cpu * month / 60:.1f} min ({verdict} the goal of {GOAL_S / 60:.0f} min)"
        )
        if not args.skip_curl:
            srv = start_influxdb(work / "influx-curl")
            try:
                cp, cwall, ccpu = through_curl(srv, cfg, span, work)
            finally:
                srv.stop()
            print(
                f"  reference, curl --data-binary to /write, no rollups: {cp:,} points in "
                f"{cwall:.1f} s = {cp / cwall:,.0f} points/s; influxd CPU {ccpu:.1f} s "
                f"(dcim at {cwall / wall:.0%} of its rate)"
            )
            print(f"    a month extrapolated: {cwall * month / 60:.1f} min wall")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
