"""MQTT protocol plugin: devices publish JSON to a broker, the collector subscribes (QoS 1,
persistent session). A push protocol: one source for all the site's MQTT devices, no poller.

Modules: :mod:`.source` (the subscriber, on paho-mqtt), :mod:`.codec` (payload and topic
mapping, pure; the twin encodes with it), :mod:`.options` (the device's ``mqtt:`` section),
:mod:`.profile` (MQTT profiles); ``sample.yaml`` and ``README.md`` document it. The broker is
the site file's top-level ``mqtt:`` section. paho-mqtt is imported on start, not here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from collectors.mqtt.options import MqttOptions
from collectors.mqtt.profile import MqttProfile
from dcim.protocols import Issue, ProtocolPlugin

if TYPE_CHECKING:
    from dcim.config import Device, SiteConfig
    from dcim.protocols import Emit, Offer, PushSource


def make_source(
    cfg: SiteConfig, devices: list[Device], emit: Emit, *, offer: Offer | None = None
) -> PushSource:
    from collectors.mqtt.source import MqttCollector

    return MqttCollector(cfg, devices, emit, offer=offer)


def check(cfg: SiteConfig, device: Device) -> list[Issue]:
    if cfg.mqtt is None:
        return [
            (
                ("protocol",),
                "mqtt devices need a top-level 'mqtt:' broker section (host, port, ...)",
            )
        ]
    return []


plugin = ProtocolPlugin(
    name="mqtt",
    profile=MqttProfile,
    options=MqttOptions,
    options_required=True,
    needs_endpoint=False,
    make_source=make_source,
    sample_config=Path(__file__).with_name("sample.yaml"),
    check=check,
)
