"""Announcing scheduled statements durably: each new statement's note goes into an outbox
(SQLite in WAL mode, ``announcements.sqlite`` beside the statements) in the same round that
wrote its files, and a :class:`StatementWebhook` (the alert receivers' retry loop,
:class:`dcim.alerts.notify.RetryLoop`) POSTs it to ``webhook_url``, retrying with backoff
until the receiver took it, across collector restarts. A receiver that answers 400 will never
take the note: it is logged (ERROR) and not retried.

The body is the note as JSON, as before the outbox existed (``event: heat_statement_ready``).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from dcim.alerts.notify import Refused, RetryLoop, http_post

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
  receiver TEXT NOT NULL, number TEXT NOT NULL, body TEXT NOT NULL, made_ns INTEGER NOT NULL,
  sent_ns INTEGER, refused TEXT, PRIMARY KEY (receiver, number));
"""


class Outbox:
    """The notes to deliver, per receiver (its URL), keyed by statement number."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, receiver: str, note: dict[str, Any], now_ns: int) -> bool:
        """Queue ``note`` for ``receiver``; False if it was queued already (idempotent)."""
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO outbox (receiver, number, body, made_ns) VALUES (?,?,?,?)",
                (receiver, note["number"], json.dumps(note), now_ns),
            )
            return cur.rowcount == 1

    def due(self, receiver: str) -> list[tuple[str, bytes]]:
        """(number, body) of the notes ``receiver`` has not taken, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT number, body FROM outbox WHERE receiver=? AND sent_ns IS NULL"
                " AND refused IS NULL ORDER BY made_ns, number",
                (receiver,),
            ).fetchall()
        return [(n, b.encode()) for n, b in rows]

    def done(self, receiver: str, number: str, now_ns: int, refused: str | None = None) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE outbox SET sent_ns=?, refused=? WHERE receiver=? AND number=?",
                (now_ns, refused, receiver, number),
            )

    def others_pending(self, receiver: str) -> dict[str, int]:
        """Undelivered notes queued for other receivers (a ``webhook_url`` since changed)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT receiver, COUNT(*) FROM outbox WHERE receiver<>? AND sent_ns IS NULL"
                " AND refused IS NULL GROUP BY receiver",
                (receiver,),
            ).fetchall()
        return dict(rows)


class StatementWebhook(RetryLoop):
    """POSTs the outbox's notes to ``url``, one request per statement, oldest first."""

    what = "statement receiver"

    def __init__(
        self,
        url: str,
        outbox: Outbox,
        *,
        timeout_s: float = 10.0,
        retry_max_s: float = 60.0,
        poll_s: float = 5.0,
    ):
        super().__init__(url, retry_max_s=retry_max_s, poll_s=poll_s)
        self.url = url
        self.outbox = outbox
        self.timeout_s = timeout_s
        stale = outbox.others_pending(url)
        for other, n in stale.items():
            log.warning(
                "%d statement announcement(s) for %s (no longer the webhook_url) not sent",
                n,
                other,
            )

    def send_due(self, now_ns: int | None = None) -> int:
        sent = 0
        for number, body in self.outbox.due(self.url):
            try:
                http_post(self.url, body, {"Content-Type": "application/json"}, self.timeout_s)
            except Refused as exc:
                self.refused_total += 1
                log.error("statement %s announcement refused for good: %s", number, exc)
                self.outbox.done(self.url, number, time.time_ns(), refused=str(exc))
                continue
            self.outbox.done(self.url, number, time.time_ns())
            self.sent_total += 1
            sent += 1
        return sent
