"""The MQTT notifier: a retained state topic per alert and an event topic, on the site's
broker (QoS 1, delivered once the broker acknowledged every message). The JSON of both::

    {"status": "firing" | "resolved", "alertname": ..., "severity": ...,
     "labels": {...}, "annotations": {...}, "startsAt": RFC 3339, "endsAt": RFC 3339 | null,
     "value": number | null, "fingerprint": "16 hex"}

A resolve clears the retained state message (empty payload), so ``.../state/#`` holds
exactly the alerts firing now; the resolve itself is on the event topic.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from dcim.alerts.notify import Notifier, fingerprint, rfc3339
from dcim.alerts.state import AlertState, Due

PUBACK_TIMEOUT_S = 10.0


def alert_doc(d: Due) -> dict[str, Any]:
    return {
        "status": d.state,
        "alertname": d.labels.get("alertname"),
        "severity": d.labels.get("severity"),
        "labels": d.labels,
        "annotations": d.annotations,
        "startsAt": rfc3339(d.fired_ns),
        "endsAt": rfc3339(d.resolved_ns) if d.state == "resolved" else None,
        "value": d.value,
        "fingerprint": fingerprint(d.labels),
    }


class MqttNotifier(Notifier):
    def __init__(
        self,
        client: Any,
        state: AlertState,
        *,
        prefix: str,
        site: str,
        receivers: int = 1,
        retry_max_s: float = 60.0,
    ):
        super().__init__(f"mqtt:{prefix}", state, receivers=receivers, retry_max_s=retry_max_s)
        self.client = client
        self.base = f"{prefix.rstrip('/')}/{site}"
        self.connected = threading.Event()
        client.on_connect = lambda *_a: self.connected.set()
        client.on_disconnect = lambda *_a: self.connected.clear()

    def state_topic(self, d: Due) -> str:
        return f"{self.base}/state/{d.labels.get('alertname')}/{fingerprint(d.labels)}"

    def deliver(self, due: list[Due], now_ns: int) -> None:
        if not self.connected.is_set():
            raise RuntimeError("not connected to the MQTT broker")
        infos = []
        for d in due:
            body = json.dumps(alert_doc(d))
            retained = body if d.state == "firing" else ""
            infos.append(self.client.publish(self.state_topic(d), retained, qos=1, retain=True))
            infos.append(self.client.publish(f"{self.base}/events", body, qos=1))
        for info in infos:
            info.wait_for_publish(PUBACK_TIMEOUT_S)
            if not info.is_published():
                raise RuntimeError("the MQTT broker did not acknowledge an alert message")

    def start(self) -> None:
        self.client.loop_start()
        super().start()

    def stop(self, timeout: float = 5.0) -> None:
        super().stop(timeout)
        self.client.disconnect()
        self.client.loop_stop()
