"""Write-through to the embedded store: the pipeline's sink when the store is on this machine.

With the embedded store as the sink, a reading went through two SQLite files and two threads:
appended to the spool by the commit thread (a transaction, an fsync), read back by the
forwarder's thread, written to the store (another transaction, another fsync) and deleted
from the spool. The store takes a write synchronously, so :class:`WriteThrough` writes each
committed group straight into it, in the committing thread (one transaction, ``synchronous=
FULL``: durable at its commit, as the spool's append is), when nothing waits in the spool
and no batch of it is being sent (:meth:`dcim.forwarder.Forwarder.deliver_now`, which
counts them as sent). Otherwise the group goes to the spool as before, and the forwarder
delivers it from there, in order: while the spool holds a backlog, the store failed
(:class:`~dcim.storage.base.SinkError`: disk full, a value it refuses: bisected and
quarantined by the forwarder) or another writer held it longer than ``wait_s`` (its own
maintenance, another process: :class:`~dcim.storage.base.StoreBusyError`).

Order: a group is written straight only when every group accepted before it is in the store
(the spool is empty), and one group at a time (a lock around the choice and the write: the
commit thread and an MQTT thread offering held messages); from the first group spooled on,
the next ones are spooled too until the forwarder has drained them. A point (series, field,
time) is written in the order its readings were accepted, and a group written twice (a
write that failed after its commit, spooled and written again) holds the same values.

A kill -9 loses what it loses with the spool: the groups not yet committed (to the store or
the spool). An MQTT message is acknowledged once its group is committed in either.

Line protocol: the pipeline encodes the readings' lines only for the spool
(``takes_lines``: while something is pending there, the next group is likely spooled too);
a group written straight needs none, and a group that must be spooled after all is encoded
by the spool itself (:func:`dcim.spool_rows.make_rows`: the same lines).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from dcim.reading import Reading

if TYPE_CHECKING:
    from dcim.forwarder import Forwarder
    from dcim.spool import Spool

# How long a group waits for the store held by another writer before it is spooled: the
# store's maintenance holds it for seconds when it rolls up an hour or packs a day; the
# commit thread (and an MQTT message waiting for its acknowledgement) do not wait that long.
WAIT_S = 0.5


class WriteThrough:
    """``append`` like :meth:`dcim.spool.Spool.append`: the readings are committed when it
    returns, to the store when they can be, else to the spool (whose errors it raises:
    :class:`~dcim.spool.SpoolFullError`)."""

    def __init__(
        self,
        spool: Spool,
        forwarder: Forwarder,
        write: Callable[[Sequence[Reading]], None],
    ):
        self.spool = spool
        self.forwarder = forwarder
        self._write = write  # the store's write, bounded by WAIT_S when another writer has it
        self._lock = threading.Lock()
        self.direct = 0  # readings written straight to the store
        self.spooled = 0  # readings appended to the spool

    @property
    def takes_lines(self) -> bool:
        """Whether the pipeline should encode the next group's lines: the spool has a
        backlog, so the group goes there too."""
        return self.spool.pending() > 0

    def append(self, readings: Sequence[Reading], lines: Sequence[str] | None = None) -> None:
        if not readings:
            return
        with self._lock:
            if self.forwarder.deliver_now(readings, self._write):
                self.direct += len(readings)
                return
            self.spool.append(readings, lines)
            self.spooled += len(readings)
