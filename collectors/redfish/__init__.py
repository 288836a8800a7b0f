"""Redfish: server power, temperatures, fans and power supplies from the BMC's REST API.

Layers: :mod:`.client` (HTTP, sessions, TLS), :mod:`.codec` (discovery links and JSON ->
canonical fields, pure), :mod:`.poller` (one BMC per poller), :mod:`.options` (the device's
``redfish:`` section), :mod:`.profile` (the profile model). See README.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from collectors.redfish.options import RedfishOptions
from collectors.redfish.profile import RedfishProfile
from dcim.protocols import ProtocolPlugin

if TYPE_CHECKING:
    from dcim.config import Device, SiteConfig
    from dcim.protocols import Poller


def _make_poller(cfg: SiteConfig, device: Device) -> Poller:
    from collectors.redfish.poller import RedfishPoller  # aiohttp only where Redfish is used

    return RedfishPoller(cfg, device)


plugin = ProtocolPlugin(
    name="redfish",
    profile=RedfishProfile,
    options=RedfishOptions,
    options_required=True,
    needs_endpoint=True,
    make_poller=_make_poller,
    sample_config=Path(__file__).resolve().parent / "sample.yaml",
)
