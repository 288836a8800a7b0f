"""Modbus TCP protocol plugin: reads the registers and coils of a profile (read function
codes only).

Modules: :mod:`.poller` (the collector, on pymodbus, one connection per gateway), :mod:`.codec`
(register decoding and read planning, pure; the twin encodes with it), :mod:`.options` (the
device's optional ``modbus:`` section), :mod:`.profile` (Modbus profiles); ``sample.yaml`` and
``README.md`` document it. pymodbus is imported on the first poll, not here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from collectors.modbus.options import ModbusOptions
from collectors.modbus.profile import ModbusProfile
from dcim.protocols import ProtocolPlugin

if TYPE_CHECKING:
    from dcim.config import Device, SiteConfig
    from dcim.protocols import Poller


def make_poller(cfg: SiteConfig, device: Device) -> Poller:
    from collectors.modbus.poller import make_poller

    return make_poller(cfg, device)


def endpoint(device: Device) -> str | None:
    """Units behind one gateway (same host and port) are distinct devices."""
    if device.host is None or device.port is None:
        return None
    return f"{device.host}:{device.port} unit {device.options_as(ModbusOptions).unit_id}"


plugin = ProtocolPlugin(
    name="modbus",
    profile=ModbusProfile,
    options=ModbusOptions,
    options_required=False,
    make_poller=make_poller,
    sample_config=Path(__file__).with_name("sample.yaml"),
    endpoint=endpoint,
)
