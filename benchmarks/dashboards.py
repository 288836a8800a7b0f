"""Dashboards: every panel's queries over one year on InfluxDB, as Grafana sends them (the
resolution gates pick rp_1d), by influxd's CPU time (on a loaded machine the wall time is
mostly waiting for a core), each of the costliest next to the same panel read from rp_1h (its
hourly targets with the gate lifted: what a year read before rp_1d); the costliest against
the 300 ms goal (and each of its targets), next to the same panel from rp_1h and from the raw
points (its raw target, gate lifted, over the raw points the database holds, and that time
scaled to a year). All of it twice: on the shards as found (just written: partly in the WAL
and cache, not compacted), then after influxd is restarted with
``cache-snapshot-write-cold-duration`` and ``compact-full-write-cold-duration`` of ``--cold``
(10 s) and the benchmark's shards are compacted: InfluxDB's ``SHOW STATS`` (``tsm1_engine``,
``tsm1_cache`` of the database) shows no compaction active or queued and empty caches, and
the TSM files have not changed for 20 s (each shard then holds one file).

The data (dcim.testing.dashdata): the reference site (``--racks``, ``--servers-per-rack``;
every device kind the twin simulates), raw points every 10 s for the last ``--raw-hours``
(13: the longest range the dashboards read raw), rp_1m for the last ``--minute-days``, rp_1h
for the last ``--hour-days`` (400), rp_1d for 400 days, written directly as the continuous
queries write them, after ``dcim db init`` (its shard group durations); the setup is not
what is measured. ``--keep DIR`` keeps the InfluxDB data there and a later run with the same
arguments reuses it: the dashboards are then looked at as of when it was written (``now()``
in a query is that time), and the run says so.

    .venv/bin/python benchmarks/dashboards.py [--racks 30] [--servers-per-rack 10]
        [--raw-hours 13] [--minute-days 2] [--hour-days 400] [--keep DIR] [--cold 10s|no]

Figures (2026-12-05, the 2-core machine, load average 0.2 at the start and 1.3 at the end):
the reference size, ``--racks 30 --servers-per-rack 10 --raw-hours 4 --minute-days 0`` (387
devices; setup 990 s: raw 1.16 M lines, rp_1h 7.7 M, rp_1d 322,400), compacted (one TSM file
in each rp_1h and rp_1d shard). 66 panels over a year 1.8 s in all; the costliest, wall /
influxd CPU in ms (best of 5; influxd works on both cores): a year as sent (rp_1d), the same
from rp_1h, 30 days (rp_1h, a 30 min interval) and 90 days (rp_1d, a 2 h interval):

    panel                                 year       from rp_1h    30 days     90 days
    Thermal / Rack inlet per room         289 / 530  5200 / 6670   408 / 500   60 / 60
    Thermal / Server inlet by device      258 / 430  7151 / 6440   355 / 280   59 / 50
    Collector health / Poll lateness      184 / 360  3414 / 3950   353 / 690   46 / 90
    Collector health / Poll duration      188 / 360  3375 / 4300   246 / 250   39 / 40
    Thermal / Hottest server inlet/rack   141 / 260  2497 / 3210   214 / 220   35 / 30
    every other panel                  <= 121 / 240

Every panel's year is under the 300 ms goal in wall time, the slowest (Rack inlet per room:
two statements of about 100 ms each, run one after the other) by little; influxd's CPU is
above it for four. Before ``dashboards/build.py`` read ``rp_1h``/``rp_1d`` as stored or in a
subquery (see ``per`` there), the same data gave Server inlet by device 530-800 ms of CPU
over a year (InfluxDB's windows per series: 1,460 six-hour windows per series for 364 daily
points), Poll duration and lateness 230-450 ms, Rack inlet per room 390. Under load (4-11)
the same panels take 1.3-2 times as long. Rack inlet per room from the raw points: 4 h
61 ms, scaled to a year ~134 s, what a year without rollups would read.

Needs ``influxd`` (Debian ``influxdb``) and the twin extra (numpy).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from dcim.config import SiteConfig
from dcim.testing import dashdata
from dcim.testing.servers import InfluxServer, start_influxdb
from dcim.twin.site import paris_chapelle

ROOT = Path(__file__).resolve().parent.parent
GOAL_MS = 300.0
YEAR_S = 365 * 86400


def _load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# Grafana's interval rounding, panel time ranges and macro substitution, as the tests do them
# (loaded by path: tests/ on sys.path would shadow the collectors package)
_T = _load("dash_test", ROOT / "tests" / "test_dashboards.py")
interval_ms, panel_range, substitute = _T.interval_ms, _T.panel_range, _T.substitute
fixed_values = _T.fixed_values


_B = _load("dash_build", ROOT / "dashboards" / "build.py")
LEVELS = _B.LEVELS


def build() -> dict[str, dict[str, Any]]:
    return _B.build()  # type: ignore[no-any-return]


def cpu_s(influx: InfluxServer) -> float:
    """CPU time (user + system, s) influxd has used so far."""
    assert influx.proc is not None
    fields = Path(f"/proc/{influx.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(
    influx: InfluxServer, db: str, queries: list[str], repeat: int = 5
) -> tuple[float, int, float]:
    """Best wall time (ms) of running ``queries`` one after the other, the values read, and
    the least CPU time (ms) influxd spent on them (on a loaded machine the wall time is
    mostly waiting for a core; influxd's CPU is not)."""
    best, values, cpu = math.inf, 0, math.inf
    for _ in range(repeat):
        c0, t0 = cpu_s(influx), time.perf_counter()
        values = 0
        for q in queries:
            res = influx.query(q, db=db)["results"][0]
            assert "error" not in res, (res["error"], q)
            values += sum(1 for s in res.get("series", []) for row in s["values"] for v in row[1:])
        best = min(best, (time.perf_counter() - t0) * 1000)
        cpu = min(cpu, (cpu_s(influx) - c0) * 1000)
    return best, values, cpu


def panel_queries(
    p: dict[str, Any], fixed: dict[str, str], now_s: int, range_s: int, tz: str
) -> list[tuple[str, str]]:
    """(alias, query) of each target of ``p`` as Grafana sends it over ``range_s`` to now."""
    start, end = panel_range(p, now_s, range_s, tz)
    ivl = interval_ms(end - start, p["maxDataPoints"], 10)
    return [
        (t["alias"], substitute(t["query"], start, end, ivl, fixed, now_s)) for t in p["targets"]
    ]


def gated(p: dict[str, Any], level: int) -> list[dict[str, Any]]:
    """``p``'s targets with the resolution of ``level`` (0 raw, 1 rp_1m, 2 rp_1h, 3 rp_1d)
    forced: its gate lifted, the other resolutions' targets left out (ungated targets kept)."""
    gates = [g for _, g, _ in LEVELS]
    out = []
    for t in p["targets"]:
        q = t["query"]
        mine = gates[level] in q and all(g not in q for g in gates if g != gates[level])
        if mine:
            out.append({**t, "query": q.replace(gates[level], "1 = 1")})
        elif "$__interval_ms" not in q:
            out.append(t)
    return out


def forced_queries(
    p: dict[str, Any], fixed: dict[str, str], now_s: int, span_s: int, level: int
) -> list[str]:
    """``p`` read from one resolution (:func:`gated`) over the last ``span_s``, at the
    interval Grafana uses for a year."""
    ivl = interval_ms(YEAR_S, p["maxDataPoints"], 10)
    return [
        substitute(t["query"], now_s - span_s, now_s, ivl, fixed, now_s) for t in gated(p, level)
    ]


def source(q: str) -> str:
    return next((rp for rp in ("rp_1m", "rp_1h", "rp_1d") if f'"{rp}"' in q), "raw")


def tsm_files(work: Path) -> dict[str, int]:
    """TSM files per retention policy of the benchmark's database."""
    out: dict[str, int] = {}
    for f in (work / "influxdb" / "data" / "bench").glob("*/*/*.tsm"):
        rp = f.parent.parent.name
        out[rp] = out.get(rp, 0) + 1
    return dict(sorted(out.items()))


def engine_stats(influx: InfluxServer) -> dict[str, int]:
    """InfluxDB's tsm1_engine and tsm1_cache statistics of the benchmark's shards, summed."""
    res = influx.query("SHOW STATS", db="bench")["results"][0]
    out: dict[str, int] = {}
    for s in res.get("series", []):
        if s["name"] in ("tsm1_engine", "tsm1_cache") and s["tags"].get("database") == "bench":
            for k, v in zip(s["columns"], s["values"][0], strict=True):
                out[k] = out.get(k, 0) + int(v)
    return out


def wait_compacted(influx: InfluxServer, work: Path, timeout_s: float = 1800) -> str:
    """Wait until InfluxDB has written its caches to TSM and compacted the shards: no
    compaction active or queued, nothing left in the caches (``tsm1_cache`` ``memBytes``),
    the TSM files unchanged for 20 s. Returns what was seen."""
    t0 = time.monotonic()
    last: tuple[dict[str, int], int] | None = None
    since = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        st = engine_stats(influx)
        busy = sum(v for k, v in st.items() if k.endswith(("Active", "Queue")))
        now = (tsm_files(work), busy + st.get("memBytes", 0))
        if now != last:
            last, since = now, time.monotonic()
        elif now[1] == 0 and time.monotonic() - since >= 20:
            shards = sum(1 for d in (work / "influxdb" / "data" / "bench").glob("*/*") if
                         d.is_dir() and d.parent.name != "_series")  # fmt: skip
            return (
                f"compacted after {time.monotonic() - t0:.0f} s: "
                f"{st.get('tsmFullCompactions', 0)} full and "
                f"{st.get('tsmOptimizeCompactions', 0)} optimize compactions, "
                f"{st.get('cacheCompactions', 0)} cache snapshots; TSM files {now[0]} in "
                f"{shards} shards; no compaction active or queued, the caches empty, the files "
                "unchanged for 20 s"
            )
        time.sleep(2)
    raise SystemExit(f"InfluxDB did not finish compacting in {timeout_s:.0f} s: {last}")


def setup(args: argparse.Namespace, work: Path, influx: InfluxServer) -> tuple[SiteConfig, int]:
    """The site and the data's now: written now, or those of the data kept in ``--keep``."""
    stamp = work / "dashdata.json"
    doc = paris_chapelle(
        racks=args.racks,
        servers_per_rack=args.servers_per_rack,
        spool_dir=str(work / "spool"),
        sink={"type": "influxdb", "url": influx.url, "database": "bench", "timeout_s": 600},
    )
    cfg = SiteConfig.model_validate(doc)
    want = {"racks": args.racks, "servers_per_rack": args.servers_per_rack,
            "raw_hours": args.raw_hours, "minute_days": args.minute_days,
            "hour_days": args.hour_days}  # fmt: skip
    if stamp.exists():
        kept = json.loads(stamp.read_text())
        if {k: kept.get(k) for k in want} == want:
            age = (time.time() - kept["now_s"]) / 3600
            print(f"site: {len(cfg.devices)} devices; data kept in {work} (written "
                  f"{age:.1f} h ago, in {kept['seconds']:.0f} s: {kept['held']}); "
                  "the dashboards looked at as of then")  # fmt: skip
            return cfg, int(kept["now_s"])
        raise SystemExit(f"{work} holds other data ({kept}): give another --keep directory")
    now_s = int(time.time())
    plan = dashdata.Plan(
        now_s=now_s, raw_hours=args.raw_hours, minute_days=args.minute_days,
        hour_days=args.hour_days, kpi_hours=2, kpi_days=2, extra_days=400,
    )  # fmt: skip
    held = dashdata.write(influx.url, cfg, plan)
    print(f"site: {len(cfg.devices)} devices; setup: {held.describe()}")
    if args.keep:
        stamp.write_text(json.dumps({**want, "now_s": now_s, "seconds": held.seconds,
                                     "held": held.describe()}))  # fmt: skip
    return cfg, now_s


def panels_over_a_year(
    influx: InfluxServer, cfg: SiteConfig, now_s: int
) -> list[tuple[float, int, float, str, dict[str, Any], dict[str, str]]]:
    rows = []
    for name, dash in build().items():
        fixed = fixed_values(dash)
        for p in dash["panels"]:
            if p["type"] == "alertlist":
                continue
            qs = panel_queries(p, fixed, now_s, YEAR_S, cfg.site.timezone)
            ms, n, cpu = run(influx, "bench", [q for _, q in qs])
            rows.append((ms, n, cpu, name, p, fixed))
    rows.sort(key=lambda r: r[2], reverse=True)
    return rows


def report(influx: InfluxServer, cfg: SiteConfig, now_s: int, raw_hours: int, what: str) -> None:
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    rows = panels_over_a_year(influx, cfg, now_s)
    total = sum(r[0] for r in rows)
    print(f"\n== {what}; load average {load}\none year, every panel as Grafana sends it (best "
          f"of 5; {len(rows)} panels, {total:.0f} ms in all), by influxd's CPU time, most first, "
          "each next to the same panel from rp_1h (its hourly targets, the gate lifted: what a "
          "year read before rp_1d):")  # fmt: skip
    print(f"{'ms':>8} {'cpu ms':>8} {'values':>8} | {'rp_1h ms':>8} {'cpu ms':>8} {'values':>8}"
          f" | {'30 d ms':>7} {'cpu':>5} | {'90 d ms':>7} {'cpu':>5}  dashboard / panel"
          )  # fmt: skip
    for ms, n, cpu, name, p, fixed in rows[:12]:
        h_ms, h_n, h_cpu = run(influx, "bench", forced_queries(p, fixed, now_s, YEAR_S, 2))
        shorter = []
        for days in (30, 90):  # rp_1h (a 30 min interval) and rp_1d (2 h)
            qs = panel_queries(p, fixed, now_s, days * 86400, cfg.site.timezone)
            d_ms, _, d_cpu = run(influx, "bench", [q for _, q in qs])
            shorter.append(f"{d_ms:7.1f} {d_cpu:5.0f}")
        print(f"{ms:8.1f} {cpu:8.0f} {n:8d} | {h_ms:8.1f} {h_cpu:8.0f} {h_n:8d} | "
              f"{' | '.join(shorter)}  {name} / {p['title']}")  # fmt: skip
    ms, n, cpu, name, p, fixed = rows[0]
    print(f"the most costly panel over one year: {name} / {p['title']}, per target:")
    for alias, q in panel_queries(p, fixed, now_s, YEAR_S, cfg.site.timezone):
        t_ms, t_n, t_cpu = run(influx, "bench", [q])
        print(f"  {t_ms:8.1f} ms {t_cpu:6.0f} ms CPU {t_n:7d} values  {source(q):<5} {alias}")
    span = raw_hours * 3600
    h_ms, h_n, h_cpu = run(influx, "bench", forced_queries(p, fixed, now_s, YEAR_S, 2))
    raw_ms, raw_n, raw_cpu = run(influx, "bench", forced_queries(p, fixed, now_s, span, 0))
    scale = YEAR_S / span
    verdict = "met" if ms < GOAL_MS else "NOT met"
    print(f"  as sent (rp_1d):             {ms:8.1f} ms, influxd CPU {cpu:6.0f} ms, {n} values "
          f"(goal < {GOAL_MS:.0f} ms: {verdict})")  # fmt: skip
    print(
        f"  from rp_1h:                  {h_ms:8.1f} ms, influxd CPU {h_cpu:6.0f} ms, {h_n} values"
    )
    print(f"  from the raw points, {raw_hours} h:   {raw_ms:8.1f} ms, influxd CPU "
          f"{raw_cpu:6.0f} ms, {raw_n} values")  # fmt: skip
    print(f"  raw points scaled to a year: {raw_ms * scale:8.0f} ms, influxd CPU "
          f"{raw_cpu * scale:6.0f} ms (x{scale:.0f}; raw is kept 30 days)")  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--racks", type=int, default=30)
    ap.add_argument("--servers-per-rack", type=int, default=10)
    ap.add_argument("--raw-hours", type=int, default=13)
    ap.add_argument("--minute-days", type=int, default=2)
    ap.add_argument("--hour-days", type=int, default=400)
    ap.add_argument("--keep", type=Path, help="keep the InfluxDB data here; a later run reuses it")
    ap.add_argument("--cold", default="10s",
                    help="then restart influxd to compact shards cold for this long (InfluxQL "
                    "duration) and run again; 'no': only as written")  # fmt: skip
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="dcim-bench-dash-"))
    influx = start_influxdb(work / "influxdb")
    try:
        cfg, now_s = setup(args, work, influx)
        files = tsm_files(work)
        report(influx, cfg, now_s, args.raw_hours, f"as found (TSM files {files}; after a "
               "write the data still in the WAL is read from the cache)")  # fmt: skip
        if args.cold == "no":
            return 0
        influx.stop()
        influx = start_influxdb(work / "influxdb", cold=args.cold)
        seen = wait_compacted(influx, work)
        print(f"\ninfluxd restarted with cache-snapshot-write-cold-duration and "
              f"compact-full-write-cold-duration {args.cold}; {seen}")  # fmt: skip
        report(influx, cfg, now_s, args.raw_hours, "compacted")
    finally:
        influx.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
