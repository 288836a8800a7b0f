"""Collectors: one module per protocol (snmp, modbus, mqtt), registered in ``REGISTRY``.

Polling protocols (SNMP, Modbus TCP) each provide ``make_poller(cfg, device) -> Poller`` and
are driven by :mod:`dcim.scheduler`; MQTT pushes and has its own client
(:class:`collectors.mqtt.MqttCollector`). Protocol modules are imported on first use, so a
site without Modbus devices never imports pymodbus.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collectors.base import Poller, PollerFactory
    from dcim.config import Device, SiteConfig


def _lazy(module: str) -> PollerFactory:
    def make_poller(cfg: SiteConfig, device: Device) -> Poller:
        factory: PollerFactory = importlib.import_module(module).make_poller
        return factory(cfg, device)

    return make_poller


# protocol -> factory of its pollers. Adding a polling protocol: its module with
# ``make_poller``, its ``<name>.sample.yaml``, its tests, and one line here.
REGISTRY: dict[str, PollerFactory] = {
    "snmp": _lazy("collectors.snmp"),
    "modbus": _lazy("collectors.modbus"),
}


def make_poller(cfg: SiteConfig, device: Device) -> Poller:
    try:
        factory = REGISTRY[device.protocol]
    except KeyError:
        raise ValueError(f"{device.name}: protocol {device.protocol!r} is not polled") from None
    return factory(cfg, device)


def build_pollers(cfg: SiteConfig) -> list[Poller]:
    """A poller for every enabled device of a polled protocol (not MQTT, which pushes)."""
    return [make_poller(cfg, d) for d in cfg.devices if d.enabled and d.protocol in REGISTRY]
