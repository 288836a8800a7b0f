"""Data for the dashboard tests and benchmark: what InfluxDB holds after a year of the
reference site, written the fast way.

After ``dcim db init`` (database, ``raw``/``rp_1m``/``rp_1h``/``rp_1d``, CQs), for every device
the twin simulates (:class:`dcim.twin.model.SiteModel`, the reference site's device mix):

- raw points every ``interval_s`` (the reference site's 10 s) for the last ``raw_hours``, as
  the collector writes them (:func:`dcim.twin.backfill.backfill`, every canonical field);
- ``rp_1m`` points for the last ``minute_days``, ``rp_1h`` points for the last ``hour_days``
  and ``rp_1d`` points for the last ``day_days`` (closed UTC days), written directly as the
  continuous queries write them (``mean_``, ``min_``, ``max_``, ``first_``, ``last_``,
  ``sum_``, ``count_`` of every field at the window start), computed from the twin sampled
  every 10 s (1-minute windows) or every 10 min (1-hour and 1-day windows); ``count_`` is the
  number of polls at ``interval_s`` the window holds;
- the collector's own rows: ``dcim_poll`` per device and poll (device ``down_device`` failing
  its polls for the last ``down_minutes``), ``dcim_collector`` and ``dcim_spool`` per poll
  cycle, raw and rolled up the same way (the rollups over the last ``extra_days`` only: they
  are a third of the lines);
- ``rack_env`` (rack temperature and humidity probes, which the twin does not simulate): one
  probe per rack, its temperature the rack's first server inlet, its humidity that of air at a
  fixed 8 degC dew point;
- ``kpi`` points from :func:`dcim.kpi.series.kpi_series` (the real computation over this
  data): hourly for the last ``kpi_hours`` hours, daily for the last ``kpi_days`` days and the
  first day of each month of the year before; written through ``InfluxStore`` where the raw
  policy still keeps them, else straight into ``rp_1h`` as the CQ would.

Speed at the reference size (387 devices, a year of rp_1h and rp_1d, 2-core machine at load
average 8-11): 990 s, of which influxd taking the lines is most (a 30-day chunk of rp_1h,
580,320 lines, 30-150 s depending on the load; the lines' building 2.2x faster with one
%-template per line than a ``repr`` per value, 6.6 against 14.8 ms per device and month);
the same setup with the previous code took 1115 s at the same load.
"""

from __future__ import annotations

import gzip
import math
import os
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np

from dcim.config import InfluxSink, SiteConfig
from dcim.dbinit import init_sink
from dcim.kpi.series import kpi_series
from dcim.reading import Reading
from dcim.storage.influx import InfluxStore
from dcim.storage.lineprotocol import encode, encode_many
from dcim.twin.backfill import _INT, _measurements, backfill, device_names, poll_jitter_ns
from dcim.twin.model import SiteModel

NS = 1_000_000_000
DAY = 86400
# Line protocol per write: measured at the reference size (a 5-day chunk of rp_1h, 2-core
# machine), 2 MB bodies 1.6 s, 20 MB ones 1.2 s; a chunk's whole 400 MB in one body held
# influxd at 3.6 GB of memory.
POST_BYTES = 16_000_000
# the twin sampled every 10 s for 1-minute windows, every 10 min for 1-hour and 1-day ones
ROLL_STEP_S = {60: 10, 3600: 600, 86400: 600}
ROLL_RP = {60: "rp_1m", 3600: "rp_1h", 86400: "rp_1d"}


@dataclass
class Holding:
    """What was written (lines per policy) and the time it took."""

    lines: dict[str, int] = field(
        default_factory=lambda: {"raw": 0, "rp_1m": 0, "rp_1h": 0, "rp_1d": 0}
    )
    kpi_points: int = 0
    seconds: float = 0.0

    def describe(self) -> str:
        return ", ".join(f"{k} {v} lines" for k, v in self.lines.items()) + (
            f", {self.kpi_points} kpi points, written in {self.seconds:.1f} s"
        )


