"""Late rollups on InfluxDB: influxd's CPU for the rollup one late point causes, per
measurement (what the store does now) against every measurement of its hour and day (what it
did before), in the same run, on the same data.

The collector writes each hour's ``kpi`` point an hour or more after the hour (the KPI writer
waits for the period to close): the CQs have run by then, so the store rolls that hour up
again from the raw points (and its UTC day into ``rp_1d``). Before, that rollup read every
measurement of the hour: for one ``kpi`` point, the whole site's hour and day. Now it reads
the ``kpi`` series only. Also shown: one late raw point of one PDU (its measurement's hour).

Set-up (not measured): a real InfluxDB (``dcim db init``), the reference site (``--racks``
x ``--servers-per-rack``: 30 x 10 is its 387 devices) polled every 10 s over ``--hours``
hours ending three hours ago (out of reach of the running CQs), from the twin
(:func:`dcim.twin.backfill.backfill`), written with their rollups left out (nothing due).
Then, ``--rounds`` times, alternating: (a) "all measurements": ``InfluxStore.rollup`` of the
hour (rp_1m, rp_1h) and of its day (rp_1d) over every measurement, the statements the store
ran before for a late point; (b) "per measurement": a late ``kpi`` point written to the
store and its rollups flushed (``InfluxStore.write`` then ``flush_rollups``); (c) the same
with one late ``pdu`` point; (d) a backlog's hour (every measurement due): a statement per
measurement (InfluxDB evaluates ``mean(*)`` and the others over the union of the field names
of a statement's measurements: one by one is cheaper). influxd's CPU (utime + stime from
/proc/PID/stat) and the wall time of each, best and median of the rounds; influxd is first
left to settle (its own compactions after the set-up) until it uses under 2 % of a core.

All of it twice: as written (the raw points still in influxd's cache, as an hour ago's are in
a running collector's database), then after influxd is restarted with its cold durations at
``--cold`` (10 s) and the shards' TSM files have stopped changing (compacted).

    .venv/bin/python benchmarks/late_rollup.py [--racks 30] [--servers-per-rack 10]
        [--hours 1] [--rounds 5] [--cold 10s|no]

Figures (2026-12-05, the 2-core machine shared with other sessions, load average 2.6-3.4;
387 devices, 11 measurements, 139,320 raw readings in the hour; influxd CPU best / median of
5 in ms, as written, then compacted):

    before: every measurement (hour + day)   14410 / 15350     13140 / 14280   3 statements
    now: a late kpi point, kpi only              0 /    10         0 /     0   3
    now: a late point of one PDU, pdu only    1240 /  1300      1190 /  1260   3
    now: every measurement, one by one        5240 /  5270      4950 /  4990   33

The day holds only the measured hour here: late in a UTC day, the daily statement of
"before" reads up to 24 such hours.

Needs ``influxd`` (Debian ``influxdb``) and the twin extra (numpy).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from dcim.config import InfluxSink, SiteConfig
from dcim.dbinit import init_sink
from dcim.reading import Reading
from dcim.storage.influx import MARKER, InfluxStore
from dcim.testing.servers import InfluxServer, start_influxdb
from dcim.twin.backfill import backfill
from dcim.twin.model import SiteModel
from dcim.twin.site import paris_chapelle

NS = 1_000_000_000
H = 3600 * NS


def cpu_s(influx: InfluxServer) -> float:
    """CPU time (user + system, s) influxd has used so far (as benchmarks/dashboards.py)."""
    assert influx.proc is not None
    fields = Path(f"/proc/{influx.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settle(influx: InfluxServer, limit_s: float = 300.0) -> float:
    """Wait until influxd uses under 2 % of a core over 3 s; returns the seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        c0 = cpu_s(influx)
        time.sleep(3)
        if cpu_s(influx) - c0 < 0.06:
            break
    return time.monotonic() - t0


def measure(influx: InfluxServer, work: Callable[[], int]) -> tuple[float, float, int]:
    """influxd's CPU (ms) and the wall time (ms) of ``work``, and what it returned."""
    c0, t0 = cpu_s(influx), time.perf_counter()
    out = work()
    return (cpu_s(influx) - c0) * 1000, (time.perf_counter() - t0) * 1000, out


def fill(cfg: SiteConfig, sink: InfluxSink, start_ns: int, end_ns: int) -> int:
    """The site's raw points over [start, end), their rollups left out; returns how many."""
    store = InfluxStore(sink)
    store.supply_rollups(start_ns, end_ns)  # no late-point rollups while filling
    model = SiteModel(cfg, t0=start_ns / NS - 3600, seed=1)
    n = 0
    for batch in backfill(cfg, model, start_ns / NS, (end_ns - 1) / NS, interval_s=10.0):
        inside = [r for r in batch if start_ns <= r.time_ns < end_ns]  # (poll jitter)
        store.write(inside)
        n += len(inside)
    assert store.rollups_due() == 0
    store.close()
    return n


def tsm_files(work: Path) -> list[tuple[str, int]]:
    """The TSM files of the benchmark's database (name, size)."""
    return sorted((str(f), f.stat().st_size) for f in (work / "data" / "late").glob("*/*/*.tsm"))


def compacted(influx: InfluxServer, work: Path, limit_s: float = 600.0) -> float:
    """Wait until the TSM files have not changed for 20 s and influxd has settled."""
    t0 = time.monotonic()
    last, since = tsm_files(work), time.monotonic()
    while time.monotonic() - t0 < limit_s:
        time.sleep(2)
        now = tsm_files(work)
        if now != last:
            last, since = now, time.monotonic()
        elif now and time.monotonic() - since >= 20:
            break
    settle(influx)
    return time.monotonic() - t0


