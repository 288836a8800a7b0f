"""MQTT collector: subscribes to each device's topic and maps JSON payloads through its profile.

Unlike SNMP and Modbus, MQTT devices push: there is no poller and no scheduler job. One
paho-mqtt client per collector process (QoS 1, persistent session, so messages published
while the collector is away are delivered when it reconnects) receives every device's
messages on paho's network thread.

Payload mapping and topic templates are in :mod:`collectors.mqtt.codec`, shared with the
twin.

Acknowledgement: a QoS 1 message is acknowledged to the broker once its readings are committed
to the spool. While the spool is full (``spool_on_full: refuse_new``) a message is held
unacknowledged, paho's thread waits and offers it again every ``HOLD_RETRY_S``, and the broker
keeps the rest queued: nothing published is lost for want of disk space, as long as the
broker's own queue lasts (Mosquitto: ``max_queued_messages``, 1000 per client by default).
A collector stopped meanwhile leaves the message with the broker, which delivers it again on
the next connection.

Health: every message yields a ``dcim_poll`` row (``up`` 1, or 0 with ``error="malformed"``
when nothing could be read from it); a device that stays silent for longer than 1.5 of its
interval yields one ``dcim_poll`` row ``up=0 error="gap"`` per interval until it publishes
again, so a silent sensor is a recorded gap, as a failed poll is.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from collectors.mqtt.codec import MalformedPayload, decode_payload, topic_tags
from collectors.mqtt.options import MqttOptions
from collectors.mqtt.profile import RESERVED_TAGS, MqttProfile
from dcim.config import Device, MqttBroker, SiteConfig
from dcim.reading import FieldValue, Reading

log = logging.getLogger(__name__)

NS = 1_000_000_000
GAP_FACTOR = 1.5  # silence longer than this many intervals is a gap
LOG_EVERY_S = 60.0  # at most one malformed-payload log line per device per minute
HOLD_RETRY_S = 1.0  # a message the spool has no room for is offered again this often


def default_client_id(cfg: SiteConfig, devices: list[Device], role: str = "collector") -> str:
    """Stable across restarts (a persistent session needs that) and distinct per shard: the
    site name and a digest of the devices this process owns."""
    digest = hashlib.sha1(",".join(sorted(d.name for d in devices)).encode()).hexdigest()[:8]
    return f"dcim-{role}-{cfg.site.name}-{digest}"


def make_client(
    broker: MqttBroker, client_id: str, *, clean_session: bool, manual_ack: bool = False
) -> mqtt.Client:
    """A paho 2 client for ``broker`` (credentials, TLS, quick reconnects), not yet connected.
    ``manual_ack``: QoS 1 messages are acknowledged by ``client.ack``, not on return from
    ``on_message``."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=clean_session,
        protocol=mqtt.MQTTv311,
        manual_ack=manual_ack,
    )
    if broker.username is not None:
        password = broker.password.resolve() if broker.password is not None else None
        client.username_pw_set(broker.username, password)
    if broker.tls_ca is not None or broker.tls_cert is not None:
        client.tls_set(
            ca_certs=str(broker.tls_ca) if broker.tls_ca is not None else None,
            certfile=str(broker.tls_cert) if broker.tls_cert is not None else None,
            keyfile=str(broker.tls_key) if broker.tls_key is not None else None,
        )
    client.reconnect_delay_set(min_delay=1, max_delay=2)  # back within seconds of a restart
    client.max_queued_messages_set(10_000)
    return client


# -- the collector ----------------------------------------------------------------------------


