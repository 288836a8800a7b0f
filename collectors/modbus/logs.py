"""Taming pymodbus's logging: a misbehaving server must not put a traceback in the log at
every poll.

- pymodbus's own logger (``pymodbus``) logs every failed connect and retry at ERROR ("Failed to
  connect ... Repeating"): with a dead unit that is a line per poll. It is set to CRITICAL
  unless the user configured it (the scheduler logs each device's failure once, with its
  kind, and records each failed poll as a gap in ``dcim_poll``).
- A malformed answer (garbage lengths, noise) makes pymodbus's protocol raise inside asyncio's
  transport callback: asyncio logs "Fatal error: protocol.data_received() call failed" with
  the traceback on its ``asyncio`` logger and closes the connection (the poll fails, the next
  one reconnects). :class:`PymodbusTracebacks` turns those records into one line without the
  traceback, at most once a minute per kind of error, with the count of those left out.

Installed once, when the Modbus poller is imported.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from types import TracebackType

LOG_EVERY_S = 60.0


def _from_pymodbus(exc: BaseException | None, tb: TracebackType | None) -> bool:
    if exc is None:
        return False
    if type(exc).__module__.startswith("pymodbus"):
        return True
    while tb is not None:
        if "/pymodbus/" in tb.tb_frame.f_code.co_filename.replace("\\", "/"):
            return True
        tb = tb.tb_next
    return False


class PymodbusTracebacks(logging.Filter):
    """On the ``asyncio`` logger: a record carrying an exception raised in pymodbus becomes
    one line, rate-limited per exception kind; every other record passes unchanged."""

    def __init__(self, every_s: float = LOG_EVERY_S) -> None:
        super().__init__()
        self.every_s = every_s
        self.seen = 0  # pymodbus errors asyncio reported (each closed a connection)
        self._last: dict[str, float] = {}
        self._left_out: dict[str, int] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        exc_info = record.exc_info
        if not exc_info or not _from_pymodbus(exc_info[1], exc_info[2]):
            return True
        exc = exc_info[1]
        kind = f"{type(exc).__name__}: {exc}"
        now = time.monotonic()
        with self._lock:
            self.seen += 1
            if now - self._last.get(kind, -math.inf) < self.every_s:
                self._left_out[kind] = self._left_out.get(kind, 0) + 1
                return False
            self._last[kind] = now
            more = self._left_out.pop(kind, 0)
        record.msg = (
            "Modbus: a server's answer could not be decoded (%s); the connection was closed and"
            " the next poll reconnects%s"
        )
        record.args = (kind, f" ({more} more since the last report)" if more else "")
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info, record.exc_text = None, None
        return True


tracebacks = PymodbusTracebacks()
_installed = False


def install() -> None:
    """Set the ``pymodbus`` logger to CRITICAL (unless configured) and filter ``asyncio``'s."""
    global _installed
    if _installed:
        return
    _installed = True
    pymodbus_log = logging.getLogger("pymodbus")
    if pymodbus_log.level == logging.NOTSET:
        pymodbus_log.setLevel(logging.CRITICAL)
    logging.getLogger("asyncio").addFilter(tracebacks)
