"""Embedded store: SQLite in WAL mode, so ``dcim kpi`` can read while the collector writes.

Schema: ``series`` (measurement + canonical JSON of the tags), ``field_key`` (names), and
``point(series_id, field_id, time_ns, value)`` as a WITHOUT ROWID table keyed by all three,
so a write of the same series + field + time replaces (idempotent replays) and a query
reads one contiguous key range per series. Values keep their type (REAL, INTEGER, TEXT;
booleans as 0/1). Series are matched to ``where``/``group_by`` in Python (a few hundred
rows); the points are aggregated in SQL, the integral with ``LAG()``.

``synchronous=FULL``: the spool deletes what this store acknowledged, so an acknowledged
write must survive a power cut too.

Rollups: ``rollup_1m``, ``rollup_1h`` and ``rollup_1d`` (UTC days, computed from the hours
as each hour is rolled up) hold per series, field and window the count of
values, and over the numeric ones their count, sum, min, max and the first and last value
with its time, so every aggregate but the integral is exact from them. :meth:`maintain`
fills them for closed hours up to a watermark (``rollup_state.rolled_to_ns``); a write
before the watermark marks its hour in ``rollup_dirty`` (same transaction) and ``maintain``
redoes it. ``aggregate`` uses the rollups before the watermark and the first dirty hour.
Raw points older than ``retention_raw_days`` are deleted by ``maintain`` (whole UTC days,
rolled up ones only); a point written later than that is dropped by the next ``maintain``,
as InfluxDB drops points beyond its retention. The 1-minute rollups are kept
``retention_1m_days`` (``rollup_state.minute_from_ns``: before it, ``aggregate`` reads the
coarser rollups or the raw points), the hourly and daily ones for ever.

Compression (schema version 2, ``PRAGMA user_version``): ``maintain`` packs the raw points
of each rolled-up UTC day into one ``chunk`` row per series and field
(:mod:`dcim.storage.chunks`: 1-3 bytes a point for register values, ~7 for the twin's
exact floats, against ~29 as rows), some series per transaction so the writer waits little.
Text values stay rows. A query over packed days decodes the chunks it needs into a
temporary table beside the rows and runs the same SQL on it. A late point is a row beside
the chunk until ``maintain`` redoes its hour: its series' chunk of that day goes back into
rows, the hour is rolled up, the day packed again (the chunk rewritten). A store of
version 1 is upgraded on open (the table is added; ``maintain`` packs its days, oldest
first). The file gives back the pages freed by packing and retention
(:mod:`dcim.storage.space`).
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import repeat
from pathlib import Path
from typing import Any

from dcim.reading import Reading
from dcim.storage import chunks, space
from dcim.storage.base import (
    NS,
    ROLLUP_LEVELS,
    Agg,
    Part,
    Row,
    SinkError,
    StoreBusyError,
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

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY, measurement TEXT NOT NULL, tags TEXT NOT NULL,
    UNIQUE (measurement, tags)
);
CREATE TABLE IF NOT EXISTS field_key (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS point (
    series_id INTEGER NOT NULL, field_id INTEGER NOT NULL, time_ns INTEGER NOT NULL, value ANY,
    PRIMARY KEY (series_id, field_id, time_ns)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS chunk (
    series_id INTEGER NOT NULL, field_id INTEGER NOT NULL, day_ns INTEGER NOT NULL,
    n INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (series_id, field_id, day_ns)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS chunk_time (
    series_id INTEGER NOT NULL, day_ns INTEGER NOT NULL, tid INTEGER NOT NULL,
    data BLOB NOT NULL, PRIMARY KEY (series_id, day_ns, tid)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rollup_state (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS rollup_dirty (hour_ns INTEGER PRIMARY KEY);
""" + "".join(
    f"""CREATE TABLE IF NOT EXISTS {t} (
    series_id INTEGER NOT NULL, field_id INTEGER NOT NULL, time_ns INTEGER NOT NULL,
    n INTEGER NOT NULL, n_num INTEGER NOT NULL, total ANY, vmin ANY, vmax ANY,
    first_t INTEGER, first_v ANY, last_t INTEGER, last_v ANY,
    PRIMARY KEY (series_id, field_id, time_ns)
) WITHOUT ROWID;
"""
    for t in ("rollup_1m", "rollup_1h", "rollup_1d")
)
SCHEMA_VERSION = 2  # 2: raw points of rolled-up hours packed in ``chunk``; auto_vacuum
_TABLE = {60: "rollup_1m", 3600: "rollup_1h"}  # from the raw points
DAY_TABLE = "rollup_1d"  # from rollup_1h
LEVELS = (86400, *ROLLUP_LEVELS)  # coarsest first
HOUR = 3600 * NS
DAY = 86400 * NS
_GRACE_NS = 300 * NS  # maintain() rolls up hours that ended at least this long ago
_CHUNK_HOURS = 24  # hours rolled up per transaction (the writer waits meanwhile)
_PACK_SERIES = 8  # series packed into chunks per transaction (a day of ~5 fields each)
_NUMERIC = "typeof(p.value) IN ('integer', 'real')"
# an aggregate over one rollup window of one series, from its row
_WINDOW_OF_ROLLUP = {
    "mean": "r.total * 1.0 / r.n_num",
    "sum": "r.total",
    "count": "r.n",
    "min": "r.vmin",
    "max": "r.vmax",
}
_SIMPLE = {"mean": "AVG", "min": "MIN", "max": "MAX", "sum": "SUM", "count": "COUNT"}


BUSY_TIMEOUT_MS = 10_000  # how long a write waits for another process's transaction
_BY_TAGS_MAX = 100_000  # series remembered by their tags' order (see SqliteStore.write)


def _tags_key(tags: Mapping[str, str]) -> str:
    # Empty tag values are absent tags (as in InfluxDB).
    return json.dumps({k: v for k, v in sorted(tags.items()) if v != ""}, separators=(",", ":"))


