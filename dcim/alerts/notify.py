"""Notifiers: each on its own thread, reading what is due from the durable state
(:class:`dcim.alerts.state.AlertState`), so a dead receiver is retried with backoff and never
delays polling, and nothing undelivered is forgotten across a restart.

- :class:`AlertmanagerNotifier`: ``POST /api/v2/alerts``; a firing alert is sent again every
  ``resend_s`` with ``endsAt`` 4 resend intervals ahead (as Prometheus does, so an alert of a
  collector that died resolves in Alertmanager rather than firing forever); a resolved alert
  is sent with its ``endsAt``. Grouping, silences, inhibition and receivers are Alertmanager's.
- :class:`WebhookNotifier`: Alertmanager's webhook JSON (``version: "4"``), once per firing
  and once per resolve, the body signed with HMAC-SHA256: header
  ``X-Dcim-Signature: sha256=<hex of HMAC(key, body)>``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from datetime import UTC, datetime

from dcim.alerts.state import AlertState, Due

log = logging.getLogger(__name__)
NS = 1_000_000_000


def rfc3339(ns: int) -> str:
    return datetime.fromtimestamp(ns / NS, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def fingerprint(labels: dict[str, str]) -> str:
    text = "\x1f".join(f"{k}={labels[k]}" for k in sorted(labels))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class RetryLoop:
    """The delivery loop shared by the receivers (alerts, and the scheduled statements'
    announcements): every ``poll_s`` (or when woken), :meth:`send_due` what a durable outbox
    holds; on failure wait 1, 2, 4 ... up to ``retry_max_s`` seconds, logging once per
    outage."""

    what = "alert receiver"  # how the log lines name it

    def __init__(self, name: str, *, retry_max_s: float = 60.0, poll_s: float = 1.0):
        self.name = name
        self.retry_max_s = retry_max_s
        self.poll_s = poll_s
        self.sent_total = 0
        self.failed_total = 0
        self.refused_total = 0
        self.last_error = ""
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def send_due(self, now_ns: int | None = None) -> int:
        """One round: send what is due; how many were delivered. Raises what the receiver
        raised (retried)."""
        raise NotImplementedError

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"notify-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        backoff = 0.0
        failing = False
        while not self._stop.is_set():
            try:
                self.send_due()
                if failing:
                    log.info("%s %s is reachable again", self.what, self.name)
                failing, backoff = False, 0.0
            except Exception as exc:  # noqa: BLE001 - a receiver's failure is retried
                self.failed_total += 1
                self.last_error = str(exc)
                if not failing:  # once per outage, not every retry
                    log.warning("%s %s failed (retrying): %s", self.what, self.name, exc)
                failing = True
                backoff = min(self.retry_max_s, max(1.0, backoff * 2))
                self._stop.wait(backoff)
                continue
            self._wake.wait(self.poll_s)
            self._wake.clear()


class Notifier(RetryLoop):
    """An alert receiver: what is due comes from the alerts' durable state, in one request."""

    resend_s: float | None = None

    def __init__(
        self,
        name: str,
        state: AlertState,
        *,
        receivers: int,
        retry_max_s: float = 60.0,
        poll_s: float = 1.0,
    ):
        super().__init__(name, retry_max_s=retry_max_s, poll_s=poll_s)
        self.state = state
        self.receivers = receivers

    def build(self, due: list[Due], now_ns: int) -> bytes:
        raise NotImplementedError

    def post(self, body: bytes) -> None:
        raise NotImplementedError

    def deliver(self, due: list[Due], now_ns: int) -> None:
        """Hand ``due`` to the receiver; return only once it has taken all of it."""
        self.post(self.build(due, now_ns))

    def send_due(self, now_ns: int | None = None) -> int:
        """One round: send what is due. Returns how many alerts were delivered; raises what
        the receiver raised."""
        now = time.time_ns() if now_ns is None else now_ns
        resend = int(self.resend_s * NS) if self.resend_s is not None else None
        due = self.state.due(self.name, now, resend)
        if not due:
            return 0
        self.deliver(due, now)
        self.state.delivered(self.name, due, now, self.receivers)
        self.sent_total += len(due)
        return len(due)


