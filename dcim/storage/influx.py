"""InfluxDB store over HTTP with the standard library's client (no client package: see the
README; ``influxdb-client`` speaks only the v2 write API, which InfluxDB 1.x before 1.8 lacks).

Writes: v1 ``POST /write?db=&rp=&precision=`` (InfluxDB 1.x, and 1.8+/2.x/3.x through
their v1 API), or with ``api: v2`` ``POST /api/v2/write?org=&bucket=&precision=``;
gzip body (:func:`write_body`; plain with ``gzip: false``),
``Authorization: Token`` when a token is given, else basic auth. Times are truncated to the
sink's ``precision`` (1.x knows microseconds as ``u``, not ``us``).
Queries: InfluxQL on ``/query`` (v1 API; on 2.x it needs a DBRP mapping for ``database``).

Rollups (v1, after ``dcim db init``): continuous queries write per series and window
``mean_<field>``, ``min_``, ``max_``, ``first_``, ``last_``, ``count_`` and ``sum_`` into the
``rp_1m``, ``rp_1h`` and ``rp_1d`` retention policies (:func:`rollup_select` is their body;
``rp_1d``: UTC days, for the dashboards' long ranges, not read by ``aggregate``). A CQ only
covers recent windows, so the hours that got points older than a few minutes (a backlog from
the spool, a backfill, the collector's ``kpi`` points) are rolled up again from the raw points
(:meth:`InfluxStore.rollup`), per measurement (a late ``kpi`` point rolls up the ``kpi``
series of its hour and day, not every measurement of the site: :mod:`dcim.storage.latehours`),
each once for many writes: the store collects them and rolls them up together
(:meth:`InfluxStore.flush_rollups`) when a write finds them due for ``ROLLUP_DEBOUNCE_S``, when
a write brings no late point (the backlog is done), before a query, when the forwarder finds
the spool drained, and on close. If that fails for want of the server, they stay due and
the write that found them due fails (retryable: the batch comes again, idempotently). What is
due is kept in memory and, with a ``due_file`` (the collector's, in its spool directory), on
disk across stops and crashes; without one, a crash loses them (their raw points are written;
``InfluxStore.rollup`` over the range redoes them).
``aggregate`` uses the rollups where they are known complete: before the raw policy's
retention (the raw points are gone), and up to two hours ago (when the CQs are done) if the
``dcim_rollups`` marker that ``dcim db init`` writes says the CQs have run since before the
queried range or before the oldest raw point kept; elsewhere the raw points answer (and
``rollup_before_ns``, when given, overrides all this). Rollup windows carry their
start, not the point's time (a CQ cannot keep it): there ``first``/``last`` over a group of
several series pick by minute/hour, and without ``every_s`` they return the start of the
rollup window holding the point (up to a minute early from ``rp_1m``, an hour from
``rp_1h``), so that a meter index at a period boundary older than the raw retention is still
found (the KPI code looks a few minutes around a boundary; see ``dcim.kpi.energy``).

Write responses become :class:`SinkError`: 204 ok; 400/413/422 (bad data, partial write,
field type conflict, beyond retention) not retryable; 401/403 retryable, since wrong
credentials must not drop data (fix them and it flows); 404 "database not found" creates
the database when allowed, else retryable; 429/503 retryable with ``Retry-After``; other
5xx, connection errors and timeouts retryable.
"""

from __future__ import annotations

import base64
import email.utils
import gzip as _gzip
import http.client
import io
import json
import logging
import re
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcim.config import InfluxSink
from dcim.reading import Reading
from dcim.storage import latehours
from dcim.storage.base import (
    NS,
    Agg,
    Part,
    Row,
    SinkError,
    StoreError,
    align_windows,
    ceil_to,
    check_query,
    floor_to,
    means_by_field,
    merge_parts,
    plan_pieces,
    sort_rows,
)
from dcim.storage.latehours import ALL, Entry
from dcim.storage.lineprotocol import encode_many
from dcim.urls import redact_url

try:  # MessagePack answers: half influxd's time of JSON for many windows, and less parsing
    import msgpack
except ImportError:  # JSON then
    msgpack = None  # type: ignore[assignment]


log = logging.getLogger(__name__)

ROLLUP_RP = {60: "rp_1m", 3600: "rp_1h", 86400: "rp_1d"}
ROLLUP_FNS = ("mean", "min", "max", "first", "last", "count", "sum")
_GROUP = {60: "1m", 3600: "1h", 86400: "1d"}
# The policies ``aggregate`` reads (and needs, with the raw one, to use rollups at all):
# ``rp_1d`` is for the dashboards (UTC days), and a database set up before it existed still
# answers from the others; the late-point rollup writes it where it exists.
QUERY_RP = (ROLLUP_RP[60], ROLLUP_RP[3600])
LATE_NS = 180 * NS  # older points miss the CQs (cq_1m resamples 5 min): rolled up on write
# Late hours wait this long for more writes before their rollups run (a backfill posts a batch
# every few hundred ms: rolled up per write, each hour was redone a dozen times or more).
ROLLUP_DEBOUNCE_S = 30.0
# Hours of raw points per rollup statement: a statement answers within the sink's timeout, and
# InfluxDB writes its result at once (the 1-minute rollups of an hour of the reference site are
# some 150,000 values; of a day, more than the server takes in one write). A daily rollup is a
# whole day per statement (it reads the day's raw points once, as the four 6-hour ones do).
ROLLUP_SPAN_H = {60: 1, 3600: 6, 86400: 24}
_POLICY_TTL_S = 300.0
# ``dcim db init`` writes, in rp_1h, the hour from which its CQs fill the rollups (tag ``rp``:
# the raw policy they read); hours that ended CQ_DONE_NS ago are final (cq_1h recomputes 2 h).
MARKER, MARKER_FIELD = "dcim_rollups", "complete_from_ns"
# Aggregates over windows as long as a rollup's, read from its points as stored.
_AS_STORED: dict[str, tuple[str, ...]] = {
    "mean": ("sum", "count"),
    "sum": ("sum",),
    "count": ("count",),
    "min": ("min",),
    "max": ("max",),
}
CQ_DONE_NS = 2 * 3600 * NS
_PRECISION_NS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": NS}


