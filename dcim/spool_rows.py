"""The spool's rows: one row per appended batch of readings (at most ``ROW_MAX`` readings), kept
as line protocol (what InfluxDB is sent, encoded once when the batch is committed, so forwarding
it costs no decoding and no encoding; the embedded store and the quarantine get the readings
decoded from it: :func:`dcim.storage.lineprotocol.decode_lines` reads them back exactly).

Format 3 (``PRAGMA user_version = 3``), table ``spool``:

- ``n``: readings in the row; ``done``: how many of them (the first ones) were delivered
  already, when a batch smaller than the row took only its start. A row is never rewritten:
  its content stays what was committed, ``done`` only grows, the row goes when all is done;
- ``t_min``/``t_max``: oldest and newest ``time_ns`` (which hours a late write touches);
- ``lp``: the line protocol, one line per reading, each ending with a newline, timestamps in
  nanoseconds whatever the sink's precision (the spool does not depend on the sink's
  settings: a sink reconfigured between two runs gets its backlog right; the InfluxDB store
  truncates the timestamps when it writes with another precision). NULL when a reading could
  not be encoded (then the batch goes through the JSON and the sink's own encoding, which
  isolates the bad reading) or for a row of format 1;
- ``crc``: CRC-32 of ``lp``, checked before the line protocol is sent or decoded (a damaged
  block is caught by it; when the row has no JSON it goes to the quarantine, kept as text);
- ``r``: ``[[measurement, tags, fields, time_ns], ...]``, compact JSON (ASCII), as a BLOB, only
  when the line protocol does not say exactly what the readings are: a reading it cannot
  carry, an empty tag value (left out of the line protocol), a value or name not of the exact
  types ``str``/``int``/``float``/``bool``; NULL otherwise (the usual case: the readings the
  pipeline validated). Rows of format 2 have it always.

Format 2 had ``r`` in every row (``NOT NULL``): the batch twice, as JSON and line protocol.
Format 1 had one row per reading, ``spool(id, r)`` with ``r`` one reading's JSON. Such files
are upgraded when opened (:func:`upgrade`): the old table is renamed and its rows moved, in id
order and a chunk per transaction, to the table of format 3 (rows of format 2 as they are, a
reading of format 1 as a row of one reading without line protocol, encoded when forwarded).
Nothing is decoded or lost on the way, a crash in the middle resumes at the next open, and the
disk needs at most one chunk more.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import sqlite3
import zlib
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar, cast

from dcim.reading import Reading
from dcim.storage.lineprotocol import (
    INT64_MAX,
    INT64_MIN,
    STRING_ESCAPES,
    decode_lines,
    encode_lines,
    field_key,
)
from dcim.storage.lineprotocol import series as series_prefix

log = logging.getLogger(__name__)
T = TypeVar("T")

FORMAT = 3
ROW_MAX = 1000  # readings per row: a bigger append is split into several rows
ROW_OVERHEAD = 40  # bytes per row besides its JSON and line protocol: header, ints, slack
_UPGRADE_CHUNK = 50_000  # rows of format 1 (a reading each) moved per transaction
_UPGRADE_CHUNK_V2 = 200  # rows of format 2 (up to ROW_MAX readings each)

SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    n INTEGER NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    t_min INTEGER,
    t_max INTEGER,
    crc INTEGER,
    lp BLOB,
    r BLOB
);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ns INTEGER NOT NULL,
    reason TEXT NOT NULL,
    n INTEGER NOT NULL,
    readings TEXT NOT NULL
);
"""

# (n, t_min, t_max, crc, lp, r): the values of one new row
RowValues = tuple[int, int | None, int | None, int | None, bytes | None, bytes | None]


def dump(readings: Sequence[Reading]) -> str:
    """``[[measurement, tags, fields, time_ns], ...]`` as compact JSON (ASCII only)."""
    return json.dumps(
        [[r.measurement, r.tags, r.fields, r.time_ns] for r in readings], separators=(",", ":")
    )


def lines(readings: Sequence[Reading]) -> bytes:
    """The readings as line protocol (ns timestamps), each line ending with a newline.
    Raises ValueError when one of them cannot be written (see ``dcim.storage.lineprotocol``)."""
    return encode_lines(readings).encode("utf-8")


