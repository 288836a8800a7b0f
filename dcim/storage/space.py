"""Giving disk space back from a SQLite file (the embedded store, the spool) without a pause.

Deleted rows leave free pages inside the file; ``auto_vacuum=INCREMENTAL`` lets
``PRAGMA incremental_vacuum(N)`` move up to N of them to the end and cut the file, a small
step each time, so that the writer never waits for more than a step. In WAL mode the file
shrinks when the step is checkpointed into it (a passive checkpoint here, so that no reader
is waited for).

``auto_vacuum`` can be switched on only for a new file or by a ``VACUUM``, which rewrites the
whole file (the writer waits meanwhile): done at open for a file up to
:data:`CONVERT_MAX_BYTES`, a note otherwise (the caller logs it).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

INCREMENTAL = 2
CONVERT_MAX_BYTES = 64 * 1024 * 1024  # a VACUUM of this much takes about a second
STEP_PAGES = 256  # 1 MiB of 4 KiB pages per step


def make_incremental(con: sqlite3.Connection, path: Path) -> str | None:
    """Switch ``con``'s database (outside a transaction) to incremental vacuum: at once for
    a new or small file (a VACUUM), else nothing and a note saying why, to log."""
    if con.execute("PRAGMA auto_vacuum").fetchone()[0] == INCREMENTAL:
        return None
    size = path.stat().st_size if path.exists() else 0
    if size > CONVERT_MAX_BYTES:
        return (
            f"{path} ({size / 2**20:.0f} MiB) keeps the space of deleted rows for reuse but "
            "does not give it back to the file system; to have it given back, stop the "
            f'collector once and run: sqlite3 {path} "PRAGMA auto_vacuum=INCREMENTAL; VACUUM"'
        )
    con.execute("PRAGMA auto_vacuum=INCREMENTAL")
    con.execute("VACUUM")
    return None


def free_pages(con: sqlite3.Connection) -> int:
    return int(con.execute("PRAGMA freelist_count").fetchone()[0])


def reclaim(con: sqlite3.Connection, max_pages: int = STEP_PAGES) -> int:
    """One step: give back up to ``max_pages`` free pages (outside a transaction); returns
    the free pages that were there (0: nothing to do, no write made)."""
    free = free_pages(con)
    if free == 0 or con.execute("PRAGMA auto_vacuum").fetchone()[0] != INCREMENTAL:
        return 0
    # executescript: steps the pragma to its end (execute() steps it once: one page)
    con.executescript(f"PRAGMA incremental_vacuum({int(max_pages)});")
    con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    return free