class Refused(RuntimeError):
    """The receiver answered 400: it will never take this body (retrying is useless)."""


def http_post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> None:
    """POST ``body``; raises :class:`Refused` on 400, RuntimeError/OSError on other failures."""
    # Imported here: a collector without HTTP receivers does not load urllib's HTTP client.
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            r.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:300].decode(errors="replace")
        kind = Refused if exc.code == 400 else RuntimeError
        raise kind(f"{url} answered {exc.code}: {detail}") from None


class AlertmanagerNotifier(Notifier):
    def __init__(
        self,
        url: str,
        state: AlertState,
        *,
        resend_s: float = 60.0,
        timeout_s: float = 5.0,
        receivers: int = 1,
        retry_max_s: float = 60.0,
        poll_s: float = 1.0,
    ):
        super().__init__(
            f"alertmanager:{url}",
            state,
            receivers=receivers,
            retry_max_s=retry_max_s,
            poll_s=poll_s,
        )
        self.url = url.rstrip("/") + "/api/v2/alerts"
        self.resend_s = resend_s
        self.timeout_s = timeout_s

    def build(self, due: list[Due], now_ns: int) -> bytes:
        assert self.resend_s is not None
        ttl = int(4 * self.resend_s * NS)
        alerts = [
            {
                "labels": d.labels,
                "annotations": d.annotations,
                "startsAt": rfc3339(d.fired_ns),
                "endsAt": rfc3339(d.resolved_ns if d.state == "resolved" else now_ns + ttl),
            }
            for d in due
        ]
        return json.dumps(alerts).encode()

    def post(self, body: bytes) -> None:
        http_post(self.url, body, {"Content-Type": "application/json"}, self.timeout_s)

    def deliver(self, due: list[Due], now_ns: int) -> None:
        """One request for all; if Alertmanager refuses it (400: one bad alert spoils the
        batch), each alert on its own, so that one it will never take does not hold the
        others back: that one is logged (ERROR) and counted in ``refused_total``."""
        try:
            self.post(self.build(due, now_ns))
            return
        except Refused:
            pass
        for d in due:
            try:
                self.post(self.build([d], now_ns))
            except Refused as exc:
                self.refused_total += 1
                log.error("alertmanager refused alert %s for good: %s", d.labels, exc)


class WebhookNotifier(Notifier):
    def __init__(
        self,
        url: str,
        key: bytes,
        state: AlertState,
        *,
        timeout_s: float = 5.0,
        receivers: int = 1,
        retry_max_s: float = 60.0,
        poll_s: float = 1.0,
    ):
        super().__init__(
            f"webhook:{url}", state, receivers=receivers, retry_max_s=retry_max_s, poll_s=poll_s
        )
        self.url = url
        self.key = key
        self.timeout_s = timeout_s

    def build(self, due: list[Due], now_ns: int) -> bytes:
        alerts = [
            {
                "status": d.state,
                "labels": d.labels,
                "annotations": d.annotations,
                "startsAt": rfc3339(d.fired_ns),
                "endsAt": rfc3339(d.resolved_ns)
                if d.state == "resolved"
                else "0001-01-01T00:00:00Z",
                "generatorURL": "",
                "fingerprint": fingerprint(d.labels),
            }
            for d in due
        ]
        common = {k: v for k, v in due[0].labels.items() if all(d.labels.get(k) == v for d in due)}
        doc = {
            "version": "4",
            "groupKey": json.dumps(common, sort_keys=True),
            "truncatedAlerts": 0,
            "status": "firing" if any(d.state == "firing" for d in due) else "resolved",
            "receiver": "dcim",
            "groupLabels": {},
            "commonLabels": common,
            "commonAnnotations": {},
            "externalURL": "",
            "alerts": alerts,
        }
        return json.dumps(doc).encode()

    def post(self, body: bytes) -> None:
        sig = hmac.new(self.key, body, hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json", "X-Dcim-Signature": f"sha256={sig}"}
        http_post(self.url, body, headers, self.timeout_s)


def verify_signature(key: bytes, body: bytes, header: str) -> bool:
    """For receivers: does ``X-Dcim-Signature`` match the body (constant-time compare)?"""
    want = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(want, header or "")