class _Unusual(Exception):
    """A reading :func:`_exact_lines` leaves to the general encoders."""


# Per series (measurement, tag items) whose line protocol says exactly what it is: its prefix.
# Per field name: ``name=``. Bounded like the line protocol encoder's caches.
_SERIES: dict[tuple[object, tuple[tuple[object, object], ...]], str] = {}
_FIELDS: dict[str, str] = {}
_CACHE_MAX = 20_000


def _exact_series(r: Reading) -> str:
    """The line protocol prefix of a series that decodes back to the same measurement and
    tags (str names, non-empty str tag values); _Unusual otherwise."""
    if type(r.measurement) is not str or type(r.tags) is not dict:
        raise _Unusual
    for k, v in r.tags.items():
        if type(k) is not str or type(v) is not str or not v:
            raise _Unusual
    return series_prefix(r)  # ValueError for a name line protocol cannot carry


def _exact_lines(readings: Sequence[Reading]) -> str:
    """The line protocol of the readings, the same text as :func:`lines` gives, when it says
    exactly what they are (decoded, they are equal, values of the same types). Raises
    _Unusual (or ValueError for a name line protocol cannot carry) otherwise: values not of
    the exact types str, int, float and bool, empty tag values, times not ints."""
    out: list[str] = []
    series, fields_of, isfinite, escapes = _SERIES, _FIELDS, math.isfinite, STRING_ESCAPES
    for r in readings:
        key = (r.measurement, tuple(r.tags.items()))
        pre = series.get(key)
        if pre is None:
            pre = _exact_series(r)
            if len(series) >= _CACHE_MAX:
                series.clear()
            series[key] = pre
        t, fields = r.time_ns, r.fields
        if type(t) is not int or not INT64_MIN < t < INT64_MAX or type(fields) is not dict:
            raise _Unusual
        if not fields:
            raise _Unusual
        parts: list[str] = []
        for name, value in fields.items():
            k = fields_of.get(name)
            if k is None:
                if type(name) is not str:
                    raise _Unusual
                k = field_key(name, r)
                if len(fields_of) >= _CACHE_MAX:
                    fields_of.clear()
                fields_of[name] = k
            kind = type(value)
            if kind is float and isfinite(value):  # type: ignore[arg-type]
                parts.append(k + repr(value))
            elif kind is int and INT64_MIN <= value <= INT64_MAX:  # type: ignore[operator]
                parts.append(f"{k}{value}i")
            elif kind is str:
                sv = cast(str, value)
                if "\n" in sv or "\r" in sv:
                    raise _Unusual
                v = sv.translate(escapes) if '"' in sv or "\\" in sv else sv
                parts.append(f'{k}"{v}"')
            elif kind is bool:
                parts.append(k + ("true" if value else "false"))
            else:
                raise _Unusual
        out.append(f"{pre} {','.join(parts)} {t}")
    return "\n".join(out) + "\n"


def _row(chunk: Sequence[Reading], lp: bytes | None, js: bytes | None) -> RowValues:
    if lp is None:
        return (len(chunk), None, None, None, None, js)
    times = [x.time_ns for x in chunk]
    return (len(chunk), min(times), max(times), zlib.crc32(lp), lp, js)


def make_rows(readings: Sequence[Reading], encoded: Sequence[str] | None = None) -> list[RowValues]:
    """Rows of at most ROW_MAX readings each, in order. ``encoded``: the readings' lines as
    :func:`dcim.storage.lineprotocol.encode` writes them, known to say exactly what the
    readings are (the pipeline's, which encodes what it validates); otherwise the readings
    are encoded here, with their JSON when the line protocol does not say exactly what they
    are."""
    rows: list[RowValues] = []
    for i in range(0, len(readings), ROW_MAX):
        chunk = readings[i : i + ROW_MAX]
        if encoded is not None:
            text = "\n".join(encoded[i : i + ROW_MAX]) + "\n"
            rows.append(_row(chunk, text.encode("utf-8"), None))
            continue
        lp: bytes | None
        try:
            rows.append(_row(chunk, _exact_lines(chunk).encode("utf-8"), None))
            continue
        except (_Unusual, ValueError, TypeError, AttributeError):
            js = dump(chunk).encode("ascii")
        try:
            lp = lines(chunk)
        except (ValueError, TypeError, AttributeError):  # sent from its JSON: the sink
            lp = None  # says which reading it refuses and why
        rows.append(_row(chunk, lp, js))
    return rows