class SqliteStore:
    def __init__(
        self,
        path: str | Path,
        *,
        read_only: bool = False,
        retention_raw_days: int | None = None,
        retention_1m_days: int | None = None,
    ):
        self.path = Path(path)
        self.read_only = read_only
        self.retention_raw_days = retention_raw_days
        self.retention_1m_days = retention_1m_days
        self.space_note: str | None = None  # why the file cannot shrink (to log), see space
        try:
            if read_only:
                if not self.path.exists():
                    raise StoreError(f"no embedded store at {self.path}: nothing collected yet")
                self._con = sqlite3.connect(
                    f"{self.path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False
                )
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._con = sqlite3.connect(
                    self.path, isolation_level=None, check_same_thread=False
                )
                fresh = not _has_table(self._con, "point")
                if fresh:  # pages freed by pruning and packing go back to the file system
                    self._con.execute("PRAGMA auto_vacuum=INCREMENTAL")
                self._con.execute("PRAGMA journal_mode=WAL")
                self._con.execute("PRAGMA synchronous=FULL")
                had_days = fresh or _has_table(self._con, DAY_TABLE)
                version = self._con.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise StoreError(
                        f"embedded store {self.path} has schema version {version}, newer than "
                        f"this dcim's {SCHEMA_VERSION}: upgrade dcim to open it"
                    )
                self._con.executescript(_SCHEMA)
                self._con.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                self.space_note = space.make_incremental(self._con, self.path)
                if self.space_note:
                    log.warning("embedded store: %s", self.space_note)
                if not had_days:  # a store from before the daily rollups: from its hours
                    _rollup_days(self._con, -(2**62), 2**62)
            self._con.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            # An older store opened read-only may lack the daily rollups: not used then.
            self._levels = LEVELS if _has_table(self._con, DAY_TABLE) else ROLLUP_LEVELS
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open embedded store {self.path}: {exc}") from exc
        self._lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []  # read connections, see _reader()
        self._series: dict[tuple[str, str], int] = {}
        # the same series by its tags as a reading carries them (in their order): the JSON
        # key of the tags (sorted, compact) is built once per series, not per reading
        self._by_tags: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
        self._fields: dict[str, int] = {}

    # -- writing -----------------------------------------------------------------------
    def _series_id(self, measurement: str, tags_key: str) -> int:
        key = (measurement, tags_key)
        sid = self._series.get(key)
        if sid is None:
            self._con.execute("INSERT OR IGNORE INTO series (measurement, tags) VALUES (?, ?)", key)
            sid = int(
                self._con.execute(
                    "SELECT id FROM series WHERE measurement=? AND tags=?", key
                ).fetchone()[0]
            )
            self._series[key] = sid
        return sid

    def _field_id(self, name: str) -> int:
        fid = self._fields.get(name)
        if fid is None:
            self._con.execute("INSERT OR IGNORE INTO field_key (name) VALUES (?)", (name,))
            fid = int(
                self._con.execute("SELECT id FROM field_key WHERE name=?", (name,)).fetchone()[0]
            )
            self._fields[name] = fid
        return fid

    def write(self, readings: Sequence[Reading], *, wait_s: float | None = None) -> None:
        """Write the readings in one transaction (durable at its commit). ``wait_s``: how
        long to wait for the store when another writer holds it (this process's maintenance,
        another process's transaction), else :class:`StoreBusyError`; None: as long as it
        takes (the busy timeout, 10 s, for another process)."""
        if self.read_only:
            raise SinkError(retryable=False, reason=f"{self.path} is opened read-only")
        if not self._lock.acquire(timeout=-1 if wait_s is None else wait_s):
            raise StoreBusyError(
                retryable=True, reason=f"embedded store busy: in use for more than {wait_s} s"
            )
        try:
            self._write(readings, wait_s)
        finally:
            self._lock.release()

    def _write(self, readings: Sequence[Reading], wait_s: float | None) -> None:
        # under self._lock
        if wait_s is not None:
            self._con.execute(f"PRAGMA busy_timeout={int(wait_s * 1000)}")
        try:
            self._con.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:  # locked for longer than busy_timeout
            raise StoreBusyError(retryable=True, reason=f"embedded store busy: {exc}") from exc
        finally:
            if wait_s is not None:
                self._con.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        try:
            wm = self._con.execute(
                "SELECT value FROM rollup_state WHERE name = 'rolled_to_ns'"
            ).fetchone()
            rows = []
            by_tags = self._by_tags
            if len(by_tags) > _BY_TAGS_MAX:
                by_tags.clear()
            for r in readings:
                tkey = (r.measurement, tuple(r.tags.items()))
                sid = by_tags.get(tkey)
                if sid is None:
                    sid = by_tags[tkey] = self._series_id(r.measurement, _tags_key(r.tags))
                for name, value in r.fields.items():
                    if isinstance(value, float) and not math.isfinite(value):
                        raise SinkError(
                            retryable=False,
                            reason=f"{value} in {r.measurement}.{name} "
                            f"(device {r.tags.get('device', '?')!r})",
                        )
                    rows.append((sid, self._field_id(name), r.time_ns, value))
            self._con.executemany("INSERT OR REPLACE INTO point VALUES (?, ?, ?, ?)", rows)
            if wm is not None:  # late points: their hours' rollups are redone
                late = {(floor_to(r.time_ns, 3600),) for r in readings if r.time_ns < wm[0]}
                self._con.executemany("INSERT OR IGNORE INTO rollup_dirty VALUES (?)", late)
            self._con.execute("COMMIT")
        except BaseException as exc:
            if self._con.in_transaction:  # a failed COMMIT may have ended it already
                self._con.execute("ROLLBACK")
            self._series.clear()  # ids created in the rolled-back transaction are gone
            self._by_tags.clear()
            self._fields.clear()
            if isinstance(exc, SinkError):
                raise
            if isinstance(exc, sqlite3.OperationalError | OSError):  # disk full, I/O
                raise SinkError(retryable=True, reason=f"embedded store: {exc}") from exc
            if isinstance(exc, sqlite3.Error | TypeError | ValueError):
                raise SinkError(retryable=False, reason=f"embedded store: {exc}") from exc
            raise

    # -- querying ----------------------------------------------------------------------
    @contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        """A read-only connection of its own for one query, so that queries from several
        threads run side by side (SQLite releases the GIL; WAL lets readers run beside the
        writer); idle ones are kept for the next query."""
        try:
            con = self._idle.pop()
        except IndexError:
            try:
                con = sqlite3.connect(
                    f"{self.path.resolve().as_uri()}?mode=ro",
                    uri=True,
                    isolation_level=None,
                    check_same_thread=False,
                )
                con.execute("PRAGMA busy_timeout=10000")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read embedded store {self.path}: {exc}") from exc
        try:
            yield con
        finally:
            self._idle.append(con)

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
        where = dict(where or {})
        with self._reader() as con:
            con.execute("BEGIN")  # one snapshot: the series, the watermark and the pieces
            try:
                return self._answer(
                    con, measurement, field, start_ns, end_ns, fn, every_s, where, group_by
                )
            finally:
                con.execute("COMMIT")

    def _answer(
        self,
        con: sqlite3.Connection,
        measurement: str,
        field: str,
        start_ns: int,
        end_ns: int,
        fn: Agg,
        every_s: int | None,
        where: dict[str, str],
        group_by: Sequence[str],
    ) -> list[Row]:
        fid_row = con.execute("SELECT id FROM field_key WHERE name=?", (field,)).fetchone()
        series = con.execute(
            "SELECT id, tags FROM series WHERE measurement=?", (measurement,)
        ).fetchall()
        if fid_row is None or not series:
            return []
        fid = fid_row[0]
        groups: list[tuple[str, ...]] = []
        index: dict[tuple[str, ...], int] = {}
        pairs: list[tuple[int, int]] = []
        for sid, tags_json in series:
            tags = json.loads(tags_json)
            if any(tags.get(k, "") != v for k, v in where.items()):
                continue
            g = tuple(tags.get(k, "") for k in group_by)
            pairs.append((sid, index.setdefault(g, len(groups))))
            if index[g] == len(groups):
                groups.append(g)
        if not pairs:
            return []
        values = ",".join(f"({int(sid)},{int(grp)})" for sid, grp in pairs)

        def run(sql: str, lo: int, hi: int) -> list[Any]:
            if sql.startswith("WITH "):  # more common table expressions after g
                sql = ", " + sql.removeprefix("WITH ")
            if "point" in sql and _unpack_for_query(con, values, fid, lo, hi):
                sql = sql.replace("JOIN point ", "JOIN temp.qpoint ")
                sql = sql.replace("FROM point ", "FROM temp.qpoint ")
            full = f"WITH g(sid, grp) AS (VALUES {values}) {sql}"
            return con.execute(full, {"fid": fid, "start": lo, "end": hi}).fetchall()

        pieces = self._plan(con, fn, start_ns, end_ns, every_s)
        if (
            len(pieces) == 1
            and pieces[0][2] == every_s
            and fn in _WINDOW_OF_ROLLUP
            and len(pairs) == len(groups)
        ):
            # One rollup window per output window and one series per group (a meter's
            # 1-minute means over a month): the rows as stored, in key order, no grouping.
            lo, hi, level = pieces[0]
            table = _TABLE.get(level, DAY_TABLE)
            sql = (
                f"SELECT g.grp, r.time_ns, {_WINDOW_OF_ROLLUP[fn]} FROM g JOIN {table} r "
                "ON r.series_id = g.sid AND r.field_id = :fid AND r.time_ns >= :start "
                "AND r.time_ns < :end" + ("" if fn == "count" else " AND r.n_num > 0")
            )
            tags = [dict(zip(group_by, grp, strict=True)) for grp in groups]
            by_group = sorted(range(len(groups)), key=groups.__getitem__)
            res = run(sql, lo, hi)
            if len(groups) == 1:
                tg = tags[0]
                return [Row(tg, t, float(v)) for _, t, v in res]
            out: list[list[Row]] = [[] for _ in groups]
            for g, t, v in res:
                out[g].append(Row(tags[g], t, float(v)))
            return [r for g in by_group for r in out[g]]
        if len(pieces) == 1 and not pieces[0][2]:
            result = run(_query(fn, every_s, start_ns), start_ns, end_ns)
        else:
            parts: list[list[Part]] = []
            for lo, hi, level in pieces:
                res = run(_piece_query(fn, every_s, lo, level), lo, hi)
                parts.append([(groups[g], int(t), v, n) for g, t, v, n in res if v is not None])
        if len(pieces) > 1 or pieces[0][2]:
            return merge_parts(fn, every_s, start_ns, group_by, parts)
        rows = [
            Row(
                dict(zip(group_by, groups[grp], strict=True)),
                int(t),
                None if v is None else float(v),
            )
            for grp, t, v in result
        ]
        return sort_rows(rows, group_by)

    def _plan(
        self, con: sqlite3.Connection, fn: Agg, start_ns: int, end_ns: int, every_s: int | None
    ) -> list[tuple[int, int, int]]:
        """The pieces (:func:`plan_pieces`) that answer ``fn`` over [start, end)."""
        before = None if fn == "integral" else self._rollup_before(start_ns, end_ns, con)
        minute_from = _state(con, "minute_from_ns") if before is not None else None
        if minute_from is not None and start_ns < minute_from:
            # the 1-minute rollups are kept from minute_from on only
            cut = min(end_ns, minute_from)
            coarse = tuple(lv for lv in self._levels if lv != 60)
            pieces = plan_pieces(fn, start_ns, cut, every_s, before, coarse)
            pieces += plan_pieces(fn, cut, end_ns, every_s, before, self._levels)
        else:
            pieces = plan_pieces(fn, start_ns, end_ns, every_s, before, self._levels)
        return pieces

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
        field, kept where all have a window. When one series matches and the rollups of
        ``every_s`` answer the whole range (a heat meter's 1-minute means over a month,
        hourly over a year), read as stored, in one snapshot, with no row objects (a month
        is 45,000 windows per field); otherwise one ``aggregate`` per field."""
        check_query("mean", start_ns, end_ns, every_s)
        with self._reader() as con:
            con.execute("BEGIN")
            try:
                got = self._stored_means(con, measurement, fields, start_ns, end_ns, every_s, where)
            finally:
                con.execute("COMMIT")
        if got is not None:
            return got
        return means_by_field(
            self, measurement=measurement, fields=fields, start_ns=start_ns, end_ns=end_ns,
            every_s=every_s, where=where,
        )  # fmt: skip

    def _stored_means(
        self,
        con: sqlite3.Connection,
        measurement: str,
        fields: Sequence[str],
        start_ns: int,
        end_ns: int,
        every_s: int,
        where: Mapping[str, str],
    ) -> tuple[list[int], list[list[float]]] | None:
        """:meth:`window_means` from one rollup table as stored; None if it cannot."""
        pieces = self._plan(con, "mean", start_ns, end_ns, every_s)
        if any(level != every_s for _, _, level in pieces) or every_s not in _TABLE:
            return None
        if any(a[1] != b[0] for a, b in zip(pieces, pieces[1:], strict=False)):
            return None
        sids = [
            sid
            for sid, tags_json in con.execute(
                "SELECT id, tags FROM series WHERE measurement=?", (measurement,)
            )
            if all(json.loads(tags_json).get(k, "") == v for k, v in where.items())
        ]
        q = "SELECT id FROM field_key WHERE name=?"
        fids = [con.execute(q, (f,)).fetchone() for f in fields]
        if len(sids) != 1 or any(f is None for f in fids):
            return None  # several series to combine, or a field never written
        sql = (
            f"SELECT r.time_ns, {_WINDOW_OF_ROLLUP['mean']} FROM {_TABLE[every_s]} r "
            "WHERE r.series_id = ? AND r.field_id = ? AND r.time_ns >= ? AND r.time_ns < ? "
            "AND r.n_num > 0 ORDER BY r.time_ns"
        )
        lo, hi = pieces[0][0], pieces[-1][1]
        return align_windows(
            [con.execute(sql, (sids[0], f[0], lo, hi)).fetchall() for f in fids if f]
        )

    def _rollup_before(
        self, start_ns: int, end_ns: int, con: sqlite3.Connection | None = None
    ) -> int | None:
        """The rollups are complete before this time (the watermark, or the first hour with
        late points not yet redone); None: no rollups. ``con``: the caller's reader (default:
        the store's own connection)."""
        con = self._con if con is None else con
        try:
            state = dict(con.execute("SELECT name, value FROM rollup_state"))
            wm = state.get("rolled_to_ns")
            if wm is None:
                return None
            lo = max(floor_to(start_ns, 3600), state.get("raw_from_ns", start_ns))
            dirty = con.execute(
                "SELECT MIN(hour_ns) FROM rollup_dirty WHERE hour_ns >= ? AND hour_ns < ?",
                (lo, end_ns),
            ).fetchone()[0]
        except sqlite3.OperationalError:  # a store from before the rollups, opened read-only
            return None
        return int(wm) if dirty is None else min(int(wm), int(dirty))

    # -- rollups and retention ---------------------------------------------------------------
    def rollup_status(self) -> dict[str, int | None]:
        """``rolled_to_ns`` (rollups complete before, None: never maintained),
        ``raw_from_ns`` (raw rows deleted before, None: none yet), ``dirty_hours``."""
        with self._lock:
            state = dict(self._con.execute("SELECT name, value FROM rollup_state"))
            dirty = self._con.execute("SELECT COUNT(*) FROM rollup_dirty").fetchone()[0]
        return {
            "rolled_to_ns": state.get("rolled_to_ns"),
            "raw_from_ns": state.get("raw_from_ns"),
            "dirty_hours": int(dirty),
        }

    @contextmanager
    def _txn(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._con.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise StoreError(f"embedded store busy: {exc}") from exc
            try:
                yield self._con
                self._con.execute("COMMIT")
            except BaseException:
                self._con.execute("ROLLBACK")
                raise

    def maintain(self, now_ns: int | None = None) -> dict[str, int]:
        """Roll up the hours closed since the last call into ``rollup_1m``/``rollup_1h``,
        redo the hours that got late points, then delete raw rows older than
        ``retention_raw_days``. Call it periodically from the writing process (every few
        minutes; it is cheap when there is nothing to do; the first call on a large store
        rolls up everything, a day per transaction). Returns counts for the log:
        ``hours_rolled``, ``hours_redone``, ``raw_deleted``."""
        if self.read_only:
            raise StoreError(f"{self.path} is opened read-only")
        now = time.time_ns() if now_ns is None else now_ns
        target = floor_to(now - _GRACE_NS, 3600)
        stats = {
            "hours_rolled": 0,
            "hours_redone": 0,
            "raw_deleted": 0,
            "days_packed": 0,
            "minutes_deleted": 0,
            "pages_freed": 0,
        }
        try:
            with self._lock:
                state = dict(self._con.execute("SELECT name, value FROM rollup_state"))
                dirty = [
                    h for (h,) in self._con.execute("SELECT hour_ns FROM rollup_dirty ORDER BY 1")
                ]
                wm = state.get("rolled_to_ns")
                if wm is None:  # the first call: from the oldest point on
                    first = self._con.execute(
                        "SELECT MIN((SELECT MIN(time_ns) FROM point "
                        "WHERE series_id = s.id AND field_id = f.id)) "
                        "FROM series s CROSS JOIN field_key f"
                    ).fetchone()[0]
                    wm = None if first is None else floor_to(first, 3600)
            raw_from = state.get("raw_from_ns")
            for i in range(0, len(dirty), _CHUNK_HOURS):
                chunk = dirty[i : i + _CHUNK_HOURS]
                with self._txn() as con:
                    for h in chunk:
                        if raw_from is None or h >= raw_from:
                            # chunk rewrite: the late points' series back into rows first
                            pairs = _unpack_late(con, h)
                            _rollup(con, h, h + HOUR)
                            if floor_to(h, 86400) < state.get("packed_to_ns", -(2**63)):
                                _pack(con, floor_to(h, 86400), sorted({s for s, _ in pairs}))
                            stats["hours_redone"] += 1
                        else:  # points written later than the retention: dropped
                            stats["raw_deleted"] += _delete_raw(con, h, h + HOUR)
                    con.executemany(
                        "DELETE FROM rollup_dirty WHERE hour_ns = ?", [(h,) for h in chunk]
                    )
            while wm is not None and wm < target:
                nxt = min(target, wm + _CHUNK_HOURS * HOUR)
                with self._txn() as con:
                    _rollup(con, wm, nxt)
                    con.execute(
                        "INSERT OR REPLACE INTO rollup_state VALUES ('rolled_to_ns', ?)", (nxt,)
                    )
                stats["hours_rolled"] += (nxt - wm) // HOUR
                wm = nxt
            if self.retention_raw_days is not None and wm is not None:
                # whole UTC days (the chunks' span)
                cut = floor_to(min(now - self.retention_raw_days * DAY, wm), 86400)
                if raw_from is None or cut > raw_from:
                    with self._txn() as con:
                        stats["raw_deleted"] += _delete_raw(con, None, cut)
                        con.execute(
                            "INSERT OR REPLACE INTO rollup_state VALUES ('raw_from_ns', ?)", (cut,)
                        )
            if self.retention_1m_days is not None and wm is not None:
                stats["minutes_deleted"] = self._prune_minutes(now, wm)
            if wm is not None:
                stats["days_packed"] = self._pack_to(wm)
            stats["pages_freed"] = self.reclaim()
        except sqlite3.Error as exc:
            raise StoreError(f"embedded store maintenance failed: {exc}") from exc
        return stats

    def _prune_minutes(self, now: int, wm: int) -> int:
        """Delete the 1-minute rollups older than ``retention_1m_days`` (whole UTC days, a
        day per transaction); the hourly and daily ones are kept."""
        days = self.retention_1m_days or 0
        cut = min(floor_to(now - days * DAY, 86400), floor_to(wm, 86400))
        with self._lock:
            done = _state(self._con, "minute_from_ns")
            if done is None:
                first = self._con.execute(
                    "SELECT MIN((SELECT MIN(time_ns) FROM rollup_1m "
                    "WHERE series_id = s.id AND field_id = f.id)) "
                    "FROM series s CROSS JOIN field_key f"
                ).fetchone()[0]
                done = cut if first is None else min(cut, floor_to(first, 86400))
        deleted = 0
        while done < cut:
            nxt = min(cut, done + DAY)
            with self._txn() as con:
                before = con.total_changes
                con.execute(
                    "DELETE FROM rollup_1m WHERE (series_id, field_id) IN "
                    "(SELECT s.id, f.id FROM series s CROSS JOIN field_key f) "
                    "AND time_ns < ?",
                    (nxt,),
                )
                deleted += con.total_changes - before
                con.execute(
                    "INSERT OR REPLACE INTO rollup_state VALUES ('minute_from_ns', ?)", (nxt,)
                )
            done = nxt
        if _state(self._con, "minute_from_ns") is None and cut > -(2**62):
            with self._txn() as con:
                con.execute(
                    "INSERT OR REPLACE INTO rollup_state VALUES ('minute_from_ns', ?)", (cut,)
                )
        return deleted

    def _pack_to(self, wm: int) -> int:
        """Pack the raw points of the whole UTC days before ``wm`` (rolled up) into chunks,
        some series per transaction (the writer goes on between them)."""
        with self._lock:
            state = dict(self._con.execute("SELECT name, value FROM rollup_state"))
            sids = [sid for (sid,) in self._con.execute("SELECT id FROM series ORDER BY 1")]
        packed = state.get("packed_to_ns")
        if packed is None:  # the first time (or a store from before the chunks): the oldest
            with self._lock:
                first = self._con.execute(
                    "SELECT MIN((SELECT MIN(time_ns) FROM point "
                    "WHERE series_id = s.id AND field_id = f.id)) "
                    "FROM series s CROSS JOIN field_key f"
                ).fetchone()[0]
            packed = wm if first is None else floor_to(first, 86400)
        # whole UTC days (a store of version 1 may have cut its raw rows inside one)
        packed = floor_to(max(packed, state.get("raw_from_ns", packed)), 86400)
        end = floor_to(wm, 86400)
        days = 0
        while packed < end:
            for i in range(0, len(sids), _PACK_SERIES):
                with self._txn() as con:
                    _pack(con, packed, sids[i : i + _PACK_SERIES])
            with self._txn() as con:
                con.execute(
                    "INSERT OR REPLACE INTO rollup_state VALUES ('packed_to_ns', ?)",
                    (packed + DAY,),
                )
            packed += DAY
            days += 1
        return days

    def reclaim(self, steps: int = 64) -> int:
        """Give free pages back to the file system, a small step per transaction (the
        writer goes on between steps); returns the pages given back."""
        freed = 0
        for _ in range(steps):
            with self._lock:
                before = space.free_pages(self._con)
                if not space.reclaim(self._con):
                    break
                freed += before - space.free_pages(self._con)
        return freed

    def close(self) -> None:
        with self._lock:
            self._con.close()
            while self._idle:
                self._idle.pop().close()


def _bucket(col: str, every_s: int | None, start_ns: int) -> str:
    if every_s is None:
        return str(int(start_ns))
    w = every_s * 1_000_000_000
    return f"({col} - ((({col} % {w}) + {w}) % {w}))"


_SOURCE = (
    "FROM g JOIN point p ON p.series_id = g.sid AND p.field_id = :fid "
    "AND p.time_ns >= :start AND p.time_ns < :end"
)


def _query(fn: Agg, every_s: int | None, start_ns: int) -> str:
    """SQL after the ``g`` CTE; its parameters are :fid, :start, :end."""
    b = _bucket("p.time_ns", every_s, start_ns)
    if fn in _SIMPLE:
        cond = "" if fn == "count" else f" AND {_NUMERIC}"
        return f"SELECT g.grp, {b} AS b, {_SIMPLE[fn]}(p.value) {_SOURCE}{cond} GROUP BY g.grp, b"
    if fn in ("first", "last") and every_s is None:
        # One index seek per series, then the earliest/latest of those per group.
        pick, order = ("MIN", "") if fn == "first" else ("MAX", " DESC")
        seek = (
            "SELECT q.time_ns FROM point q WHERE q.series_id = g.sid AND q.field_id = :fid "
            "AND q.time_ns >= :start AND q.time_ns < :end "
            f"AND typeof(q.value) IN ('integer', 'real') ORDER BY q.time_ns{order} LIMIT 1"
        )
        return (
            f"SELECT grp, t, v FROM (SELECT s.grp AS grp, s.t AS t, p.value AS v, {pick}(s.t) "
            f"FROM (SELECT g.grp AS grp, g.sid AS sid, ({seek}) AS t FROM g) s "
            "JOIN point p ON p.series_id = s.sid AND p.field_id = :fid AND p.time_ns = s.t "
            "GROUP BY s.grp)"
        )
    if fn in ("first", "last"):
        pick = "MIN" if fn == "first" else "MAX"
        t, by = ("p.time_ns", "g.grp") if every_s is None else (b, "g.grp, b")
        # SQLite: with exactly one MIN()/MAX() aggregate, bare columns come from that row.
        return (
            f"SELECT grp, b, v FROM (SELECT g.grp AS grp, {t} AS b, p.value AS v, "
            f"{pick}(p.time_ns) {_SOURCE} AND {_NUMERIC} GROUP BY {by})"
        )
    return _integral_sql(every_s, start_ns)


_NUM = "typeof(p.value) IN ('integer', 'real')"
_ROLLUP_SQL = """INSERT OR REPLACE INTO {table} SELECT sid, fid, b, n, n_num, total, vmin, vmax,
 first_t, (SELECT value FROM point WHERE series_id = sid AND field_id = fid AND time_ns = first_t),
 last_t, (SELECT value FROM point WHERE series_id = sid AND field_id = fid AND time_ns = last_t)
FROM (SELECT p.series_id AS sid, p.field_id AS fid, {bucket} AS b,
 COUNT(p.value) AS n, SUM({num}) AS n_num, SUM(CASE WHEN {num} THEN p.value END) AS total,
 MIN(CASE WHEN {num} THEN p.value END) AS vmin, MAX(CASE WHEN {num} THEN p.value END) AS vmax,
 MIN(CASE WHEN {num} THEN p.time_ns END) AS first_t,
 MAX(CASE WHEN {num} THEN p.time_ns END) AS last_t
 FROM series s CROSS JOIN field_key f CROSS JOIN point p
 ON p.series_id = s.id AND p.field_id = f.id AND p.time_ns >= :a AND p.time_ns < :b
 GROUP BY p.series_id, p.field_id, b)"""


def _rollup(con: sqlite3.Connection, a: int, b: int) -> None:
    """(Re)compute the rollups of the hours ``[a, b)`` from the raw points, then the days
    they fall in from the hours."""
    for level, table in _TABLE.items():
        sql = _ROLLUP_SQL.format(table=table, bucket=_bucket("p.time_ns", level, 0), num=_NUM)
        con.execute(sql, {"a": a, "b": b})
    _rollup_days(con, floor_to(a, 86400), ceil_to(b, 86400))


# A day from its hours; the first/last value from the hour holding the day's first/last time.
_DAY_SQL = f"""INSERT OR REPLACE INTO {DAY_TABLE} SELECT sid, fid, b, n, n_num, total, vmin, vmax,
 ft, (SELECT h.first_v FROM rollup_1h h WHERE h.series_id = sid AND h.field_id = fid
  AND h.time_ns = {_bucket("ft", 3600, 0)}),
 lt, (SELECT h.last_v FROM rollup_1h h WHERE h.series_id = sid AND h.field_id = fid
  AND h.time_ns = {_bucket("lt", 3600, 0)})
FROM (SELECT series_id AS sid, field_id AS fid, {_bucket("time_ns", 86400, 0)} AS b,
 SUM(n) AS n, SUM(n_num) AS n_num, SUM(total) AS total, MIN(vmin) AS vmin, MAX(vmax) AS vmax,
 MIN(first_t) AS ft, MAX(last_t) AS lt
 FROM rollup_1h WHERE time_ns >= :a AND time_ns < :b GROUP BY series_id, field_id, b)"""


def _rollup_days(con: sqlite3.Connection, a: int, b: int) -> None:
    """(Re)compute ``rollup_1d`` for the days ``[a, b)`` from ``rollup_1h``."""
    con.execute(_DAY_SQL, {"a": a, "b": b})


def _state(con: sqlite3.Connection, name: str) -> int | None:
    try:
        row = con.execute("SELECT value FROM rollup_state WHERE name = ?", (name,)).fetchone()
    except sqlite3.OperationalError:  # a store from before the rollups, opened read-only
        return None
    return None if row is None else int(row[0])


def _has_table(con: sqlite3.Connection, name: str) -> bool:
    q = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
    return con.execute(q, (name,)).fetchone() is not None


def _delete_raw(con: sqlite3.Connection, lo: int | None, hi: int) -> int:
    """Delete the raw points in ``[lo, hi)`` (one index range per series and field), and
    the chunks of the UTC days inside it (the retention: whole days; late rows beyond it,
    an hour: no chunk)."""
    span = (-(2**63) if lo is None else lo, hi - DAY + 1)  # chunks starting in: days inside
    gone = con.execute(
        f"SELECT COALESCE(SUM(c.n), 0) FROM {_CHUNKS_IN}", {"a": span[0], "b": span[1]}
    ).fetchone()[0]
    con.execute(
        "DELETE FROM chunk WHERE (series_id, field_id) IN "
        "(SELECT s.id, f.id FROM series s CROSS JOIN field_key f) "
        "AND day_ns >= ? AND day_ns < ?",
        span,
    )
    con.execute(
        "DELETE FROM chunk_time WHERE series_id IN (SELECT id FROM series) "
        "AND day_ns >= ? AND day_ns < ?",
        span,
    )
    before = con.total_changes
    con.execute(
        "DELETE FROM point WHERE (series_id, field_id) IN "
        "(SELECT s.id, f.id FROM series s CROSS JOIN field_key f) "
        "AND time_ns >= ? AND time_ns < ?",
        (span[0], hi),
    )
    return con.total_changes - before + int(gone)


_CHUNKS_IN = (
    "series s CROSS JOIN field_key f CROSS JOIN chunk c ON c.series_id = s.id "
    "AND c.field_id = f.id AND c.day_ns >= :a AND c.day_ns < :b"
)
_POINTS_IN = (
    "series s CROSS JOIN field_key f CROSS JOIN point p ON p.series_id = s.id "
    "AND p.field_id = f.id AND p.time_ns >= :a AND p.time_ns < :b"
)


def _times_loader(con: sqlite3.Connection, sid: int, day: int) -> Callable[[int], list[int]]:
    """The shared times of ``sid``'s chunks of ``day``, by id (read once each)."""
    cache: dict[int, list[int]] = {}

    def load(tid: int) -> list[int]:
        got = cache.get(tid)
        if got is None:
            row = con.execute(
                "SELECT data FROM chunk_time WHERE series_id = ? AND day_ns = ? AND tid = ?",
                (sid, day, tid),
            ).fetchone()
            if row is None:
                raise chunks.ChunkError(f"times {tid} of series {sid}, day {day} missing")
            got = cache[tid] = chunks.decode_times(row[0])
        return got

    return load


def _pack(con: sqlite3.Connection, day: int, sids: Sequence[int]) -> None:
    """Pack each series' raw points of the UTC day starting at ``day``: a chunk per field,
    merged with the chunk already there (the rows win: written later), the times shared by
    fields polled together stored once (``chunk_time``). Points of text or mixed types stay
    rows."""
    for sid in sids:
        rows = con.execute(
            "SELECT field_id, time_ns, value FROM point WHERE series_id = ? "
            "AND field_id IN (SELECT id FROM field_key) AND time_ns >= ? AND time_ns < ?",
            (sid, day, day + DAY),
        ).fetchall()
        if not rows:
            continue
        fields: dict[int, dict[int, Any]] = {}
        for fid, t, v in rows:
            fields.setdefault(fid, {})[t] = v
        load = _times_loader(con, sid, day)
        for fid, data in con.execute(
            "SELECT field_id, data FROM chunk WHERE series_id = ? AND day_ns = ?", (sid, day)
        ).fetchall():
            old = dict(zip(*chunks.decode(data, load), strict=True))
            fields[fid] = old | fields.get(fid, {})
        con.execute("DELETE FROM chunk WHERE series_id = ? AND day_ns = ?", (sid, day))
        con.execute("DELETE FROM chunk_time WHERE series_id = ? AND day_ns = ?", (sid, day))
        by_times: dict[tuple[int, ...], list[int]] = {}
        for fid, pts in fields.items():
            by_times.setdefault(tuple(sorted(pts)), []).append(fid)
        for tid, (times, fids) in enumerate(by_times.items()):
            shared = tid if len(fids) > 1 else None
            kept = []
            for fid in fids:
                vals = [fields[fid][t] for t in times]
                blob = chunks.encode(times, vals, shared=shared)
                if blob is None:  # stays rows (the chunk's points too)
                    con.executemany(
                        "INSERT OR IGNORE INTO point VALUES (?, ?, ?, ?)",
                        zip(repeat(sid), repeat(fid), times, vals),
                    )
                    continue
                kept.append(fid)
                con.execute(
                    "INSERT INTO chunk VALUES (?, ?, ?, ?, ?)", (sid, fid, day, len(times), blob)
                )
                con.execute(
                    "DELETE FROM point WHERE series_id = ? AND field_id = ? "
                    "AND time_ns >= ? AND time_ns < ?",
                    (sid, fid, day, day + DAY),
                )
            if shared is not None and kept:
                con.execute(
                    "INSERT INTO chunk_time VALUES (?, ?, ?, ?)",
                    (sid, day, tid, chunks.encode_times(times)),
                )


def _unpack_pairs(con: sqlite3.Connection, day: int, pairs: Sequence[tuple[int, int]]) -> None:
    """The chunks of ``pairs`` for ``day`` back into rows (a row written since wins; the
    shared times stay for the series' other chunks)."""
    for sid, fid in pairs:
        row = con.execute(
            "DELETE FROM chunk WHERE series_id = ? AND field_id = ? AND day_ns = ? RETURNING data",
            (sid, fid, day),
        ).fetchone()
        if row is not None:
            times, vals = chunks.decode(row[0], _times_loader(con, sid, day))
            con.executemany(
                "INSERT OR IGNORE INTO point VALUES (?, ?, ?, ?)",
                zip(repeat(sid), repeat(fid), times, vals),
            )


def _unpack_late(con: sqlite3.Connection, hour: int) -> list[tuple[int, int]]:
    """The series (and fields) with rows in ``hour`` (late points): their chunks of its day
    back into rows, so that the hour is rolled up from all its points; returns them."""
    pairs = [
        (sid, fid)
        for sid, fid in con.execute(
            f"SELECT DISTINCT p.series_id, p.field_id FROM {_POINTS_IN}",
            {"a": hour, "b": hour + HOUR},
        )
    ]
    _unpack_pairs(con, floor_to(hour, 86400), pairs)
    return pairs


_QPOINT = """CREATE TEMP TABLE IF NOT EXISTS qpoint (
    series_id INTEGER NOT NULL, field_id INTEGER NOT NULL, time_ns INTEGER NOT NULL, value ANY,
    PRIMARY KEY (series_id, field_id, time_ns)
) WITHOUT ROWID"""


def _unpack_for_query(con: sqlite3.Connection, values: str, fid: int, lo: int, hi: int) -> bool:
    """When chunks hold points of the query's series in ``[lo, hi)``: fill the connection's
    ``temp.qpoint`` with those points and the rows, and return True (the query then reads
    it instead of ``point``)."""
    arg = {"fid": fid, "a": floor_to(lo, 86400), "b": hi, "lo": lo}
    found = con.execute(
        f"WITH g(sid, grp) AS (VALUES {values}) SELECT c.series_id, c.day_ns, c.data FROM g "
        "JOIN chunk c ON c.series_id = g.sid AND c.field_id = :fid "
        "AND c.day_ns >= :a AND c.day_ns < :b",
        arg,
    ).fetchall()
    if not found:
        return False
    con.execute(_QPOINT)
    con.execute("DELETE FROM temp.qpoint")
    for sid, day, data in found:
        times, vals = chunks.decode(data, _times_loader(con, sid, day))
        con.executemany(
            "INSERT OR REPLACE INTO temp.qpoint VALUES (?, ?, ?, ?)",
            ((sid, fid, t, v) for t, v in zip(times, vals, strict=True) if lo <= t < hi),
        )
    con.execute(
        f"WITH g(sid, grp) AS (VALUES {values}) INSERT OR REPLACE INTO temp.qpoint "
        "SELECT p.* FROM g JOIN point p ON p.series_id = g.sid AND p.field_id = :fid "
        "AND p.time_ns >= :lo AND p.time_ns < :b",
        arg,
    )
    return True


def _piece_query(fn: Agg, every_s: int | None, start_ns: int, level: int) -> str:
    """Like :func:`_query` for one piece of :func:`plan_pieces`, from the raw points (level
    0) or a rollup table; rows are (grp, time, value, weight)."""
    if level == 0 and fn == "mean":
        b = _bucket("p.time_ns", every_s, start_ns)
        return (
            f"SELECT g.grp, {b} AS b, SUM(p.value), COUNT(p.value) {_SOURCE} "
            f"AND {_NUMERIC} GROUP BY g.grp, b"
        )
    if level == 0:
        q = _query(fn, every_s, start_ns)
        if q.startswith("WITH "):  # the integral: never in pieces
            raise ValueError(f"{fn} cannot be answered in pieces")
        return f"SELECT *, 1 FROM ({q})"
    table = _TABLE.get(level, DAY_TABLE)
    b = _bucket("r.time_ns", every_s, 0)
    src = (
        f"FROM g JOIN {table} r ON r.series_id = g.sid AND r.field_id = :fid "
        "AND r.time_ns >= :start AND r.time_ns < :end"
    )
    by = "g.grp" if every_s is None else "g.grp, b"
    if fn == "count":
        return f"SELECT g.grp, {b} AS b, SUM(r.n), 1 {src} GROUP BY {by}"
    src += " AND r.n_num > 0"  # the other aggregates: numeric values only
    if fn in ("sum", "mean"):
        return f"SELECT g.grp, {b} AS b, SUM(r.total), SUM(r.n_num) {src} GROUP BY {by}"
    if fn in ("min", "max"):
        return f"SELECT g.grp, {b} AS b, {fn.upper()}(r.v{fn}), 1 {src} GROUP BY {by}"
    pick, col = ("MIN", "first") if fn == "first" else ("MAX", "last")
    # One MIN()/MAX() aggregate: the bare r.first_v/last_v comes from its row.
    if every_s is None:
        inner = f"g.grp AS grp, {pick}(r.{col}_t) AS b, r.{col}_v AS v"
    else:
        inner = f"g.grp AS grp, {b} AS b, r.{col}_v AS v, {pick}(r.{col}_t)"
    return f"SELECT grp, b, v, 1 FROM (SELECT {inner} {src} GROUP BY {by})"


def _integral_sql(every_s: int | None, start_ns: int) -> str:
    # Trapezoids between consecutive points of a series, summed per group (the same as
    # InfluxDB for one series per group; the series order matches the primary key, so
    # SQLite needs no sort). With windows, InfluxDB interpolates
    # the value at the end of the earlier point's window: the area up to there belongs to
    # that window, the rest to the later point's window. (InfluxDB 1.x gets the rest wrong
    # for *integer* fields, using the boundary value for the point's; this is the correct
    # float behaviour.)
    lagged = (
        "SELECT g.grp AS grp, g.sid AS sid, p.time_ns AS t, p.value AS v, "
        "LAG(p.time_ns) OVER w AS t0, LAG(p.value) OVER w AS v0 "
        f"{_SOURCE} AND {_NUMERIC} WINDOW w AS (PARTITION BY p.series_id ORDER BY p.time_ns)"
    )
    if every_s is None:
        return (
            f"SELECT grp, {int(start_ns)}, SUM(CASE WHEN t0 IS NULL THEN 0.0 "
            f"ELSE 0.5 * (v0 + v) * (t - t0) / 1e9 END) FROM ({lagged}) GROUP BY grp"
        )
    w = every_s * 1_000_000_000
    q = (
        f"SELECT grp, t, v, t0, v0, {_bucket('t', every_s, 0)} AS b1, "
        f"{_bucket('t0', every_s, 0)} AS b0, MAX(t) OVER (PARTITION BY sid) AS tmax "
        f"FROM ({lagged})"
    )
    ve = f"(v0 + (v - v0) * ((b0 + {w}) - t0) * 1.0 / (t - t0))"
    return (
        f"WITH q AS ({q}) SELECT grp, b, SUM(a) FROM ("
        f"SELECT grp, b1 AS b, CASE WHEN t0 IS NULL THEN 0.0 "
        f"WHEN b0 = b1 THEN 0.5 * (v0 + v) * (t - t0) / 1e9 "
        f"ELSE 0.5 * ({ve} + v) * (t - (b0 + {w})) / 1e9 END AS a FROM q "
        # InfluxDB emits no last window when its only point lies on the window start.
        f"WHERE NOT (t = tmax AND t = b1) "
        f"UNION ALL SELECT grp, b0, 0.5 * (v0 + {ve}) * ((b0 + {w}) - t0) / 1e9 FROM q "
        f"WHERE t0 IS NOT NULL AND b0 != b1) GROUP BY grp, b"
    )
