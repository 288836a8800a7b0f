"""Forwarder: spool -> store, deleting from the spool only what the store acknowledged.

A thread repeatedly peeks the oldest batch, writes it and acks it: as soon as a full batch
(``batch_size`` readings) is pending (the spool's append says so), else what is pending every
``flush_interval_s``. With a backlog of at least two batches, to a store that takes line
protocol, batches go back to back: while one is written, a helper thread acks the one before
and reads the next one from the spool, and has the store prepare its body (InfluxDB's gzip:
:class:`~dcim.storage.base.PreparingWriter`) (one write at a time, acks in order), so that the
store waits neither for the spool nor for the compression between two writes. A store that
takes line protocol as is (:class:`~dcim.storage.base.LineWriter`: InfluxDB) is sent the
spool's line protocol, concatenated from the rows without decoding them; another one (the
embedded store) gets the readings decoded. A retryable :class:`SinkError` (outage, auth,
overload) keeps the batch and backs off exponentially with jitter (capped, ``Retry-After``
honoured; ``flush()`` and ``stop()`` cut a back-off short). A non-retryable one (bad data) is
bisected: the batch is decoded, the halves are written again until the refused readings are
isolated; those go to the spool's quarantine with the reason, the rest is delivered. Rewriting
accepted halves is harmless: writes are idempotent (explicit timestamps). Nothing is lost: at
worst it stays spooled. The thread never dies: any unexpected error (a store bug, a spool disk
error) is logged and retried after the same back-off.

Lag (:attr:`ForwarderStats.lag_s`): the age (by its timestamp) of the oldest reading of the
batch being delivered, 0 once the spool is drained: how far behind the database is, in
seconds (it grows through an outage; a backfill's old readings show as their age).

The interpreter lock: every return from I/O (a SQLite step, a socket call, gzip) makes the
thread wait for the GIL, which a thread busy in Python (the collector's, validating and
encoding readings) gives up only every ``sys.getswitchinterval()`` (5 ms by default): a few
dozen such waits per batch. While a forwarder runs, the interval is at most ``GIL_SWITCH_S``.
"""

from __future__ import annotations

import contextlib
import logging
import random
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from dcim.reading import Reading
from dcim.spool import Batch, Spool, SpoolClosedError
from dcim.storage.base import (
    LineWriter,
    PreparingWriter,
    SinkError,
    Store,
    StoreBusyError,
    StoreError,
)

log = logging.getLogger(__name__)

# The interpreter's switch interval while a forwarder runs (see the module doc): fed flat out
# (benchmarks/ingest.py), 5 ms of it per wait made each batch take about a third longer.
GIL_SWITCH_S = 0.0005
_switch_lock = threading.Lock()
_running = 0  # forwarder threads started and not stopped
_switch_before: float | None = None  # the interval before the first one lowered it


@dataclass(frozen=True)
class ForwarderStats:
    sent: int  # readings delivered
    pending: int  # readings in the spool
    quarantined: int  # readings refused for good since start
    last_error: str | None  # None once a write succeeded again
    failures: int  # consecutive failed attempts
    lag_s: float = 0.0  # age of the oldest reading being delivered (0: nothing waiting)