def disk_bytes(payload: int, page_size: int) -> int:
    """Approximate disk use of a row holding ``payload`` bytes of JSON and line protocol: a
    small row shares a page; a big one keeps about an eighth of a page in its b-tree page
    and spills the rest into whole overflow pages of ``page_size - 4`` bytes (what deleting
    it frees, too)."""
    size = payload + ROW_OVERHEAD
    if size <= page_size // 4:
        return size
    local = page_size // 8
    return -(-(size - local) // (page_size - 4)) * page_size + local


def row_bytes(row: RowValues, page_size: int) -> int:
    """Approximate disk use of a new row."""
    lp, js = row[4], row[5]
    return disk_bytes(
        (len(lp) if lp is not None else 0) + (len(js) if js is not None else 0), page_size
    )


_STR_TYPE: frozenset[type] = frozenset({str})
_VALUE_TYPES: frozenset[type] = frozenset({str, int, float, bool})


def load_reading(item: Any) -> Reading:
    """One ``[measurement, tags, fields, time_ns]``; ValueError when it is not a well-formed
    reading (a corrupt row must not reach a sink, where it would fail every retry)."""
    try:
        m, tags, fields, t = item
    except (TypeError, ValueError):
        raise ValueError("not a [measurement, tags, fields, time_ns] reading") from None
    ok = (
        isinstance(m, str)
        and isinstance(tags, dict)
        and all(isinstance(v, str) for v in tags.values())
        and isinstance(fields, dict)
        and bool(fields)
        and all(isinstance(v, str | int | float) for v in fields.values())
        and isinstance(t, int)
        and not isinstance(t, bool)
    )
    if not ok:
        raise ValueError("not a [measurement, tags, fields, time_ns] reading")
    return Reading(m, tags, fields, t)


def decode_row(
    raw: bytes | str | None, n: int, lp: bytes | None = None, crc: int | None = None
) -> list[Reading]:
    """All the readings of a row: from its JSON ``raw``, or when the row has none from its line
    protocol ``lp`` (checked against its CRC-32 ``crc`` first). ValueError when it is damaged
    (bad UTF-8, JSON or line protocol, a failed checksum, not ``n`` readings)."""
    if raw is None and lp is None:
        raise ValueError("NULL row")
    if raw is None and (crc is None or zlib.crc32(lp) != crc):  # type: ignore[arg-type]
        raise ValueError("line protocol fails its checksum")
    # Thousands of new containers that all live: without the cyclic collector, which would
    # otherwise run many times over the process's heap for nothing (they hold no cycles).
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        if raw is not None:
            return _decode(raw, n)
        got = decode_lines(lp)  # type: ignore[arg-type]
    finally:
        if was_enabled:
            gc.enable()
    if len(got) != n:
        raise ValueError(f"row should hold {n} readings, holds {len(got)}")
    return got


def _decode(raw: bytes | str, n: int) -> list[Reading]:
    items = json.loads(raw)
    if not isinstance(items, list) or len(items) != n:
        got = len(items) if isinstance(items, list) else type(items).__name__
        raise ValueError(f"row should hold {n} readings, holds {got}")
    out: list[Reading] = []
    strs, values = _STR_TYPE, _VALUE_TYPES
    for x in items:  # load_reading's checks, inline for what JSON gives (exact types)
        if type(x) is list and len(x) == 4:
            m, tags, fields, t = x
            if (
                type(m) is str
                and type(tags) is dict
                and type(fields) is dict
                and fields
                and type(t) is int
                and strs.issuperset(map(type, tags.values()))
                and values.issuperset(map(type, fields.values()))
            ):
                out.append(Reading(m, tags, fields, t))
                continue
        out.append(load_reading(x))  # raises, saying why
    return out


def take_lines(lp: bytes, skip: int, take: int) -> bytes:
    """Lines ``skip`` to ``skip + take`` of a line protocol block."""
    start = 0
    for _ in range(skip):
        start = lp.index(b"\n", start) + 1
    end = start
    for _ in range(take):
        end = lp.index(b"\n", end) + 1
    return lp[start:end]


def as_text(raw: bytes | str | None, lp: bytes | None = None) -> str:
    """A damaged row as text for the quarantine: its JSON, else its line protocol (neither:
    a garbled row)."""
    if raw is None:
        raw = lp
    if raw is None:
        return ""
    return raw if isinstance(raw, str) else raw.decode("utf-8", "replace")


def columns(con: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in con.execute(f"PRAGMA table_info({table})")]


class Tx(Protocol):
    """Runs ``work`` on the connection in a write transaction, returns its result."""

    def __call__(self, work: Callable[[sqlite3.Connection], T]) -> T: ...


def create(c: sqlite3.Connection) -> None:
    """The tables of format 2 (those missing)."""
    for stmt in SCHEMA.split(";"):
        if stmt.strip():
            c.execute(stmt)


def _format_of(con: sqlite3.Connection) -> int:
    """The format of the table ``spool``: 1 (a row per reading), 2 (``r`` in every row) or 3."""
    info = {row[1]: row for row in con.execute("PRAGMA table_info(spool)")}
    if "lp" not in info:
        return 1
    return 2 if info["r"][3] else 3  # NOT NULL


# Moving a chunk of rows of an old table into the table of format 3, ids kept (so the order):
# the readings of the moved rows, then the statement.
_MOVES = {
    "spool_v1": (
        "SELECT count(*) FROM spool_v1{upto}",
        "INSERT INTO spool (id, n, r) SELECT id, 1, "
        "CAST('[' || coalesce(r, '') || ']' AS BLOB) FROM spool_v1{upto}",
    ),
    "spool_v2": (
        "SELECT coalesce(sum(n - done), 0) FROM spool_v2{upto}",
        "INSERT INTO spool (id, n, done, t_min, t_max, crc, lp, r) "
        "SELECT id, n, done, t_min, t_max, crc, lp, r FROM spool_v2{upto}",
    ),
}


def upgrade(con: sqlite3.Connection, tx: Tx) -> None:
    """Bring the spool at ``con`` to format 3 (``tx(work)`` runs ``work(con)`` in a write
    transaction and returns its result). A table of format 1 or 2 is renamed ``spool_v1`` or
    ``spool_v2`` and its rows move into the new table a chunk per transaction, keeping their
    ids (so their order, before anything appended later); an interrupted upgrade goes on where
    it stopped (also one of format 1 to 2 that the previous version left)."""
    have = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    old = f"spool_v{_format_of(con)}" if "spool" in have else ""
    if old in _MOVES:

        def rename(c: sqlite3.Connection) -> None:
            c.execute(f"ALTER TABLE spool RENAME TO {old}")
            create(c)

        tx(rename)
        have.add(old)
    else:
        tx(create)
    moved = 0
    for table, (count, insert) in _MOVES.items():
        if table not in have:
            continue
        chunk = _UPGRADE_CHUNK if table == "spool_v1" else _UPGRADE_CHUNK_V2
        while True:
            row = con.execute(
                f"SELECT id FROM {table} ORDER BY id LIMIT 1 OFFSET ?", (chunk - 1,)
            ).fetchone()
            upto = "" if row is None else f" WHERE id <= {int(row[0])}"
            stmts = (
                count.format(upto=upto),
                insert.format(upto=upto),
                f"DELETE FROM {table}{upto}",
            )

            def move(c: sqlite3.Connection, stmts: tuple[str, str, str] = stmts) -> int:
                n = int(c.execute(stmts[0]).fetchone()[0])
                c.execute(stmts[1])
                c.execute(stmts[2])
                return n

            moved += tx(move)
            if row is None:
                break

        def drop(c: sqlite3.Connection, stmt: str = f"DROP TABLE {table}") -> None:
            c.execute(stmt)

        tx(drop)
    if moved or have & set(_MOVES):
        log.warning(
            "spool upgraded to format %d (a row per appended batch, as line protocol): "
            "%d pending readings of the previous format kept, in order",
            FORMAT,
            moved,
        )
    if con.execute("PRAGMA user_version").fetchone()[0] != FORMAT:
        con.execute(f"PRAGMA user_version={FORMAT}")