def cases(
    cfg: SiteConfig, sink: InfluxSink, hour: int, meas: list[str]
) -> list[tuple[str, Callable[[], int]]]:
    day = hour - hour % (24 * H)

    def every_measurement() -> int:  # what a late point cost before: the store's rollup
        st = InfluxStore(sink)
        st.rollup(hour, hour + H, levels=(60, 3600))
        st.rollup(day, day + 24 * H, levels=(86400,))
        return st.rollup_statements

    def one_by_one() -> int:  # a backlog's hour now: every measurement due, one by one
        st = InfluxStore(sink)
        st.rollup(hour, hour + H, levels=(60, 3600), measurements=meas)
        st.rollup(day, day + 24 * H, levels=(86400,), measurements=meas)
        return st.rollup_statements

    def late_point(r: Reading) -> Callable[[], int]:
        def run() -> int:
            st = InfluxStore(sink)
            st.write([r])
            assert st.rollups_due() == 1
            st.flush_rollups()
            return st.rollup_statements

        return run

    kpi = Reading("kpi", {"site": cfg.site.name, "resolution": "hourly"},
                  {"pue": 1.31, "completeness": 1.0}, hour)  # fmt: skip
    profiles = cfg.profiles()
    pdu = next(d for d in cfg.devices if profiles[d.profile].measurement == "pdu")
    one_pdu = Reading("pdu", cfg.tags_of(pdu), {"power_w": 1234.5}, hour + 1234 * NS)
    return [
        ("before: every measurement (hour + day)", every_measurement),
        ("now: a late kpi point, kpi only", late_point(kpi)),
        ("now: a late point of one PDU, pdu only", late_point(one_pdu)),
        ("now: every measurement, one by one", one_by_one),
    ]


def report(
    influx: InfluxServer, todo: list[tuple[str, Callable[[], int]]], rounds: int, what: str
) -> None:
    got: dict[str, list[tuple[float, float, int]]] = {name: [] for name, _ in todo}
    for _ in range(rounds):
        for name, work_fn in todo:
            got[name].append(measure(influx, work_fn))
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    print(f"\n== {what}: influxd CPU and wall time per late rollup ({rounds} rounds, load "
          f"average {load}; best / median):")  # fmt: skip
    print(f"{'':42} {'CPU ms':>15} {'wall ms':>15} {'statements':>10}")
    best = {}
    for name, rows in got.items():
        cpu = [r[0] for r in rows]
        wall = [r[1] for r in rows]
        best[name] = min(cpu)
        cpu_s_ = f"{min(cpu):6.0f} / {statistics.median(cpu):6.0f}"
        wall_s = f"{min(wall):6.0f} / {statistics.median(wall):6.0f}"
        print(f"{name:42} {cpu_s_} {wall_s} {rows[0][2]:10d}")
    tick = 1000 / os.sysconf("SC_CLK_TCK")  # /proc counts CPU in ticks (10 ms)
    before, after = best[todo[0][0]], max(tick, best[todo[1][0]])
    backlog = best[todo[3][0]]
    print(f"a late kpi point: influxd CPU {before:.0f} ms before, <= {after:.0f} ms now "
          f"(x{before / after:.0f} less or more); an hour due for every measurement "
          f"{backlog:.0f} ms one by one (x{before / max(backlog, 1.0):.1f} less)")  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--racks", type=int, default=30)
    ap.add_argument("--servers-per-rack", type=int, default=10)
    ap.add_argument("--hours", type=int, default=1, help="hours of raw points in the day")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--cold", default="10s",
                    help="then restart influxd to compact the shards cold for this long "
                    "(InfluxQL duration) and measure again; 'no': only as written")  # fmt: skip
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dcim-bench-late-"))
    influx = start_influxdb(work / "influxdb")
    try:
        doc = paris_chapelle(
            racks=args.racks,
            servers_per_rack=args.servers_per_rack,
            spool_dir=str(work / "spool"),
            sink={"type": "influxdb", "url": influx.url, "database": "late", "timeout_s": 600},
        )
        cfg = SiteConfig.model_validate(doc)
        sink = cfg.storage.sink
        assert isinstance(sink, InfluxSink)
        init_sink(sink)
        now = time.time_ns()
        hour = now - now % H - 3 * H  # its CQs have run: a point there is late
        day = hour - hour % (24 * H)
        start = max(day, hour - (args.hours - 1) * H)
        t = time.perf_counter()
        n = fill(cfg, sink, start, hour + H)
        meas = [m for m in InfluxStore(sink).measurements() if m != MARKER]
        print(
            f"site: {len(cfg.devices)} devices, {len(meas)} measurements; {n:,} raw readings "
            f"over {(hour + H - start) // H} h of the UTC day "
            f"{time.strftime('%Y-%m-%d', time.gmtime(day / NS))} written in "
            f"{time.perf_counter() - t:.0f} s"
        )
        print(f"influxd settled in {settle(influx):.0f} s")
        report(influx, cases(cfg, sink, hour, meas), args.rounds, "as written (in the cache)")
        if args.cold == "no":
            return 0
        influx.stop()
        influx = start_influxdb(work / "influxdb", cold=args.cold)
        sink = sink.model_copy(update={"url": influx.url})
        waited = compacted(influx, work / "influxdb")
        files = len(tsm_files(work / "influxdb"))
        print(f"\ninfluxd restarted (cold {args.cold}): {files} TSM files, unchanged for 20 s, "
              f"after {waited:.0f} s")  # fmt: skip
        report(influx, cases(cfg, sink, hour, meas), args.rounds, "compacted")
    finally:
        influx.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
