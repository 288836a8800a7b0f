"""MQTT collector against a real Mosquitto broker: mapping, tags from the topic, malformed
payloads, reconnect after a broker restart, and QoS 1 delivery of what was published while
the collector was disconnected (persistent session). Every wait is bounded."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import ValidationError

from collectors.mqtt.codec import decode_payload, encode_payload, parse_time, topic_tags
from collectors.mqtt.profile import MqttProfile
from collectors.mqtt.source import MqttCollector
from dcim.config import Device, MqttBroker, SiteConfig
from dcim.profiles import load_profiles
from dcim.reading import Reading
from dcim.runtime import Collector
from dcim.spool import Spool, SpoolFullError
from dcim.testing.servers import MosquittoServer, free_port, need

REPO = Path(__file__).resolve().parents[3]
TOPIC = "dcim/paris-chapelle/greenhouse/{zone}/climate"


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise AssertionError(f"{what}: not within {timeout} s")


def site(
    broker: MosquittoServer,
    *,
    interval_s: float = 10.0,
    client_id: str | None = None,
    storage: dict[str, Any] | None = None,
    **broker_keys: Any,
) -> SiteConfig:
    devices: list[dict[str, Any]] = [
        {
            "name": f"gh-zone-{z}",
            "protocol": "mqtt",
            "profile": "greenhouse_climate",
            "mqtt": {"topic": TOPIC.format(zone=f"zone-{z}")},
        }
        for z in (1, 2)
    ]
    # One device for all the zones of the second house, by a topic filter.
    devices.append(
        {"name": "gh-house-2", "protocol": "mqtt", "profile": "greenhouse_climate",
         "mqtt": {"topic": "dcim/annex/greenhouse/+/climate"}, "room": "roof"}
    )  # fmt: skip
    mqtt_cfg: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": broker.port,
        "username": broker.user,
        "password": {"value": broker.password},
    }
    if client_id:
        mqtt_cfg["client_id"] = client_id
    mqtt_cfg.update(broker_keys)
    return SiteConfig.model_validate(
        {
            "site": {"name": "paris-chapelle"},
            "defaults": {"interval_s": interval_s},
            "rooms": [{"name": "roof"}],
            "mqtt": mqtt_cfg,
            "devices": devices,
            **({"storage": storage} if storage else {}),
        }
    )


class Sink:
    def __init__(self) -> None:
        self.readings: list[Reading] = []
        self.lock = threading.Lock()

    def __call__(self, readings: list[Reading]) -> None:
        with self.lock:
            self.readings.extend(readings)

    def data(self, device: str | None = None) -> list[Reading]:
        with self.lock:
            return [
                r
                for r in self.readings
                if r.measurement == "greenhouse" and device in (None, r.tags["device"])
            ]

    def health(self, device: str) -> list[Reading]:
        with self.lock:
            return [
                r
                for r in self.readings
                if r.measurement == "dcim_poll" and r.tags["device"] == device
            ]


def publisher(broker: MosquittoServer, client_id: str = "test-pub") -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    c.username_pw_set(broker.user, broker.password)
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    return c


def publish(c: mqtt.Client, topic: str, payload: Any) -> None:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    info = c.publish(topic, body, qos=1)
    info.wait_for_publish(5)
    assert info.is_published()


@pytest.fixture
def started(mosquitto: MosquittoServer) -> Iterator[tuple[MqttCollector, Sink, mqtt.Client]]:
    sink = Sink()
    col = MqttCollector(site(mosquitto), site(mosquitto).devices, sink)
    col.start()
    pub = publisher(mosquitto)
    try:
        assert col.connected.wait(10)
        time.sleep(0.2)  # the SUBACK
        yield col, sink, pub
    finally:
        pub.disconnect()
        pub.loop_stop()
        col.stop()


def test_readings_carry_the_profile_fields_and_the_topic_tags(started: Any) -> None:
    col, sink, pub = started
    ts = int(time.time()) - 60  # a device's own clock, a minute behind
    publish(
        pub,
        TOPIC.format(zone="zone-1"),
        {"temperature": 21.5, "humidity": 63, "co2": "812", "ts": ts},
    )
    publish(
        pub, "dcim/annex/greenhouse/east/climate", {"temperature": 19.0, "humidity": 70, "co2": 900}
    )
    wait_for(lambda: len(sink.data()) == 2, 5, "two readings")
    one = sink.data("gh-zone-1")[0]
    assert one.fields == {"air_temp_c": 21.5, "humidity_pct": 63.0, "co2_ppm": 812.0}
    assert one.tags == {"site": "paris-chapelle", "device": "gh-zone-1", "zone": "zone-1"}
    assert one.time_ns == ts * 10**9
    two = sink.data("gh-house-2")[0]
    assert two.tags == {
        "site": "paris-chapelle",
        "device": "gh-house-2",
        "room": "roof",
        "zone": "east",
    }
    assert abs(two.time_ns / 1e9 - time.time()) < 5  # no ts in the payload: arrival time
    h = sink.health("gh-zone-1")[0]
    assert h.fields["up"] == 1 and h.fields["values_read"] == 3 and h.tags["protocol"] == "mqtt"
    last = col.last_message()
    assert last["gh-zone-1"] is not None and last["gh-zone-2"] is None


def test_malformed_payloads_are_counted_and_do_not_break_the_collector(
    started: Any, caplog: pytest.LogCaptureFixture
) -> None:
    col, sink, pub = started
    topic = TOPIC.format(zone="zone-2")
    for bad in (
        b"not json",
        b"[1, 2]",
        {"temperature": "warm"},
        {"humidity": 50},
        {"temperature": None},
    ):
        publish(pub, topic, bad)
    publish(pub, topic, {"temperature": 20.0, "humidity": 55, "co2": 700})
    wait_for(
        lambda: any(r.fields.get("co2_ppm") == 700.0 for r in sink.data("gh-zone-2")),
        5,
        "the good message",
    )
    assert col.malformed["gh-zone-2"] == 5
    assert col.malformed["gh-zone-1"] == 0
    # A message with some usable fields keeps them; one with none is an up=0 health row.
    partial = [
        r for r in sink.data("gh-zone-2") if "humidity_pct" in r.fields and len(r.fields) == 1
    ]
    assert len(partial) == 1
    errors = [r.fields["error"] for r in sink.health("gh-zone-2")]
    assert errors.count("malformed") == 4, errors
    # Logged at a limited rate: one line for the burst.
    assert sum("malformed payload" in r.getMessage() for r in caplog.records) == 1


def test_reconnects_after_a_broker_restart_and_gets_what_was_sent_meanwhile(
    mosquitto: MosquittoServer,
) -> None:
    sink = Sink()
    cfg = site(mosquitto, client_id="dcim-test-restart")
    col = MqttCollector(cfg, cfg.devices, sink)
    col.start()
    try:
        assert col.connected.wait(10)
        time.sleep(0.3)
        mosquitto.stop()
        wait_for(lambda: not col.connected.is_set(), 5, "disconnect seen")
        mosquitto.start()
        t0 = time.monotonic()
        assert col.connected.wait(10), "collector did not reconnect"
        reconnect_s = time.monotonic() - t0
        assert reconnect_s < 5, reconnect_s
        time.sleep(0.3)
        pub = publisher(mosquitto, "test-pub-2")
        publish(pub, TOPIC.format(zone="zone-1"), {"temperature": 22.0, "humidity": 60, "co2": 800})
        wait_for(lambda: len(sink.data("gh-zone-1")) == 1, 5, "message after the restart")

        # Collector away, broker up: QoS 1 messages wait in the persistent session.
        col.stop()
        for i in range(5):
            publish(
                pub,
                TOPIC.format(zone="zone-2"),
                {"temperature": 10.0 + i, "humidity": 60, "co2": 800},
            )
        pub.disconnect()
        pub.loop_stop()
        sink2 = Sink()
        col2 = MqttCollector(cfg, cfg.devices, sink2)
        col2.start()
        try:
            wait_for(lambda: len(sink2.data("gh-zone-2")) == 5, 10, "queued messages")
            temps = [r.fields["air_temp_c"] for r in sink2.data("gh-zone-2")]
            assert temps == [10.0, 11.0, 12.0, 13.0, 14.0]
        finally:
            col2.stop()
    finally:
        col.stop()


def fill(spool: Spool) -> int:
    """Readings appended until the spool refuses even one (its budget reached)."""
    n, size = 0, 500
    while True:
        batch = [
            Reading("pdu", {"device": "p1"}, {"power_w": float(i), "n": i}, 10**18 + i)
            for i in range(n, n + size)
        ]
        try:
            spool.append(batch)
        except SpoolFullError:
            if size == 1:
                return n
            size = max(1, size // 10)
            continue
        n += len(batch)


def assert_next_session_gets(cfg: SiteConfig, air_temp_c: float) -> None:
    """A new collector with ``cfg``'s client id (the same persistent session) receives the one
    message of gh-zone-1 left unacknowledged with the broker."""
    sink = Sink()
    col = MqttCollector(cfg, cfg.devices, sink)
    col.start()
    try:
        wait_for(lambda: len(sink.data("gh-zone-1")) == 1, 10, "message delivered again")
        assert sink.data("gh-zone-1")[0].fields["air_temp_c"] == air_temp_c
    finally:
        col.stop()


KEEPALIVE_S = 2
HOLD_S = 10.0  # five keepalives: Mosquitto drops a client silent for 1.5 of them
N_HELD = 30  # more than Mosquitto's 20 messages in flight: the rest wait at the broker


def test_a_full_spool_holds_qos1_messages_without_stopping_the_keepalives(
    mosquitto: MosquittoServer, tmp_path: Path
) -> None:
    """The runtime's collector, its spool at its 1 MiB budget (InfluxDB down: nothing
    forwarded), keepalive 2 s: QoS 1 messages are held unacknowledged for 10 s while paho goes
    on servicing the connection (never dropped: no disconnect seen by paho nor by the broker),
    then all are committed in order once there is room, none lost; a collector stopped while
    holding one leaves it with the broker, which delivers it on the next connection."""
    storage = {
        "spool_dir": str(tmp_path / "spool"),
        "spool_max_mb": 1,
        "sink": {"type": "influxdb", "url": f"http://127.0.0.1:{free_port()}", "timeout_s": 1},
    }
    cfg = site(mosquitto, client_id="dcim-test-full", storage=storage, keepalive_s=KEEPALIVE_S)
    topic = TOPIC.format(zone="zone-1")
    connected_samples: list[bool] = []

    def greenhouse(col: Collector) -> list[Reading]:
        pending = col.spool.peek(10**6).readings
        return [r for r in pending if r.measurement == "greenhouse"]

    async def main() -> None:
        col = Collector(cfg)
        await col.start()
        mq = col.sources["mqtt"]
        assert isinstance(mq, MqttCollector)
        pub = publisher(mosquitto)
        try:
            assert await asyncio.to_thread(mq.connected.wait, 10)
            await asyncio.sleep(0.3)  # the SUBACK
            n = fill(col.spool)
            for i in range(N_HELD):
                publish(pub, topic, {"temperature": float(i), "humidity": 60, "co2": 800})
            await asyncio.to_thread(wait_for, mq.holding.is_set, 5, "message held")
            t0 = time.monotonic()
            while time.monotonic() - t0 < HOLD_S:  # still no room
                connected_samples.append(mq.connected.is_set())
                await asyncio.sleep(0.1)
            assert mq.holding.is_set() and 1 <= mq.held <= N_HELD
            assert col.spool.stats().pending == n and greenhouse(col) == []

            col.spool.ack(col.spool.peek(10**6))  # room again (as a forwarder would make it)
            await asyncio.to_thread(
                wait_for, lambda: len(greenhouse(col)) == N_HELD, 10, "held messages committed"
            )
            temps = [r.fields["air_temp_c"] for r in greenhouse(col)]
            assert temps == [float(i) for i in range(N_HELD)]
            assert not mq.holding.is_set() and sum(mq.received.values()) == N_HELD
            assert mq.disconnects == 0 and mq.connected.is_set()

            fill(col.spool)
            publish(pub, topic, {"temperature": 40.0, "humidity": 60, "co2": 800})
            await asyncio.to_thread(wait_for, mq.holding.is_set, 5, "message held")
        finally:
            pub.disconnect()
            pub.loop_stop()
            await col.stop(flush_timeout_s=0.5)

    asyncio.run(main())
    assert len(connected_samples) >= HOLD_S / 0.2 and all(connected_samples)
    broker_log = (mosquitto.workdir / "mosquitto.log").read_text()
    assert "dcim-test-full has exceeded timeout" not in broker_log
    assert broker_log.count("as dcim-test-full") == 1, broker_log  # one connection only
    assert_next_session_gets(cfg, 40.0)


def test_a_message_that_cannot_be_committed_is_left_with_the_broker(
    mosquitto: MosquittoServer, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = site(mosquitto, client_id="dcim-test-commit")

    def broken(_readings: list[Reading]) -> None:
        raise OSError("disk I/O error")

    col = MqttCollector(cfg, cfg.devices, broken)
    col.start()
    pub = publisher(mosquitto)
    try:
        assert col.connected.wait(10)
        time.sleep(0.3)  # the SUBACK
        publish(pub, TOPIC.format(zone="zone-1"), {"temperature": 50.0, "humidity": 60, "co2": 1})
        wait_for(lambda: col.received["gh-zone-1"] == 1, 5, "message received")
    finally:
        pub.disconnect()
        pub.loop_stop()
        col.stop()
    assert any("left unacknowledged" in r.getMessage() for r in caplog.records)
    assert_next_session_gets(cfg, 50.0)


def test_a_silent_device_is_recorded_as_gaps(mosquitto: MosquittoServer) -> None:
    sink = Sink()
    cfg = site(mosquitto, interval_s=0.2)
    col = MqttCollector(cfg, cfg.devices[:1], sink)
    col.start()
    pub = publisher(mosquitto)
    try:
        assert col.connected.wait(10)
        time.sleep(0.2)
        stop = time.monotonic() + 1.0
        while time.monotonic() < stop:
            publish(
                pub, TOPIC.format(zone="zone-1"), {"temperature": 20, "humidity": 50, "co2": 600}
            )
            time.sleep(0.1)
        n_ok = len(sink.data())
        time.sleep(1.05)  # silent for ~5 intervals: 1.5 intervals of grace, then one gap each
    finally:
        pub.disconnect()
        pub.loop_stop()
        col.stop()
    gaps = [r for r in sink.health("gh-zone-1") if r.fields["error"] == "gap"]
    assert n_ok >= 8
    assert 3 <= len(gaps) <= 5, len(gaps)
    assert all(r.fields["up"] == 0 for r in gaps)


# -- codec, sample config (no broker) ------------------------------------------------------


def profile() -> MqttProfile:
    prof = load_profiles()["greenhouse_climate"]
    assert isinstance(prof, MqttProfile)
    return prof


def test_codec_round_trip_and_scaling() -> None:
    prof = profile()
    values = {"air_temp_c": 21.25, "humidity_pct": 64.5, "co2_ppm": 815.0}
    fields, t, problems = decode_payload(prof, encode_payload(prof, values, time_s=1736935200.5))
    assert fields == values and t == 1736935200_500_000_000 and problems == []
    scaled = MqttProfile.model_validate(
        {"name": "p", "protocol": "mqtt", "measurement": "m", "topic": "a/{x}",
         "fields": [{"name": "t_c", "json": "sensor.temp", "scale": 0.1, "offset": -40}]}
    )  # fmt: skip
    assert decode_payload(scaled, b'{"sensor": {"temp": 615}}')[0] == {"t_c": pytest.approx(21.5)}
    assert json.loads(encode_payload(scaled, {"t_c": 21.5})) == {
        "sensor": {"temp": pytest.approx(615)}
    }


@pytest.mark.parametrize(
    ("raw", "ns"),
    [
        (1736935200, 1736935200 * 10**9),
        (1736935200123, 1736935200123 * 10**6),
        (1736935200123456789, 1736935200123456789),
        ("2025-01-15T10:00:00Z", 1736935200 * 10**9),
        ("2025-01-15T11:00:00.25+01:00", 1736935200_250_000_000),
        ("2025-01-15T10:00:00", 1736935200 * 10**9),
    ],
)
def test_payload_times(raw: Any, ns: int) -> None:
    assert parse_time(raw) == ns


def test_topic_tags() -> None:
    assert topic_tags("dcim/{site}/greenhouse/{zone}/climate", "dcim/s/greenhouse/z1/climate") == {
        "site": "s",
        "zone": "z1",
    }
    assert topic_tags("dcim/{site}/greenhouse/{zone}/climate", "dcim/s/other/z1/climate") == {}
    assert topic_tags("gh/zone-{n}", "gh/zone-3") == {"n": "3"}


def test_sample_config_is_a_valid_device() -> None:
    doc = yaml.safe_load((REPO / "collectors" / "mqtt" / "sample.yaml").read_text())
    dev = Device.model_validate(doc)
    assert dev.protocol == "mqtt" and dev.profile in load_profiles()
    # Only the required options are uncommented.
    assert set(doc) == {"name", "protocol", "profile", "mqtt"}


# -- TLS and credentials --------------------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[MosquittoServer, Path]]:
    """Mosquitto with only a TLS listener (certificate for IP 127.0.0.1 from a throwaway CA)
    and a password file; yields the broker and the CA file."""
    yield from _tls_broker(tmp_path)


def _tls_broker(
    tmp_path: Path, *, require_certificate: bool = False
) -> Iterator[tuple[MosquittoServer, Path]]:
    d = tmp_path / "tls"
    d.mkdir()
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
             "ca.crt", "-days", "2", "-subj", "/CN=dcim-test-ca", cwd=d)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out",
             "server.csr", "-subj", "/CN=127.0.0.1", cwd=d)  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.ext",
             cwd=d)  # fmt: skip
    passwd = d / "passwd"
    subprocess.run(
        [need("mosquitto_passwd", "mosquitto"), "-b", "-c", str(passwd),
         MosquittoServer.user, MosquittoServer.password],
        check=True,
    )  # fmt: skip
    port = free_port()
    conf = d / "mosquitto.conf"
    conf.write_text(
        f"per_listener_settings false\nallow_anonymous false\npassword_file {passwd}\n"
        f"persistence false\nlog_dest file {d}/mosquitto.log\n"
        + ("user root\n" if os.geteuid() == 0 else "")
        + f"listener {port} 127.0.0.1\ncafile {d}/ca.crt\ncertfile {d}/server.crt\n"
        f"keyfile {d}/server.key\n" + ("require_certificate true\n" if require_certificate else "")
    )
    if require_certificate:  # the collector's client certificate, from the same CA
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "client.key", "-out",
                 "client.csr", "-subj", "/CN=dcim-collector", cwd=d)  # fmt: skip
        _openssl("x509", "-req", "-in", "client.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", "client.crt", "-days", "2", cwd=d)  # fmt: skip
    srv = MosquittoServer(None, port, d, [need("mosquitto", "mosquitto"), "-c", str(conf)])
    srv.start()
    try:
        yield srv, d / "ca.crt"
    finally:
        srv.stop()


def _tls_site(
    broker: MosquittoServer, ca: Path | None, password: str, env: pytest.MonkeyPatch
) -> SiteConfig:
    """The site with TLS (``ca``: None for plain MQTT) and the password from the environment."""
    env.setenv("DCIM_TEST_MQTT_PW", password)
    doc = site(broker, client_id=f"dcim-tls-{password[:4]}").model_dump(exclude_none=True)
    doc["mqtt"].update(password={"env": "DCIM_TEST_MQTT_PW"}, tls_ca=ca)
    return SiteConfig.model_validate(doc)


def test_tls_with_username_and_password(
    tls_broker: tuple[MosquittoServer, Path],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broker, ca = tls_broker
    cfg = _tls_site(broker, ca, broker.password, monkeypatch)
    sink = Sink()
    col = MqttCollector(cfg, cfg.devices, sink)
    col.start()
    try:
        assert col.connected.wait(10), "no TLS connection"
        time.sleep(0.3)
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="tls-pub")
        pub.username_pw_set(broker.user, broker.password)
        pub.tls_set(ca_certs=str(ca))
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        try:
            publish(
                pub, TOPIC.format(zone="zone-1"), {"temperature": 19.5, "humidity": 58, "co2": 640}
            )
            wait_for(lambda: len(sink.data("gh-zone-1")) == 1, 5, "message over TLS")
        finally:
            pub.disconnect()
            pub.loop_stop()
    finally:
        col.stop()
    assert sink.data("gh-zone-1")[0].fields["co2_ppm"] == 640.0

    # A wrong password is refused (and said so); plain MQTT on the TLS port never connects.
    for tls_ca, password in ((ca, "wrong-password"), (None, broker.password)):
        bad_cfg = _tls_site(broker, tls_ca, password, monkeypatch)
        bad = MqttCollector(bad_cfg, bad_cfg.devices, Sink())
        bad.start()
        try:
            assert not bad.connected.wait(2.5)
        finally:
            bad.stop()
    assert any("refused the connection" in r.getMessage() for r in caplog.records)


# -- hostile publishers ---------------------------------------------------------------------


def test_hostile_publishers_are_refused_counted_and_logged_never_stored(
    mosquitto: MosquittoServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Beside a good sensor publishing every 0.2 s, a hostile publisher sends a deeply nested
    document, an oversized one, garbage, timestamps in 2100 and 1970, a second message for a
    stored time (other values, then the same ones), a zone the device does not list and a
    topic that does not fit the template: each refusal is counted by reason, logged without a
    traceback, nothing of it is stored, and the good sensor stays on cadence (no gap)."""
    doc = site(mosquitto, interval_s=0.5).model_dump(exclude_none=True)
    doc["devices"][2]["mqtt"]["tag_values"] = {"zone": ["east", "west"]}
    doc["devices"].append(
        {"name": "gh-lab", "protocol": "mqtt", "profile": "greenhouse_climate",
         "mqtt": {"topic": "dcim/lab/#"}}
    )  # fmt: skip
    cfg = SiteConfig.model_validate(doc)
    sink = Sink()
    col = MqttCollector(cfg, cfg.devices, sink)
    col.start()
    good, bad = publisher(mosquitto, "good-sensor"), publisher(mosquitto, "hostile")
    stop = threading.Event()

    def sensor() -> None:
        i = 0
        while not stop.wait(0.2):
            body = {"temperature": 20.0, "humidity": 50, "co2": 600 + i, "ts": time.time()}
            good.publish(TOPIC.format(zone="zone-1"), json.dumps(body), qos=1)
            i += 1

    now = int(time.time())
    east = "dcim/annex/greenhouse/east/climate"
    try:
        assert col.connected.wait(10)
        time.sleep(0.3)
        thread = threading.Thread(target=sensor, daemon=True)
        thread.start()
        t0 = time.monotonic()
        for body in (
            b'{"temperature": 1, "x": ' + b"[" * 30_000 + b"]" * 30_000 + b"}",  # depth
            json.dumps({"temperature": 1, "pad": "x" * 200_000}).encode(),  # size
            b"\xff\xfe garbage",
            {"temperature": 21.0, "humidity": 50, "co2": 700, "ts": "2100-01-01T00:00:00Z"},
            {"temperature": 21.0, "humidity": 50, "co2": 700, "ts": 0},
            {"temperature": 21.0, "humidity": 50, "co2": 700, "ts": now},  # stored
            {"temperature": 99.0, "humidity": 50, "co2": 700, "ts": now},  # conflict
            {"temperature": 21.0, "humidity": 50, "co2": 700, "ts": now},  # duplicate
        ):
            publish(bad, east, body)
        publish(bad, "dcim/annex/greenhouse/north/climate", {"temperature": 5.0, "ts": now})
        publish(bad, "dcim/lab/anything/goes", {"temperature": 5.0, "ts": now})
        wait_for(lambda: col.received["gh-lab"] == 1, 5, "all hostile messages handled")
        time.sleep(1.5)  # the good sensor goes on
        stop.set()
        thread.join(2)
        elapsed = time.monotonic() - t0
    finally:
        stop.set()
        for c in (good, bad):
            c.disconnect()
            c.loop_stop()
        col.stop()

    assert col.malformed["gh-house-2"] == 3
    assert dict(col.refused["gh-house-2"]) == {
        "time_future": 1, "time_past": 1, "conflict": 1, "duplicate": 1, "topic": 1
    }  # fmt: skip
    assert dict(col.refused["gh-lab"]) == {"topic": 1}
    stored = sink.data("gh-house-2")
    assert [(r.fields["air_temp_c"], r.time_ns) for r in stored] == [(21.0, now * 10**9)]
    assert sink.data("gh-lab") == []
    errors = [r.fields["error"] for r in sink.health("gh-house-2") if r.fields["error"] != "gap"]
    assert sorted(errors) == sorted(["malformed"] * 3 + ["clock"] * 2 + ["", "conflict", "topic"])
    # The good sensor: every message stored, no gap.
    mine = sink.data("gh-zone-1")
    assert len(mine) >= elapsed / 0.2 * 0.7, (len(mine), elapsed)
    assert [r.fields["co2_ppm"] for r in mine] == [600.0 + i for i in range(len(mine))]
    assert all(r.fields["error"] == "" for r in sink.health("gh-zone-1"))
    # Logged, one line per device and reason, no traceback.
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    lines = [r.getMessage() for r in caplog.records if "gh-house-2" in r.getMessage()]
    assert any("nested 30001 deep, over the 32 accepted" in m for m in lines)
    assert any("ahead of the collector's clock (max_clock_skew_s: 300)" in m for m in lines)
    assert any("other values for a time already stored (the first are kept)" in m for m in lines)
    assert any("'north' is not one of ['east', 'west']" in m for m in lines)
    # ... and on /metrics.
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for m in col.metrics() for s in m.samples
    }
    key = ("dcim_mqtt_refused_total", (("device", "gh-house-2"), ("reason", "time_future")))
    assert samples[key] == 1


