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

from collectors.mqtt.codec import decode_payload, encode_payload, parse_time, topic_tags
from collectors.mqtt.profile import MqttProfile
from collectors.mqtt.source import MqttCollector
from dcim.config import Device, MqttBroker, SiteConfig
from dcim.profiles import load_profiles
from dcim.reading import Reading
from dcim.runtime import Collector
from dcim.spool import Spool, SpoolFullError
from dcim.testing.servers import MosquittoServer, free_port, need
from tests.storage.tlsca import Pki, make_pki

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
    publish(
        pub,
        TOPIC.format(zone="zone-1"),
        {"temperature": 21.5, "humidity": 63, "co2": "812", "ts": 1736935200},
    )
    publish(
        pub, "dcim/annex/greenhouse/east/climate", {"temperature": 19.0, "humidity": 70, "co2": 900}
    )
    wait_for(lambda: len(sink.data()) == 2, 5, "two readings")
    one = sink.data("gh-zone-1")[0]
    assert one.fields == {"air_temp_c": 21.5, "humidity_pct": 63.0, "co2_ppm": 812.0}
    assert one.tags == {"site": "paris-chapelle", "device": "gh-zone-1", "zone": "zone-1"}
    assert one.time_ns == 1736935200 * 10**9
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


def test_a_full_spool_holds_qos1_messages_at_the_broker(
    mosquitto: MosquittoServer, tmp_path: Path
) -> None:
    """The runtime's collector, its spool at its 1 MiB budget (InfluxDB down: nothing
    forwarded): a QoS 1 message is held unacknowledged, the broker queues the next ones, all
    are committed in order once there is room; a collector stopped while holding one leaves
    it with the broker, which delivers it on the next connection."""
    storage = {
        "spool_dir": str(tmp_path / "spool"),
        "spool_max_mb": 1,
        "sink": {"type": "influxdb", "url": f"http://127.0.0.1:{free_port()}", "timeout_s": 1},
    }
    cfg = site(mosquitto, client_id="dcim-test-full", storage=storage)
    topic = TOPIC.format(zone="zone-1")

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
            for i in range(3):
                publish(pub, topic, {"temperature": 30.0 + i, "humidity": 60, "co2": 800})
            await asyncio.to_thread(wait_for, mq.holding.is_set, 5, "message held")
            await asyncio.sleep(2.5)  # offered again twice meanwhile: still no room
            assert mq.holding.is_set() and mq.held == 1
            assert col.spool.stats().pending == n and greenhouse(col) == []
            assert sum(mq.received.values()) == 1  # the next two wait at the broker

            col.spool.ack(col.spool.peek(10**6))  # room again (as a forwarder would make it)
            await asyncio.to_thread(
                wait_for, lambda: len(greenhouse(col)) == 3, 5, "held messages committed"
            )
            assert [r.fields["air_temp_c"] for r in greenhouse(col)] == [30.0, 31.0, 32.0]
            assert not mq.holding.is_set() and mq.held == 1

            fill(col.spool)
            publish(pub, topic, {"temperature": 40.0, "humidity": 60, "co2": 800})
            await asyncio.to_thread(wait_for, mq.holding.is_set, 5, "message held")
        finally:
            pub.disconnect()
            pub.loop_stop()
            await col.stop(flush_timeout_s=0.5)

    asyncio.run(main())
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
        f"keyfile {d}/server.key\n"
    )
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


@pytest.fixture
def mtls_broker(tmp_path: Path) -> Iterator[tuple[MosquittoServer, Pki]]:
    """Mosquitto with a TLS listener that requires a client certificate from its CA."""
    pki = make_pki(tmp_path / "pki")
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        "per_listener_settings false\nallow_anonymous true\npersistence false\n"
        f"log_dest file {tmp_path}/mosquitto.log\n"
        + ("user root\n" if os.geteuid() == 0 else "")
        + f"listener {port} 127.0.0.1\ncafile {pki.ca}\ncertfile {pki.server_cert}\n"
        f"keyfile {pki.server_key}\nrequire_certificate true\n"
    )
    srv = MosquittoServer(None, port, tmp_path, [need("mosquitto", "mosquitto"), "-c", str(conf)])
    srv.start()
    try:
        yield srv, pki
    finally:
        srv.stop()


def test_tls_with_a_client_certificate(mtls_broker: tuple[MosquittoServer, Pki]) -> None:
    broker, pki = mtls_broker
    doc = site(broker, client_id="dcim-mtls").model_dump(exclude_none=True)
    doc["mqtt"].pop("username", None)
    doc["mqtt"].pop("password", None)
    doc["mqtt"].update(tls_ca=pki.ca, tls_cert=pki.client_cert, tls_key=pki.client_key)
    cfg = SiteConfig.model_validate(doc)
    col = MqttCollector(cfg, cfg.devices, Sink())
    col.start()
    try:
        assert col.connected.wait(10), "no TLS connection with the client certificate"
    finally:
        col.stop()
    doc["mqtt"].update(tls_cert=None, tls_key=None)  # no certificate: the broker refuses
    anon_cfg = SiteConfig.model_validate(doc)
    anon = MqttCollector(anon_cfg, anon_cfg.devices, Sink())
    anon.start()
    try:
        assert not anon.connected.wait(2.5)
    finally:
        anon.stop()
    with pytest.raises(ValueError, match="give the client certificate too"):
        MqttBroker(tls_key=pki.client_key)
