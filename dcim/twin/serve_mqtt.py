"""The twin's MQTT side: simulated sensors publishing JSON, and an optional in-process broker.

:class:`MqttTwin` publishes each mqtt device's values every interval, encoded with the exact
inverse of the collector's decoding (:func:`collectors.mqtt.codec.encode_payload`), QoS 1.

:class:`EmbeddedBroker` runs an MQTT 3.1.1 broker (the ``amqtt`` package) on its own asyncio
loop in a background thread, for the demo on a machine without Mosquitto. It allows anonymous
clients and keeps no state on disk: use Mosquitto (or any real broker) in production. Seen
with amqtt 0.12.1: live QoS 1 works with paho 2 (PUBACK, delivery at QoS 1), but QoS 1
messages published while a persistent-session subscriber was disconnected were not delivered
when it came back (Mosquitto delivers them).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from collectors.mqtt.codec import encode_payload, render_topic
from collectors.mqtt.options import MqttOptions
from collectors.mqtt.profile import MqttProfile
from collectors.mqtt.source import default_client_id, make_client
from dcim.config import Device, SiteConfig

log = logging.getLogger(__name__)

WILDCARDS = ("+", "#")


class MqttTwin:
    """Publishes the simulated values of every enabled mqtt device of ``cfg``.

    ``values(device)`` gives canonical field values (as the collector will decode them);
    ``interval_s`` overrides each device's configured interval. Publishing happens on a
    thread of its own; paho's network thread sends.
    """

    def __init__(
        self,
        cfg: SiteConfig,
        values: Callable[[str], Mapping[str, float | int]],
        *,
        interval_s: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if cfg.mqtt is None:
            raise ValueError("the site has no 'mqtt:' broker section")
        self.cfg, self.values, self.clock = cfg, values, clock
        self.interval_s = interval_s
        profiles = cfg.profiles()
        self.devices: list[tuple[Device, MqttProfile, str]] = []
        for dev in cfg.devices:
            prof = profiles.get(dev.profile)
            if not dev.enabled or not isinstance(dev.options, MqttOptions):
                continue
            if not isinstance(prof, MqttProfile):
                continue
            topic = self._publish_topic(dev, prof)
            if topic is None:
                log.warning(
                    "twin: cannot publish for %s: topic %r is a filter",
                    dev.name,
                    dev.options.topic,
                )
                continue
            self.devices.append((dev, prof, topic))
        self.published: dict[str, int] = {d.name: 0 for d, _, _ in self.devices}
        self._unreachable: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        client_id = default_client_id(cfg, [d for d, _, _ in self.devices], role="twin")
        self.client = make_client(cfg.mqtt, client_id, clean_session=True)
        self.connected = threading.Event()
        self.client.on_connect = lambda *_a: self.connected.set()
        self.client.on_disconnect = lambda *_a: self.connected.clear()

    def _publish_topic(self, dev: Device, prof: MqttProfile) -> str | None:
        topic = dev.options_as(MqttOptions).topic
        if not any(w in topic.split("/") for w in WILDCARDS):
            return topic
        try:  # a filter: publish where the profile's template puts this device
            return render_topic(prof.topic, self.cfg.tags_of(dev))
        except KeyError:
            return None

    def set_unreachable(self, device: str, unreachable: bool = True) -> None:
        """Stop (or resume) publishing for ``device``, as a sensor that lost power."""
        if unreachable:
            self._unreachable.add(device)
        else:
            self._unreachable.discard(device)

    def start(self) -> None:
        assert self.cfg.mqtt is not None
        self._stop.clear()
        self.client.connect_async(self.cfg.mqtt.host, self.cfg.mqtt.port, keepalive=30)
        self.client.loop_start()
        self._thread = threading.Thread(target=self._run, name="twin-mqtt", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        self.client.disconnect()
        self.client.loop_stop()

    def publish_once(self, dev: Device, prof: MqttProfile, topic: str) -> None:
        assert self.cfg.mqtt is not None
        payload = encode_payload(prof, self.values(dev.name), time_s=self.clock())
        self.client.publish(topic, payload, qos=self.cfg.mqtt.qos)
        self.published[dev.name] += 1

    def _run(self) -> None:
        # Fixed-rate per device (next = previous + interval), phases spread over the first
        # interval so that the sensors do not all publish at the same instant.
        start = time.monotonic()
        n = max(1, len(self.devices))
        due: list[tuple[float, int]] = []
        for i, (dev, _, _) in enumerate(self.devices):
            heapq.heappush(due, (start + self._interval(dev) * i / n, i))
        while due and not self._stop.is_set():
            at, i = due[0]
            if self._stop.wait(max(0.0, at - time.monotonic())):
                break
            heapq.heapreplace(due, (at + self._interval(self.devices[i][0]), i))
            dev, prof, topic = self.devices[i]
            if dev.name in self._unreachable:
                continue
            try:
                self.publish_once(dev, prof, topic)
            except Exception:  # noqa: BLE001 - one device's bad value must not stop the others
                log.exception("twin: publishing for %s failed", dev.name)

    def _interval(self, dev: Device) -> float:
        return self.interval_s if self.interval_s is not None else self.cfg.interval_of(dev)


class EmbeddedBroker:
    """An in-process MQTT 3.1.1 broker on ``host:port`` (anonymous, in memory): ``start`` and
    ``stop`` block until the broker listens / has shut down."""

    def __init__(self, host: str = "127.0.0.1", port: int = 1883) -> None:
        self.host, self.port = host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker: Any = None

    def start(self, timeout_s: float = 15.0) -> None:
        try:
            from amqtt.broker import Broker
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise RuntimeError("the embedded MQTT broker needs the 'amqtt' package") from exc
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
        for name in ("amqtt", "transitions"):  # a state-machine line per connection at INFO
            lib_log = logging.getLogger(name)
            if lib_log.level == logging.NOTSET:
                lib_log.setLevel(logging.WARNING)
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="mqtt-broker", daemon=True)
        self._thread.start()

        async def boot() -> Any:
            broker = Broker(config)
            await broker.start()
            return broker

        try:
            self._broker = asyncio.run_coroutine_threadsafe(boot(), loop).result(timeout_s)
        except BaseException:
            self._halt()
            raise
        log.info("embedded MQTT broker listening on %s:%d", self.host, self.port)

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._loop is None:
            return
        if self._broker is not None:
            try:
                asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop).result(
                    timeout_s
                )
            except Exception:  # noqa: BLE001 - stopping is best effort; the loop goes anyway
                log.warning("embedded MQTT broker did not shut down cleanly", exc_info=True)
            self._broker = None
        self._halt()

    def _halt(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(10)
        if not loop.is_running():
            loop.close()
        self._loop = self._thread = None
