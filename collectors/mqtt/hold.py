"""Messages held unacknowledged while the spool is full, without blocking paho's network
thread (which must go on answering the broker's keepalives).

A message whose readings ``offer`` refuses is queued, not acknowledged; every later message
queues behind it (the order is kept), and a thread of its own offers the head again every
``retry_s``, acknowledging each message once its readings are committed. The broker keeps
every unacknowledged message: after a reconnection to the same session it delivers them
again, so those still queued are dropped here (and delivered again); after a reconnection to
a new session (the broker lost it) they stay queued and are committed, but not acknowledged
(their message ids belong to the old session).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from dcim.reading import Reading

log = logging.getLogger(__name__)

MAX_QUEUED = 10_000  # messages held in memory at most (the broker's in-flight window is less)


@dataclass
class Held:
    mid: int
    qos: int
    topic: str
    readings: list[Reading]
    # Undoes what was remembered of the message (its timestamps) if it is dropped here to be
    # delivered again.
    forget: Callable[[], None] = field(default=lambda: None)
    gen: int = 0  # the connection it came on


class Holder:
    """``offer(readings)`` commits or returns False (no room); ``ack(mid, qos)``."""

    def __init__(
        self,
        offer: Callable[[list[Reading]], bool],
        ack: Callable[[int, int], object],
        *,
        on_release: Callable[[], None] = lambda: None,
        retry_s: float = 1.0,
        max_queued: int = MAX_QUEUED,
    ) -> None:
        self.offer, self.ack, self.on_release = offer, ack, on_release
        self.retry_s, self.max_queued = retry_s, max_queued
        self.holding = threading.Event()  # set while messages wait for room
        self.held = 0  # messages that waited, unacknowledged, for room
        self.overflow = 0  # messages left with the broker: the queue here was full
        self.gen = 0
        self._queue: deque[Held] = deque()
        self._lock = threading.Lock()
        self._since = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="mqtt-hold", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop retrying; what is queued stays unacknowledged (the broker delivers it again)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def queued(self) -> int:
        with self._lock:
            return len(self._queue)

    def submit(self, msg: Held) -> None:
        """A received message (paho's thread): committed and acknowledged now, or queued."""
        msg.gen = self.gen
        with self._lock:
            if self._queue:
                if len(self._queue) >= self.max_queued:
                    self.overflow += 1
                    msg.forget()
                    log.error(
                        "MQTT: %d messages already wait for spool room; the message on %s is"
                        " left unacknowledged (the broker delivers it again on the next"
                        " connection)",
                        len(self._queue),
                        msg.topic,
                    )
                    return
                self._queue.append(msg)
                self.held += 1
                return
            done = self._try(msg)
            if done == "full":
                self._queue.append(msg)
                self.held += 1
                self._since = time.monotonic()
                self.holding.set()
                log.warning(
                    "MQTT: the spool is full; the message on %s and those after it are held"
                    " unacknowledged until there is room",
                    msg.topic,
                )
                return
        if done == "done":
            self.ack(msg.mid, msg.qos)

    def reconnected(self, session_present: bool) -> None:
        """A new connection: the broker delivers again what it still holds for the session."""
        with self._lock:
            self.gen += 1
            if session_present:
                keep = deque(m for m in self._queue if m.qos == 0)
                for m in self._queue:
                    if m.qos > 0:
                        m.forget()
                self._queue = keep
            if not self._queue:
                self._release()

    def drain(self) -> None:
        """Offer the queued messages again, in order, while there is room."""
        acks: list[Held] = []
        with self._lock:
            while self._queue:
                done = self._try(self._queue[0])
                if done == "full":
                    break
                msg = self._queue.popleft()
                if done == "done" and msg.gen == self.gen:
                    acks.append(msg)
            if not self._queue and self.holding.is_set():
                log.info(
                    "MQTT: the spool has room again; held messages committed after %.0f s",
                    time.monotonic() - self._since,
                )
                self._release()
        for msg in acks:
            self.ack(msg.mid, msg.qos)

    def _release(self) -> None:
        if self.holding.is_set():
            self.holding.clear()
            self.on_release()

    def _try(self, msg: Held) -> Literal["done", "full", "error"]:
        if not msg.readings:
            return "done"
        try:
            return "done" if self.offer(msg.readings) else "full"
        except Exception:  # noqa: BLE001 - one message must not stop the others
            log.exception(
                "MQTT message on %s could not be committed; left unacknowledged (the broker"
                " delivers it again on the next connection)",
                msg.topic,
            )
            msg.forget()
            return "error"

    def _run(self) -> None:
        while not self._stop.wait(self.retry_s):
            if self.holding.is_set():
                self.drain()
