"""The MQTT notifier on a real Mosquitto: a retained state message per firing alert (cleared
on resolve) and one event per firing and per resolve; the broker down, then back: delivered."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from dcim.alerts.engine import AlertEngine
from dcim.alerts.rules import AlertsSettings, Rule
from dcim.config import MqttBroker, Secret
from dcim.mqttclient import make_client
from dcim.testing.servers import MosquittoServer
from tests.alerts.test_notify import HOT, hot, wait


def subscriber(
    srv: MosquittoServer, topic: str
) -> tuple[mqtt.Client, list[tuple[str, bytes, bool]]]:
    got: list[tuple[str, bytes, bool]] = []
    # a persistent session: what is published while it reconnects is kept for it
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"sub-{time.monotonic_ns()}", clean_session=False
    )
    c.username_pw_set(srv.user, srv.password)
    c.on_message = lambda _c, _u, m: got.append((m.topic, m.payload, bool(m.retain)))
    ready = threading.Event()
    c.on_subscribe = lambda *_a: ready.set()
    c.on_connect = lambda cl, *_a: cl.subscribe(topic, qos=1)  # again after a broker restart
    c.reconnect_delay_set(min_delay=1, max_delay=1)
    c.connect("127.0.0.1", srv.port)
    c.loop_start()
    assert ready.wait(10)
    return c, got


def test_state_and_event_topics(tmp_path: Path, mosquitto: MosquittoServer) -> None:
    broker = MqttBroker(
        port=mosquitto.port, username=mosquitto.user, password=Secret(value=mosquitto.password)
    )
    client = make_client(broker, "dcim-alerts-test", clean_session=True)
    client.connect_async("127.0.0.1", mosquitto.port)
    eng = AlertEngine(
        [Rule.model_validate(HOT)],
        AlertsSettings.model_validate({"default_pack": False, "retry_max_s": 2, "mqtt": {}}),
        state_path=tmp_path / "alerts.sqlite",
        device_tags={"probe-R01": {"site": "s", "room": "salle-a", "rack": "R01"}},
        mqtt_client=client,
        site="s",
    )
    eng.start()
    events_sub, events = subscriber(mosquitto, "dcim/alerts/s/events")
    try:
        eng.observe(hot(33.0))
        wait(lambda: events, 15, "firing event")
        doc: dict[str, Any] = json.loads(events[0][1])
        assert doc["status"] == "firing" and doc["alertname"] == "RackHot"
        assert doc["labels"]["rack"] == "R01" and doc["endsAt"] is None
        assert doc["annotations"]["summary"] == "rack R01 inlet 33.0 degC"
        # a late subscriber gets the firing alert from the retained state topic
        state_sub, states = subscriber(mosquitto, "dcim/alerts/s/state/#")
        wait(lambda: states, 10, "retained state")
        topic, payload, retained = states[0]
        assert topic == f"dcim/alerts/s/state/RackHot/{doc['fingerprint']}" and retained
        assert json.loads(payload)["status"] == "firing"

        mosquitto.stop()  # the broker down while the alert resolves
        eng.observe(hot(29.0))
        time.sleep(3)
        mosquitto.start()
        wait(lambda: len(events) >= 2, 30, "resolve event after the broker came back")
        assert json.loads(events[-1][1])["status"] == "resolved"
        state_sub.loop_stop()
        state_sub.disconnect()
        late, cleared = subscriber(mosquitto, "dcim/alerts/s/state/#")
        time.sleep(1.5)
        assert [p for _t, p, r in cleared if p] == []  # nothing retained: nothing firing
        late.loop_stop()
        late.disconnect()
    finally:
        events_sub.loop_stop()
        events_sub.disconnect()
        eng.stop()