def _documents(body: bytes, headers: Any) -> list[dict[str, Any]]:
    """The JSON documents of a /query answer (one per chunk), from JSON lines or, when the
    server answered in MessagePack (InfluxDB 1.x does when asked), from its objects; [] for
    a body that is neither (an error page)."""
    ctype = (headers.get("Content-Type") if headers is not None else None) or ""
    try:
        if "msgpack" in ctype and msgpack is not None:
            docs = list(msgpack.Unpacker(io.BytesIO(body), raw=False))
        else:
            docs = [json.loads(line) for line in body.splitlines() if line.strip()]
    except ValueError:  # also msgpack's errors (ValueError subclasses) and bad JSON
        return []
    return [d for d in docs if isinstance(d, dict)]


def write_body(lines: bytes, *, gzip: bool) -> tuple[bytes, dict[str, str]]:
    """A ``/write`` body and its headers: the line protocol, gzip-compressed when ``gzip``
    (zlib's level 1, its fastest: about a fifth of the size for the collector's lines).

    Not ISA-L (``isal``), measured: its level 1 took a quarter of zlib's CPU alone (0.17
    against 0.70 us a line, and compressed more), but fed flat out (benchmarks/ingest.py)
    the thread feeding the pipeline then used about 1 us more CPU a line (3.7 to 4.1 without
    it, 4.6 to 5.1 with it, 15 runs on this 2-core machine): a net loss."""
    hdr = {"Content-Type": "text/plain; charset=utf-8"}
    if not gzip:
        return lines, hdr
    hdr["Content-Encoding"] = "gzip"
    return _gzip.compress(lines, compresslevel=1), hdr


@dataclass(frozen=True)
class PreparedLines:
    """A line protocol body ready to post (:meth:`InfluxStore.prepare_lines`): ``body`` as
    sent, with its ``headers``; ``late``: the hours (starts, ns) its late points touch;
    ``size``: the line protocol's length before compression; ``measurements``: those of its
    lines, when it has late points (each is rolled up again in each of the ``late`` hours)."""

    body: bytes
    headers: dict[str, str]
    late: frozenset[int]
    size: int
    measurements: frozenset[str] = frozenset()


class StoreUnavailable(StoreError):
    """The server did not answer (connection refused, timeout, 5xx): try again later."""


def quote_ident(name: str) -> str:
    """An InfluxQL identifier: ``"name"`` with ``\\`` and ``"`` escaped."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_string(value: str) -> str:
    """An InfluxQL string literal: ``'value'`` with ``\\`` and ``'`` escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def build_query(
    *,
    measurement: str,
    field: str,
    start_ns: int,
    end_ns: int,
    fn: Agg,
    every_s: int | None = None,
    where: Mapping[str, str] | None = None,
    group_by: Sequence[str] = (),
    retention_policy: str | None = None,
    select: str | None = None,
) -> str:
    """The InfluxQL statement for one ``Store.aggregate`` call (``select``: other columns)."""
    check_query(fn, start_ns, end_ns, every_s)
    sel = select or (
        f"INTEGRAL({quote_ident(field)}, 1s)"
        if fn == "integral"
        else f"{fn.upper()}({quote_ident(field)})"
    )
    src = quote_ident(measurement)
    if retention_policy:
        src = f"{quote_ident(retention_policy)}.{src}"
    conds = [f"time >= {int(start_ns)}", f"time < {int(end_ns)}"]
    conds += [f"{quote_ident(k)} = {quote_string(v)}" for k, v in sorted((where or {}).items())]
    groups = ([f"time({int(every_s)}s)"] if every_s else []) + [quote_ident(k) for k in group_by]
    q = f"SELECT {sel} FROM {src} WHERE {' AND '.join(conds)}"
    if groups:
        q += f" GROUP BY {', '.join(groups)}"
    if every_s:
        q += " fill(none)"
    return q


def rollup_select(
    sink: InfluxSink,
    level: int,
    start_ns: int | None = None,
    end_ns: int | None = None,
    measurements: Sequence[str] | None = None,
) -> str:
    """The rollup of every raw measurement into ``ROLLUP_RP[level]`` (level 60, 3600 or
    86400 s): the body of its continuous query, or with ``start_ns``/``end_ns`` a statement
    for that time range; with ``measurements``, of those only (each into its own)."""
    db = quote_ident(sink.database)
    aggs = ", ".join(f"{fn}(*)" for fn in ROLLUP_FNS)
    where = "" if start_ns is None else f" WHERE time >= {int(start_ns)} AND time < {end_ns}"
    raw = f"{db}.{quote_ident(sink.raw_policy)}"
    src = (
        f"{raw}./.*/"
        if measurements is None
        else ", ".join(f"{raw}.{quote_ident(m)}" for m in measurements)
    )
    return (
        f"SELECT {aggs} INTO {db}.{quote_ident(ROLLUP_RP[level])}.:MEASUREMENT "
        f"FROM {src}{where} GROUP BY time({_GROUP[level]}), *"
    )


def raw_horizon(now_ns: int, raw_s: int) -> int:
    """The hour from which a store whose raw policy keeps ``raw_s`` answers from raw points
    (before it, from the rollups): the retention's edge, a minute of margin, rounded up."""
    return ceil_to(now_ns - raw_s * NS + 60 * NS, 3600)


