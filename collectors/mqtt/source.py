"""MQTT collector: subscribes to each device's topic and maps JSON payloads through its profile.

Unlike SNMP and Modbus, MQTT devices push: there is no poller and no scheduler job. One
paho-mqtt client per collector process (QoS 1, persistent session, so messages published
while the collector is away are delivered when it reconnects) receives every device's
messages on paho's network thread.

Payload mapping and topic templates are in :mod:`collectors.mqtt.codec`, shared with the
twin.

Acknowledgement: a QoS 1 message is acknowledged to the broker once its readings are committed
to the spool. While the spool is full (``spool_on_full: refuse_new``) a message is held
unacknowledged, with every message after it, in order (:mod:`.hold`): paho's network thread
is not blocked (keepalives go on), a thread of the collector offers the held ones again every
``HOLD_RETRY_S``, and the broker keeps what it has not been able to send: nothing published is
lost for want of disk space, as long as the broker's own queue lasts (Mosquitto:
``max_queued_messages``, 1000 per client by default). A collector stopped meanwhile leaves the
messages with the broker, which delivers them again on the next connection.

Trust (:mod:`.guard`): a topic maps to the one device whose filter matches it (the config
check refuses overlapping filters), and must fit the profile's topic template (and the
device's ``tag_values``); payloads are bounded in size and nesting; a payload timestamp must
lie within ``max_clock_skew_s`` ahead of and ``max_age_s`` behind the collector's clock; a
timestamp already stored for the topic is refused (``duplicate``, or ``conflict`` when the
values differ): a stored value is never overwritten. Each refusal is counted by reason
(``dcim_mqtt_refused_total``) and logged at most once a minute per device and reason.

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
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import paho.mqtt.client as mqtt
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from collectors.mqtt.codec import MalformedPayload, decode_payload, topic_tags
from collectors.mqtt.guard import Seen, digest
from collectors.mqtt.hold import Held, Holder
from collectors.mqtt.options import MqttOptions
from collectors.mqtt.profile import RESERVED_TAGS, MqttProfile
from dcim.config import Device, SiteConfig
from dcim.mqttclient import make_client
from dcim.reading import FieldValue, Reading

log = logging.getLogger(__name__)

NS = 1_000_000_000
GAP_FACTOR = 1.5  # silence longer than this many intervals is a gap
LOG_EVERY_S = 60.0  # at most one log line per device and refusal reason a minute
# Why a message is refused (dcim_mqtt_refused_total); its dcim_poll error is "topic", "clock"
# (time_*) or "conflict" (conflict, out_of_order); a duplicate adds no row at all.
REASONS = ("topic", "time_future", "time_past", "duplicate", "conflict", "out_of_order")
HOLD_RETRY_S = 1.0  # a message the spool has no room for is offered again this often


def default_client_id(cfg: SiteConfig, devices: list[Device], role: str = "collector") -> str:
    """Stable across restarts (a persistent session needs that) and distinct per shard: the
    site name and a digest of the devices this process owns."""
    digest = hashlib.sha1(",".join(sorted(d.name for d in devices)).encode()).hexdigest()[:8]
    return f"dcim-{role}-{cfg.site.name}-{digest}"


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
        # Messages refused by device and reason (REASONS), and those on a topic no device has.
        self.refused: dict[str, Counter[str]] = {d.name: Counter() for d in self.devices}
        self.unmatched = 0
        self._seen = Seen()
        self._last: dict[str, float | None] = {d.name: None for d in self.devices}
        self._next_gap: dict[str, float] = {}
        self._since: dict[str, float] = {}  # last message, or start
        self._silent: set[str] = set()
        self._gap_lock = threading.Lock()  # gap state: paho's thread and the watchdog
        self._last_log: dict[tuple[str, str], float] = {}
        self._suppressed: dict[tuple[str, str], int] = {}
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None
        self.connected = threading.Event()
        self.disconnects = 0  # connections lost (not counting stop())
        self.client = make_client(self.broker, self.client_id, clean_session=False, manual_ack=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.offer = offer
        self.holder = Holder(
            self._commit,
            self.client.ack,
            on_release=self._after_hold,
            retry_s=HOLD_RETRY_S,
        )
        self.holding = self.holder.holding  # set while messages wait for room

    @property
    def held(self) -> int:
        """Messages that waited, unacknowledged, for room in the spool."""
        return self.holder.held

    def _commit(self, readings: list[Reading]) -> bool:
        """To ``offer`` (False: no room now), or to ``emit`` where there is no ``offer``."""
        if self.offer is None:
            self.emit(readings)
            return True
        return self.offer(readings)

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Connect in the background (a broker that is down is retried) and return at once."""
        now = self.clock()
        for d in self.devices:
            self._next_gap[d.name] = now + GAP_FACTOR * self.cfg.interval_of(d)
            self._since[d.name] = now
        self._stop.clear()
        self.holder.start()
        self.client.connect_async(
            self.broker.host, self.broker.port, keepalive=self.broker.keepalive_s
        )
        self.client.loop_start()
        self._watchdog = threading.Thread(target=self._watch, name="mqtt-gaps", daemon=True)
        self._watchdog.start()

    def stop(self) -> None:
        """Disconnect (the broker keeps the session and queues QoS 1 messages for next time;
        held messages stay unacknowledged, so the broker delivers them again)."""
        self._stop.set()
        self.holder.stop()
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
        refused = CounterMetricFamily(
            "dcim_mqtt_refused",
            "MQTT messages refused, by reason (topic, time_future, time_past, duplicate,"
            " conflict, out_of_order; malformed payloads: dcim_mqtt_malformed_total)",
            labels=["device", "reason"],
        )
        for name in sorted(self.refused):
            for reason in REASONS:
                refused.add_metric([name, reason], self.refused[name][reason])
        yield refused
        yield CounterMetricFamily(
            "dcim_mqtt_unmatched",
            "MQTT messages on a topic no device has (acknowledged, not stored)",
            self.unmatched,
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
        self.holder.reconnected(bool(flags.session_present))
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
            self.disconnects += 1
            log.warning(
                "MQTT connection to %s:%s lost (%s); reconnecting",
                self.broker.host,
                self.broker.port,
                rc,
            )

    def _on_message(self, _client: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        held = Held(msg.mid, msg.qos, msg.topic, [])
        try:
            dev = self._device_of(msg.topic)
            if dev is None:
                self.unmatched += 1
                self._log_refused("", "unmatched", f"no device has topic {msg.topic!r}")
            else:
                held.readings = self._handle(dev, msg.topic, bytes(msg.payload), held)
        except Exception:  # noqa: BLE001 - never let one message kill paho's thread
            log.exception("MQTT message on %s could not be handled", msg.topic)
        self.holder.submit(held)

    def _device_of(self, topic: str) -> Device | None:
        """The device whose filter matches ``topic`` (the config check lets only one)."""
        for topic_filter, dev in self._filters:
            if topic_filter == topic or mqtt.topic_matches_sub(topic_filter, topic):
                return dev
        return None

    def _after_hold(self) -> None:
        # No message was read while one was held: give the queued ones time to arrive before
        # silence counts as a gap again (gap rows could not have been stored meanwhile).
        now = self.clock()
        with self._gap_lock:
            for d in self.devices:
                grace = now + GAP_FACTOR * self.cfg.interval_of(d)
                self._next_gap[d.name] = max(self._next_gap[d.name], grace)

    def _handle(self, dev: Device, topic: str, payload: bytes, held: Held) -> list[Reading]:
        """The message's readings: its data (unless refused) and its ``dcim_poll`` row."""
        now = self.clock()
        now_ns = int(now * NS)
        self.received[dev.name] += 1
        profile = self._profiles[dev.name]
        tags = self._topic_tags(dev, profile, topic)
        if tags is None:
            return [self._health(dev, now_ns, up=False, values=0, error="topic", late_s=0.0)]
        try:
            fields, time_ns, problems = decode_payload(
                profile,
                payload,
                max_bytes=self.broker.max_payload_bytes,
                max_depth=self.broker.max_json_depth,
            )
        except MalformedPayload as exc:
            fields, time_ns, problems = {}, None, [str(exc)]
        if problems:
            self.malformed[dev.name] += 1
            what = f"malformed payload on {topic}: " + "; ".join(problems)
            self._log_refused(dev.name, "malformed", what)
        error = "" if fields else "malformed"
        if fields and time_ns is not None:
            error = self._check_time(dev, topic, fields, time_ns, now_ns, held)
            if error == "duplicate":
                return []  # stored already (a redelivery): no new row at all
        out: list[Reading] = []
        if not error:
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
                up=not error,
                values=len(fields) if not error else 0,
                error=error,
                late_s=0.0,
            )
        )
        return out

    def _topic_tags(self, dev: Device, profile: MqttProfile, topic: str) -> dict[str, str] | None:
        """The reading's tags: the device's and those of the topic, None if the topic does not
        fit the profile's template, names a tag value the device does not list, or is one
        topic too many for the device."""
        found = topic_tags(profile.topic, topic)
        why = ""
        if not found and profile.topic_tags():
            why = f"topic {topic!r} does not fit the template {profile.topic!r}"
        allowed = dev.options_as(MqttOptions).tag_values or {}
        for key, values in allowed.items():
            if not why and found.get(key) not in values:
                why = f"topic {topic!r}: {key} {found.get(key)!r} is not one of {values}"
        if not why and not self._seen.admit(dev.name, topic):
            why = f"topic {topic!r}: over {self._seen.max_topics} distinct topics for the device"
        if why:
            self.refused[dev.name]["topic"] += 1
            self._log_refused(dev.name, "topic", why)
            return None
        tags = dict(self._tags[dev.name])
        for k, v in found.items():
            if k not in RESERVED_TAGS:
                tags[k] = v
        return tags

    def _check_time(
        self,
        dev: Device,
        topic: str,
        fields: dict[str, FieldValue],
        time_ns: int,
        now_ns: int,
        held: Held,
    ) -> str:
        """'' if the payload's time may be stored, else the ``dcim_poll`` error (and the
        refusal counted and logged)."""
        ahead_s = (time_ns - now_ns) / NS
        if ahead_s > self.broker.max_clock_skew_s:
            reason, error = "time_future", "clock"
            why = f"time {ahead_s:.0f} s ahead of the collector's clock (max_clock_skew_s: "
            why += f"{self.broker.max_clock_skew_s:g})"
        elif -ahead_s > self.broker.max_age_s:
            reason, error = "time_past", "clock"
            why = f"time {-ahead_s:.0f} s behind the collector's clock (max_age_s: "
            why += f"{self.broker.max_age_s:g})"
        else:
            verdict = self._seen.check(dev.name, topic, time_ns, digest(fields))
            if verdict == "new":
                held.forget = lambda: self._seen.forget(dev.name, topic, time_ns)
                return ""
            reason, error = verdict, "conflict"
            why = {
                "duplicate": "the values stored for this time again (nothing new)",
                "conflict": "other values for a time already stored (the first are kept)",
                "out_of_order": f"older than the last {self._seen.per_topic} times of the topic",
            }[verdict]
        self.refused[dev.name][reason] += 1
        self._log_refused(dev.name, reason, f"message on {topic} refused: {why}")
        return "duplicate" if reason == "duplicate" else error

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

    def _log_refused(self, device: str, reason: str, what: str) -> None:
        """At most one line per device and reason a minute, with the count left out since."""
        now = time.monotonic()
        key = (device, reason)
        if now - self._last_log.get(key, -math.inf) < LOG_EVERY_S:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        more = self._suppressed.pop(key, 0)
        self._last_log[key] = now
        log.warning(
            "MQTT %s: %s%s",
            f"device {device}" if device else "broker",
            what,
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
