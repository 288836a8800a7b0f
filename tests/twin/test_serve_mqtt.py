"""The twin's MQTT publishers (against Mosquitto) and the embedded broker (amqtt)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from collectors.mqtt.source import MqttCollector
from dcim.config import SiteConfig
from dcim.reading import Reading
from dcim.testing.servers import MosquittoServer, free_port
from dcim.twin.serve_mqtt import EmbeddedBroker, MqttTwin
from dcim.twin.site import paris_chapelle

VALUES = {"air_temp_c": 23.5, "humidity_pct": 61.0, "co2_ppm": 845.0}


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise AssertionError(f"{what}: not within {timeout} s")


def site(port: int, **mqtt_extra: Any) -> SiteConfig:
    doc = paris_chapelle(racks=1, servers_per_rack=1, mqtt_port=port, interval_s=0.2)
    doc["mqtt"].update(mqtt_extra)
    doc["devices"] = [d for d in doc["devices"] if d["protocol"] == "mqtt"]
    return SiteConfig.model_validate(doc)


def values(device: str) -> dict[str, float]:
    return {k: v + int(device.rsplit("-", 1)[1]) for k, v in VALUES.items()}


class Subscriber:
    def __init__(self, port: int, user: str | None = None, password: str | None = None) -> None:
        self.messages: list[tuple[str, bytes, int]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sub-{port}")
        if user:
            self.c.username_pw_set(user, password)
        self.c.on_connect = lambda c, *_: c.subscribe("dcim/#", qos=1)
        self.c.on_subscribe = lambda *_: self.subscribed.set()
        self.c.on_message = self._on_message
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        assert self.subscribed.wait(10)

    def _on_message(self, _c: Any, _u: Any, m: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((m.topic, bytes(m.payload), m.qos))

    def on(self, topic: str) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(p) for t, p, _ in self.messages if t == topic]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def test_twin_publishes_what_the_profile_expects(mosquitto: MosquittoServer) -> None:
    cfg = site(mosquitto.port, username=mosquitto.user, password={"value": mosquitto.password})
    sub = Subscriber(mosquitto.port, mosquitto.user, mosquitto.password)
    twin = MqttTwin(cfg, values)
    twin.start()
    try:
        topic1 = "dcim/paris-chapelle/greenhouse/zone-1/climate"
        wait_for(lambda: len(sub.on(topic1)) >= 3, 5, "three messages of zone 1")
        body = sub.on(topic1)[-1]
        assert {k: body[k] for k in ("temperature", "humidity", "co2")} == {
            "temperature": 24.5, "humidity": 62.0, "co2": 846.0,
        }  # fmt: skip
        assert abs(body["ts"] - time.time()) < 5
        assert all(q == 1 for _, _, q in sub.messages)
        # every zone publishes, at about its interval (0.2 s)
        for z in range(1, 5):
            assert sub.on(f"dcim/paris-chapelle/greenhouse/zone-{z}/climate")
        twin.set_unreachable("gh-zone-2")
        time.sleep(0.3)
        n2, n1 = len(sub.on(topic1.replace("zone-1", "zone-2"))), len(sub.on(topic1))
        time.sleep(0.6)
        assert len(sub.on(topic1.replace("zone-1", "zone-2"))) == n2
        assert len(sub.on(topic1)) >= n1 + 2
        twin.set_unreachable("gh-zone-2", False)
        wait_for(lambda: len(sub.on(topic1.replace("zone-1", "zone-2"))) > n2, 2, "zone 2 back")
    finally:
        twin.stop()
        sub.close()


def test_embedded_broker_carries_qos1_between_paho_clients() -> None:
    port = free_port()
    broker = EmbeddedBroker("127.0.0.1", port)
    broker.start()
    try:
        sub = Subscriber(port)
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="pub")
        pub.connect("127.0.0.1", port)
        pub.loop_start()
        info = pub.publish("dcim/x/y", b'{"a": 1}', qos=1)
        info.wait_for_publish(5)
        assert info.is_published()  # PUBACK received
        wait_for(lambda: sub.on("dcim/x/y") == [{"a": 1}], 5, "message through the broker")
        assert sub.messages[0][2] == 1
        pub.disconnect()
        pub.loop_stop()
        sub.close()
    finally:
        broker.stop()
    # the port is free again
    broker2 = EmbeddedBroker("127.0.0.1", port)
    broker2.start()
    broker2.stop()


def test_twin_to_collector_through_the_embedded_broker() -> None:
    port = free_port()
    cfg = site(port)
    broker = EmbeddedBroker("127.0.0.1", port)
    broker.start()
    got: list[Reading] = []
    lock = threading.Lock()

    def emit(rs: list[Reading]) -> None:
        with lock:
            got.extend(rs)

    col = MqttCollector(cfg, cfg.devices, emit)
    twin = MqttTwin(cfg, values)
    try:
        col.start()
        assert col.connected.wait(10)
        time.sleep(0.2)
        twin.start()
        wait_for(lambda: all(col.last_message().values()), 5, "every zone heard")
    finally:
        twin.stop()
        col.stop()
        broker.stop()
    data = [r for r in got if r.measurement == "greenhouse"]
    zone3 = [r for r in data if r.tags["device"] == "gh-zone-3"]
    assert zone3 and zone3[-1].fields == {k: v + 3 for k, v in VALUES.items()}
    assert zone3[-1].tags["zone"] == "zone-3"
    assert sum(col.malformed.values()) == 0
