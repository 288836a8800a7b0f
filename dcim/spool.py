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

Disk budget (``max_bytes``): the size is the pages in use (``page_count - freelist_count``,
times ``page_size``; free pages are reused before the file grows, so once a backlog has
drained the spool is not "full" forever) plus the WAL file. It is approximate to a few pages:
an append is checked against its estimated size before it is written. When it would not fit,
``on_full="refuse_new"`` raises :class:`SpoolFullError` (nothing already accepted is lost);
``on_full="drop_oldest"`` deletes the oldest pending rows to make room, in the same
transaction (configured data loss, counted in ``dropped_total`` and logged).

Corruption: at open, ``PRAGMA quick_check`` (reads the whole file: about a second per GB).
A corrupt or truncated file is moved aside as ``spool.sqlite.corrupt-<unix ts>`` (kept for
inspection) and what can still be read, row by row, is copied into a fresh spool. A row that
does not decode at ``peek`` goes to the quarantine with the reason instead of stopping the
forwarder.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self

from dcim.reading import Reading

log = logging.getLogger(__name__)

OnFull = Literal["refuse_new", "drop_oldest"]
_ROW_OVERHEAD = 16  # bytes per row besides its JSON: cell header, pointer, page slack
_WARN_HYSTERESIS_PCT = 5.0  # "back under" only this far below warn_pct: no log flapping
_LOG_EVERY_S = 60.0

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


class SpoolFullError(SpoolError):
    """The readings do not fit in the disk budget (``on_full="refuse_new"``); none of them was
    written, everything already spooled is intact."""


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


@dataclass(frozen=True)
class SpoolStats:
    """Disk use of the spool. ``bytes``/``max_bytes`` in bytes (``max_bytes`` 0: no budget);
    ``refused_total``/``dropped_total``: readings since open; ``full``: the last append did
    not fit (refused or made room by dropping); ``warn``: at or above ``warn_pct``."""

    bytes: int
    max_bytes: int
    used_pct: float
    pending: int
    refused_total: int
    dropped_total: int
    full: bool
    warn: bool


def _dump(r: Reading) -> str:
    return json.dumps([r.measurement, r.tags, r.fields, r.time_ns], separators=(",", ":"))


def _load(text: str | bytes | None) -> Reading:
    """Decode one spool row; ValueError when it is not a well-formed reading (a corrupt row
    must not reach a sink, where it would fail every retry and block the spool)."""
    if text is None:
        raise ValueError("NULL row")
    m, tags, fields, t = json.loads(text)  # bad UTF-8 or JSON: ValueError as well
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


def _as_text(raw: bytes | None) -> str:
    return "" if raw is None else raw.decode("utf-8", "replace")  # NULL: a garbled row


def _quarantined(con: sqlite3.Connection) -> list[Quarantined]:
    rows = con.execute("SELECT id, time_ns, reason, n FROM quarantine ORDER BY id").fetchall()
    return [Quarantined(*row) for row in rows]


def _quarantined_readings(con: sqlite3.Connection, qid: int) -> list[Reading]:
    row = con.execute("SELECT readings FROM quarantine WHERE id=?", (qid,)).fetchone()
    if row is None:
        raise KeyError(qid)
    try:
        return [Reading(m, tg, f, t) for m, tg, f, t in json.loads(row[0])]
    except (ValueError, TypeError) as exc:
        raise SpoolError(
            f"quarantine entry {qid} is a corrupt spool row kept as raw text: {exc}"
        ) from exc


class QuarantineView:
    """The quarantine of a spool directory, read-only and without the spool's lock, so it can
    be read while the collector runs (``dcim quarantine list|show``)."""

    def __init__(self, directory: str | Path):
        path = Path(directory) / "spool.sqlite"
        if not path.exists():
            raise SpoolError(f"no spool at {path}")
        self._con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        self._con.execute("PRAGMA busy_timeout=10000")

    def entries(self) -> list[Quarantined]:
        return _quarantined(self._con)

    def readings(self, qid: int) -> list[Reading]:
        return _quarantined_readings(self._con, qid)

    def pending(self) -> int:
        return int(self._con.execute("SELECT count(*) FROM spool").fetchone()[0])

    def close(self) -> None:
        self._con.close()


