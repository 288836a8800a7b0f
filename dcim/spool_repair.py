"""A corrupt or truncated spool file: found at open (``PRAGMA quick_check``), moved aside as
``spool.sqlite.corrupt-<unix ts>`` (kept for inspection, with its WAL) and what can still be
read, row by row, copied into a fresh spool (``dcim.spool.Spool`` does the steps)."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcim.reading import Reading
from dcim.spool_rows import as_text, columns, decode_row, load_reading, make_rows

_INSERT_ROW = "INSERT INTO spool (n, t_min, t_max, crc, lp, r) VALUES (?,?,?,?,?,?)"
_INSERT_QUARANTINE = "INSERT INTO quarantine (time_ns, reason, n, readings) VALUES (?,?,?,?)"


def integrity_problem(path: Path) -> str:
    """What is wrong with the file, "" when it is absent or sound. Read-only: a corrupt file
    is not checkpointed into (the copy kept aside is the file as it was found)."""
    if not path.exists():
        return ""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = con.execute("PRAGMA quick_check").fetchall()
    except sqlite3.OperationalError:
        raise  # I/O error, locked: nothing proves the file is bad
    except sqlite3.DatabaseError as exc:  # malformed, not a database
        return str(exc)
    finally:
        con.close()
    if rows == [("ok",)]:
        return ""
    text = " / ".join(str(r[0]).replace("\n", " / ") for r in rows[:3])
    return text if len(text) <= 300 else text[:300] + "..."


def move_aside(path: Path) -> Path:
    """Rename the file (and its WAL: SQLite reads ``<name>-wal`` beside ``<name>``) to
    ``<name>.corrupt-<unix ts>``; the shared-memory index is rebuilt from the WAL."""
    name = f"{path.name}.corrupt-{int(time.time())}"
    aside, n = path.with_name(name), 0
    while aside.exists():  # a second corruption within the same second
        n += 1
        aside = path.with_name(f"{name}.{n}")
    os.replace(path, aside)
    wal = path.with_name(path.name + "-wal")
    if wal.exists():
        os.replace(wal, aside.with_name(aside.name + "-wal"))
    path.with_name(path.name + "-shm").unlink(missing_ok=True)
    return aside


def readable_rows(con: sqlite3.Connection, table: str, cols: str) -> Iterator[tuple[Any, ...]]:
    """(id, *cols) of every row of ``table`` that can still be read, in id order. On an
    unreadable page, jump ahead with doubling steps until rows are found again (best effort:
    a few good rows next to a bad page may be skipped with it)."""
    last, step = 0, 1
    while step < 2**40:
        try:
            for row in con.execute(
                f"SELECT id, {cols} FROM {table} WHERE id > ? ORDER BY id", (last,)
            ):
                if row[0] > last:  # ids out of order come from a garbled page
                    yield row
                    last, step = row[0], 1
            return
        except sqlite3.DatabaseError:
            last, step = last + step, step * 2


def _tables_in_id_order(src: sqlite3.Connection) -> list[str]:
    """The spool tables of the file (those of an upgrade that was interrupted too: an upgrade
    moves the oldest rows first, keeping their ids), the one holding the oldest rows first."""
    found: list[tuple[int, str]] = []
    for table in ("spool", "spool_v2", "spool_v1"):
        try:
            if not columns(src, table):
                continue
        except sqlite3.DatabaseError:
            continue
        try:
            first = src.execute(f"SELECT min(id) FROM {table}").fetchone()[0]
        except sqlite3.DatabaseError:  # its first pages are unreadable: first
            first = 0
        found.append((first if isinstance(first, int) else 0, table))
    return [table for _, table in sorted(found)]


@dataclass
class Salvaged:
    readings: int = 0  # copied into the fresh spool
    bad_rows: int = 0  # undecodable: to the quarantine as raw text
    quarantine: int = 0  # quarantine entries copied
    empty_rows: int = 0  # nothing left of them


def salvage(aside: Path, c: sqlite3.Connection) -> Salvaged:
    """Copy what can be read from the corrupt file ``aside`` into the spool at ``c`` (in the
    caller's transaction): pending readings in order (every format, and the tables of an
    upgrade that was interrupted), undecodable rows and the old quarantine entries into the
    quarantine."""
    out = Salvaged()
    try:
        src = sqlite3.connect(f"file:{aside}?mode=ro", uri=True)
        # Tolerate a file shorter than its header says (truncated): read what is there.
        src.execute("PRAGMA writable_schema=ON")
    except sqlite3.Error:
        return out
    now = time.time_ns()
    buf: list[Reading] = []

    def flush() -> None:
        c.executemany(_INSERT_ROW, make_rows(buf))
        out.readings += len(buf)
        buf.clear()

    def bad(rid: int, text: str, n: int, exc: Exception) -> None:
        reason = f"undecodable row {rid} salvaged from {aside.name}: {exc}"
        c.execute(_INSERT_QUARANTINE, (now, reason, n, text))
        out.bad_rows += 1

    try:
        for table in _tables_in_id_order(src):
            cols = columns(src, table)
            batched = "n" in cols  # format 2 or 3, else 1 (a reading per row, JSON only)
            sel = (
                "n, done, CAST(r AS BLOB), lp, crc"
                if batched
                else "1, 0, CAST(r AS BLOB), NULL, NULL"
            )
            for rid, n, done, raw, lp, crc in readable_rows(src, table, sel):
                if raw is None and lp is None:
                    out.empty_rows += 1
                    continue
                try:
                    if batched:
                        got = decode_row(raw, n, lp, crc)[done:]
                    else:
                        got = [load_reading(json.loads(raw))]
                except (ValueError, TypeError) as exc:
                    left = n - done if isinstance(n, int) and isinstance(done, int) else 1
                    bad(rid, as_text(raw, lp), max(1, left), exc)
                    continue
                buf.extend(got)
                if len(buf) >= 10_000:
                    flush()
        flush()
        for _, *q in readable_rows(src, "quarantine", "time_ns, reason, n, readings"):
            with contextlib.suppress(sqlite3.Error):  # a garbled entry: skip it
                c.execute(_INSERT_QUARANTINE, q)
                out.quarantine += 1
    finally:
        src.close()
    return out