class Forwarder:
    def __init__(
        self,
        spool: Spool,
        store: Store,
        *,
        batch_size: int = 5000,
        flush_interval_s: float = 1.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 60.0,
    ):
        self.spool = spool
        self.store = store
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self._sent = 0
        self._quarantined = 0
        self._last_error: str | None = None
        self._oldest_ns: int | None = None  # time of the oldest reading being delivered
        self._failures = 0
        self._outage_since: float | None = None
        self._lines = store if isinstance(store, LineWriter) else None
        # a backlog's next body is compressed by the helper while one is posted (InfluxDB)
        self._prep = store if isinstance(store, PreparingWriter) else None
        if self._lines is None:  # the readings as appended, not decoded back (Spool.peek)
            spool.keep_readings = True
        # The InfluxDB store rolls up the hours of late points once for many writes: due
        # when the spool is drained (see dcim.storage.influx).
        self._flush_rollups = getattr(store, "flush_rollups", None)
        self._stop = threading.Event()
        self._wake = threading.Event()  # send now: ends the wait for a full batch
        # flush() and stop() end a back-off: the sleep waits for this count to change
        self._nudges = 0
        self._nudged = threading.Condition()
        self._drained = threading.Condition()
        self._thread: threading.Thread | None = None
        self._send_lock = threading.Lock()  # one sender: the thread, or flush() inline
        self._lowered = False  # this one counts among the forwarders running (GIL_SWITCH_S)
        self._helper: ThreadPoolExecutor | None = None  # acks and reads ahead in a burst

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self.spool.watch(self.batch_size, self._wake.set)  # a full batch: send it now
        if not self._lowered:
            _lower_switch_interval()
            self._lowered = True
        self._thread = threading.Thread(target=self._run, name="dcim-forwarder", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread (what is not sent stays in the spool). A thread still in a write
        after ``timeout`` ends on its own once the write returns, its helper with it; the
        spool may be closed meanwhile: the batch is then left unacked (in the spool, sent
        again at the next start), quietly (see :meth:`_unexpected`)."""
        self._stop.set()
        self._wake.set()
        self._nudge()
        self.spool.watch(self.batch_size, None)
        if self._thread is not None:
            self._thread.join(timeout)
            alive = self._thread.is_alive()
            self._thread = None
            if self._helper is not None and not alive:
                self._helper.shutdown(wait=True)
                self._helper = None
        if self._lowered:
            _restore_switch_interval()
            self._lowered = False

    def flush(self, timeout: float) -> bool:
        """Send what is pending now; True when the spool is empty within ``timeout`` s.
        Without a running thread, sends in the calling thread."""
        deadline = time.monotonic() + timeout
        self._nudge()  # a back-off in progress ends: one attempt now, then back-off again
        if self._thread is None or not self._thread.is_alive():
            while self.spool.pending() and time.monotonic() < deadline:
                if not self.step():
                    self._sleep(
                        min(self._delay(self._retry_after), max(0.0, deadline - time.monotonic()))
                    )
            return self.spool.pending() == 0
        self._wake.set()
        with self._drained:
            while self.spool.pending():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._wake.set()
                self._drained.wait(min(left, 0.1))
        return True

    def thread_id(self) -> int | None:
        """The native (OS) id of the forwarder's thread, None when it is not running."""
        t = self._thread
        return t.native_id if t is not None and t.is_alive() else None

    def stats(self) -> ForwarderStats:
        oldest = self._oldest_ns
        pending = self.spool.pending()
        lag = 0.0 if oldest is None or not pending else max(0.0, time.time() - oldest / 1e9)
        return ForwarderStats(
            self._sent, pending, self._quarantined, self._last_error, self._failures, lag
        )

    def _peeked(self, batch: Batch) -> Batch:
        """``batch``, its oldest reading's time noted (the lag)."""
        if batch.count > 0:
            if batch.spans:
                self._oldest_ns = min(lo for lo, _ in batch.spans)
            elif batch.readings:
                self._oldest_ns = min(r.time_ns for r in batch.readings)
        return batch

    # -- work ----------------------------------------------------------------------------
    def _run(self) -> None:
        last_send = 0.0
        while not self._stop.is_set():
            try:
                last_send = self._tick(last_send)
            except Exception as exc:  # noqa: BLE001 - a dead thread would stop forwarding for good
                self._unexpected("forwarder error", exc)
                self._sleep(self._delay(None))
        helper, self._helper = self._helper, None  # stop() left it to this thread
        if helper is not None:
            helper.shutdown(wait=True)
        with self._drained:
            self._drained.notify_all()

    def _tick(self, last_send: float) -> float:
        """One turn of the thread's loop; returns when it last sent."""
        pending = self.spool.pending()
        if pending:
            since = time.monotonic() - last_send
            if pending >= self.batch_size or since >= self.flush_interval_s or self._wake.is_set():
                self._wake.clear()
                burst = self._lines is not None and pending >= 2 * self.batch_size
                ok = self._burst() if burst else self.step()
                last_send = time.monotonic()
                if not ok:
                    self._sleep(self._delay(self._retry_after))
                return last_send
            self._wake.wait(self.flush_interval_s - since)
            return last_send
        self._oldest_ns = None
        with self._drained:
            self._drained.notify_all()
        if self._settle():
            return last_send  # the rollups failed: backed off, look again
        self._wake.clear()
        if self.spool.pending() == 0:
            self._wake.wait(self.flush_interval_s)
        return last_send

    _retry_after: float | None = None

    def _settle(self) -> bool:
        """The spool is drained: the store's deferred work (the InfluxDB store's rollups of
        late hours). True when it failed (and the back-off was slept)."""
        if self._flush_rollups is None:
            return False
        try:
            self._flush_rollups()
        except StoreError as exc:
            self._failed(f"rolling up late points: {exc}", None)
            self._sleep(self._delay(None))
            return True
        return False

    def step(self) -> bool:
        """Send one batch. True: delivered (or nothing to send); False: retry later."""
        with self._send_lock:
            try:
                if self._lines is not None:
                    batch = self.spool.peek_lines(self.batch_size)
                else:
                    batch = self.spool.peek(self.batch_size)
            except Exception as exc:  # the spool file failed under us: keep trying, log
                self._unexpected("reading the spool failed", exc)
                return False
            if not batch.count:
                self._oldest_ns = None
                return True
            self._peeked(batch)
            try:
                batch, rejected = self._send(batch)
            except SinkError as exc:
                self._failed(exc.reason, exc.retry_after_s)
                return False
            except Exception as exc:  # a bug in a store must not lose data: retry later
                if self._closed_under_stop(exc):  # a refusal's re-read after a stop
                    return False
                log.exception("store write failed unexpectedly; the batch stays spooled")
                self._failed(f"{type(exc).__name__}: {exc}", None)
                return False
            self._ack(batch, rejected)
            return True

    def deliver_now(
        self, readings: Sequence[Reading], write: Callable[[Sequence[Reading]], None]
    ) -> bool:
        """Deliver ``readings`` with ``write`` (the store's write, durable when it returns) in
        the calling thread, when nothing waits in the spool and no batch is being sent (see
        :mod:`dcim.spool_through`); counted as sent. False: not written (a backlog, the store
        busy or failing), the caller spools them and this forwarder delivers them from there
        (a retryable failure other than busy counts as a failed attempt, logged as such;
        refused data is found and quarantined by the forwarder, which logs it)."""
        if not self._send_lock.acquire(blocking=False):  # a batch of the backlog in flight
            return False
        try:
            if self.spool.pending():
                return False
            try:
                write(readings)
            except StoreBusyError as exc:  # the store's maintenance: spooled, quietly
                log.debug("%s; %d readings spooled", exc.reason, len(readings))
                return False
            except SinkError as exc:
                if exc.retryable:  # disk full, I/O: an outage of the store, said as such
                    self._failed(exc.reason, exc.retry_after_s)
                else:  # refused data: bisected from the spool, the refused part quarantined
                    log.debug("the store refused %d readings (%s); spooled", len(readings), exc)
                return False
            except Exception as exc:  # noqa: BLE001 - a store bug: spooled, retried from there
                self._unexpected("store write failed unexpectedly; the readings are spooled", exc)
                return False
            self._sent += len(readings)
            return True
        finally:
            self._send_lock.release()

    def _burst(self) -> bool:
        """Batches back to back while at least a full one more is pending (see the module
        doc). True: what it took was delivered; False: retry later (what is not acked stays
        spooled). A batch the store refuses, or one without line protocol, goes through
        :meth:`step`."""
        lines = self._lines
        assert lines is not None
        if self._helper is None:
            self._helper = ThreadPoolExecutor(1, thread_name_prefix="dcim-forwarder-spool")
        helper = self._helper
        acked: Future[None] | None = None  # the ack of the batch written before
        refused = False
        with self._send_lock:
            try:
                batch = self._peeked(self.spool.peek_lines(self.batch_size))
                prepared = self._prepare(batch)
                while batch.count and batch.lines is not None and not self._stop.is_set():
                    more = batch.take == 0 and (
                        self.spool.pending() - batch.count >= self.batch_size
                    )
                    ahead = helper.submit(self._read_ahead, batch.last_id) if more else None
                    try:
                        if prepared is not None and self._prep is not None:
                            self._prep.write_prepared(prepared)
                        else:
                            lines.write_lines(batch.lines, batch.spans)
                    except SinkError as exc:
                        _wait(acked)
                        acked = None
                        if exc.retryable:
                            self._failed(exc.reason, exc.retry_after_s)
                            return False
                        refused = True  # step() finds the bad readings
                        break
                    _wait(acked)
                    acked = helper.submit(self._ack, batch, [])
                    if ahead is None:
                        break
                    batch, prepared = ahead.result()
                    self._peeked(batch)
                _wait(acked)
            except Exception as exc:  # a store or spool bug, a disk error: retry later
                with contextlib.suppress(Exception):  # an ack that failed: stays spooled
                    _wait(acked)
                self._unexpected("forwarding a backlog failed", exc)
                return False
        if refused or (batch.count and batch.lines is None and not self._stop.is_set()):
            return self.step()  # the bad readings isolated; rows without line protocol
        return True

    def _prepare(self, batch: Batch) -> object | None:
        """The store's body for ``batch`` made ready to post (compressed), when it can."""
        if self._prep is None or batch.lines is None or not batch.count:
            return None
        prepared: object = self._prep.prepare_lines(batch.lines, batch.spans)
        return prepared

    def _read_ahead(self, after_id: int) -> tuple[Batch, object | None]:
        """In the helper thread: the batch after the rows up to ``after_id``, prepared."""
        batch = self.spool.peek_lines(self.batch_size, after_id)
        return batch, self._prepare(batch)

    def _send(self, batch: Batch) -> tuple[Batch, list[tuple[Sequence[Reading], str]]]:
        """Write a batch; returns the batch delivered (the same one, or decoded when its line
        protocol was refused) and its refused parts."""
        if batch.lines is not None and self._lines is not None:
            try:
                self._lines.write_lines(batch.lines, batch.spans)
                return batch, []
            except SinkError as exc:
                if exc.retryable:
                    raise
                log.warning(
                    "the sink refused a batch of %d readings (%s); finding the bad ones",
                    batch.count,
                    exc.reason,
                )
            # Decoded: the same rows (unless the oldest were dropped meanwhile for room:
            # then the batch that is delivered and acked is this one, not the refused one).
            batch = self.spool.peek(self.batch_size)
        return batch, self._deliver(batch.readings)

    def _deliver(self, readings: Sequence[Reading]) -> list[tuple[Sequence[Reading], str]]:
        """Write; on a non-retryable error bisect and return the refused parts."""
        try:
            self.store.write(readings)
            return []
        except SinkError as exc:
            if exc.retryable:
                raise
            if len(readings) == 1:
                return [(readings, exc.reason)]
            mid = len(readings) // 2
            return self._deliver(readings[:mid]) + self._deliver(readings[mid:])

    def _ack(self, batch: Batch, rejected: list[tuple[Sequence[Reading], str]]) -> None:
        self.spool.ack(batch, rejected=rejected)
        bad = sum(len(rs) for rs, _ in rejected)
        self._sent += batch.count - bad
        self._quarantined += bad
        for rs, reason in rejected[:3]:
            log.error("quarantined %d reading(s) the sink refused: %s", len(rs), reason)
        if len(rejected) > 3:
            log.error("... and %d more refused parts of the same batch", len(rejected) - 3)
        if self._outage_since is not None:
            log.warning(
                "sink reachable again after %.0f s and %d failed attempts; forwarding the "
                "backlog (%d pending)",
                time.monotonic() - self._outage_since,
                self._failures,
                self.spool.pending(),
            )
        self._outage_since = None
        self._failures = 0
        self._last_error = None
        self._retry_after = None

    def _failed(self, reason: str, retry_after: float | None) -> None:
        self._failures += 1
        self._retry_after = retry_after
        if self._outage_since is None:
            self._outage_since = time.monotonic()
        # Log the first failure, a changed reason, then every 10th attempt: not a flood.
        if self._failures == 1 or reason != self._last_error or self._failures % 10 == 0:
            log.warning(
                "sink write failed (attempt %d, %d readings kept in the spool): %s",
                self._failures,
                self.spool.pending(),
                reason,
            )
        self._last_error = reason

    def _closed_under_stop(self, exc: Exception) -> bool:
        """Whether ``exc`` is the spool closed under a stopped forwarder (said at INFO)."""
        if isinstance(exc, SpoolClosedError) and self._stop.is_set():
            log.info(
                "forwarder stopped with a write in flight; the spool closed before its ack: "
                "the batch stays spooled and is sent again at the next start (the same points)"
            )
            return True
        return False

    def _unexpected(self, what: str, exc: Exception) -> None:
        """A bug or a disk error: logged with its traceback when new (then every 10th time),
        counted as a failed attempt so the back-off applies. Not the spool closed under a
        stopped forwarder (its collector stopped with a write in flight, the write returned
        after the spool was closed): the batch stays spooled (acks are transactions: either
        done or not), said once at INFO."""
        if self._closed_under_stop(exc):
            return
        reason = f"{type(exc).__name__}: {exc}"
        if reason != self._last_error or self._failures % 10 == 9:
            log.exception("%s; retrying after a back-off (what is spooled stays spooled)", what)
        self._failed(reason, None)

    def _delay(self, retry_after: float | None) -> float:
        n = max(0, self._failures - 1)
        base = min(self.backoff_max_s, self.backoff_initial_s * 2.0 ** min(n, 30))
        delay = base * random.uniform(0.5, 1.0)  # jitter: many collectors, one database
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.backoff_max_s * 5))
        return delay

    def _nudge(self) -> None:
        with self._nudged:
            self._nudges += 1
            self._nudged.notify_all()

    def _sleep(self, seconds: float) -> None:
        """Back off: until ``seconds`` have passed, or stop() or flush() is called."""
        with self._nudged:
            seen = self._nudges
            self._nudged.wait_for(
                lambda: self._nudges != seen or self._stop.is_set(), max(0.0, seconds)
            )


def _lower_switch_interval() -> None:
    global _running, _switch_before
    with _switch_lock:
        _running += 1
        now = sys.getswitchinterval()
        if _running == 1 and now > GIL_SWITCH_S:
            _switch_before = now
            sys.setswitchinterval(GIL_SWITCH_S)


def _restore_switch_interval() -> None:
    """Back to what it was when the last forwarder stops (unless changed meanwhile)."""
    global _running, _switch_before
    with _switch_lock:
        _running = max(0, _running - 1)
        if _running == 0 and _switch_before is not None:
            if sys.getswitchinterval() == GIL_SWITCH_S:
                sys.setswitchinterval(_switch_before)
            _switch_before = None


def _wait(done: Future[None] | None) -> None:
    """The result of an ack handed to the helper thread (raises what it raised)."""
    if done is not None:
        done.result()