class MqttCollector:
    """Receives the readings of ``devices`` (protocol mqtt) from the broker ``cfg.mqtt``.

    ``emit`` is called with each message's readings (data + ``dcim_poll`` health) from paho's
    network thread, and with gap rows from the collector's watchdog thread: it must be
    thread-safe and quick (hand the readings over, do no I/O that can block for long).
    ``offer``, when given, takes the messages' readings instead and returns False when it
    cannot take them now: the message is then held unacknowledged and offered again.
    """

    def __init__(
        self,
        cfg: SiteConfig,
        devices: list[Device],
        emit: Callable[[list[Reading]], None],
        *,
        offer: Callable[[list[Reading]], bool] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if cfg.mqtt is None:
            raise ValueError("mqtt devices need a top-level 'mqtt:' broker section")
        self.cfg, self.broker, self.emit, self.clock = cfg, cfg.mqtt, emit, clock
        self.offer = offer
        profiles = cfg.profiles()
        self.devices = [d for d in devices if isinstance(d.options, MqttOptions)]
        self._profiles: dict[str, MqttProfile] = {}
        for d in self.devices:
            prof = profiles[d.profile]
            if not isinstance(prof, MqttProfile):
                raise ValueError(f"{d.name}: profile {d.profile!r} is not an MQTT profile")
            self._profiles[d.name] = prof
        self._tags = {d.name: cfg.tags_of(d) for d in self.devices}
        self._filters: list[tuple[str, Device]] = [
            (d.options_as(MqttOptions).topic, d) for d in self.devices
        ]
        self.client_id = self.broker.client_id or default_client_id(cfg, self.devices)
        self.malformed: dict[str, int] = {d.name: 0 for d in self.devices}
        self.received: dict[str, int] = {d.name: 0 for d in self.devices}
        self.held = 0  # messages held unacknowledged at least once (the spool was full)
        self.holding = threading.Event()  # set while a message waits for room
        self._last: dict[str, float | None] = {d.name: None for d in self.devices}
        self._next_gap: dict[str, float] = {}
        self._since: dict[str, float] = {}  # last message, or start
        self._silent: set[str] = set()
        self._gap_lock = threading.Lock()  # gap state: paho's thread and the watchdog
        self._last_log: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None
        self.connected = threading.Event()
        self.client = make_client(self.broker, self.client_id, clean_session=False, manual_ack=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Connect in the background (a broker that is down is retried) and return at once."""
        now = self.clock()
        for d in self.devices:
            self._next_gap[d.name] = now + GAP_FACTOR * self.cfg.interval_of(d)
            self._since[d.name] = now
        self._stop.clear()
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=30)
        self.client.loop_start()
        self._watchdog = threading.Thread(target=self._watch, name="mqtt-gaps", daemon=True)
        self._watchdog.start()

    def stop(self) -> None:
        """Disconnect (the broker keeps the session and queues QoS 1 messages for next time)."""
        self._stop.set()
        self.client.disconnect()
        self.client.loop_stop()
        if self._watchdog is not None:
            self._watchdog.join(5)
            self._watchdog = None

    def metrics(self) -> Iterable[Metric]:
        """``dcim_mqtt_*`` on the collector's ``/metrics`` (a
        :class:`dcim.protocols.MetricsSource`)."""
        yield GaugeMetricFamily(
            "dcim_mqtt_connected", "1 while connected to the broker", int(self.connected.is_set())
        )
        msgs = CounterMetricFamily(
            "dcim_mqtt_messages", "MQTT messages received", labels=["device"]
        )
        bad = CounterMetricFamily(
            "dcim_mqtt_malformed", "MQTT messages with a malformed payload", labels=["device"]
        )
        for name in sorted(self.received):
            msgs.add_metric([name], self.received[name])
            bad.add_metric([name], self.malformed.get(name, 0))
        yield msgs
        yield bad
        yield GaugeMetricFamily(
            "dcim_mqtt_holding",
            "1 while a message waits, unacknowledged, for room in the spool",
            int(self.holding.is_set()),
        )
        yield CounterMetricFamily(
            "dcim_mqtt_held", "MQTT messages held unacknowledged for want of spool room", self.held
        )

    def last_message(self) -> dict[str, float | None]:
        """Device -> arrival time (UNIX s) of its last readable message, None if none yet."""
        return dict(self._last)

    # -- paho callbacks (network thread) -------------------------------------------------
    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            log.warning(
                "MQTT broker %s:%s refused the connection: %s",
                self.broker.host,
                self.broker.port,
                rc,
            )
            return
        filters = sorted({f for f, _ in self._filters})
        if filters:
            # Also after a reconnect: a broker that lost its state would otherwise stay silent.
            subs: list[tuple[str, int]] = [(f, int(self.broker.qos)) for f in filters]
            client.subscribe(subs)
        log.info(
            "MQTT connected to %s:%s as %s (session present: %s), %d topics",
            self.broker.host,
            self.broker.port,
            self.client_id,
            flags.session_present,
            len(filters),
        )
        self.connected.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        self.connected.clear()
        if not self._stop.is_set():
            log.warning(
                "MQTT connection to %s:%s lost (%s); reconnecting",
                self.broker.host,
                self.broker.port,
                rc,
            )

    def _on_message(self, client: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        out: list[Reading] = []
        try:
            for topic_filter, dev in self._filters:
                if topic_filter == msg.topic or mqtt.topic_matches_sub(topic_filter, msg.topic):
                    out += self._handle(dev, msg.topic, bytes(msg.payload))
        except Exception:  # noqa: BLE001 - never let one message kill paho's thread
            log.exception("MQTT message on %s could not be handled", msg.topic)
        try:
            if out and not self._hand_over(out, msg.topic):
                return  # stopping: not acknowledged, the broker delivers it again next time
        except Exception:  # noqa: BLE001
            log.exception(
                "MQTT message on %s could not be committed; left unacknowledged (the broker"
                " delivers it again on the next connection)",
                msg.topic,
            )
            return
        client.ack(msg.mid, msg.qos)

    def _hand_over(self, readings: list[Reading], topic: str) -> bool:
        """Give a message's readings to ``offer`` (or ``emit``); while ``offer`` has no room,
        wait and offer them again. False if the collector stops first."""
        if self.offer is None:
            self.emit(readings)
            return True
        if self.offer(readings):
            return True
        self.held += 1
        self.holding.set()
        since = time.monotonic()
        log.warning(
            "MQTT: the spool is full; the message on %s is held unacknowledged at the broker"
            " (which queues the next ones) until there is room",
            topic,
        )
        try:
            while not self._stop.wait(HOLD_RETRY_S):
                if self.offer(readings):
                    log.info(
                        "MQTT: the spool has room again; message taken after %.0f s",
                        time.monotonic() - since,
                    )
                    self._after_hold()
                    return True
            return False
        finally:
            self.holding.clear()

    def _after_hold(self) -> None:
        # No message was read while one was held: give the queued ones time to arrive before
        # silence counts as a gap again (gap rows could not have been stored meanwhile).
        now = self.clock()
        with self._gap_lock:
            for d in self.devices:
                grace = now + GAP_FACTOR * self.cfg.interval_of(d)
                self._next_gap[d.name] = max(self._next_gap[d.name], grace)

    def _handle(self, dev: Device, topic: str, payload: bytes) -> list[Reading]:
        now = self.clock()
        profile = self._profiles[dev.name]
        try:
            fields, time_ns, problems = decode_payload(profile, payload)
        except MalformedPayload as exc:
            fields, time_ns, problems = {}, None, [str(exc)]
        if problems:
            self.malformed[dev.name] += 1
            self._log_malformed(dev.name, topic, problems, now)
        self.received[dev.name] += 1
        now_ns = int(now * NS)
        tags = dict(self._tags[dev.name])
        for k, v in topic_tags(profile.topic, topic).items():
            if k not in RESERVED_TAGS:
                tags[k] = v
        out: list[Reading] = []
        if fields:
            out.append(
                Reading(
                    profile.measurement, tags, fields, time_ns if time_ns is not None else now_ns
                )
            )
            with self._gap_lock:
                self._last[dev.name] = self._since[dev.name] = now
                self._next_gap[dev.name] = now + GAP_FACTOR * self.cfg.interval_of(dev)
                back = dev.name in self._silent
                self._silent.discard(dev.name)
            if back:
                log.info("MQTT device %s publishes again", dev.name)
        out.append(
            self._health(
                dev,
                now_ns,
                up=bool(fields),
                values=len(fields),
                error="" if fields else "malformed",
                late_s=0.0,
            )
        )
        return out

    def _health(
        self, dev: Device, time_ns: int, *, up: bool, values: int, error: str, late_s: float
    ) -> Reading:
        fields: dict[str, FieldValue] = {
            "up": int(up),
            "duration_s": 0.0,
            "values_read": values,
            "error": error,
            "late_s": late_s,
        }
        tags = {"site": self.cfg.site.name, "device": dev.name, "protocol": "mqtt"}
        return Reading("dcim_poll", tags, fields, time_ns)

    def _log_malformed(self, device: str, topic: str, problems: list[str], now: float) -> None:
        if now - self._last_log.get(device, -math.inf) < LOG_EVERY_S:
            self._suppressed[device] = self._suppressed.get(device, 0) + 1
            return
        more = self._suppressed.pop(device, 0)
        self._last_log[device] = now
        log.warning(
            "MQTT device %s: malformed payload on %s: %s%s",
            device,
            topic,
            "; ".join(problems),
            f" ({more} more since the last report)" if more else "",
        )

    # -- gaps (watchdog thread) ----------------------------------------------------------
    def _watch(self) -> None:
        period = min((self.cfg.interval_of(d) for d in self.devices), default=1.0) / 4
        while not self._stop.wait(min(max(period, 0.05), 5.0)):
            try:
                self.check_gaps()
            except Exception:  # noqa: BLE001 - the watchdog must survive a failing emit
                log.exception("MQTT gap check failed")

    def check_gaps(self) -> None:
        """Emit one ``up=0 error="gap"`` row per interval for each device that stays silent
        (not while a message is held: nothing is read then)."""
        if self.holding.is_set():
            return
        now = self.clock()
        out: list[Reading] = []
        with self._gap_lock:
            for dev in self.devices:
                interval = self.cfg.interval_of(dev)
                while now >= self._next_gap[dev.name]:
                    due = self._next_gap[dev.name]
                    silent_s = now - self._since[dev.name]
                    out.append(
                        self._health(
                            dev,
                            int(due * NS),
                            up=False,
                            values=0,
                            error="gap",
                            late_s=max(0.0, silent_s - interval),
                        )
                    )
                    self._next_gap[dev.name] = due + interval
                    if dev.name not in self._silent:
                        self._silent.add(dev.name)
                        log.warning("MQTT device %s: no message for %.1f s", dev.name, silent_s)
        if out:
            self.emit(out)
