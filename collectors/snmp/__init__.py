"""SNMP (v1, v2c, v3) protocol plugin: polls agents through the OIDs and tables of a profile.

Modules: :mod:`.poller` (the collector, on pysnmp's engine), :mod:`.codec` (what to ask and
how answers become readings, pure), :mod:`.wire` (a BER codec for v1/v2c), :mod:`.options`
(the device's ``snmp:`` section), :mod:`.profile` (SNMP profiles); ``sample.yaml`` and
``README.md`` document it. pysnmp is imported on the first poll, not here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from collectors.snmp.options import SnmpOptions
from collectors.snmp.profile import SnmpProfile
from dcim.protocols import ProtocolPlugin

if TYPE_CHECKING:
    from dcim.config import Device, SiteConfig
    from dcim.protocols import Poller


def make_poller(cfg: SiteConfig, device: Device) -> Poller:
    from collectors.snmp.poller import make_poller

    return make_poller(cfg, device)


plugin = ProtocolPlugin(
    name="snmp",
    profile=SnmpProfile,
    options=SnmpOptions,
    options_required=True,
    make_poller=make_poller,
    sample_config=Path(__file__).with_name("sample.yaml"),
)
