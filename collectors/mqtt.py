"""MQTT collector: subscribes to each device's topic and maps JSON payloads through its profile.

Unlike SNMP and Modbus, MQTT devices push: there is no poller and no scheduler job. One
paho-mqtt client per collector process (QoS 1, persistent session, so messages published
while the collector is away are delivered when it reconnects) receives every device's
messages on paho's network thread.

Payload mapping (the profile's ``json`` path, dot-separated; ``value = raw * scale + offset``)
and topic templates (``{name}`` segments become tags) are shared with the twin, which encodes
with the exact inverse (:func:`encode_payload`).

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
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from dcim.config import Device, MqttBroker, SiteConfig
from dcim.profiles import FieldSpec, Profile
from dcim.reading import FieldValue, Reading

log = logging.getLogger(__name__)

NS = 1_000_000_000
GAP_FACTOR = 1.5  # silence longer than this many intervals is a gap
LOG_EVERY_S = 60.0  # at most one malformed-payload log line per device per minute
HOLD_RETRY_S = 1.0  # a message the spool has no room for is offered again this often
TIME_KEYS = ("ts", "time")
RESERVED_TAGS = ("site", "device")  # identity tags always come from the config, not the topic


class MalformedPayload(ValueError):
    pass


# -- payload and topic codec (shared with dcim.twin.serve_mqtt) -------------------------------


def _lookup(doc: Any, path: str) -> Any:
    node = doc
    for part in path.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise KeyError(path)
    return node


def _number(raw: Any) -> float:
    if isinstance(raw, bool):
        return float(raw)
    if isinstance(raw, int | float):
        val = float(raw)
    elif isinstance(raw, str):
        try:
            val = float(raw)
        except ValueError:
            raise MalformedPayload(f"{raw!r} is not a number") from None
    else:
        raise MalformedPayload(f"{raw!r} is not a number")
    if not math.isfinite(val):
        raise MalformedPayload(f"{raw!r} is not a finite number")
    return val


def decode_value(spec: FieldSpec, raw: Any) -> FieldValue:
    """One JSON value to its canonical field value (``raw * scale + offset``, ``map`` first)."""
    val = _number(raw)
    if spec.map is not None:
        if not val.is_integer() or int(val) not in spec.map:
            raise MalformedPayload(f"{raw!r} is not one of the codes {sorted(spec.map)}")
        val = spec.map[int(val)]
    val = val * spec.scale + spec.offset
    # States are small integer codes; everything else stays float so InfluxDB never sees the
    # same field change type (an int then a float is a rejected write).
    return int(round(val)) if spec.kind == "state" else val


def parse_time(raw: Any) -> int:
    """A payload timestamp to UTC ns: ISO 8601 (naive means UTC) or UNIX epoch in s/ms/us/ns."""
    if isinstance(raw, str):
        try:
            return _epoch_ns(float(raw))
        except ValueError:
            pass
        try:
            dt = datetime.fromisoformat(raw)
        except ValueError:
            raise MalformedPayload(f"time {raw!r} is neither ISO 8601 nor a UNIX epoch") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return int(dt.timestamp()) * NS + dt.microsecond * 1000
    if isinstance(raw, int | float) and not isinstance(raw, bool) and math.isfinite(raw):
        return _epoch_ns(raw)
    raise MalformedPayload(f"time {raw!r} is neither ISO 8601 nor a UNIX epoch")


def _epoch_ns(val: float) -> int:
    mag = abs(val)
    if mag >= 1e17:
        return int(val)
    if mag >= 1e14:
        return int(val * 1000)
    if mag >= 1e11:
        return int(val * 1_000_000)
    return int(round(val * 1e6)) * 1000  # seconds, to the microsecond


def decode_payload(
    profile: Profile, payload: bytes
) -> tuple[dict[str, FieldValue], int | None, list[str]]:
    """JSON payload -> (fields, time_ns or None, problems). Fields that fail alone are left
    out and named in ``problems``; raises MalformedPayload if the payload is not a JSON object."""
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedPayload(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise MalformedPayload(f"not a JSON object but {type(doc).__name__}")
    fields: dict[str, FieldValue] = {}
    problems: list[str] = []
    for spec in profile.fields:
        assert spec.json_path is not None  # the profile model guarantees it for mqtt
        try:
            fields[spec.name] = decode_value(spec, _lookup(doc, spec.json_path))
        except KeyError:
            problems.append(f"{spec.json_path}: missing")
        except MalformedPayload as exc:
            problems.append(f"{spec.json_path}: {exc}")
    time_ns = None
    for key in TIME_KEYS:
        if key in doc:
            try:
                time_ns = parse_time(doc[key])
            except MalformedPayload as exc:
                problems.append(str(exc))
            break
    return fields, time_ns, problems


def encode_payload(
    profile: Profile, values: Mapping[str, float | int], *, time_s: float | None = None
) -> bytes:
    """The inverse of :func:`decode_payload`: canonical values -> the device's JSON payload.
    Fields missing from ``values`` are left out."""
    doc: dict[str, Any] = {}
    if time_s is not None:
        doc["ts"] = round(time_s, 6)
    for spec in profile.fields:
        if spec.name not in values or spec.json_path is None:
            continue
        raw: float = (float(values[spec.name]) - spec.offset) / spec.scale
        if spec.map is not None:
            raw = next((k for k, v in spec.map.items() if v == raw), raw)
        node = doc
        *parents, leaf = spec.json_path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = int(raw) if spec.map is not None or spec.kind == "state" else raw
    return json.dumps(doc, separators=(",", ":")).encode()


def _template_regex(template: str) -> re.Pattern[str]:
    out, pos = "", 0
    for m in re.finditer(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", template):
        out += re.escape(template[pos : m.start()]) + f"(?P<{m.group(1)}>[^/]+)"
        pos = m.end()
    return re.compile(out + re.escape(template[pos:]) + r"\Z")


def topic_tags(template: str | None, topic: str) -> dict[str, str]:
    """Tags from a concrete topic and the profile's template: ``{}`` if it does not match."""
    if not template:
        return {}
    m = _template_regex(template).match(topic)
    return dict(m.groupdict()) if m else {}


def render_topic(template: str, tags: Mapping[str, str]) -> str:
    """The topic a device with these tags publishes to (raises KeyError if one is missing)."""
    return template.format_map(dict(tags))


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
    if broker.tls_ca is not None:
        client.tls_set(ca_certs=str(broker.tls_ca))
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
        self.devices = [d for d in devices if d.protocol == "mqtt" and d.mqtt is not None]
        self._profiles: dict[str, Profile] = {d.name: profiles[d.profile] for d in self.devices}
        self._tags = {d.name: cfg.tags_of(d) for d in self.devices}
        self._filters: list[tuple[str, Device]] = [
            (d.mqtt.topic, d) for d in self.devices if d.mqtt
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