class _Poster:
    """Posts lines in gzipped bodies of about ``POST_BYTES`` of line protocol, from a thread
    of its own (the lines of the next chunk are built while influxd takes these: it is the
    slower side, ~90 % of the setup's time at the reference size)."""

    def __init__(self, url: str, db: str, holding: Holding) -> None:
        self.base = f"{url}/write?db={db}&precision=ns&rp="
        self.buf: dict[str, list[bytes]] = {}
        self.size: dict[str, int] = {}
        self.holding = holding
        self._queue: queue.Queue[tuple[str, list[bytes]] | None] = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="dashdata-post", daemon=True)
        self._thread.start()

    def add(self, rp: str, lines: list[bytes]) -> None:
        self.holding.lines[rp] += len(lines)
        buf = self.buf.setdefault(rp, [])
        size = self.size.get(rp, 0)
        for line in lines:
            buf.append(line)
            size += len(line) + 1
            if size >= POST_BYTES:
                self._put(rp, buf)
                buf, size = [], 0
                self.buf[rp] = buf
        self.size[rp] = size

    def _put(self, rp: str, lines: list[bytes]) -> None:
        if self._error is not None:
            raise self._error
        if lines:
            self._queue.put((rp, lines))

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self.post(*item)
                except BaseException as exc:  # noqa: BLE001  (raised by flush)
                    self._error = exc

    def post(self, rp: str, lines: list[bytes]) -> None:
        body = gzip.compress(b"\n".join(lines), compresslevel=1)
        for attempt in range(8):
            req = urllib.request.Request(
                self.base + rp, data=body, headers={"Content-Encoding": "gzip"}
            )
            try:
                with urllib.request.urlopen(req, timeout=600) as r:
                    assert r.status == 204, r.status
                return
            except urllib.error.HTTPError as exc:
                text = exc.read()[:500]
                # influxd's write timeout (10 s) on a loaded machine: the same points again
                # (idempotent: same series, times and values)
                if exc.code == 500 and b"timeout" in text and attempt < 7:
                    time.sleep(5.0 * (attempt + 1))
                    continue
                raise AssertionError(f"write to {rp} refused: {text!r}") from exc

    def flush(self) -> None:
        """Post what is left and wait until every body is in (raises a post's error)."""
        for rp in list(self.buf):
            self._put(rp, self.buf.pop(rp))
        self.size.clear()
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        self._thread = threading.Thread(target=self._run, name="dashdata-post", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.flush()
        self._queue.put(None)
        self._thread.join()


def _key(meas: str, tags: dict[str, str]) -> str:
    return encode(Reading(meas, tags, {"x": 0.0}, 0)).rsplit(" ", 2)[0]


def _num(name: str, v: float) -> str:
    if name in _INT:
        return f"{int(round(v))}i"
    return repr(float(v))


def rollup_lines(
    key: str,
    t0_ns: int,
    vals: dict[str, np.ndarray],
    level: int,
    per_window: int,
    polls: int,
    ints: frozenset[str] = frozenset(),
) -> list[bytes]:
    """CQ-style rollup points: ``vals`` hold ``per_window`` samples per window from ``t0_ns``
    (a window start). Integer fields keep integer min/max/first/last/sum, as InfluxDB's.
    The aggregates come from numpy, each line from one %-template (floats to 10 significant
    digits: 3.5x faster than a ``repr`` per value, measured at the reference size)."""
    n = min(len(v) for v in vals.values()) // per_window
    if n == 0:
        return []
    cols: list[np.ndarray] = []
    fmts: list[str] = []
    for f, v in vals.items():
        w = np.asarray(v[: n * per_window], dtype=np.float64).reshape(n, per_window)
        mean = w.mean(axis=1)
        isint = f in _INT or f in ints
        x = "%di" if isint else "%.10g"
        cols += [mean, w.min(axis=1), w.max(axis=1), w[:, 0], w[:, -1], mean * polls]
        fmts += [f"mean_{f}=%.10g", f"min_{f}={x}", f"max_{f}={x}", f"first_{f}={x}",
                 f"last_{f}={x}", f"sum_{f}={x}", f"count_{f}={polls}i"]  # fmt: skip
        if isint:
            cols[-5:] = [np.rint(c) for c in cols[-5:]]
    tmpl = f"{key.replace('%', '%%')} {','.join(fmts)} %d".encode()
    times = [t0_ns + i * level * NS for i in range(n)]
    rows = np.column_stack(cols).tolist()
    return [tmpl % (*row, t) for row, t in zip(rows, times, strict=True)]


# Counters of the rollups: integrated from the sampled rate (the model's own integral at 1 s
# over a year is minutes of CPU); a counter without a rate field keeps the model's analytic part.
_RATES = {
    "energy_wh_total": ("power_w", 1 / 3600),
    "electrical_energy_wh_total": ("electrical_power_w", 1 / 3600),
    "volume_m3_total": ("flow_m3_per_h", 1 / 3600),
}
_HEAT_RATES = ("heat_power_w", "heat_output_w")  # heat meters, heat pumps


def _counted(
    vals: dict[str, np.ndarray], step_s: int, totals: dict[str, float]
) -> dict[str, np.ndarray]:
    """``vals`` with each counter replaced by the running integral of its rate (from
    ``totals``, carried across chunks)."""
    rates = dict(_RATES)
    heat = next((r for r in _HEAT_RATES if r in vals), None)
    if heat is not None:
        rates["heat_energy_wh_total"] = (heat, 1 / 3600)
    out = dict(vals)
    for f, (src, k) in rates.items():
        if f not in vals or src not in vals:
            continue
        inc = np.maximum(vals[src], 0.0) * step_s * k
        run = totals.get(f, 1.0e6) + np.cumsum(inc) - inc
        totals[f] = float(run[-1] + inc[-1])
        out[f] = run
    return out


def _dew_rh(temp: np.ndarray, dew_c: float = 8.0) -> np.ndarray:
    a, b = 17.62, 243.12
    return np.asarray(100.0 * np.exp(a * dew_c / (b + dew_c) - a * temp / (b + temp)))


@dataclass
class Plan:
    now_s: int
    raw_hours: int = 7
    minute_days: int = 2
    hour_days: int = 400
    day_days: int = 400
    interval_s: float = 10.0
    down_device: str = "ups-b"
    down_minutes: int = 120
    kpi_hours: int = 6
    kpi_days: int = 10
    extra_days: int = 100  # the collector's rows and the rack probes in the rollups


def _extra_series(
    cfg: SiteConfig, model: SiteModel, plan: Plan, ts: np.ndarray
) -> Iterator[tuple[str, dict[str, str], dict[str, np.ndarray]]]:
    """(measurement, tags, {field: values}) of the collector rows and rack probes at ``ts``."""
    site = cfg.site.name
    names = device_names(model, None)
    for n in names:
        dev = cfg.device(n)
        tags = {"site": site, "device": n, "protocol": dev.protocol}
        down = (ts >= plan.now_s - plan.down_minutes * 60) & (n == plan.down_device)
        jit = (poll_jitter_ns(n, (ts * NS).astype(np.int64)) / NS).astype(np.float64)
        yield (
            "dcim_poll",
            tags,
            {
                "up": np.where(down, 0.0, 1.0),
                "duration_s": np.where(down, 2.0, 0.02 + 0.5 * jit),
                "late_s": 10.0 * jit,
                "values_read": np.where(down, 0.0, 10.0),
            },
        )
    down_now = (ts >= plan.now_s - plan.down_minutes * 60) & (plan.down_device in names)
    yield "dcim_collector", {"site": site}, {
        "devices": np.full(ts.shape, float(len(names))), "devices_down": down_now * 1.0,
    }  # fmt: skip
    pend = 50.0 + 40.0 * np.sin(ts / 3600.0) ** 2
    yield "dcim_spool", {"site": site}, {
        "bytes": 4e6 + 1000.0 * pend, "max_bytes": np.full(ts.shape, 1024.0 * 2**20),
        "used_pct": (4e6 + 1000.0 * pend) / (1024.0 * 2**20) * 100.0, "pending": pend,
        "refused_total": np.zeros(ts.shape), "dropped_total": np.zeros(ts.shape),
        "quarantined": np.zeros(ts.shape), "full": np.zeros(ts.shape),
        "warn": np.zeros(ts.shape), "forward_lag_s": 0.5 + 2.0 * np.sin(ts / 3600.0) ** 2,
    }  # fmt: skip
    for rack in cfg.racks:
        servers = [d.name for d in cfg.devices if d.rack == rack.name and d.name in model.devices]
        servers = [s for s in servers if model.devices[s].kind == "bmc_server"]
        if not servers:
            continue
        temp = model.series(servers[0], ts)["inlet_temp_c"]
        tags = {"site": site, "device": f"env-{rack.name}", "rack": rack.name, "room": rack.room,
                "port": "1", "probe": "1", "probe_name": f"{rack.name} front"}  # fmt: skip
        yield "rack_env", tags, {"temp_c": np.round(temp), "humidity_pct": np.round(_dew_rh(temp))}


_INT_EXTRA = frozenset({"up", "values_read", "devices", "devices_down", "pending",
                        "refused_total", "dropped_total", "quarantined", "full", "warn", "bytes",
                        "max_bytes"})  # fmt: skip


def _raw_extra(
    cfg: SiteConfig, model: SiteModel, plan: Plan, start_s: float, post: _Poster
) -> None:
    step = plan.interval_s
    ts = np.arange(math.ceil(start_s / step) * step, plan.now_s, step, dtype=np.float64)
    for meas, tags, vals in _extra_series(cfg, model, plan, ts):
        key = _key(meas, tags)
        names = list(vals)
        ints = [f in _INT_EXTRA and meas != "rack_env" for f in names]
        cols = [v.tolist() for v in vals.values()]
        lines = []
        for i, t in enumerate(ts.tolist()):
            parts = []
            for f, isint, c in zip(names, ints, cols, strict=True):
                parts.append(f"{f}={int(round(c[i]))}i" if isint else f"{f}={c[i]!r}")
            if meas == "dcim_poll":
                parts.append('error="timeout"' if cols[0][i] == 0.0 else 'error=""')
            lines.append(f"{key} {','.join(parts)} {int(t * NS)}".encode())
        post.add("raw", lines)


def log(what: str) -> None:
    if os.environ.get("DCIM_DASHDATA_VERBOSE"):
        print(f"{time.strftime('%H:%M:%S')} {what}", flush=True)


def write(url: str, cfg: SiteConfig, plan: Plan) -> Holding:
    """Set up the database of ``cfg``'s InfluxDB sink and fill it (see the module doc)."""
    t_start = time.perf_counter()
    sink = cfg.storage.sink
    assert isinstance(sink, InfluxSink)
    init_sink(sink)
    holding = Holding()
    post = _Poster(url, sink.database, holding)
    raw_from = plan.now_s - plan.raw_hours * 3600
    # the twin's counters integrate from its t0 at 1 s: a model starting just before the raw
    # points for them (the rollups' counters are integrated here from their samples)
    recent = SiteModel(cfg, t0=raw_from - 3600, seed=1)
    days_back = max(plan.hour_days, plan.day_days) + 1
    model = SiteModel(cfg, t0=plan.now_s - days_back * DAY - 3600, seed=1)
    names = device_names(model, None)
    meta = _measurements(cfg, model, names)
    zeros: dict[int, np.ndarray] = {}
    # raw: what the collector wrote
    for batch in backfill(cfg, recent, raw_from, plan.now_s - 1, interval_s=plan.interval_s):
        post.add("raw", encode_many(batch).strip().split(b"\n"))
    _raw_extra(cfg, model, plan, raw_from, post)
    log("raw written")
    # rollups, as the CQs write them
    for level, days in ((60, plan.minute_days), (3600, plan.hour_days), (86400, plan.day_days)):
        rp, step = ROLL_RP[level], ROLL_STEP_S[level]
        per = level // step
        polls = int(level / plan.interval_s)
        end = plan.now_s // level * level
        start = end - days * DAY
        chunk = max(level, (6 * 3600 if level == 60 else 30 * DAY) // level * level)
        if level == 86400:
            chunk = 60 * DAY
        totals: dict[str, dict[str, float]] = {}
        for c0 in range(start, end, chunk):
            ts = np.arange(c0, min(end, c0 + chunk), step, dtype=np.float64)
            lines: list[bytes] = []
            integ = zeros.setdefault(len(ts), np.zeros((model.n_series, len(ts))))
            for n in names:
                meas, fields = meta[n]
                vals = _counted(model.series(n, ts, integ), step, totals.setdefault(n, {}))
                key = _key(meas, cfg.tags_of(cfg.device(n)))
                lines += rollup_lines(key, c0 * NS, {f: vals[f] for f in fields}, level, per, polls)
            for meas, tags, vals in _extra_series(cfg, model, plan, ts):
                if c0 < end - plan.extra_days * DAY:
                    break
                ints = _INT_EXTRA if meas != "rack_env" else frozenset()
                lines += rollup_lines(_key(meas, tags), c0 * NS, vals, level, per, polls, ints)
            post.add(rp, lines)
            log(f"{rp}: {len(lines)} lines from {c0}")
        log(f"{rp} written")
    _kpi_boundaries(cfg, plan, names, meta, post)
    post.close()
    holding.kpi_points = write_kpis(cfg, plan)
    holding.seconds = time.perf_counter() - t_start
    return holding


def _kpi_boundaries(
    cfg: SiteConfig,
    plan: Plan,
    names: list[str],
    meta: dict[str, tuple[str, list[str]]],
    post: _Poster,
) -> None:
    """rp_1m around the start and end of each daily kpi day (the KPIs read meter indexes
    there), the counters from one twin for both ends of a day: one starting an hour before the
    recent days for those, one per day for the first days of the months before."""
    days = kpi_days(plan, cfg.site.timezone)
    recent = [d for d in days if d >= plan.now_s - (plan.kpi_days + 1) * DAY]
    groups = [recent] + [[d] for d in days if d not in recent]
    for group in groups:
        if not group:
            continue
        m = SiteModel(cfg, t0=min(group) - 3600, seed=1)
        rows = sorted({r for n in names for r in m.counter_rows(n)})
        for edge in sorted({e for d in group for e in (d, d + DAY)}):
            ts = np.arange(edge - 600, edge + 600, 10, dtype=np.float64)
            integ = m.integrals(ts, rows) if rows else None
            lines: list[bytes] = []
            for n in names:
                meas, fields = meta[n]
                vals = m.series(n, ts, integ)
                key = _key(meas, cfg.tags_of(cfg.device(n)))
                polls = int(60 / plan.interval_s)
                lines += rollup_lines(key, (edge - 600) * NS, {f: vals[f] for f in fields}, 60,
                                      6, polls)  # fmt: skip
            post.add("rp_1m", lines)


def kpi_days(plan: Plan, tz: str) -> list[int]:
    """Start (UNIX s) of the local days that get a daily kpi point: the last ``kpi_days`` and
    the first of each of the 13 months before (this month, last month, a year ago)."""
    zone = ZoneInfo(tz)
    today = datetime.fromtimestamp(plan.now_s, zone).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    days = {int(today.timestamp()) - k * DAY for k in range(1, plan.kpi_days + 1)}
    y, m = today.year, today.month
    for _ in range(14):
        days.add(int(datetime(y, m, 1, tzinfo=zone).timestamp()))
        y, m = (y, m - 1) if m > 1 else (y - 1, 12)
    lo = plan.now_s - plan.hour_days * DAY + DAY
    return sorted(d for d in days if lo <= d and d + DAY <= plan.now_s)


def write_kpis(cfg: SiteConfig, plan: Plan) -> int:
    """The kpi points (module doc): hourly from the raw points, daily from the rollups;
    written to the raw policy where it keeps them and to rp_1h as cq_1h writes them (a point
    alone in its hour: every aggregate is the value)."""
    sink = cfg.storage.sink
    assert isinstance(sink, InfluxSink)
    raw_from_ns = (plan.now_s - plan.raw_hours * 3600) * NS
    store = InfluxStore(sink, rollup_before_ns=raw_from_ns)
    keep_raw_ns = (plan.now_s - 29 * DAY) * NS
    held = Holding()
    post = _Poster(sink.url, sink.database, held)
    points = []
    try:
        hour_end = plan.now_s // 3600 * 3600
        start = (hour_end - plan.kpi_hours * 3600) * NS
        points += kpi_series(store, cfg, start, hour_end * NS, "hourly")
        for d in kpi_days(plan, cfg.site.timezone):
            points += kpi_series(store, cfg, d * NS, (d + DAY) * NS, "daily")
    finally:
        store.close()
    for r in points:
        if r.time_ns >= keep_raw_ns:
            post.add("raw", [encode(r).encode()])
        vals = {k: np.array([float(v)]) for k, v in r.fields.items() if v is not None}
        hour = r.time_ns // (3600 * NS) * 3600 * NS
        post.add("rp_1h", rollup_lines(_key("kpi", r.tags), hour, vals, 3600, 1, 1))
    post.close()
    return len(points)
