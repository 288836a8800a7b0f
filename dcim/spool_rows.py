"""The spool's rows: one row per appended batch of readings (at most ``ROW_MAX`` readings), with
the batch twice: as JSON (what the readings are, for the embedded store, the quarantine and for
isolating a reading the database refuses) and as line protocol (what InfluxDB is sent, encoded
once when the batch is committed, so forwarding it costs no decoding and no encoding).

Format 2 (``PRAGMA user_version = 2``), table ``spool``:

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
- ``crc``: CRC-32 of ``lp``. The JSON is checked by decoding it; the line protocol is sent
  without being read, so a damaged block is caught by its checksum (and the row is sent from
  its JSON instead);
- ``r``: ``[[measurement, tags, fields, time_ns], ...]``, compact JSON (ASCII), as a BLOB.

Format 1 (until this one) had one row per reading, ``spool(id, r)`` with ``r`` one reading's
JSON. Such a file is upgraded when opened (:func:`upgrade`): its rows are moved, in id order and
a chunk per transaction, to rows of format 2 holding one reading each without line protocol
(encoded when forwarded). Nothing is decoded or lost on the way, a crash in the middle resumes
at the next open, and the disk needs at most one chunk more.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import sqlite3
import zlib
from collections.abc import Callable, Sequence
from json.encoder import encode_basestring_ascii as json_string
from typing import Any, Protocol, TypeVar, cast

from dcim.reading import Reading
from dcim.storage.lineprotocol import (
    INT64_MAX,
    INT64_MIN,
    STRING_ESCAPES,
    encode_lines,
    field_key,
)
from dcim.storage.lineprotocol import series as series_prefix

log = logging.getLogger(__name__)
T = TypeVar("T")

FORMAT = 2
ROW_MAX = 1000  # readings per row: a bigger append is split into several rows
ROW_OVERHEAD = 40  # bytes per row besides its JSON and line protocol: header, ints, slack
_UPGRADE_CHUNK = 50_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    n INTEGER NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    t_min INTEGER,
    t_max INTEGER,
    crc INTEGER,
    lp BLOB,
    r BLOB NOT NULL
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
RowValues = tuple[int, int | None, int | None, int | None, bytes | None, bytes]


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
    """A reading :func:`_encode_both` leaves to the general encoders."""


# Per series (measurement, tag items): its line protocol prefix and the start of its JSON;
# per field name: ``name=`` and ``"name":``. Bounded like the line protocol encoder's caches.
_SERIES: dict[tuple[object, tuple[tuple[object, object], ...]], tuple[str, str]] = {}
_FIELDS: dict[str, tuple[str, str]] = {}
_CACHE_MAX = 20_000


def _encode_both(readings: Sequence[Reading]) -> tuple[str, str]:
    """(line protocol, JSON) of the readings, the same text as :func:`lines` and :func:`dump`
    give, in one pass that formats each value once (a float's ``repr`` is both its line
    protocol and its JSON). Raises _Unusual (or ValueError for a name line protocol cannot
    carry) for anything but str, int, float and bool values and int timestamps."""
    lp_out: list[str] = []
    js_out: list[str] = []
    series, fields_of, isfinite, escapes = _SERIES, _FIELDS, math.isfinite, STRING_ESCAPES
    for r in readings:
        key = (r.measurement, tuple(r.tags.items()))
        pre = series.get(key)
        if pre is None:
            js_series = json.dumps([r.measurement, r.tags], separators=(",", ":"))
            pre = (series_prefix(r), js_series[:-1] + ",{")
            if len(series) >= _CACHE_MAX:
                series.clear()
            series[key] = pre
        t = r.time_ns
        if type(t) is not int or not INT64_MIN < t < INT64_MAX or not r.fields:
            raise _Unusual
        lps: list[str] = []
        jss: list[str] = []
        for name, value in r.fields.items():
            k = fields_of.get(name)
            if k is None:
                k = (field_key(name, r), json_string(name) + ":")
                if len(fields_of) >= _CACHE_MAX:
                    fields_of.clear()
                fields_of[name] = k
            kind = type(value)
            if kind is float and isfinite(value):  # type: ignore[arg-type]
                v = repr(value)
                lps.append(k[0] + v)
                jss.append(k[1] + v)
            elif kind is int and INT64_MIN <= value <= INT64_MAX:  # type: ignore[operator]
                v = repr(value)
                lps.append(k[0] + v + "i")
                jss.append(k[1] + v)
            elif kind is str:
                sv = cast(str, value)
                if "\n" in sv or "\r" in sv:
                    raise _Unusual
                v = sv.translate(escapes) if '"' in sv or "\\" in sv else sv
                lps.append(f'{k[0]}"{v}"')
                jss.append(k[1] + json_string(sv))
            elif kind is bool:
                v = "true" if value else "false"
                lps.append(k[0] + v)
                jss.append(k[1] + v)
            else:
                raise _Unusual
        lp_out.append(f"{pre[0]} {','.join(lps)} {t}")
        js_out.append(f"{pre[1]}{','.join(jss)}}},{t}]")
    return "\n".join(lp_out) + "\n", "[" + ",".join(js_out) + "]"


def make_rows(readings: Sequence[Reading]) -> list[RowValues]:
    """Rows of at most ROW_MAX readings each, in order."""
    rows: list[RowValues] = []
    for i in range(0, len(readings), ROW_MAX):
        chunk = readings[i : i + ROW_MAX]
        lp: bytes | None
        try:
            lp_text, js = _encode_both(chunk)
            lp = lp_text.encode("utf-8")
        except (_Unusual, ValueError, TypeError, AttributeError):
            js = dump(chunk)
            try:
                lp = lines(chunk)
            except (ValueError, TypeError, AttributeError):  # sent from its JSON: the sink
                lp = None  # says which reading it refuses and why
        t_min = t_max = None
        if lp is not None:
            times = [x.time_ns for x in chunk]
            t_min, t_max = min(times), max(times)
        crc = None if lp is None else zlib.crc32(lp)
        rows.append((len(chunk), t_min, t_max, crc, lp, js.encode("ascii")))
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
    return disk_bytes(len(row[5]) + (len(row[4]) if row[4] is not None else 0), page_size)


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


def decode_row(raw: bytes | str | None, n: int) -> list[Reading]:
    """All the readings of a row; ValueError when it is damaged (bad UTF-8 or JSON, not a
    list of ``n`` readings)."""
    if raw is None:
        raise ValueError("NULL row")
    # Thousands of new containers that all live: without the cyclic collector, which would
    # otherwise run many times over the process's heap for nothing (they hold no cycles).
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _decode(raw, n)
    finally:
        if was_enabled:
            gc.enable()


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


def as_text(raw: bytes | str | None) -> str:
    """A damaged row as text for the quarantine (NULL: a garbled row)."""
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


def upgrade(con: sqlite3.Connection, tx: Tx) -> None:
    """Bring the spool at ``con`` to format 2 (``tx(work)`` runs ``work(con)`` in a write
    transaction and returns its result). A format 1 table is renamed ``spool_v1`` and its rows
    move into the new table a chunk per transaction, keeping their ids (so their order, before
    anything appended later); an interrupted upgrade goes on where it stopped."""
    have = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "spool" in have and "lp" not in columns(con, "spool"):

        def rename(c: sqlite3.Connection) -> None:
            c.execute("ALTER TABLE spool RENAME TO spool_v1")
            create(c)

        tx(rename)
        have.add("spool_v1")
    else:
        tx(create)
    if "spool_v1" in have:
        moved = 0
        while True:
            row = con.execute(
                "SELECT id FROM spool_v1 ORDER BY id LIMIT 1 OFFSET ?", (_UPGRADE_CHUNK - 1,)
            ).fetchone()
            upto = "" if row is None else f" WHERE id <= {int(row[0])}"

            def move(c: sqlite3.Connection, upto: str = upto) -> int:
                cur = c.execute(
                    "INSERT INTO spool (id, n, r) SELECT id, 1, "
                    f"CAST('[' || coalesce(r, '') || ']' AS BLOB) FROM spool_v1{upto}"
                )
                c.execute(f"DELETE FROM spool_v1{upto}")
                return cur.rowcount

            moved += tx(move)
            if row is None:
                break
        tx(lambda c: c.execute("DROP TABLE spool_v1").rowcount)
        log.warning(
            "spool upgraded to format %d (a row per appended batch, with its line protocol): "
            "%d pending readings of the previous format kept, in order",
            FORMAT,
            moved,
        )
    if con.execute("PRAGMA user_version").fetchone()[0] != FORMAT:
        con.execute(f"PRAGMA user_version={FORMAT}")
