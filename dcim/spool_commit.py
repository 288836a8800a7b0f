"""The spool's durable commit off the event loop: :class:`Committer` hands each poll cycle's
readings to one thread that validates and commits them (``Pipeline.accept``: a SQLite
transaction with ``synchronous=FULL``, an fsync), in the order they came. On a slow or busy
disk (an fsync of tens or hundreds of milliseconds) the loop's polls keep their cadence; the
readings wait in memory meanwhile, as they did while the loop was blocked, and are counted
(``queued``). ``close`` waits for what is queued (bounded): a reading polled before the stop
is committed unless the disk is slower than the stop's bound (then it is logged as lost, as
a poll that was not done).

Group commit: what was queued while a commit was going on is committed together, in one
transaction (one fsync) of at most ``GROUP_MAX`` readings, in the order it came. The
polls of a coalescing window end within milliseconds of each other; one fsync per poll was
a good part of the collector's CPU (system time) per value. With ``window_s``, a commit
also waits that long after the first submission it takes for more to join it: the polls of
a start group (dcim.scheduler), which end over some tenths of a second, share a transaction. A
commit's cost is mostly per transaction (SQLite's commit and the WAL's fsync, about 300 µs
of CPU for a PDU's poll of 29 readings, half that per poll with two or more polls in it; see
benchmarks/profile_collect.py); the price is that a reading waits up to ``window_s`` more in
memory, where a kill -9 loses it as it loses a poll in progress (a whole poll, its
``dcim_poll`` row with it: each submission is committed whole or not at all)."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from dcim.reading import Reading

log = logging.getLogger(__name__)
GROUP_MAX = 10_000  # readings committed in one transaction at most


class Committer:
    def __init__(
        self,
        commit: Callable[[list[Reading]], object],
        *,
        name: str = "dcim-commit",
        window_s: float = 0.0,
    ):
        self._commit = commit
        self._window_s = window_s
        self._closing = threading.Event()  # ends a window at once
        self._queue: queue.SimpleQueue[list[Reading] | None] = queue.SimpleQueue()
        self._queued = 0  # readings submitted and not committed yet
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, readings: list[Reading]) -> None:
        """Queue a cycle's readings for the commit; returns at once."""
        with self._lock:
            self._queued += len(readings)
        self._queue.put(readings)

    @property
    def queued(self) -> int:
        """Readings waiting for their commit."""
        return self._queued

    def _run(self) -> None:
        stop = False
        while not stop and (readings := self._queue.get()) is not None:
            if self._window_s and self._queue.empty():
                # The window, asleep rather than waiting on the queue: a submission does not
                # wake this thread (each wake-up, and the GIL handed over for it, cost the
                # submitting event loop more than the rest of a poll of 2 values).
                self._closing.wait(self._window_s)
            group = readings
            while len(group) < GROUP_MAX:  # what queued up meanwhile: the same transaction
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                if group is readings:
                    group = list(readings)  # the submitter's list is not extended
                group += more
            try:
                self._commit(group)
            except Exception:  # noqa: BLE001 - the pipeline logs its own; the thread goes on
                log.exception("committing %d readings failed", len(group))
            finally:
                with self._lock:
                    self._queued -= len(group)
                    self._idle.notify_all()

    def drain(self, timeout: float) -> bool:
        """Wait until everything submitted is committed; False after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._queued:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def close(self, timeout: float) -> None:
        """Commit what is queued (within ``timeout`` s, without waiting for the window),
        then end the thread."""
        self._queue.put(None)  # after what is queued: ends the thread
        self._closing.set()
        if not self.drain(timeout):
            log.error(
                "stopping: %d polled readings not committed within %.1f s (the disk is slow); "
                "they are lost",
                self._queued,
                timeout,
            )
        self._thread.join(max(0.0, min(timeout, 1.0)))