def go_duration_s(text: str) -> int | None:
    """A duration as InfluxDB shows it (``720h0m0s``) in seconds; None for ``0s`` (INF)."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    total = sum(float(n) * units[u] for n, u in re.findall(r"([\d.]+)(h|ms|us|µs|ns|m|s)", text))
    return int(total) or None


# The timestamp of a line: the digits before its newline (nothing else in a line ends so:
# string fields end with a quote and cannot hold a newline).
_TIMESTAMP = re.compile(rb"(-?[0-9]+)\n")


def _utc(t_ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M", time.gmtime(t_ns // NS))


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


class InfluxStore:
    def __init__(
        self,
        sink: InfluxSink,
        *,
        create_database: bool = True,
        rollup_before_ns: int | None = None,
        due_file: Path | None = None,
    ):
        """``rollup_before_ns``: answer from the rollups before this time (the default:
        only where the raw retention may have deleted the points). ``due_file``: where the
        hours due to be rolled up again are kept across restarts (the collector's: in its
        spool directory), so that a stop or a crash before their rollup loses none."""
        self.sink = sink
        self.rollup_before_ns = rollup_before_ns
        self._policies_at = self._marker_at = -_POLICY_TTL_S
        self._marker: int | None = None
        self._policies: dict[str, tuple[int | None, bool]] = {}
        self.base = sink.url.rstrip("/")
        self.shown = redact_url(self.base)  # the URL as logs and errors show it
        self._split = urllib.parse.urlsplit(self.base)
        self._prefix = self._split.path.rstrip("/")  # a server behind a path (a proxy)
        self._local = threading.local()  # a persistent connection per thread
        self._ssl: ssl.SSLContext | None = None
        self.connections_opened = 0  # counted for the tests
        self._conns: list[http.client.HTTPConnection] = []  # every thread's, closed by close()
        self._busy: set[http.client.HTTPConnection] = set()  # in a request now
        self.create_database = create_database and sink.api == "v1"
        self._headers: dict[str, str] = {}
        self._supplied = (0, 0)  # hours whose rollups the writer writes (supply_rollups)
        # (measurement, hour start in ns) with late points, not rolled up yet (latehours)
        self._due: set[Entry] = set()
        self._due_since = 0.0  # monotonic time the oldest of them became due
        self._due_lock = threading.Lock()
        self._persist_lock = threading.Lock()  # one due-file writer at a time
        self._flush_lock = threading.Lock()
        self._inflight: set[Entry] = set()  # taken by the flush in progress
        self._due_file = due_file
        self._saved: frozenset[Entry] = frozenset()  # what the due file holds
        if due_file is not None:
            self._saved = frozenset(latehours.load(due_file))
            self._due = set(self._saved)  # rolled up at the first drain of the spool
        self.rollup_statements = 0  # rollup statements run, and their time (tests, benchmarks)
        self.rollup_seconds = 0.0
        if sink.token is not None:
            self._headers["Authorization"] = f"Token {sink.token.resolve()}"
        elif sink.username:
            pw = sink.password.resolve() if sink.password is not None else ""
            cred = base64.b64encode(f"{sink.username}:{pw}".encode()).decode()
            self._headers["Authorization"] = f"Basic {cred}"

    # -- HTTP ----------------------------------------------------------------------------
    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's connection to the server (kept alive between requests: a sink thread
        writes over one connection), and whether it is a new one."""
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn, False
        if self._split.scheme == "https":
            conn = http.client.HTTPSConnection(
                self._split.hostname or "",
                self._split.port,
                timeout=self.sink.timeout_s,
                context=self._tls_context(),
            )
        else:
            conn = http.client.HTTPConnection(
                self._split.hostname or "", self._split.port, timeout=self.sink.timeout_s
            )
        self._local.conn = conn
        with self._due_lock:
            self.connections_opened += 1
            self._conns.append(conn)
        return conn, True

    def _tls_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            sink = self.sink
            try:
                ctx = ssl.create_default_context(
                    cafile=str(sink.tls_ca) if sink.tls_ca is not None else None
                )
                if sink.tls_cert is not None:
                    ctx.load_cert_chain(
                        str(sink.tls_cert), str(sink.tls_key) if sink.tls_key else None
                    )
            except (OSError, ssl.SSLError) as exc:
                raise SinkError(
                    retryable=True,
                    reason=f"InfluxDB {self.shown}: cannot load the TLS files "
                    f"(tls_ca {sink.tls_ca}, tls_cert {sink.tls_cert}, tls_key {sink.tls_key}): "
                    f"{exc}",
                ) from exc
            self._ssl = ctx
        return self._ssl

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()
            with self._due_lock:
                self._conns = [c for c in self._conns if c is not conn]

    def _close_connections(self) -> None:
        """Close the connections no thread is using (one in use, e.g. the forwarder's in a
        rollup statement while the collector stops, is left to its thread)."""
        with self._due_lock:
            idle = [c for c in self._conns if c not in self._busy]
            self._conns = [c for c in self._conns if c in self._busy]
        for c in idle:
            c.close()

    def _request(
        self,
        method: str,
        path: str,
        params: Mapping[str, str],
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, bytes, Any]:
        """(status, body, headers); HTTP error statuses are returned, not raised.
        Connection problems raise SinkError(retryable=True). Over this thread's persistent
        connection; one that the server closed meanwhile is opened again once (a request
        sent again is harmless: writes are idempotent, queries read or recompute)."""
        target = f"{self._prefix}{path}?{urllib.parse.urlencode(params)}"
        hdrs = {**self._headers, **(headers or {})}
        for attempt in (1, 2):
            conn, new = self._connection()
            with self._due_lock:
                self._busy.add(conn)
            try:
                conn.request(method, target, body=body, headers=hdrs)
                resp = conn.getresponse()
                data = resp.read()
                if resp.will_close:
                    self._drop_connection()
                return resp.status, data, resp.headers
            except (OSError, http.client.HTTPException, AttributeError) as exc:
                # (AttributeError: http.client's read of a connection closed meanwhile)
                self._drop_connection()
                stale = isinstance(
                    exc, http.client.RemoteDisconnected | BrokenPipeError | ConnectionResetError
                )
                if attempt == 1 and not new and stale:
                    continue  # a kept-alive connection the server had closed: once more
                reason = getattr(exc, "reason", None) or exc
                raise SinkError(
                    retryable=True, reason=f"InfluxDB {self.shown} unreachable: {reason}"
                ) from exc
            finally:
                with self._due_lock:
                    self._busy.discard(conn)
        raise AssertionError("unreachable")

    # -- writing -------------------------------------------------------------------------
    def write(self, readings: Sequence[Reading]) -> None:
        if not readings:
            return
        late_before = time.time_ns() - LATE_NS
        late: set[Entry] = {
            (r.measurement, floor_to(r.time_ns, 3600)) for r in readings if r.time_ns < late_before
        }
        div = _PRECISION_NS[self.sink.precision]
        if div != 1:
            readings = [
                Reading(r.measurement, r.tags, r.fields, r.time_ns // div) for r in readings
            ]
        try:
            body = encode_many(readings)
        except ValueError as exc:
            raise SinkError(retryable=False, reason=str(exc)) from exc
        self._post(body, late)

    def write_lines(self, body: bytes, spans: Sequence[tuple[int, int]]) -> None:
        """Line protocol with nanosecond timestamps as is (the spool's, encoded when the
        readings were committed), converted to the sink's ``precision`` when that is not
        ``ns``. ``spans``: (oldest, newest) time of parts of the body; the hours from a part's
        oldest point to its newest before the late limit are rolled up again, for the
        measurements of the body (a superset of the hours and measurements with late points:
        at worst an hour without a point of a measurement is rolled up)."""
        if body:
            self.write_prepared(self.prepare_lines(body, spans))

    def prepare_lines(self, body: bytes, spans: Sequence[tuple[int, int]]) -> PreparedLines:
        """What :meth:`write_lines` does before its POST (the late hours, the precision, the
        gzip): the forwarder has it done for the next batch while this one is posted."""
        late_before = time.time_ns() - LATE_NS
        late: set[int] = set()
        hour = 3600 * NS
        for lo, hi in spans:
            if lo < late_before:
                late.update(range(floor_to(lo, 3600), min(hi, late_before - 1) + 1, hour))
        # the measurements of the late points: only read when there are some (a backlog)
        meas = latehours.measurements_of(body) if late else frozenset()
        div = _PRECISION_NS[self.sink.precision]
        if div != 1:
            body = _TIMESTAMP.sub(lambda m: b"%d\n" % (int(m[1]) // div), body)
        data, headers = write_body(body, gzip=self.sink.gzip)
        return PreparedLines(data, headers, frozenset(late), len(body), meas)

    def write_prepared(self, prepared: PreparedLines) -> None:
        """POST a body from :meth:`prepare_lines` (raises SinkError like :meth:`write`)."""
        if prepared.size:
            late = latehours.entries(prepared.measurements, prepared.late)
            self._send(prepared.body, prepared.headers, late)

    def supply_rollups(self, start_ns: int, end_ns: int) -> None:
        """The writer writes the rollups of the hours in [start_ns, end_ns) itself
        (:meth:`write_rollups`, ``dcim twin backfill``): late points there do not make them
        due. Only for a writer that has every raw point of those hours in hand."""
        self._supplied = (start_ns, end_ns)

    def write_rollups(self, level: int, points: Sequence[Reading]) -> None:
        """Rollup points (:class:`dcim.storage.rollupcalc.Rollups`) into ``ROLLUP_RP[level]``."""
        if not points:
            return
        div = _PRECISION_NS[self.sink.precision]
        body = encode_many(
            [Reading(r.measurement, r.tags, r.fields, r.time_ns // div) for r in points]
        )
        self._post(body, set(), rp=ROLLUP_RP[level])

    def _post(self, lines: bytes, late: set[Entry], rp: str | None = None) -> None:
        """POST a line protocol body, then roll up again the ``late`` (measurement, hour)."""
        body, hdr = write_body(lines, gzip=self.sink.gzip)
        self._send(body, hdr, late, rp)

    def _send(
        self, body: bytes, hdr: dict[str, str], late: set[Entry], rp: str | None = None
    ) -> None:
        """POST a ``/write`` body (:func:`write_body`), then roll up the ``late`` hours (of
        their measurements)."""
        lo, hi = self._supplied
        late = {e for e in late if not lo <= e[1] < hi}
        if self.sink.api == "v2":
            path = "/api/v2/write"
            params = {"org": self.sink.org or "", "bucket": self.sink.bucket or ""}
        else:
            path = "/write"
            params = {"db": self.sink.database}
            if rp or self.sink.retention_policy:
                params["rp"] = rp or self.sink.retention_policy or ""
        prec = self.sink.precision
        params["precision"] = "u" if prec == "us" and self.sink.api == "v1" else prec
        for attempt in (1, 2):
            status, text, headers = self._request("POST", path, params, body, hdr)
            if status in (200, 204):
                if rp is None:  # not rollup points: late raw points, or the backlog done
                    self._late_written(late)
                return
            msg = text.decode("utf-8", "replace").strip()
            missing = status == 404 and "database not found" in msg
            if missing and self.create_database and attempt == 1:
                log.info("creating InfluxDB database %s", self.sink.database)
                self.ensure_database()
                continue
            raise self._write_error(status, msg, headers)

    def _write_error(self, status: int, msg: str, headers: Any) -> SinkError:
        where = f"InfluxDB {self.shown}"
        if status in (400, 413, 422):
            return SinkError(retryable=False, reason=f"{where} refused the data ({status}): {msg}")
        if status in (401, 403):
            return SinkError(
                retryable=True,
                reason=f"{where} refused the credentials ({status}): {msg}; "
                "data stays in the spool until the sink's username/password/token is fixed",
            )
        if status == 404:
            return SinkError(retryable=True, reason=f"{where}: not found (404): {msg}")
        retry_after = _retry_after(headers.get("Retry-After")) if headers else None
        return SinkError(
            retryable=True, reason=f"{where} answered {status}: {msg}", retry_after_s=retry_after
        )

    def _late_written(self, late: set[Entry]) -> None:
        """Note the (measurement, hour) that just got late points; roll up what is due when
        it has waited ``ROLLUP_DEBOUNCE_S``, or when this write had no late point (the
        backlog is done). Raises SinkError (retryable) when the server did not answer the
        rollups."""
        with self._due_lock:
            if late and not self._due:
                self._due_since = time.monotonic()
            new = not late <= self._due
            self._due |= late
            if not self._due:
                return
            waited = time.monotonic() - self._due_since >= ROLLUP_DEBOUNCE_S
        if new:
            self._persist()
        if waited or not late:
            try:
                self.flush_rollups()
            except StoreUnavailable as exc:
                raise SinkError(
                    retryable=True,
                    reason=f"rollup of late points failed, the batch comes again: {exc}",
                ) from exc

    def rollups_due(self) -> int:
        """How many hours got late points whose rollups have not been redone yet."""
        with self._due_lock:
            return len(latehours.hours_of(self._due))

    def flush_rollups(self, deadline: float | None = None) -> int:
        """Roll up again, once each, the hours that got points the CQs will not see (of the
        measurements that got them); returns how many hours. ``deadline``
        (``time.monotonic()``): no new statement after it, the hours left stay due. One
        flush at a time (a second caller waits for the first). Raises StoreUnavailable when
        the server does not answer (the hours stay due); a refused rollup is logged
        (retrying cannot help, the raw points are in)."""
        timeout = -1.0 if deadline is None else max(0.0, deadline - time.monotonic())
        if not self._flush_lock.acquire(timeout=timeout):
            return 0  # another flush holds them
        try:
            return self._flush(deadline)
        finally:
            with self._due_lock:
                self._inflight = set()
            self._flush_lock.release()
            self._persist()

    def _flush(self, deadline: float | None) -> int:
        """flush_rollups under its lock."""
        with self._due_lock:
            taken, self._due = set(self._due), set()
            self._inflight = set(taken)
        if not taken:
            return 0
        try:
            if not self.rollups_ready():
                return 0
        except StoreUnavailable:
            self._due_again(taken)
            raise
        # per measurement (latehours.statements): runs of consecutive hours (ROLLUP_SPAN_H at
        # most), each with the days that no later run of the measurement touches (their
        # daily rollups, once)
        runs: list[tuple[str | None, int, int, tuple[int, int]]] = []
        run_of: dict[Entry, int] = {}  # (measurement, hour) -> its run
        span = ROLLUP_SPAN_H[3600] * 3600 * NS
        for m, hours in latehours.statements(taken):
            chunks: list[list[int]] = []
            for h in hours:
                if chunks and chunks[-1][1] == h and h - chunks[-1][0] < span:
                    chunks[-1][1] = h + 3600 * NS
                else:
                    chunks.append([h, h + 3600 * NS])
            for i, (a, b) in enumerate(chunks):
                nxt = (
                    floor_to(chunks[i + 1][0], 86400) if i + 1 < len(chunks) else ceil_to(b, 86400)
                )
                run_of.update(((m, h), len(runs)) for h in range(a, b, 3600 * NS))
                runs.append((m, a, b, (floor_to(a, 86400), min(nxt, ceil_to(b, 86400)))))
        done: set[int] = set()  # hours rolled up (of one measurement or more)
        for k, (m, a, b, days) in enumerate(runs):
            ms = None if m is ALL else [m]

            def rest(k: int = k) -> list[Entry]:  # what this run and the later ones hold
                return [e for e in taken if run_of.get(e, run_of.get((ALL, e[1]), k)) >= k]

            if deadline is not None and time.monotonic() >= deadline:
                self._due_again(rest())
                break
            try:
                self.rollup(a, b, levels=(60, 3600), measurements=ms)
                if days[1] > days[0]:
                    self.rollup(days[0], days[1], levels=(86400,), measurements=ms)
            except StoreUnavailable:
                self._due_again(rest())
                raise
            except StoreError as exc:
                log.error("late points written, but their rollups were refused: %s", exc)
            except BaseException:  # a bug, an interrupted thread: the hours stay due
                self._due_again(rest())
                raise
            done.update(range(a, b, 3600 * NS))
        return len(done)

    def _persist(self) -> None:
        """Write what is due (and what is being rolled up) to the due file when it changed
        (:func:`dcim.storage.latehours.save`: atomic)."""
        if self._due_file is None:
            return
        # one writer at a time (the forwarder's thread and a reader's ``flush_rollups`` both
        # persist): the file written last holds the latest snapshot, and ``_saved`` says so
        with self._persist_lock:
            with self._due_lock:
                now = frozenset(self._due | self._inflight)
            if now == self._saved:
                return
            try:
                latehours.save(self._due_file, now)
                self._saved = now
            except OSError as exc:
                log.warning("cannot keep the hours due for rollup in %s: %s", self._due_file, exc)

    def _due_again(self, due: Iterable[Entry]) -> None:
        with self._due_lock:
            if not self._due:
                self._due_since = time.monotonic()
            self._due.update(due)

    # -- rollups -------------------------------------------------------------------------
    def policies(self) -> dict[str, tuple[int | None, bool]]:
        """Retention policies of the database: name -> (duration in s or None for INF,
        is the default). Cached a few minutes; {} when the database does not exist."""
        now = time.monotonic()
        if now - self._policies_at < _POLICY_TTL_S:
            return self._policies
        out: dict[str, tuple[int | None, bool]] = {}
        q = f"SHOW RETENTION POLICIES ON {quote_ident(self.sink.database)}"
        for s in self.query(q, write=True):
            for row in s.get("values", []):
                rp = dict(zip(s["columns"], row, strict=True))
                out[str(rp["name"])] = (go_duration_s(str(rp["duration"])), bool(rp["default"]))
        self._policies, self._policies_at = out, now
        return out

    def rollups_ready(self) -> bool:
        """Whether ``dcim db init`` made the raw and rollup policies (v1 API only). Raises
        StoreUnavailable when the server does not answer."""
        if self.sink.api != "v1":
            return False
        try:
            have = self.policies()
        except StoreUnavailable:
            raise
        except StoreError as exc:  # e.g. not allowed to list them: no rollups
            log.debug("no rollups: %s", exc)
            self._policies, self._policies_at = {}, time.monotonic()
            return False
        return {self.sink.raw_policy, *QUERY_RP} <= have.keys()

    def rollup(
        self,
        start_ns: int,
        end_ns: int,
        levels: Sequence[int] = tuple(ROLLUP_RP),
        measurements: Sequence[str] | None = None,
    ) -> int:
        """(Re)compute the 1-minute and 1-hour rollups of the hours that ``[start_ns,
        end_ns)`` touches, and the 1-day rollups of the (UTC) days it touches where ``rp_1d``
        exists, from the raw points (``ROLLUP_SPAN_H`` hours per statement); the CQ body over
        a past range; ``levels``: only those (s); ``measurements``: only those, a statement
        each (None: all, in one statement). Returns the number of rollup points written."""
        written = 0
        t0 = time.monotonic()
        have = self.policies() if 86400 in levels else {}
        for level in levels:
            rp = ROLLUP_RP[level]
            if rp not in QUERY_RP and rp not in have:
                continue  # rp_1d: a database set up before it existed (dcim db init adds it)
            step = max(level, 3600)
            lo, end = floor_to(start_ns, step), ceil_to(end_ns, step)
            for a in range(lo, end, ROLLUP_SPAN_H[level] * 3600 * NS):
                b = min(end, a + ROLLUP_SPAN_H[level] * 3600 * NS)
                # one statement per measurement: cheaper than one over several (see
                # latehours.statements); None: all of them, /.*/ as the CQs do
                for m in [None] if measurements is None else measurements:
                    self.rollup_statements += 1
                    q = rollup_select(self.sink, level, a, b, None if m is None else [m])
                    for s in self.query(q, write=True):
                        written += sum(int(v[1]) for v in s.get("values", []))
        self.rollup_seconds += time.monotonic() - t0
        return written

    def rollup_days(self, start_ns: int, end_ns: int) -> int:
        """The daily rollups (``rp_1d``) of the UTC days ``[start_ns, end_ns)`` touches, from
        the raw points, but of the measurements with hours due there (their flush rolls them
        up): for a writer that wrote the hours' own rollups (:meth:`supply_rollups`). Returns
        the points written."""
        day = 86400 * NS
        with self._due_lock:
            due: dict[int, set[str | None]] = {}
            for m, h in self._due | self._inflight:
                due.setdefault(floor_to(h, 86400), set()).add(m)
        known: list[str] | None = None
        written = 0
        for d in range(floor_to(start_ns, 86400), ceil_to(end_ns, 86400), day):
            ms = due.get(d)
            if not ms:
                written += self.rollup(d, d + day, levels=(86400,))
            elif ALL not in ms:  # the other measurements of the database
                if known is None:
                    known = self.measurements()
                others = [m for m in known if m not in ms and m != MARKER]  # (rp_1h only)
                if others:
                    written += self.rollup(d, d + day, levels=(86400,), measurements=others)
        return written

    def measurements(self) -> list[str]:
        """The measurements of the database (SHOW MEASUREMENTS)."""
        series = self.query("SHOW MEASUREMENTS", write=True)
        return [str(v[0]) for s in series for v in s.get("values", [])]

    def complete_from(self) -> int | None:
        """Since when the CQs have filled the rollups (the ``dcim_rollups`` marker written by
        ``dcim db init``), None without a marker. Cached like the policies."""
        now = time.monotonic()
        if now - self._marker_at < _POLICY_TTL_S:
            return self._marker
        src = f"{quote_ident(ROLLUP_RP[3600])}.{quote_ident(MARKER)}"
        rp = quote_string(self.sink.raw_policy)
        q = f'SELECT LAST({quote_ident(MARKER_FIELD)}) FROM {src} WHERE "rp" = {rp}'
        found = [v for s in self.query(q, write=True) for _, v in s.get("values", [])]
        self._marker = int(found[0]) if found and isinstance(found[0], int | float) else None
        self._marker_at = now
        return self._marker

    def _rollup_before(
        self, fn: Agg, every_s: int | None, start_ns: int | None = None
    ) -> int | None:
        """Answer from the rollups before this time (None: raw points only). Before the raw
        retention the raw points are gone: rollups. Up to two hours ago (the CQs are done)
        when the marker says the rollups are complete over the queried range or over all
        the raw points kept."""
        if fn == "integral":
            return None
        if self.rollup_before_ns is not None:
            return self.rollup_before_ns
        if not self.rollups_ready():
            return None
        now = time.time_ns()
        raw_s = self.policies()[self.sink.raw_policy][0]
        horizon = None if raw_s is None else raw_horizon(now, raw_s)
        frm = self.complete_from()
        if frm is not None and (
            (start_ns is not None and start_ns >= frm) or (horizon is not None and frm <= horizon)
        ):
            return max(horizon or 0, floor_to(now - CQ_DONE_NS, 3600))
        return horizon  # None: raw points kept forever, they answer

    def _pieces(
        self,
        pieces: list[tuple[int, int, int]],
        *,
        measurement: str,
        field: str,
        fn: Agg,
        every_s: int | None,
        where: Mapping[str, str] | None,
        group_by: Sequence[str],
    ) -> list[list[Part]]:
        out: list[list[Part]] = []
        for lo, hi, level in pieces:
            rp, sel = self.sink.retention_policy, None
            if level and every_s == level and fn in _AS_STORED:
                out.append(self._stored(lo, hi, level, measurement, field, fn, where, group_by))
                continue
            if level:
                rp = ROLLUP_RP[level]
                f = {k: quote_ident(f"{k}_{field}") for k in ("count", "sum")}
                sel = {
                    "count": f"SUM({f['count']})",
                    "mean": f"SUM({f['sum']}), SUM({f['count']})",
                }.get(fn, f"{fn.upper()}({quote_ident(f'{fn}_{field}')})")
            elif fn == "mean":
                sel = f"SUM({quote_ident(field)}), COUNT({quote_ident(field)})"
            q = build_query(measurement=measurement, field=field, start_ns=lo, end_ns=hi,
                            fn=fn, every_s=every_s, where=where, group_by=group_by,
                            retention_policy=rp, select=sel)  # fmt: skip
            part: list[Part] = []
            for s in self.query(q):
                tags = s.get("tags") or {}
                g = tuple(str(tags.get(k, "")) for k in group_by)
                for t, v, *n in s.get("values", []):
                    if isinstance(v, bool | int | float) and (not n or n[0]):
                        part.append((g, int(t), float(v), float(n[0]) if n else 1.0))
            out.append(part)
        return out

    def _stored(
        self,
        lo: int,
        hi: int,
        level: int,
        measurement: str,
        field: str,
        fn: Agg,
        where: Mapping[str, str] | None,
        group_by: Sequence[str],
    ) -> list[Part]:
        """Windows as long as the rollup's: its points as stored (no GROUP BY time, which costs
        InfluxDB 1.x about three times more), the series of a group combined here."""
        cols = _AS_STORED[fn]
        sel = ", ".join(quote_ident(f"{c}_{field}") for c in cols)
        q = build_query(measurement=measurement, field=field, start_ns=lo, end_ns=hi, fn=fn,
                        where=where, group_by=group_by, retention_policy=ROLLUP_RP[level],
                        select=sel)  # fmt: skip
        acc: dict[tuple[tuple[str, ...], int], list[float]] = {}
        for s in self.query(q):
            tags = s.get("tags") or {}
            g = tuple(str(tags.get(k, "")) for k in group_by)
            for t, v, *n in s.get("values", []):
                if not isinstance(v, bool | int | float) or (n and not n[0]):
                    continue
                key, w = (g, int(t)), float(n[0]) if n else 1.0
                cur = acc.get(key)
                if cur is None:
                    acc[key] = [float(v), w]
                elif fn == "min":
                    cur[0] = min(cur[0], float(v))
                elif fn == "max":
                    cur[0] = max(cur[0], float(v))
                else:  # sum, count, mean: sums and counts add
                    cur[0] += float(v)
                    cur[1] += w
        return [(g, t, v, w) for (g, t), (v, w) in acc.items()]

    # -- querying ------------------------------------------------------------------------
    def query(self, q: str, *, write: bool = False) -> list[dict[str, Any]]:
        """Run InfluxQL; returns the ``series`` of every result (chunks merged). Raises
        StoreUnavailable when the server does not answer, StoreError when it refuses."""
        params = {"q": q, "db": self.sink.database, "epoch": "ns"}
        hdrs = {}
        if not write:
            params.update(chunked="true", chunk_size="10000")
            if msgpack is not None:  # half influxd's time to answer a month of windows
                hdrs["Accept"] = "application/x-msgpack"
        try:
            status, text, headers = self._request("POST", "/query", params, headers=hdrs)
        except SinkError as exc:
            raise StoreUnavailable(exc.reason) from exc
        docs = _documents(text, headers)
        if status != 200:
            msg = next((str(d["error"]) for d in docs if "error" in d), None)
            msg = msg or text.decode("utf-8", "replace").strip()
            err = StoreUnavailable if status >= 500 else StoreError
            raise err(f"InfluxDB query failed ({status}): {msg}: {q}")
        series: list[dict[str, Any]] = []
        for doc in docs:
            if "error" in doc:
                raise StoreError(f"InfluxDB query failed: {doc['error']}: {q}")
            for result in doc.get("results", []):
                if "error" in result:
                    if "database not found" in result["error"]:
                        return []  # nothing written yet
                    # The server stopping under the query: try again later, not a refusal.
                    err = StoreUnavailable if "shutdown" in result["error"] else StoreError
                    raise err(f"InfluxDB query failed: {result['error']}: {q}")
                series.extend(result.get("series", []))
        return series

    def ensure_database(self) -> None:
        """CREATE DATABASE (a no-op when it exists)."""
        self.query(f"CREATE DATABASE {quote_ident(self.sink.database)}", write=True)

    def aggregate(
        self,
        *,
        measurement: str,
        field: str,
        start_ns: int,
        end_ns: int,
        fn: Agg,
        every_s: int | None = None,
        where: Mapping[str, str] | None = None,
        group_by: Sequence[str] = (),
    ) -> list[Row]:
        check_query(fn, start_ns, end_ns, every_s)
        if self._due:  # this store's own late points: rolled up before it reads the rollups
            self.flush_rollups()
        before = self._rollup_before(fn, every_s, start_ns)
        pieces = plan_pieces(fn, start_ns, end_ns, every_s, before)
        if len(pieces) > 1 or pieces[0][2]:
            parts = self._pieces(pieces, measurement=measurement, field=field, fn=fn,
                                 every_s=every_s, where=where, group_by=group_by)  # fmt: skip
            return merge_parts(fn, every_s, start_ns, group_by, parts)
        q = build_query(
            measurement=measurement,
            field=field,
            start_ns=start_ns,
            end_ns=end_ns,
            fn=fn,
            every_s=every_s,
            where=where,
            group_by=group_by,
            retention_policy=self.sink.retention_policy,
        )
        point_time = every_s is not None or fn in ("first", "last")
        rows: list[Row] = []
        for s in self.query(q):
            tags = s.get("tags") or {}
            gtags = {k: str(tags.get(k, "")) for k in group_by}
            for t, v in s.get("values", []):
                if isinstance(v, bool):
                    value: float | None = float(v)
                elif isinstance(v, int | float):
                    value = float(v)
                else:
                    continue  # None, or a string from first/last: numeric values only
                rows.append(Row(gtags, int(t) if point_time else start_ns, value))
        return sort_rows(rows, group_by)

    def window_means(
        self,
        *,
        measurement: str,
        fields: Sequence[str],
        start_ns: int,
        end_ns: int,
        every_s: int,
        where: Mapping[str, str],
    ) -> tuple[list[int], list[list[float]]]:
        """The windows (starts, ascending) where every one of ``fields`` has a mean, and
        those means, one list per field: the same floats as ``aggregate(fn="mean")`` per
        field, kept where all have a window. When the rollups of ``every_s`` answer the
        whole range (a heat meter's 1-minute means over a month, hourly over a year): one
        statement for all the fields, their points as stored; otherwise one ``aggregate``
        per field."""
        check_query("mean", start_ns, end_ns, every_s)
        if self._due:  # this store's own late points: rolled up before it reads the rollups
            self.flush_rollups()
        before = self._rollup_before("mean", every_s, start_ns)
        pieces = plan_pieces("mean", start_ns, end_ns, every_s, before)
        if len(pieces) != 1 or pieces[0][2] != every_s or every_s not in ROLLUP_RP:
            return means_by_field(
                self, measurement=measurement, fields=fields, start_ns=start_ns,
                end_ns=end_ns, every_s=every_s, where=where,
            )  # fmt: skip
        lo, hi, level = pieces[0]
        sel = ", ".join(f"{quote_ident('sum_' + f)}, {quote_ident('count_' + f)}" for f in fields)
        q = build_query(measurement=measurement, field=fields[0], start_ns=lo, end_ns=hi,
                        fn="mean", where=where, retention_policy=ROLLUP_RP[level],
                        select=sel)  # fmt: skip
        rows = [row for s in self.query(q) for row in s.get("values", [])]
        cols = [(1 + 2 * i, 2 + 2 * i) for i in range(len(fields))]
        times = [int(row[0]) for row in rows]
        if all(a < b for a, b in zip(times, times[1:], strict=False)) and all(
            row[iw] and isinstance(row[iv], bool | int | float) for iv, iw in cols for row in rows
        ):  # the usual case: one series, every field in every window: no sums to add
            return times, [[float(row[iv]) / float(row[iw]) for row in rows] for iv, iw in cols]
        # as _stored: per field and window, the sums and counts of the series added
        acc: list[dict[int, list[float]]] = [{} for _ in fields]
        for t, row in zip(times, rows, strict=True):
            for by_t, (iv, iw) in zip(acc, cols, strict=True):
                v, w = row[iv], row[iw]
                if not isinstance(v, bool | int | float) or not w:
                    continue
                cur = by_t.get(t)
                if cur is None:
                    by_t[t] = [float(v), float(w)]
                else:
                    cur[0] += float(v)
                    cur[1] += float(w)
        return align_windows([[(t, v / w) for t, (v, w) in sorted(d.items())] for d in acc])

    def close_within(self, timeout_s: float) -> None:
        """Close for a collector that stops within a bound: with a due file, the hours due
        are left in it for the next start (a rollup statement can take longer than the whole
        bound: seconds per hour of a site's points); without, :meth:`close` bounded."""
        if self._due_file is None:
            self.close(timeout_s=timeout_s)
            return
        self._persist()
        with self._due_lock:
            left = latehours.hours_of(self._due | self._inflight)
        if left:
            log.info(
                "rollups of %d hour(s) with late points (%s to %s UTC) left for the next start "
                "(kept in %s)",
                len(left),
                _utc(min(left)),
                _utc(max(left) + 3600 * NS),
                self._due_file,
            )
        self._close_connections()

    def close(self, *, timeout_s: float | None = None) -> None:
        """Roll up the hours still due (best effort: logged when the server is gone, or when
        ``timeout_s`` ends it first), close this thread's connection."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        exc: Exception | None = None
        try:
            self.flush_rollups(deadline)
        except StoreError as err:
            exc = err
        with self._due_lock:
            left = latehours.hours_of(self._due | self._inflight)
        if left:
            first, last = min(left), max(left)
            kept = (
                f"kept in {self._due_file} for the next start"
                if self._due_file is not None
                else "the rollups of those hours lack them"
            )
            log.warning(
                "rollups of %d hour(s) with late points (%s to %s UTC) not redone (%s); their "
                "raw points are written; %s",
                len(left),
                _utc(first),
                _utc(last + 3600 * NS),
                exc or "stopped before the end",
                kept,
            )
        self._close_connections()