def _readable_rows(con: sqlite3.Connection, table: str, cols: str) -> Iterator[tuple[Any, ...]]:
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


class Spool:
    """Durable FIFO of readings in ``directory`` (created if needed).

    ``max_bytes``: disk budget in bytes (None: unbounded); ``on_full``: what an append that
    does not fit does (see the module doc); ``warn_pct``: a WARNING is logged once when the
    spool crosses this share of the budget, and once when it is back under."""

    def __init__(
        self,
        directory: str | Path,
        *,
        max_bytes: int | None = None,
        on_full: OnFull = "refuse_new",
        warn_pct: float = 80.0,
    ):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.on_full = on_full
        self.warn_pct = warn_pct
        self.refused_total = 0  # readings refused for want of room
        self.dropped_total = 0  # oldest readings deleted to make room (drop_oldest)
        self.corrupt_copy: Path | None = None  # where a corrupt file found at open went
        self._full = False
        self._warn = False
        self._drops_unlogged = 0
        self._last_drop_log = -math.inf
        self._lock_fd = self._take_lock()
        self.path = self.dir / "spool.sqlite"
        self._wal = self.dir / "spool.sqlite-wal"
        try:
            problem = self._integrity_problem()
            aside = self._move_aside() if problem else None
            self._w = self._connect()
            self._w.executescript(_SCHEMA)
            self._page_size: int = self._w.execute("PRAGMA page_size").fetchone()[0]
            if max_bytes is not None:
                # The WAL counts in the budget: keep it to about a tenth of it (the default,
                # 1000 pages, would alone exceed a small budget), truncated after checkpoints.
                wal_pages = max(16, min(1000, max_bytes // self._page_size // 10))
                self._w.execute(f"PRAGMA wal_autocheckpoint={wal_pages}")
                self._w.execute(f"PRAGMA journal_size_limit={wal_pages * self._page_size}")
            if aside is not None:
                self._salvage(aside, problem)
            self._r = self._connect()
            row = self._w.execute("SELECT count(*) FROM spool").fetchone()
        except (sqlite3.DatabaseError, OSError) as exc:
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

    # -- corruption --------------------------------------------------------------------
    def _integrity_problem(self) -> str:
        """What is wrong with the file, "" when it is absent or sound. Read-only: a corrupt file
        is not checkpointed into (the copy kept aside is the file as it was found)."""
        if not self.path.exists():
            return ""
        con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
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

    def _move_aside(self) -> Path:
        name = f"{self.path.name}.corrupt-{int(time.time())}"
        aside, n = self.path.with_name(name), 0
        while aside.exists():  # a second corruption within the same second
            n += 1
            aside = self.path.with_name(f"{name}.{n}")
        os.replace(self.path, aside)
        # The WAL goes with it (SQLite reads <name>-wal beside <name>); the shared-memory
        # index is rebuilt from the WAL.
        if self._wal.exists():
            os.replace(self._wal, aside.with_name(aside.name + "-wal"))
        (self.dir / "spool.sqlite-shm").unlink(missing_ok=True)
        self.corrupt_copy = aside
        return aside

    def _salvage(self, aside: Path, problem: str) -> None:
        """Copy what can be read from the corrupt copy into the fresh spool (one
        transaction): readings in order, undecodable rows and old quarantine entries to the
        quarantine."""
        good = bad = null = quarantine = 0
        try:
            src = sqlite3.connect(f"file:{aside}?mode=ro", uri=True)
        except sqlite3.Error:
            src = None
        if src is not None:
            # Tolerate a file shorter than its header says (truncated): read what is there.
            src.execute("PRAGMA writable_schema=ON")
            now = time.time_ns()

            def work(c: sqlite3.Connection) -> None:
                nonlocal good, bad, null, quarantine
                rows: list[tuple[str]] = []
                for rid, raw in _readable_rows(src, "spool", "CAST(r AS BLOB)"):
                    if raw is None:  # nothing left of it to keep
                        null += 1
                        continue
                    try:
                        rows.append((_dump(_load(raw)),))
                    except (ValueError, TypeError) as exc:
                        c.execute(
                            "INSERT INTO quarantine (time_ns, reason, n, readings) "
                            "VALUES (?,?,1,?)",
                            (now, f"undecodable row {rid} salvaged from {aside.name}: {exc}",
                             _as_text(raw)),
                        )  # fmt: skip
                        bad += 1
                        continue
                    if len(rows) >= 10_000:
                        c.executemany("INSERT INTO spool (r) VALUES (?)", rows)
                        good += len(rows)
                        rows.clear()
                c.executemany("INSERT INTO spool (r) VALUES (?)", rows)
                good += len(rows)
                for _, *q in _readable_rows(src, "quarantine", "time_ns, reason, n, readings"):
                    with contextlib.suppress(sqlite3.Error):  # a garbled entry: skip it
                        c.execute(
                            "INSERT INTO quarantine (time_ns, reason, n, readings) "
                            "VALUES (?,?,?,?)",
                            q,
                        )
                        quarantine += 1

            try:
                self._tx(work)
            finally:
                src.close()
        log.error(
            "spool %s was corrupt (%s): moved aside to %s and kept for inspection; salvaged "
            "%d readings into a fresh spool, %d undecodable rows and %d quarantine entries "
            "into its quarantine, skipped %d empty rows; readings in unreadable pages are lost",
            self.path,
            problem,
            aside.name,
            good,
            bad,
            quarantine,
            null,
        )

    # -- disk budget -------------------------------------------------------------------
    def _size(self) -> int:
        """Bytes in use: pages holding data plus the WAL file (under ``_wlock``)."""
        c = self._w
        pages: int = c.execute("PRAGMA page_count").fetchone()[0]
        free: int = c.execute("PRAGMA freelist_count").fetchone()[0]
        try:
            wal = self._wal.stat().st_size
        except FileNotFoundError:
            wal = 0
        return (pages - free) * self._page_size + wal

    def _level(self, used: int) -> None:
        """Log once when crossing ``warn_pct`` of the budget, once when back under."""
        if not self.max_bytes:
            return
        pct = 100.0 * used / self.max_bytes
        if not self._warn and pct >= self.warn_pct:
            self._warn = True
            log.warning(
                "spool %s is %.0f%% full (%.1f of %.1f MB); when full it will %s",
                self.path, pct, used / 2**20, self.max_bytes / 2**20,
                "refuse new readings" if self.on_full == "refuse_new" else "drop the oldest",
            )  # fmt: skip
        elif self._warn and pct < self.warn_pct - _WARN_HYSTERESIS_PCT:
            self._warn = False
            log.warning("spool %s is back under %.0f%% of its budget (%.0f%%)",
                        self.path, self.warn_pct, pct)  # fmt: skip

    def _make_room(self, c: sqlite3.Connection, need: int) -> int:
        """Delete the oldest pending rows holding at least ``need`` bytes; how many."""
        freed, upto, n = 0, None, 0
        cur = c.execute("SELECT id, length(CAST(r AS BLOB)) FROM spool ORDER BY id")
        for rid, size in cur:
            freed, upto, n = freed + size + _ROW_OVERHEAD, rid, n + 1
            if freed >= need:
                break
        cur.close()  # before the DELETE on the same table
        if upto is None or freed < need:
            raise SpoolFullError("no room")  # replaced with the full message by the caller
        c.execute("DELETE FROM spool WHERE id <= ?", (upto,))
        return n

    def _log_drops(self, n: int) -> None:
        self._drops_unlogged += n
        now = time.monotonic()
        if now - self._last_drop_log < _LOG_EVERY_S:
            return
        self._last_drop_log = now
        log.error(
            "spool %s is full (%.1f MB budget, on_full=drop_oldest): dropped the %d oldest "
            "unforwarded readings to make room (%d in all since start)",
            self.path, (self.max_bytes or 0) / 2**20, self._drops_unlogged, self.dropped_total,
        )  # fmt: skip
        self._drops_unlogged = 0

    def stats(self) -> SpoolStats:
        """Current disk use (measures the files: a few microseconds)."""
        with self._wlock:
            self._check_open()
            used = self._size()
            self._level(used)
        budget = self.max_bytes or 0
        pct = round(100.0 * used / budget, 1) if budget else 0.0
        return SpoolStats(
            used, budget, pct, self._pending, self.refused_total, self.dropped_total,
            self._full, self._warn,
        )  # fmt: skip

    # -- writing -----------------------------------------------------------------------
    def append(self, readings: Sequence[Reading]) -> None:
        """Commit ``readings`` (one transaction); returns once they are on disk.
        :class:`SpoolFullError` when they do not fit in the budget and ``on_full`` is
        ``refuse_new`` (or they alone exceed it): then none of them is written."""
        if not readings:
            return
        rows = [(_dump(r),) for r in readings]

        def insert(c: sqlite3.Connection) -> None:
            c.executemany("INSERT INTO spool (r) VALUES (?)", rows)

        with self._wlock:
            self._check_open()
            if self.max_bytes is None:
                self._tx(insert)
                self._pending += len(rows)
                return
            need = sum(len(r[0]) + _ROW_OVERHEAD for r in rows)  # ASCII-only JSON: chars = bytes
            used = self._size()
            over = used + need - self.max_bytes
            self._full = over > 0
            if over <= 0:
                self._tx(insert)
                self._pending += len(rows)
                self._level(used + need)
                return
            full = (
                f"spool {self.path} is full ({used / 2**20:.1f} of "
                f"{self.max_bytes / 2**20:.1f} MB): {len(rows)} new readings refused, those "
                "already spooled are kept; free the sink or raise storage.spool_max_mb"
            )
            if self.on_full == "drop_oldest" and need <= self.max_bytes:
                dropped = 0

                def drop_then_insert(c: sqlite3.Connection) -> None:
                    nonlocal dropped
                    dropped = self._make_room(c, over)
                    insert(c)

                try:
                    self._tx(drop_then_insert)
                except SpoolFullError:
                    pass  # not enough to drop (the quarantine holds the space): refuse
                else:
                    self._pending += len(rows) - dropped
                    self.dropped_total += dropped
                    self._log_drops(dropped)
                    self._level(self.max_bytes)
                    return
            self.refused_total += len(rows)
            self._level(used)
            raise SpoolFullError(full)

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
        """Up to ``max_n`` of the oldest pending readings (an empty batch when none). A row
        that does not decode is moved to the quarantine with the reason, not returned."""
        while True:
            with self._rlock:
                self._check_open()
                rows = self._r.execute(
                    "SELECT id, CAST(r AS BLOB) FROM spool ORDER BY id LIMIT ?", (max(1, max_n),)
                ).fetchall()
            if not rows:
                return Batch(0, -1, [])
            readings: list[Reading] = []
            bad: list[tuple[int, bytes | None, str]] = []
            for rid, raw in rows:
                try:
                    readings.append(_load(raw))
                except (ValueError, TypeError) as exc:
                    bad.append((rid, raw, f"undecodable spool row {rid}: {exc}"))
            if not bad:
                return Batch(rows[0][0], rows[-1][0], readings)
            self._quarantine_rows(bad)
            # Read again: the batch's id range must not span the rows just moved.

    def _quarantine_rows(self, bad: list[tuple[int, bytes | None, str]]) -> None:
        now = time.time_ns()

        def work(c: sqlite3.Connection) -> None:
            for rid, raw, reason in bad:
                cur = c.execute("DELETE FROM spool WHERE id=?", (rid,))
                self._pending -= cur.rowcount
                c.execute(
                    "INSERT INTO quarantine (time_ns, reason, n, readings) VALUES (?,?,1,?)",
                    (now, reason, _as_text(raw)),
                )

        with self._wlock:
            self._check_open()
            self._tx(work)
        for _, _, reason in bad[:3]:
            log.error("quarantined a corrupt spool row (kept as raw text): %s", reason)

    def pending(self) -> int:
        return self._pending

    # -- quarantine --------------------------------------------------------------------
    def quarantined(self) -> list[Quarantined]:
        with self._rlock:
            self._check_open()
            return _quarantined(self._r)

    def quarantined_readings(self, qid: int) -> list[Reading]:
        with self._rlock:
            self._check_open()
            return _quarantined_readings(self._r, qid)

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

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
