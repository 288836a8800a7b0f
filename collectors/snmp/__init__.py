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
    from dcim.config import Device, Secret, SiteConfig
    from dcim.protocols import Poller


def make_poller(cfg: SiteConfig, device: Device) -> Poller:
    from collectors.snmp.poller import make_poller

    return make_poller(cfg, device)


def _reference(secret: Secret) -> str:
    """A community as the site file gives it, never its value unless written in clear."""
    if secret.env is not None:
        return f"{{env: {secret.env}}}"
    if secret.file is not None:
        return f"{{file: {secret.file}}}"
    return repr(secret.value)


def endpoint(device: Device) -> str | None:
    """What one SNMP device is at its agent: several devices behind one address (a proxy
    agent, a chassis manager, a PDU's modules) differ by community (v1/v2c) or by SNMPv3
    user and context. Two enabled devices with the same host, port and community reference
    (or user, contextName and contextEngineID) are the same device polled twice."""
    opts = device.options
    if device.host is None or device.port is None or not isinstance(opts, SnmpOptions):
        return None
    where = f"{device.host}:{device.port}"
    if opts.version != "3":
        assert opts.community is not None
        return f"{where} community {_reference(opts.community)}"
    text = f"{where} SNMPv3 user {opts.user!r} context {opts.context!r}"
    if opts.context_engine_id is not None:
        text += f" engine {(opts.context_engine_id_bytes or b'').hex()}"
    return text


plugin = ProtocolPlugin(
    name="snmp",
    profile=SnmpProfile,
    options=SnmpOptions,
    options_required=True,
    make_poller=make_poller,
    sample_config=Path(__file__).with_name("sample.yaml"),
    endpoint=endpoint,
)
