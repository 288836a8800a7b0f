"""A corrupt or truncated spool file: found at open (``PRAGMA quick_check``), moved aside as
``spool.sqlite.corrupt-<unix ts>`` (kept for inspection, with its WAL) and what can still be
read, row by row, copied into a fresh spool (``dcim.spool.Spool`` does the steps).

A file whose 100-byte header is damaged ("file is not a database") while its pages are whole
is read through a copy with a header rebuilt from what SQLite puts there for a spool (WAL
mode, UTF-8, no reserved bytes) and the page size: the WAL's when there is one, else the one
among the possible sizes that reads the most rows. (SQLite's own ``.recover`` is in the
``sqlite3`` command-line tool, not in Python's module, and it needs a readable header too.)

Files made here (the copy) and by the spool are readable by their owner only (0600): they
hold the site's readings."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import struct
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


SQLITE_MAGIC = b"SQLite format 3\0"
_PAGE_SIZES = (4096, 1024, 2048, 8192, 16384, 32768, 65536, 512)


def private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if it does not exist (SQLite then creates its WAL
    and shared-memory files with the same mode)."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def sqlite_header(page_size: int) -> bytes:
    """A database header (the file's first 100 bytes) for a WAL-mode UTF-8 file of
    ``page_size`` bytes per page; the page count is taken from the file's size (the change
    counter and "version valid for" differ), the schema is read from page 1."""
    h = bytearray(100)
    h[0:16] = SQLITE_MAGIC
    struct.pack_into(">H", h, 16, 1 if page_size == 65536 else page_size)
    h[18:24] = bytes((2, 2, 0, 64, 32, 32))  # WAL versions, no reserved bytes, fractions
    struct.pack_into(">I", h, 24, 1)  # change counter
    struct.pack_into(">I", h, 40, 1)  # schema cookie
    struct.pack_into(">I", h, 44, 4)  # schema format
    struct.pack_into(">I", h, 56, 1)  # UTF-8
    struct.pack_into(">I", h, 96, sqlite3.sqlite_version_info[0] * 1_000_000)
    return bytes(h)


def header_damaged(path: Path) -> bool:
    """The file's header is not a sound SQLite header (magic, page size, fractions)."""
    with path.open("rb") as f:
        h = f.read(100)
    if len(h) < 100 or h[:16] != SQLITE_MAGIC or h[21:24] != bytes((64, 32, 32)):
        return True
    ps = struct.unpack_from(">H", h, 16)[0]
    return not (ps == 1 or (512 <= ps <= 32768 and ps & (ps - 1) == 0))


def _wal_page_size(wal: Path) -> int | None:
    try:
        with wal.open("rb") as f:
            h = f.read(32)
    except OSError:
        return None
    if len(h) < 32 or struct.unpack_from(">I", h, 0)[0] not in (0x377F0682, 0x377F0683):
        return None
    ps = int(struct.unpack_from(">I", h, 8)[0])
    return ps if ps in _PAGE_SIZES else None


@contextlib.contextmanager
def with_rebuilt_header(aside: Path) -> Iterator[Path]:
    """A copy of ``aside`` (and its WAL) with its header rebuilt, removed afterwards."""
    copy = aside.with_name(aside.name + ".rebuilt")
    wal = aside.with_name(aside.name + "-wal")
    copies = [copy] + [copy.with_name(copy.name + x) for x in ("-wal", "-shm")]
    try:
        private_file(copy)
        shutil.copyfile(aside, copy)
        if wal.exists():
            private_file(copies[1])
            shutil.copyfile(wal, copies[1])
        known = _wal_page_size(wal)
        best, most = _PAGE_SIZES[0], -1
        for ps in (known,) if known else _PAGE_SIZES:
            with copy.open("r+b") as fh:
                fh.write(sqlite_header(ps))
            n = _count_rows(copy)
            if n > most:
                best, most = ps, n
        with copy.open("r+b") as fh:
            fh.write(sqlite_header(best))
        yield copy
    finally:
        for f in copies:
            f.unlink(missing_ok=True)


def _count_rows(path: Path) -> int:
    """Rows readable in the spool tables of the file; -1 when its schema cannot be read."""
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return -1
    try:
        con.execute("PRAGMA writable_schema=ON")
        tables = _tables_in_id_order(con)
        return sum(1 for t in tables for _ in readable_rows(con, t, "1")) if tables else -1
    except sqlite3.Error:
        return -1
    finally:
        con.close()


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
    quarantine. A damaged header: read through a copy with the header rebuilt."""
    try:
        damaged = header_damaged(aside)
    except OSError:
        return Salvaged()
    if damaged:
        with with_rebuilt_header(aside) as copy:
            return _salvage(copy, c, aside.name)
    return _salvage(aside, c, aside.name)


def _salvage(aside: Path, c: sqlite3.Connection, name: str) -> Salvaged:
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
        reason = f"undecodable row {rid} salvaged from {name}: {exc}"
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
