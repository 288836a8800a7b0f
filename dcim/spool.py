"""Durable on-disk spool: every reading is committed here before any sink is tried.

Design: one SQLite database (``spool.sqlite`` in ``storage.spool_dir``) in WAL mode with
``synchronous=FULL``; one row per appended batch (at most ``ROW_MAX`` readings), holding the
batch as line protocol encoded once at append time (and as JSON only when the line protocol
does not say exactly what the readings are), ids in commit order (the row format and the
upgrade of a spool of a previous format: ``dcim.spool_rows``).

Why SQLite rather than hand-made segment files with CRCs: the same guarantees (a commit is
fsynced; a torn write at a crash is rolled back by the WAL, never half-read) come from a
library tested for exactly that, and peek/ack/quarantine become small transactions. One
``append`` = one transaction = one fsync of the WAL, which is what bounds single-reading
appends; a 10,000-reading batch is ten rows in the same single transaction.

Reading: :meth:`Spool.peek` gives the oldest pending readings decoded from the rows' line
protocol (for a sink that takes readings, e.g. the embedded store); :meth:`Spool.peek_lines`
gives them as one line protocol body, concatenated from the rows without decoding anything
(InfluxDB). A batch is whole rows, as many as fit in ``max_n`` readings, or, when the oldest
row alone holds more, the first ``max_n`` of its pending readings: the row then counts them
as done when acked (``done`` column) and the next batch starts after them, so nothing is sent
twice and nothing skipped. :meth:`Spool.ack` deletes what was delivered and quarantines what
the sink refused, in one transaction.

Concurrency: one process per spool directory, enforced with an exclusive ``flock`` on
``spool.lock`` (:class:`SpoolLockedError` otherwise). Within the process every method is
thread-safe: writes (append, ack, requeue) share one connection under a lock, ``peek`` reads
through a second connection, so a forwarder thread reading a batch does not hold up the
asyncio loop appending. ``append`` encodes outside the lock (or takes the lines the pipeline
encoded while it validated), then blocks for one fsync (about a millisecond on SSD).

Disk budget (``max_bytes``): the size is the pages in use (``page_count - freelist_count``,
times ``page_size``; free pages are reused before the file grows, so once a backlog has
drained the spool is not "full" forever) plus the WAL file. The file itself shrinks once a
backlog has drained (``auto_vacuum=INCREMENTAL``, a step per ack while over half of it
is free, :mod:`dcim.storage.space`). The size is approximate to a few pages: an append is
checked against its estimated size before it is written. When it would not fit,
``on_full="refuse_new"`` raises :class:`SpoolFullError` (nothing already accepted is lost);
``on_full="drop_oldest"`` deletes the oldest pending rows to make room, in the same
transaction (configured data loss, counted in readings in ``dropped_total`` and logged).

Corruption: at open, ``PRAGMA quick_check`` (reads the whole file: about a second per GB).
A corrupt or truncated file is moved aside as ``spool.sqlite.corrupt-<unix ts>`` (kept for
inspection) and what can still be read, row by row, is copied into a fresh spool
(``dcim.spool_repair``). A row that does not decode at ``peek`` (its line protocol fails its
checksum, its JSON is damaged) goes to the quarantine, as text, with the reason instead of
stopping the forwarder; a row whose line protocol fails its checksum but that has its JSON
is sent from its JSON.
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
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Self, TypeVar

from dcim.reading import Reading
from dcim.spool_repair import integrity_problem, move_aside, private_file, salvage
from dcim.spool_rows import (
    ROW_MAX,
    RowValues,
    as_text,
    decode_row,
    disk_bytes,
    dump,
    make_rows,
    row_bytes,
    take_lines,
    upgrade,
)
from dcim.storage import space

log = logging.getLogger(__name__)

OnFull = Literal["refuse_new", "drop_oldest"]
_WARN_HYSTERESIS_PCT = 5.0  # "back under" only this far below warn_pct: no log flapping
_LOG_EVERY_S = 60.0
_INSERT_ROW = "INSERT INTO spool (n, t_min, t_max, crc, lp, r) VALUES (?,?,?,?,?,?)"
_INSERT_QUARANTINE = "INSERT INTO quarantine (time_ns, reason, n, readings) VALUES (?,?,?,?)"
# The rows of the next batch: as many whole rows as fit in ?2 readings, in id order, else the
# oldest row alone (its readings counted from ``done``): the id range up to the last row whose
# running count fits (a range scan of the table, in id order: no sort of the rows read).
_OLDEST = """
WITH head AS (SELECT id, n - done AS left FROM spool WHERE id > ?3 ORDER BY id LIMIT ?1),
run AS (
    SELECT id, row_number() OVER w AS k, sum(left) OVER w AS upto FROM head
    WINDOW w AS (ORDER BY id ROWS UNBOUNDED PRECEDING)
)
SELECT id, n, done, {cols} FROM spool
WHERE id BETWEEN (SELECT min(id) FROM head) AND (SELECT max(id) FROM run WHERE upto <= ?2 OR k = 1)
ORDER BY id
"""
_T = TypeVar("_T")


# readings kept in memory for peek() (Spool.keep_readings) at most: a backlog beyond it (an
# outage of the store) is decoded from the rows as it is delivered
KEPT_MAX = 20_000
RECLAIM_STEP_PAGES = 1024  # pages given back per ack (4 MiB of 4 KiB pages)
RECLAIM_MIN_PAGES = 256  # free pages kept for reuse without giving them back


class SpoolError(Exception):
    pass


class SpoolClosedError(SpoolError):
    """The spool was closed (a forwarder still running when its collector stopped): nothing
    was read, written or acked."""


class SpoolLockedError(SpoolError):
    """Another process (or another Spool in this one) already has this spool directory."""


class SpoolFullError(SpoolError):
    """The readings do not fit in the disk budget (``on_full="refuse_new"``); none of them was
    written, everything already spooled is intact."""


@dataclass(frozen=True)
class Batch:
    """The oldest pending readings; ``ack`` it once the sink has them.

    Rows ``first_id`` to ``last_id``, or with ``take`` > 0 readings ``skip`` to
    ``skip + take`` of the one row ``first_id``. ``readings``: decoded (:meth:`Spool.peek`),
    empty when ``lines`` holds them as line protocol (:meth:`Spool.peek_lines`: nanosecond
    timestamps, a line per reading; ``spans``: (oldest, newest) time of each row)."""

    first_id: int
    last_id: int
    readings: list[Reading]
    count: int = -1  # readings in the batch (the length of ``readings`` when decoded)
    take: int = 0
    skip: int = 0
    lines: bytes | None = None
    spans: tuple[tuple[int, int], ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        if self.count < 0:
            object.__setattr__(self, "count", len(self.readings))

    def __len__(self) -> int:
        return self.count


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


def _pending(con: sqlite3.Connection) -> int:
    try:
        return int(con.execute("SELECT coalesce(sum(n - done), 0) FROM spool").fetchone()[0])
    except sqlite3.OperationalError:  # a spool of format 1 not upgraded yet: a row per reading
        return int(con.execute("SELECT count(*) FROM spool").fetchone()[0])


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
        return _pending(self._con)

    def close(self) -> None:
        self._con.close()


class Spool:
    """Durable FIFO of readings in ``directory`` (created if needed).

    ``max_bytes``: disk budget in bytes (None: unbounded); ``on_full``: what an append that
    does not fit does (see the module doc); ``warn_pct``: a WARNING is logged once when the
    spool crosses this share of the budget, and once when it is back under."""

    takes_lines = True  # append() takes the readings' line protocol (the pipeline's)

    def __init__(
        self,
        directory: str | Path,
        *,
        max_bytes: int | None = None,
        on_full: OnFull = "refuse_new",
        warn_pct: float = 80.0,
    ):
        self.dir = Path(directory)
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # the site's readings: private
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
            problem = integrity_problem(self.path)
            aside = move_aside(self.path) if problem else None
            self.corrupt_copy = aside
            self._w = self._connect()
            upgrade(self._w, self._tx)
            note = space.make_incremental(self._w, self.path)  # a small file: converted now
            if note:
                log.warning("spool: %s", note)
            self._page_size: int = self._w.execute("PRAGMA page_size").fetchone()[0]
            self._wal_limit = 0
            if max_bytes is not None:
                # The WAL counts in the budget: keep it to about a tenth of it (the default,
                # 1000 pages, would alone exceed a small budget), truncated after checkpoints.
                wal_pages = max(16, min(1000, max_bytes // self._page_size // 10))
                self._w.execute(f"PRAGMA wal_autocheckpoint={wal_pages}")
                self._wal_limit = wal_pages * self._page_size
                self._w.execute(f"PRAGMA journal_size_limit={self._wal_limit}")
            if aside is not None:
                got = self._tx(lambda c: salvage(aside, c))
                log.error(
                    "spool %s was corrupt (%s): moved aside to %s and kept for inspection; "
                    "salvaged %d readings into a fresh spool, %d undecodable rows and %d "
                    "quarantine entries into its quarantine, skipped %d empty rows; readings "
                    "in unreadable pages are lost",
                    self.path, problem, aside.name, got.readings, got.bad_rows,
                    got.quarantine, got.empty_rows,
                )  # fmt: skip
            self._r = self._connect()
            self._pending: int = _pending(self._w)
        except (sqlite3.DatabaseError, OSError) as exc:
            os.close(self._lock_fd)
            raise SpoolError(f"cannot open spool {self.path}: {exc}") from exc
        self._wlock = threading.Lock()
        self._rlock = threading.Lock()
        self._closed = False
        self._acks_unsynced = False  # an ack committed without its fsync (see sync_acks)
        self._watch: tuple[int, Callable[[], None]] | None = None
        # keep_readings: the readings of this process's appends, by row id, for peek() (the
        # embedded store's forwarder) instead of decoding them back from their line protocol
        self.keep_readings = False
        self._kept: dict[int, list[Reading]] = {}
        self._kept_n = 0

    def _take_lock(self) -> int:
        lock_path = self.dir / "spool.lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
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
        private_file(self.path)  # 0600 (SQLite gives its WAL and -shm files the same mode)
        con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")
        con.execute("PRAGMA busy_timeout=10000")
        # Not the overwriting of deleted rows with zeros (Debian's SQLite does it by
        # default): an ack would write every page a delivered row held once more.
        con.execute("PRAGMA secure_delete=FAST")
        return con

    def _check_open(self) -> None:
        if self._closed:
            raise SpoolClosedError(f"spool {self.path} is closed")

    def _tx(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        con = self._w
        con.execute("BEGIN IMMEDIATE")
        try:
            out = work(con)
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
        self._acks_unsynced = False  # a commit's fsync puts the WAL's earlier ones on disk too
        return out

    # -- disk budget -------------------------------------------------------------------
    def _size(self) -> int:
        """Bytes in use: pages holding data plus the WAL file (under ``_wlock``)."""
        data, wal = self._sizes()
        return data + wal

    def _sizes(self) -> tuple[int, int]:
        c = self._w
        pages: int = c.execute("PRAGMA page_count").fetchone()[0]
        free: int = c.execute("PRAGMA freelist_count").fetchone()[0]
        try:
            wal = self._wal.stat().st_size
        except FileNotFoundError:
            wal = 0
        return (pages - free) * self._page_size, wal

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
        """Delete the oldest pending rows holding at least ``need`` bytes; how many readings
        they held (``length`` of a BLOB is read from the row header, not the content)."""
        freed, upto, n = 0, None, 0
        cur = c.execute(
            "SELECT id, n - done, coalesce(length(lp), 0) + coalesce(length(r), 0) FROM spool "
            "ORDER BY id"
        )
        for rid, left, size in cur:
            freed, upto, n = freed + disk_bytes(size, self._page_size), rid, n + left
            if freed >= need:
                break
        cur.close()  # before the DELETE on the same table
        if upto is None or freed < need:
            raise SpoolFullError("no room")  # replaced with the full message by the caller
        c.execute("DELETE FROM spool WHERE id <= ?", (upto,))
        self._forget(upto)
        return n

    def _forget(self, upto: int) -> None:
        """Drop the kept readings of the rows up to id ``upto`` (deleted; under
        ``_wlock``). A rolled-back delete only costs a decode later."""
        kept = self._kept
        while kept:
            rid = next(iter(kept))
            if rid > upto:
                break
            self._kept_n -= len(kept.pop(rid))

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
    def append(self, readings: Sequence[Reading], lines: Sequence[str] | None = None) -> None:
        """Commit ``readings`` (one transaction); returns once they are on disk.
        :class:`SpoolFullError` when they do not fit in the budget and ``on_full`` is
        ``refuse_new`` (or they alone exceed it): then none of them is written. ``lines``:
        the readings' line protocol, a line each as :func:`dcim.storage.lineprotocol.encode`
        writes it, known to decode back to the very readings (what the pipeline validated
        and encoded); without it the readings are encoded here."""
        if not readings:
            return
        if lines is not None and len(lines) != len(readings):
            raise ValueError(f"{len(lines)} lines for {len(readings)} readings")
        rows = make_rows(readings, lines)  # the encoding, outside the lock
        keep = self.keep_readings and self._kept_n + len(readings) <= KEPT_MAX
        chunks = (
            [list(readings[i : i + ROW_MAX]) for i in range(0, len(readings), ROW_MAX)]
            if keep
            else []
        )
        with self._wlock:
            ids = self._commit(rows, len(readings), keep)
            if ids:
                self._kept.update(zip(ids, chunks, strict=True))
                self._kept_n += len(readings)
        watch = self._watch
        if watch is not None and self._pending >= watch[0]:
            try:
                watch[1]()
            except Exception:  # the readings are committed: that is what append says
                log.exception("spool watcher failed")

    def watch(self, threshold: int, callback: Callable[[], None] | None) -> None:
        """Have ``callback`` called (in the appending thread, once committed) after every
        append that leaves at least ``threshold`` readings pending: how the forwarder hears
        that a full batch waits, without polling. None: no more calls."""
        self._watch = None if callback is None else (threshold, callback)

    def _commit(self, rows: list[RowValues], count: int, keep: bool = False) -> list[int]:
        """Insert the rows of an append, within the budget (under ``_wlock``); returns
        their ids when ``keep`` (else [])."""
        ids: list[int] = []

        def insert(c: sqlite3.Connection) -> None:
            ids.clear()
            if not keep:
                c.executemany(_INSERT_ROW, rows)
                return
            for row in rows:
                rid = c.execute(_INSERT_ROW, row).lastrowid
                assert rid is not None
                ids.append(rid)

        self._check_open()
        if self.max_bytes is None:
            self._tx(insert)
            self._pending += count
            return ids
        need = sum(row_bytes(r, self._page_size) for r in rows)
        data, wal = self._sizes()
        used = data + wal
        # The WAL grows up to its limit between checkpoints: counted at that size; and
        # two pages of margin for what the estimates miss (b-tree pages that split).
        margin = 2 * self._page_size
        over = data + max(wal, self._wal_limit) + need + margin - self.max_bytes
        self._full = over > 0
        if over <= 0:
            self._tx(insert)
            self._pending += count
            self._level(used + need)
            return ids
        full = (
            f"spool {self.path} is full ({used / 2**20:.1f} of "
            f"{self.max_bytes / 2**20:.1f} MB): {count} new readings refused, those "
            "already spooled are kept; free the sink or raise storage.spool_max_mb"
        )
        if self.on_full == "drop_oldest" and need <= self.max_bytes:

            def drop_then_insert(c: sqlite3.Connection) -> int:
                dropped = self._make_room(c, over)
                insert(c)
                return dropped

            try:
                dropped = self._tx(drop_then_insert)
            except SpoolFullError:
                pass  # not enough to drop (the quarantine holds the space): refuse
            else:
                self._pending += count - dropped
                self.dropped_total += dropped
                self._log_drops(dropped)
                self._level(self.max_bytes)
                return ids
        self.refused_total += count
        self._level(used)
        raise SpoolFullError(full)

    def ack(self, batch: Batch, *, rejected: Sequence[tuple[Sequence[Reading], str]] = ()) -> None:
        """Delete ``batch`` (the sink has it; a part of a row: counted done). ``rejected``:
        parts of it the sink refused for good, moved to the quarantine with their reason in
        the same transaction.

        The commit is not fsynced unless something is quarantined (``synchronous=NORMAL`` for
        this transaction: in the WAL file, so a process crash, ``kill -9``, keeps it; on the
        disk with the next append's fsync, a checkpoint, or :meth:`sync_acks`: before a
        sink written without the spool takes newer values). A power loss before that may undo
        the ack, never an append: the batch is then sent again, which writes the same points
        (same series, fields and timestamps) once more. Fed flat out, an fsync per ack held
        the write lock, and the appending thread, for a few ms a batch (about 4 ms an fsync
        on the reference machine's disk, which influxd's own fsyncs share)."""
        now = time.time_ns()
        qrows = [(now, reason, len(rs), dump(rs)) for rs, reason in rejected if rs]

        def work(c: sqlite3.Connection) -> int:
            if batch.take:
                # Only if the row is as the batch found it (not dropped meanwhile).
                left = c.execute(
                    "UPDATE spool SET done = done + ? WHERE id = ? AND done = ? RETURNING n - done",
                    (batch.take, batch.first_id, batch.skip),
                ).fetchall()
                if left and left[0][0] <= 0:
                    c.execute("DELETE FROM spool WHERE id = ?", (batch.first_id,))
                    self._forget(batch.first_id)
                gone = batch.take if left else 0
            else:  # two steps (not one per row: each lets the GIL go)
                span = (batch.first_id, batch.last_id)
                gone = c.execute(
                    "SELECT coalesce(sum(n - done), 0) FROM spool WHERE id BETWEEN ? AND ?", span
                ).fetchone()[0]
                c.execute("DELETE FROM spool WHERE id BETWEEN ? AND ?", span)
                self._forget(batch.last_id)
            if qrows:
                c.executemany(_INSERT_QUARANTINE, qrows)
            return int(gone)

        with self._wlock:
            self._check_open()
            self._pending -= self._tx(work) if qrows else self._tx_unsynced(work)
            self._give_back()

    def _tx_unsynced(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """:meth:`_tx` without the fsync of its commit (see :meth:`ack`; under ``_wlock``)."""
        con = self._w
        con.execute("PRAGMA synchronous=NORMAL")
        try:
            out = self._tx(work)
            self._acks_unsynced = True
            return out
        finally:
            con.execute("PRAGMA synchronous=FULL")

    def sync_acks(self) -> None:
        """Put the acks not fsynced yet (see :meth:`ack`) on the disk: the WAL file fsynced,
        as the next append's commit would. For a sink written without the spool
        (:mod:`dcim.spool_through`): a batch acked, then newer values written straight to
        the sink, must not come back after a power loss."""
        with self._wlock:
            if not self._acks_unsynced or self._closed:
                return
            try:
                fd = os.open(f"{self.path}-wal", os.O_RDONLY)
            except FileNotFoundError:  # no WAL: checkpointed, and synced then
                fd = -1
            if fd >= 0:
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            self._acks_unsynced = False

    def _give_back(self) -> None:
        """After a backlog drained: give the file's free pages back to the file system, a
        step per ack (under ``_wlock``; an append waits for one step only), while more than
        half of the file is free: the readings pending then hold fewer pages than are free.
        Not while a backlog is being drained as new readings come (they reuse the free
        pages): there each step (pages moved, a checkpoint) held up the appending thread."""
        free = space.free_pages(self._w)
        pages = int(self._w.execute("PRAGMA page_count").fetchone()[0])
        if free > max(RECLAIM_MIN_PAGES, pages // 2):
            space.reclaim(self._w, RECLAIM_STEP_PAGES)

    # -- reading -----------------------------------------------------------------------
    def _oldest(
        self, max_n: int, cols: str, after_id: int = 0
    ) -> tuple[list[tuple[Any, ...]], int]:
        """The rows of the next batch (of the rows after ``after_id``), ``(id, n, done,
        *cols)``, and how many readings it takes of the first row when that row alone holds
        more than ``max_n`` (else 0)."""
        max_n = max(1, max_n)
        with self._rlock:
            self._check_open()
            # One statement (one snapshot), one step per row of the batch: each step lets the
            # GIL go, and under a thread appending flat out each one costs a wait for it.
            rows = self._r.execute(_OLDEST.format(cols=cols), (max_n, max_n, after_id)).fetchall()
        if not rows:
            return [], 0
        return rows, (max_n if rows[0][1] - rows[0][2] > max_n else 0)

    def peek(self, max_n: int) -> Batch:
        """Up to ``max_n`` of the oldest pending readings, decoded (an empty batch when none).
        A row that does not decode is moved to the quarantine with the reason, not
        returned."""
        while True:
            rows, take = self._oldest(max_n, "CAST(r AS BLOB), lp, crc")
            if not rows:
                return Batch(0, -1, [])
            readings: list[Reading] = []
            bad: list[tuple[int, str, int, str]] = []
            kept = self._kept
            for rid, n, done, raw, lp, crc in rows:
                try:
                    got = kept.get(rid) or decode_row(raw, n, lp, crc)
                    if len(got) != n:
                        got = decode_row(raw, n, lp, crc)
                    readings.extend(got[done : done + take] if take else got[done:])
                except (ValueError, TypeError) as exc:
                    left = n - done if isinstance(n, int) and isinstance(done, int) else 1
                    why = f"undecodable spool row {rid}: {exc}"
                    bad.append((rid, as_text(raw, lp), max(1, left), why))
            if not bad:
                return Batch(
                    rows[0][0], rows[-1][0], readings, take=take, skip=rows[0][2] if take else 0
                )
            self._quarantine_rows(bad)
            # Read again: the batch's id range must not span the rows just moved.

    def peek_lines(self, max_n: int, after_id: int = 0) -> Batch:
        """Like :meth:`peek`, the readings as one line protocol body (``Batch.lines``),
        concatenated from the rows without decoding them. When a row has no line protocol
        (a reading in it cannot be encoded, or the row comes from a spool of format 1) or its
        line protocol fails its checksum, the batch is :meth:`peek`'s (``lines`` None,
        ``readings`` decoded: the sink encodes them and says which one it refuses; a row
        that cannot be decoded goes to the quarantine). ``after_id``: the batch that follows
        the rows up to that id (being sent), which then is empty instead of :meth:`peek`'s
        when a row has no usable line protocol."""
        rows, take = self._oldest(max_n, "t_min, t_max, crc, lp", after_id)
        if not rows:
            return Batch(0, -1, [])
        parts: list[bytes] = []
        spans: list[tuple[int, int]] = []
        count = 0
        for rid, n, done, t_min, t_max, crc, lp in rows:
            if lp is None or t_min is None or t_max is None:
                return self.peek(max_n) if not after_id else Batch(0, -1, [])
            if zlib.crc32(lp) != crc:
                if after_id:  # said when it is the oldest
                    return Batch(0, -1, [])
                log.error("spool row %d: line protocol fails its checksum, not sent as is", rid)
                return self.peek(max_n)
            k = take or n - done
            parts.append(lp if k == n else take_lines(lp, done, k))
            spans.append((t_min, t_max))
            count += k
        first, last, skip = rows[0][0], rows[-1][0], rows[0][2] if take else 0
        return Batch(first, last, [], count, take, skip, b"".join(parts), tuple(spans))

    def _quarantine_rows(self, bad: list[tuple[int, str, int, str]]) -> None:
        now = time.time_ns()

        def work(c: sqlite3.Connection) -> int:
            gone = 0
            for rid, text, n, reason in bad:
                deleted = c.execute(
                    "DELETE FROM spool WHERE id=? RETURNING n - done", (rid,)
                ).fetchall()
                if deleted:
                    gone += n
                old = self._kept.pop(rid, None)
                self._kept_n -= len(old) if old else 0
                c.execute(_INSERT_QUARANTINE, (now, reason, n, text))
            return gone

        with self._wlock:
            self._check_open()
            self._pending -= self._tx(work)
        for _, _, _, reason in bad[:3]:
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
        rows = make_rows(readings)

        def work(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM quarantine WHERE id=?", (qid,))
            c.executemany(_INSERT_ROW, rows)

        with self._wlock:
            self._check_open()
            self._tx(work)
            self._pending += len(readings)
        return len(readings)

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