@pytest.fixture
def mtls_broker(tmp_path: Path) -> Iterator[tuple[MosquittoServer, Path]]:
    """The TLS broker with ``require_certificate true``; yields it and the directory holding
    ca.crt, client.crt and client.key."""
    for srv, ca in _tls_broker(tmp_path, require_certificate=True):
        yield srv, ca.parent


def test_tls_with_a_client_certificate(
    mtls_broker: tuple[MosquittoServer, Path],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``tls_cert`` and ``tls_key`` beside ``tls_ca``: the broker requiring a client
    certificate takes the collector's, and refuses a collector without one."""
    broker, d = mtls_broker
    cfg = _tls_site(broker, d / "ca.crt", broker.password, monkeypatch)
    doc = cfg.model_dump(exclude_none=True)
    doc["mqtt"].update(tls_cert=d / "client.crt", tls_key=d / "client.key")
    sink = Sink()
    col = MqttCollector(SiteConfig.model_validate(doc), cfg.devices, sink)
    col.start()
    try:
        assert col.connected.wait(10), "no TLS connection with the client certificate"
        time.sleep(0.3)
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="mtls-pub")
        pub.username_pw_set(broker.user, broker.password)
        pub.tls_set(
            ca_certs=str(d / "ca.crt"),
            certfile=str(d / "client.crt"),
            keyfile=str(d / "client.key"),
        )
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        try:
            publish(
                pub, TOPIC.format(zone="zone-1"), {"temperature": 18.5, "humidity": 58, "co2": 650}
            )
            wait_for(lambda: len(sink.data("gh-zone-1")) == 1, 5, "message over mutual TLS")
        finally:
            pub.disconnect()
            pub.loop_stop()
    finally:
        col.stop()
    assert sink.data("gh-zone-1")[0].fields["co2_ppm"] == 650.0

    without = MqttCollector(cfg, cfg.devices, Sink())  # tls_ca only: no client certificate
    without.start()
    try:
        assert not without.connected.wait(2.5)
    finally:
        without.stop()
    log = (broker.workdir / "mosquitto.log").read_text()
    assert "peer did not return a certificate" in log, log


def test_tls_key_without_a_certificate_is_a_config_error() -> None:
    with pytest.raises(ValidationError, match="tls_key is the key of a client certificate"):
        MqttBroker.model_validate({"tls_ca": "/ca.pem", "tls_key": "/k.pem"})
