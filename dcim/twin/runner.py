"""Runs the digital twin: the physics model served over SNMP, Modbus TCP and MQTT."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from dcim.config import SiteConfig
from dcim.twin.model import GLOSSARY, SiteModel
from dcim.twin.scenarios import Scenario, apply_all

log = logging.getLogger(__name__)


class TwinRunner:
    """The twin of a site, serving every device of ``cfg`` at its configured address.

    ``embedded_broker``: start an in-process MQTT broker at the config's MQTT address (the
    demo, where no broker is installed); otherwise the twin publishes to the configured one.
    ``offset_s``: the model runs that far ahead of the wall clock (a winter night in July),
    so a scenario does not depend on when it is run; the devices still stamp wall-clock
    time, and ``model_time(t)`` turns a wall-clock time into the model's.
    ``scenarios``: faults (:mod:`dcim.twin.scenarios`) placed from the moment the twin
    starts serving; what the devices serve is the model's values through them, and a silent
    device's server stops answering while its fault lasts.
    """

    def __init__(
        self,
        cfg: SiteConfig,
        *,
        seed: int = 1,
        t0: float | None = None,
        embedded_broker: bool = False,
        offset_s: float = 0.0,
        clock: Callable[[], float] = time.time,
        redfish_certs: Path | None = None,
        scenarios: list[Scenario] | None = None,
    ) -> None:
        self.cfg = cfg
        self.clock = clock
        self.offset_s = offset_s
        self.t0 = self.model_time(clock()) if t0 is None else t0
        self.model = SiteModel(cfg, t0=self.t0, seed=seed)
        self.embedded_broker = embedded_broker
        self.redfish_certs = redfish_certs
        self._servers: dict[str, Any] = {}  # protocol -> its server
        self._broker: Any = None
        self.scenarios = list(scenarios or [])
        self.started_at = self.clock()  # the scenarios' origin (set again by start())
        self._silenced: set[str] = set()
        self._watch: asyncio.Task[None] | None = None

    def model_time(self, wall_s: float) -> float:
        return wall_s + self.offset_s

    def values(self, device: str) -> Mapping[str, float | int]:
        now = self.clock()
        v = self.model.values(device, max(self.t0, self.model_time(now)))
        if not self.scenarios:
            return v
        m = GLOSSARY[self.model.devices[device].kind][0]
        out = apply_all(self.scenarios, device, m, dict(v), now - self.started_at)
        return {k: x for k, x in (out or {}).items() if isinstance(x, int | float)}

    def sync_silence(self) -> None:
        """Blackhole the devices a scenario silences now, answer for the others again."""
        t_s = self.clock() - self.started_at
        want = {
            d.name
            for d in self.cfg.devices
            if d.enabled and any(sc.silent(d.name, t_s) for sc in self.scenarios)
        }
        for dev in want ^ self._silenced:
            self.set_unreachable(dev, dev in want)
            log.info("scenario: %s %s", dev, "silent" if dev in want else "answers again")
        self._silenced = want

    async def _silence(self) -> None:
        while True:  # every 0.2 s of wall-clock time (a test's virtual clock: sync_silence)
            self.sync_silence()
            await asyncio.sleep(0.2)

    async def start(self) -> None:
        from dcim.twin.serve_modbus import ModbusTwin
        from dcim.twin.serve_snmp import SnmpTwin

        protocols = {d.protocol for d in self.cfg.devices if d.enabled}
        if "snmp" in protocols:
            self._servers["snmp"] = SnmpTwin(self.cfg, self.values)
        if "modbus" in protocols:
            self._servers["modbus"] = ModbusTwin(self.cfg, self.values)
        if "redfish" in protocols:
            self._servers["redfish"] = self._redfish()
        for s in self._servers.values():
            await s.start()
        if "mqtt" in protocols and self.cfg.mqtt is not None:
            from dcim.twin.serve_mqtt import EmbeddedBroker, MqttTwin

            if self.embedded_broker:
                self._broker = EmbeddedBroker(self.cfg.mqtt.host, self.cfg.mqtt.port)
                self._broker.start()
            mq = MqttTwin(self.cfg, self.values)
            mq.start()
            self._servers["mqtt"] = mq
        self.started_at = self.clock()
        if any(sc.fault.silent for sc in self.scenarios):
            self._watch = asyncio.create_task(self._silence())
        for sc in self.scenarios:
            log.info("scenario %s: from %.0f s to %.0f s", sc.name, sc.start_s, sc.end_s)
        log.info("twin serving %d devices", len(self.cfg.devices))

    def server(self, protocol: str) -> Any:
        """The twin's server of ``protocol`` (its switches: tests, benchmarks)."""
        return self._servers[protocol]

    def _redfish(self) -> Any:
        from dcim.twin.serve_redfish import RedfishTwin

        devices, creds = {}, {}
        for d in self.cfg.devices:
            if d.enabled and d.protocol == "redfish" and d.host and d.port:
                devices[d.name] = (d.host, d.port)
                opts: Any = d.options  # the plugin's RedfishOptions (username, password)
                creds[d.name] = (opts.username, opts.password.resolve())
        return RedfishTwin(self.values, devices, work_dir=self.redfish_certs, credentials=creds)

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        for proto, s in self._servers.items():
            if proto == "mqtt":
                s.stop()
            else:
                await s.stop()
        if self._broker is not None:
            self._broker.stop()

    def set_unreachable(self, device: str, unreachable: bool = True) -> None:
        """Blackhole one device (its requests go unanswered, its messages unpublished)."""
        self._servers[self.cfg.device(device).protocol].set_unreachable(device, unreachable)


class TwinThread:
    """The twin on its own event loop in a background thread (tests, benchmarks)."""

    def __init__(self, runner: TwinRunner) -> None:
        self.runner = runner
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="twin", daemon=True)

    def __enter__(self) -> TwinRunner:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.runner.start(), self.loop).result(60)
        return self.runner

    def call(self, fn, *args):  # type: ignore[no-untyped-def]
        return self.loop.call_soon_threadsafe(fn, *args)

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.stop(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
