"""Embedded store: SQLite in WAL mode, so ``dcim kpi`` can read while the collector writes.

Schema: ``series`` (measurement + canonical JSON of the tags), ``field_key`` (names), and
``point(series_id, field_id, time_ns, value)`` as a WITHOUT ROWID table keyed by all three,
so a write of the same series + field + time replaces (idempotent replays) and a query
reads one contiguous key range per series. Values keep their type (REAL, INTEGER, TEXT;
booleans as 0/1). Series are matched to ``where``/``group_by`` in Python (a few hundred
rows); the points are aggregated in SQL, the integral with ``LAG()``.

``synchronous=FULL``: the spool deletes what this store acknowledged, so an acknowledged
write must survive a power cut too.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from dcim.reading import Reading
from dcim.storage.base import Agg, Row, SinkError, StoreError, check_query, sort_rows

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
"""
_NUMERIC = "typeof(p.value) IN ('integer', 'real')"
_SIMPLE = {"mean": "AVG", "min": "MIN", "max": "MAX", "sum": "SUM", "count": "COUNT"}


def _tags_key(tags: Mapping[str, str]) -> str:
    # Empty tag values are absent tags (as in InfluxDB).
    return json.dumps({k: v for k, v in sorted(tags.items()) if v != ""}, separators=(",", ":"))


class SqliteStore:
    def __init__(self, path: str | Path, *, read_only: bool = False):
        self.path = Path(path)
        self.read_only = read_only
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
                self._con.execute("PRAGMA journal_mode=WAL")
                self._con.execute("PRAGMA synchronous=FULL")
                self._con.executescript(_SCHEMA)
            self._con.execute("PRAGMA busy_timeout=10000")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open embedded store {self.path}: {exc}") from exc
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str], int] = {}
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

    def write(self, readings: Sequence[Reading]) -> None:
        if self.read_only:
            raise SinkError(retryable=False, reason=f"{self.path} is opened read-only")
        with self._lock:
            try:
                self._con.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:  # locked for longer than busy_timeout
                raise SinkError(retryable=True, reason=f"embedded store busy: {exc}") from exc
            try:
                rows = []
                for r in readings:
                    sid = self._series_id(r.measurement, _tags_key(r.tags))
                    for name, value in r.fields.items():
                        if isinstance(value, float) and not math.isfinite(value):
                            raise SinkError(
                                retryable=False,
                                reason=f"{value} in {r.measurement}.{name} "
                                f"(device {r.tags.get('device', '?')!r})",
                            )
                        rows.append((sid, self._field_id(name), r.time_ns, value))
                self._con.executemany("INSERT OR REPLACE INTO point VALUES (?, ?, ?, ?)", rows)
                self._con.execute("COMMIT")
            except BaseException as exc:
                self._con.execute("ROLLBACK")
                self._series.clear()  # ids created in the rolled-back transaction are gone
                self._fields.clear()
                if isinstance(exc, SinkError):
                    raise
                if isinstance(exc, sqlite3.OperationalError | OSError):  # disk full, I/O
                    raise SinkError(retryable=True, reason=f"embedded store: {exc}") from exc
                if isinstance(exc, sqlite3.Error | TypeError | ValueError):
                    raise SinkError(retryable=False, reason=f"embedded store: {exc}") from exc
                raise

    # -- querying ----------------------------------------------------------------------
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
        with self._lock:
            fid_row = self._con.execute(
                "SELECT id FROM field_key WHERE name=?", (field,)
            ).fetchone()
            series = self._con.execute(
                "SELECT id, tags FROM series WHERE measurement=?", (measurement,)
            ).fetchall()
        if fid_row is None or not series:
            return []
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
        sql = _query(fn, every_s, start_ns)
        values = ",".join(f"({int(sid)},{int(grp)})" for sid, grp in pairs)
        if sql.startswith("WITH "):  # more common table expressions after g
            sql = ", " + sql.removeprefix("WITH ")
        full = f"WITH g(sid, grp) AS (VALUES {values}) {sql}"
        args = {"fid": fid_row[0], "start": start_ns, "end": end_ns}
        with self._lock:
            result = self._con.execute(full, args).fetchall()
        rows = [
            Row(
                dict(zip(group_by, groups[grp], strict=True)),
                int(t),
                None if v is None else float(v),
            )
            for grp, t, v in result
        ]
        return sort_rows(rows, group_by)

    def close(self) -> None:
        with self._lock:
            self._con.close()


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
