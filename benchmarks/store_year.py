"""The embedded store over a year: its size on disk and ``dcim kpi --period YYYY`` /
``--period YYYY-MM`` times, next to InfluxDB 1.6.7 with the same year.

What is written (a real year at 10 s is 1.03e9 points: hours to generate here, so):

1. **A sample day** of the reference site, as ``dcim twin backfill`` writes it (the 69
   devices with a KPI role, every field, every 10 s) plus the two heat pumps the KPIs read:
   the twin's readings through ``SqliteStore.write`` and ``maintain`` (rollups, packing into
   chunks), exactly the collector's path. Its bytes per point are measured per table
   (``dbstat``) before packing (rows in the ``WITHOUT ROWID`` table: the layout before) and
   after (chunks).
2. **The year** (the calendar year ``--year``, site time) is that day's content laid on
   every day of the year, as the store holds it after a year: the chunks of the raw points
   of every day within ``--raw-days`` of the year's end (their times shifted a day at a
   time), the 1-minute rollups of the days within ``--minute-days``, the hourly and daily
   rollups of every day. Counters (``*_total``) are raised by their day's increase each day,
   so they run on through the year as real ones do. Its size is the file's on disk.
3. **InfluxDB** gets the same year as ``dcim db init``'s policies hold it: the 1-hour
   rollups of the year and the 1-minute rollups of the month timed, for the series the KPIs
   read (InfluxDB keeps a field's values apart: the other fields do not change its
   queries), no raw points (older than ``retention_raw: 30d``).

Timed: ``compute_kpis`` over the year and over its last month (best of 3, in process, as
``dcim kpi`` runs it after loading the config), and the ``dcim kpi`` command itself (one run,
wall time with Python's start).

    .venv/bin/python benchmarks/store_year.py [--year 2025] [--raw-days 400]
        [--minute-days 62] [--keep DIR] [--stores embedded,influxdb]

Goals (issue #15): a year in a few GB (was 28 GB: 540 MB a week), ``--period YYYY-MM`` under
1 s, ``--period YYYY`` under 2 s.

Figures on the 2-core development machine shared with six other sessions, 2026-12-04 (a
day is 2,998,080 points). Bytes per point, rows -> packed: as the registers read 25.2 -> 1.27
(chunk 0.68, chunk_time 0.59), the twin's exact floats 28.7 -> 5.75; per day kept, the
1-minute rollups 12.8 and the hourly and daily 0.22. The year 2025: 3.96 GB on disk (PASS;
~9.6 GB with the exact floats). ``compute_kpis`` on the embedded store, load average 5.5:
``--period 2025`` 1.25 s (PASS), ``--period 2025-12`` 1.87 s, 1.36 CPU s (FAIL): the nine
1-minute mean reads of the heat integration take 0.45 CPU s, its arithmetic
(``dcim.kpi.heat``) 0.65; at load 10: 2.55 and 4.81 s. InfluxDB 1.6.7 with the same year, load
10: 2.43 and 6.03 s (FAIL both; its rollups written in 427 s). ``dcim kpi`` itself adds 2-4 s
here (Python's start, the imports and the config).

After #15 part 3 (the heat meters' three means read together, their powers in one loop,
InfluxDB answering in MessagePack, YAML through libyaml), 2026-12-04, ``--reuse``, the code
before and after run one after the other (load 1.7-3.6): embedded ``--period 2025``
1.15-1.26 -> 0.71-0.81 s, ``--period 2025-12`` 1.41-1.47 -> 0.54-0.72 s (CPU 0.52-0.79 s);
InfluxDB 0.84-1.21 -> 0.53 s and 2.53-3.09 -> 0.56-0.61 s (all PASS); the ``dcim kpi``
command 2.3-5.0 -> 1.0-1.4 s. ``--reuse`` keeps InfluxDB's year too (``DIR/influxdb``).
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from dcim.config import InfluxSink, SiteConfig
from dcim.dbinit import init_sink
from dcim.kpi.period import compute_kpis
from dcim.storage.base import Store
from dcim.storage.chunks import shared_id
from dcim.storage.influx import MARKER, MARKER_FIELD, InfluxStore
from dcim.storage.lineprotocol import encode
from dcim.storage.sqlite import SqliteStore
from dcim.testing.servers import start_influxdb
from dcim.timeutil import parse_period
from dcim.twin.model import SiteModel, backfill
from dcim.twin.site import paris_chapelle

NS = 1_000_000_000
DAY = 86400 * NS
INTERVAL_S = 10.0
BASELINE_GB = 28.0  # issue #15: 540 MB for a week
GOAL_MONTH_S, GOAL_YEAR_S = 1.0, 2.0
_T0 = slice(6, 14)  # the chunk header's first time (dcim.storage.chunks._HEAD "<BBIqq")
_TT0 = slice(4, 12)  # a times blob's first time (dcim.storage.chunks._TIMES "<Iqq")


def site() -> tuple[dict[str, Any], SiteConfig]:
    raw = paris_chapelle()
    return raw, SiteConfig.model_validate(raw)


def devices(cfg: SiteConfig) -> list[str]:
    """``dcim twin backfill``'s default devices (those with a role) and the heat pumps."""
    names = [d.name for d in cfg.devices if d.role]
    return names + [d.name for d in cfg.devices if d.name.startswith("hp-") and d.enabled]


