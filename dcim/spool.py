"""Durable on-disk spool: every reading is committed here before any sink is tried.

Design: one SQLite database (``spool.sqlite`` in ``storage.spool_dir``) in WAL mode with
``synchronous=FULL``, one row per reading (compact JSON), ids in commit order.

Why SQLite rather than hand-made segment files with CRCs: the same guarantees (a commit is
fsynced; a torn write at a crash is rolled back by the WAL, never half-read) come from a
library tested for exactly that, and peek/ack/quarantine become small transactions. One
``append`` = one transaction = one fsync of the WAL, which is what bounds single-reading
appends; a 10,000-reading batch is one ``executemany`` in the same single transaction.

Concurrency: one process per spool directory, enforced with an exclusive ``flock`` on
``spool.lock`` (:class:`SpoolLockedError` otherwise). Within the process every method is
thread-safe: writes (append, ack, requeue) share one connection under a lock, ``peek`` reads
through a second connection, so a forwarder thread reading a batch does not hold up the
asyncio loop appending. ``append`` blocks for one fsync (about a millisecond on SSD).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcim.reading import Reading

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (id INTEGER PRIMARY KEY AUTOINCREMENT, r TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ns INTEGER NOT NULL,
    reason TEXT NOT NULL,
    n INTEGER NOT NULL,
    readings TEXT NOT NULL
);
"""


class SpoolError(Exception):
    pass


class SpoolLockedError(SpoolError):
    """Another process (or another Spool in this one) already has this spool directory."""


@dataclass(frozen=True)
class Batch:
    """The oldest pending readings; ``ack`` it once the sink has them."""

    first_id: int
    last_id: int
    readings: list[Reading]

    def __len__(self) -> int:
        return len(self.readings)


@dataclass(frozen=True)
class Quarantined:
    """Readings the sink refused for good (bad data), kept with the reason."""

    id: int
    time_ns: int
    reason: str
    count: int


def _dump(r: Reading) -> str:
    return json.dumps([r.measurement, r.tags, r.fields, r.time_ns], separators=(",", ":"))


def _load(text: str) -> Reading:
    m, tags, fields, t = json.loads(text)
    return Reading(m, tags, fields, t)


class Spool:
    """Durable FIFO of readings in ``directory`` (created if needed)."""

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = self._take_lock()
        self.path = self.dir / "spool.sqlite"
        try:
            self._w = self._connect()
            self._w.executescript(_SCHEMA)
            self._r = self._connect()
            row = self._w.execute("SELECT count(*) FROM spool").fetchone()
        except sqlite3.DatabaseError as exc:
            os.close(self._lock_fd)
            raise SpoolError(f"cannot open spool {self.path}: {exc}") from exc
        self._pending: int = row[0]
        self._wlock = threading.Lock()
        self._rlock = threading.Lock()
        self._closed = False

    def _take_lock(self) -> int:
        lock_path = self.dir / "spool.lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise SpoolLockedError(
                f"spool directory {self.dir} is in use by another collector (pid {holder}); "
                "run one collector per spool_dir, or give this one its own storage.spool_dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")
        con.execute("PRAGMA busy_timeout=10000")
        return con

    def _check_open(self) -> None:
        if self._closed:
            raise SpoolError(f"spool {self.path} is closed")

    # -- writing -----------------------------------------------------------------------
    def append(self, readings: Sequence[Reading]) -> None:
        """Commit ``readings`` (one transaction); returns once they are on disk."""
        if not readings:
            return
        rows = [(_dump(r),) for r in readings]
        with self._wlock:
            self._check_open()
            self._tx(lambda c: c.executemany("INSERT INTO spool (r) VALUES (?)", rows))
            self._pending += len(rows)

    def _tx(self, work: Any) -> None:
        con = self._w
        con.execute("BEGIN IMMEDIATE")
        try:
            work(con)
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

    def ack(self, batch: Batch, *, rejected: Sequence[tuple[Sequence[Reading], str]] = ()) -> None:
        """Delete ``batch`` (the sink has it). ``rejected``: parts of it the sink refused for
        good, moved to the quarantine with their reason in the same transaction."""
        now = time.time_ns()
        qrows = [
            (now, reason, len(rs), "[" + ",".join(_dump(r) for r in rs) + "]")
            for rs, reason in rejected
            if rs
        ]

        def work(c: sqlite3.Connection) -> None:
            cur = c.execute(
                "DELETE FROM spool WHERE id BETWEEN ? AND ?", (batch.first_id, batch.last_id)
            )
            self._pending -= cur.rowcount
            c.executemany(
                "INSERT INTO quarantine (time_ns, reason, n, readings) VALUES (?,?,?,?)", qrows
            )

        with self._wlock:
            self._check_open()
            self._tx(work)

    # -- reading -----------------------------------------------------------------------
    def peek(self, max_n: int) -> Batch:
        """Up to ``max_n`` of the oldest pending readings (an empty batch when none)."""
        with self._rlock:
            self._check_open()
            rows = self._r.execute(
                "SELECT id, r FROM spool ORDER BY id LIMIT ?", (max(1, max_n),)
            ).fetchall()
        if not rows:
            return Batch(0, -1, [])
        return Batch(rows[0][0], rows[-1][0], [_load(r) for _, r in rows])

    def pending(self) -> int:
        return self._pending

    # -- quarantine --------------------------------------------------------------------
    def quarantined(self) -> list[Quarantined]:
        with self._rlock:
            self._check_open()
            rows = self._r.execute(
                "SELECT id, time_ns, reason, n FROM quarantine ORDER BY id"
            ).fetchall()
        return [Quarantined(*row) for row in rows]

    def quarantined_readings(self, qid: int) -> list[Reading]:
        with self._rlock:
            self._check_open()
            row = self._r.execute("SELECT readings FROM quarantine WHERE id=?", (qid,)).fetchone()
        if row is None:
            raise KeyError(qid)
        return [Reading(m, tg, f, t) for m, tg, f, t in json.loads(row[0])]

    def requeue(self, qid: int) -> int:
        """Put a quarantined batch back at the end of the spool (after fixing the sink)."""
        readings = self.quarantined_readings(qid)
        rows = [(_dump(r),) for r in readings]

        def work(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM quarantine WHERE id=?", (qid,))
            c.executemany("INSERT INTO spool (r) VALUES (?)", rows)

        with self._wlock:
            self._check_open()
            self._tx(work)
            self._pending += len(rows)
        return len(rows)

    def drop_quarantined(self, qid: int) -> None:
        with self._wlock:
            self._check_open()
            self._tx(lambda c: c.execute("DELETE FROM quarantine WHERE id=?", (qid,)))

    # -- lifecycle ---------------------------------------------------------------------
    def close(self) -> None:
        with self._wlock, self._rlock:
            if self._closed:
                return
            self._closed = True
            self._r.close()
            # Best effort: the WAL is replayed at the next open anyway.
            with contextlib.suppress(sqlite3.OperationalError):
                self._w.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._w.close()
            os.close(self._lock_fd)

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