def table_bytes(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        q = "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"
        return {str(n): int(b) for n, b in con.execute(q)}


def _float32(v: float) -> float:
    return float(np.float32(v))


def _register(scale: float, offset: float, v: float) -> float:
    return float(f"{round((v - offset) / scale) * scale + offset:.12g}")


def resolution(cfg: SiteConfig) -> dict[tuple[str, str], Callable[[float], float]]:
    """(device, field) -> what its register makes of a value: a float32 register rounds to
    float32, an integer one to its scale (as ``dcim.plausible`` rounds ``raw * scale``)."""
    out: dict[tuple[str, str], Callable[[float], float]] = {}
    profiles = cfg.profiles()
    for d in cfg.devices:
        prof = profiles.get(d.profile)
        if prof is None:
            continue
        for name in prof.field_names:
            spec = prof.field(name)
            typ = getattr(spec, "type", None) or ""
            scale, offset = float(getattr(spec, "scale", 1.0)), float(getattr(spec, "offset", 0.0))
            if typ == "float32":
                out[d.name, name] = _float32
            elif typ != "float64":
                out[d.name, name] = partial(_register, scale, offset)
    return out


def sample_day(
    cfg: SiteConfig, day_ns: int, path: Path, *, as_read: bool
) -> tuple[int, dict[str, int], dict[str, int]]:
    """The day through the collector's store path; (points, bytes before packing, after).
    ``as_read``: the values as the devices' registers give them (else the twin's own
    floats, every bit of them noise)."""
    st = SqliteStore(path, retention_raw_days=None)
    model = SiteModel(cfg, t0=day_ns / NS - 3600, seed=1)
    res = resolution(cfg) if as_read else {}
    n = 0
    t0 = time.perf_counter()
    for batch in backfill(
        cfg, model, day_ns / NS, (day_ns + DAY) / NS - 1e-3, interval_s=INTERVAL_S,
        devices=devices(cfg),
    ):  # fmt: skip
        for r in batch if res else ():
            dev = r.tags.get("device", "")
            for f, v in r.fields.items():
                q = res.get((dev, f))
                if q is not None and type(v) is float:
                    r.fields[f] = q(v)
        st.write(batch)
        n += sum(len(r.fields) for r in batch)
    t_write = time.perf_counter() - t0
    st.close()
    before = table_bytes(path)
    st = SqliteStore(path, retention_raw_days=None)
    t0 = time.perf_counter()
    stats = st.maintain(now_ns=day_ns + DAY + 3600 * NS)
    t_maint = time.perf_counter() - t0
    st.close()
    after = table_bytes(path)
    print(
        f"sample day ({'as the registers read' if as_read else 'the twin exact floats'}): "
        f"{n:,} points written in {t_write:.0f} s (twin + write), maintain {t_maint:.1f} s "
        f"({stats['hours_rolled']} hours rolled up, {stats['days_packed']} day packed)"
    )
    return n, before, after


def build_year(
    sample: Path, path: Path, year_ns: tuple[int, int], day0: int, raw_days: int, minute_days: int
) -> int:
    """The sample day's rows laid on every day of the year (see the module doc)."""
    st = SqliteStore(path, retention_raw_days=raw_days)
    st.close()
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA synchronous=OFF")
    con.execute("ATTACH ? AS s", (str(sample),))
    con.execute("BEGIN")
    con.execute("INSERT INTO series SELECT * FROM s.series")
    con.execute("INSERT INTO field_key SELECT * FROM s.field_key")
    # a counter's increase over the day, per series and field
    con.execute(
        "CREATE TEMP TABLE inc AS SELECT d.series_id AS sid, d.field_id AS fid, "
        "d.last_v - d.first_v AS v FROM s.rollup_1d d JOIN s.field_key f ON f.id = d.field_id "
        "WHERE f.name LIKE '%\\_total' ESCAPE '\\' AND d.time_ns = ?",
        (day0,),
    )
    con.execute("COMMIT")
    blobs = con.execute("SELECT series_id, field_id, day_ns, n, data FROM s.chunk").fetchall()
    times = con.execute("SELECT series_id, day_ns, tid, data FROM s.chunk_time").fetchall()
    start, end = year_ns
    days = range(start // DAY * DAY, end, DAY)
    lift = "(CASE WHEN i.v IS NULL THEN {c} ELSE {c} + :k * i.v END)"
    cols = (
        "r.series_id, r.field_id, r.time_ns + :off, r.n, r.n_num, "
        f"{lift.format(c='r.total').replace(':k * i.v', ':k * i.v * r.n_num')}, "
        f"{lift.format(c='r.vmin')}, {lift.format(c='r.vmax')}, r.first_t + :off, "
        f"{lift.format(c='r.first_v')}, r.last_t + :off, {lift.format(c='r.last_v')}"
    )
    src = "r LEFT JOIN temp.inc i ON i.sid = r.series_id AND i.fid = r.field_id"
    for k, d in enumerate(days):
        off = d - day0
        arg = {"off": off, "k": k}
        con.execute("BEGIN")
        con.execute(f"INSERT INTO rollup_1h SELECT {cols} FROM s.rollup_1h {src}", arg)
        con.execute(f"INSERT INTO rollup_1d SELECT {cols} FROM s.rollup_1d {src}", arg)
        if d >= end - minute_days * DAY:
            con.execute(f"INSERT INTO rollup_1m SELECT {cols} FROM s.rollup_1m {src}", arg)
        if d >= end - raw_days * DAY:
            rows = []
            for sid, fid, day, n, data in blobs:
                if shared_id(data) is None:  # its own times: shifted
                    t0 = struct.unpack("<q", data[_T0])[0] + off
                    data = data[: _T0.start] + struct.pack("<q", t0) + data[_T0.stop :]
                # (a counter's raw values are not raised: no KPI of a whole period reads them)
                rows.append((sid, fid, day + off, n, data))
            trows = []
            for sid, day, tid, data in times:
                t0 = struct.unpack("<q", data[_TT0])[0] + off
                data = data[: _TT0.start] + struct.pack("<q", t0) + data[_TT0.stop :]
                trows.append((sid, day + off, tid, data))
            con.executemany("INSERT INTO chunk_time VALUES (?, ?, ?, ?)", trows)
            con.executemany("INSERT INTO chunk VALUES (?, ?, ?, ?, ?)", rows)
        con.execute("COMMIT")
    last = days[-1] + DAY
    state = [("rolled_to_ns", last), ("packed_to_ns", last)]
    state.append(("raw_from_ns", max(days[0], last - raw_days * DAY)))
    state.append(("minute_from_ns", max(days[0], last - minute_days * DAY)))
    con.executemany("INSERT OR REPLACE INTO rollup_state VALUES (?, ?)", state)
    con.execute("DETACH s")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return sum(os.path.getsize(p) for p in path.parent.glob(path.name + "*"))


def timed(fn: Any, n: int = 3) -> tuple[float, Any]:
    """Best wall time of ``n`` runs, and the process CPU seconds of that run (all threads:
    the work, whatever else the machine runs)."""
    best, cpu = float("inf"), 0.0
    for _ in range(n):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall = time.perf_counter() - t0
        if wall < best:
            best, cpu = wall, time.process_time() - c0
    return best, cpu


def cli_time(raw_cfg: dict[str, Any], sink: dict[str, Any], period: str, work: Path) -> float:
    cfg_path = work / f"site-{sink['type']}.yaml"
    cfg_path.write_text(yaml.safe_dump({**raw_cfg, "storage": {"sink": sink}}))
    t0 = time.perf_counter()
    out = subprocess.run(
        [str(Path(sys.executable).parent / "dcim"), "kpi", str(cfg_path), "--period", period],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"dcim kpi --period {period} failed:\n{out.stdout}\n{out.stderr}")
    return wall


def time_kpis(
    name: str, store: Store, cfg: SiteConfig, periods: dict[str, tuple[int, int]]
) -> dict[str, tuple[float, float]]:
    out = {}
    for label, (a, b) in periods.items():
        out[label] = timed(lambda a=a, b=b: compute_kpis(store, cfg, a, b))
    return out


def influx_lines(path: Path, cfg: SiteConfig, table: str, lo: int, hi: int) -> list[str]:
    """The rollup rows of ``table`` in [lo, hi) of the KPI series as InfluxDB's rollup
    points (``mean_``, ``min_``, ... ``count_``, ``sum_`` per field), one line per series and
    window."""
    sys.path.insert(0, str(Path(__file__).parent))
    from kpi import kpi_series  # noqa: PLC0415  (benchmarks/kpi.py)

    want = {(m, d, f) for d, (m, fs) in kpi_series(cfg).items() for f in fs}
    con = sqlite3.connect(path)
    q = (
        "SELECT s.measurement, s.tags, f.name, r.time_ns, r.n, r.n_num, r.total, r.vmin, "
        f"r.vmax, r.first_v, r.last_v FROM {table} r JOIN series s ON s.id = r.series_id "
        "JOIN field_key f ON f.id = r.field_id WHERE r.time_ns >= ? AND r.time_ns < ? "
        "ORDER BY r.time_ns, s.id"
    )
    import json  # noqa: PLC0415

    points: dict[tuple[str, str, int], dict[str, Any]] = {}
    for meas, tags, fname, t, n, n_num, total, vmin, vmax, first, last in con.execute(q, (lo, hi)):
        tg = json.loads(tags)
        if (meas, tg.get("device"), fname) not in want or not n_num:
            continue
        flds = points.setdefault((meas, tags, t), {})
        # floats (SQLite gives an integral float back as an integer: one type per field)
        flds |= {f"mean_{fname}": total / n_num, f"min_{fname}": float(vmin),
                 f"max_{fname}": float(vmax), f"first_{fname}": float(first),
                 f"last_{fname}": float(last), f"count_{fname}": n,
                 f"sum_{fname}": float(total)}  # fmt: skip
    con.close()
    from dcim.reading import Reading  # noqa: PLC0415

    return [
        encode(Reading(m, json.loads(tags), flds, t)).rstrip("\n")
        for (m, tags, t), flds in points.items()
    ]


def post(url: str, db: str, rp: str, lines: list[str]) -> None:
    for i in range(0, len(lines), 50_000):
        body = gzip.compress("\n".join(lines[i : i + 50_000]).encode(), compresslevel=1)
        req = urllib.request.Request(
            f"{url}/write?db={db}&rp={rp}&precision=ns",
            data=body, headers={"Content-Encoding": "gzip"},
        )  # fmt: skip
        with urllib.request.urlopen(req, timeout=600) as r:
            assert r.status == 204, r.status


def write_influx(
    url: str,
    sink: InfluxSink,
    ypath: Path,
    cfg: SiteConfig,
    year: tuple[int, int],
    month: tuple[int, int],
) -> None:
    """The year's hourly rollups and the month's 1-minute ones, as ``dcim db init``'s
    policies hold them (see the module doc)."""
    init_sink(sink)
    t0 = time.perf_counter()
    hours = influx_lines(ypath, cfg, "rollup_1h", *year)
    post(url, "year", "rp_1h", hours)
    a, b = month
    minutes = influx_lines(ypath, cfg, "rollup_1m", a - DAY, b + DAY)
    post(url, "year", "rp_1m", minutes)
    marker = f"{MARKER},rp=raw {MARKER_FIELD}={year[0] - DAY}i {time.time_ns()}"
    post(url, "year", "rp_1h", [marker])
    print(
        f"\n[InfluxDB] {len(hours):,} hourly and {len(minutes):,} 1-minute rollup "
        f"points written in {time.perf_counter() - t0:.0f} s"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--year", type=int, default=2025)
    ap.add_argument("--raw-days", type=int, default=400, help="retention_raw_days")
    ap.add_argument("--minute-days", type=int, default=62, help="retention_1m_days")
    ap.add_argument("--keep", type=Path, help="keep the stores in this directory")
    ap.add_argument("--stores", default="embedded,influxdb")
    ap.add_argument(
        "--reuse", action="store_true", help="reuse the year (and InfluxDB's) kept in --keep"
    )
    args = ap.parse_args()
    raw_cfg, cfg = site()
    tz = cfg.site.timezone
    year = parse_period(str(args.year), tz)
    month_label = f"{args.year}-12"
    periods = {str(args.year): year, month_label: parse_period(month_label, tz)}
    tmp = None
    if args.keep:
        work = args.keep
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="dcim-store-year-")
        work = Path(tmp.name)
    ok = True
    try:
        day0 = year[1] // DAY * DAY - DAY  # the sample: the year's last UTC day
        sample = work / "sample.sqlite"
        ypath = work / "year.sqlite"
        reuse = args.reuse and ypath.exists()
        for p in work.glob("*.sqlite*") if not reuse else ():
            p.unlink()
        per_day = {}
        for as_read in (False, True) if not reuse else ():
            path = sample if as_read else work / "exact.sqlite"
            n, before, after = sample_day(cfg, day0, path, as_read=as_read)
            print(f"\n[bytes per point, one day of {n:,} points, by table: before packing "
                  "(rows, WITHOUT ROWID) | after (chunks)]")  # fmt: skip
            for name in sorted(set(before) | set(after), key=lambda k: -after.get(k, 0)):
                if max(before.get(name, 0), after.get(name, 0)) >= 65536:
                    print(
                        f"  {name:<14} {before.get(name, 0) / n:6.2f} | "
                        f"{after.get(name, 0) / n:6.2f}"
                    )
            print(f"  {'total':<14} {sum(before.values()) / n:6.2f} | "
                  f"{sum(after.values()) / n:6.2f}")  # fmt: skip
            per_day[as_read] = after
        exact = per_day.get(False, {})
        days_in = (year[1] - year[0]) // DAY
        extra = sum(exact.get(t, 0) for t in ("rollup_1h", "rollup_1d"))
        est = (
            days_in * extra
            + min(days_in, args.raw_days) * (exact.get("chunk", 0) + exact.get("chunk_time", 0))
            + min(days_in, args.minute_days) * exact.get("rollup_1m", 0)
        ) / 1e9
        if not reuse:
            print(f"\nthe twin's exact floats over the year, extrapolated from their day: "
                  f"{est:.2f} GB")  # fmt: skip
        t0 = time.perf_counter()
        if reuse:
            size = sum(os.path.getsize(p) for p in work.glob("year.sqlite*"))
        else:
            size = build_year(sample, ypath, year, day0, args.raw_days, args.minute_days)
        gb = size / 1e9
        print(
            f"\n[the year {args.year} in the embedded store] (built in "
            f"{time.perf_counter() - t0:.0f} s)\n  raw points kept {args.raw_days} days, "
            f"1-minute rollups {args.minute_days} days, hourly and daily rollups all year\n"
            f"  size on disk {gb:.2f} GB  (was {BASELINE_GB:g} GB; goal: a few GB) "
            + ("PASS" if gb < 5 else "FAIL")
        )
        ok &= gb < 5
        rows: list[tuple[str, str, float, float]] = []
        if "embedded" in args.stores:
            st = SqliteStore(ypath, read_only=True)
            for label, (t, cpu) in time_kpis("embedded", st, cfg, periods).items():
                wall = cli_time(raw_cfg, {"type": "embedded", "path": str(ypath)}, label, work)
                rows.append(("embedded", label, t, wall))
                print(f"  embedded --period {label}: {t:.3f} s (CPU {cpu:.2f} s), dcim kpi "
                      f"{wall:.2f} s")  # fmt: skip
            st.close()
        if "influxdb" in args.stores:
            influx_reuse = reuse and (work / "influxdb" / "data" / "year").is_dir()
            if not influx_reuse and (work / "influxdb").exists():
                shutil.rmtree(work / "influxdb")
            srv = start_influxdb(work / "influxdb")
            try:
                sink = InfluxSink(type="influxdb", url=srv.url, database="year", timeout_s=600)
                if influx_reuse:
                    print("\n[InfluxDB] the year kept in --keep")
                else:
                    write_influx(srv.url, sink, ypath, cfg, year, periods[month_label])
                ist = InfluxStore(sink)
                for label, (t, cpu) in time_kpis("influxdb", ist, cfg, periods).items():
                    wall = cli_time(
                        raw_cfg,
                        {"type": "influxdb", "url": srv.url, "database": "year"},
                        label,
                        work,
                    )
                    rows.append(("influxdb", label, t, wall))
                    print(f"  influxdb --period {label}: {t:.3f} s (CPU here {cpu:.2f} s), "
                          f"dcim kpi {wall:.2f} s")  # fmt: skip
                ist.close()
            finally:
                srv.stop()
        print(
            "\n[dcim kpi] compute_kpis best of 3 | the command, one run (with Python's start); "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
        )
        for store, label, t, wall in rows:
            goal = GOAL_YEAR_S if len(label) == 4 else GOAL_MONTH_S
            verdict = "PASS" if t < goal else "FAIL"
            ok &= t < goal
            print(
                f"  {store:<9} --period {label:<8} {t:6.3f} s | {wall:6.2f} s   "
                f"(goal < {goal:g} s) {verdict}"
            )
    finally:
        if tmp is not None:
            tmp.cleanup()
    print("\nall goals met" if ok else "\nGOAL MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
