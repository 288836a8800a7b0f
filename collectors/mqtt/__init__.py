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

from collectors.mqtt.guard import common_topic, filter_problem, filters_overlap, template_filter
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
    """The broker section is there; the device's topic is a valid filter that fits its
    profile's template; ``tag_values`` names tags of that template; no earlier enabled MQTT
    device's filter overlaps it (a topic maps to one device)."""
    issues: list[Issue] = []
    if cfg.mqtt is None:
        issues.append(
            (
                ("protocol",),
                "mqtt devices need a top-level 'mqtt:' broker section (host, port, ...)",
            )
        )
    if not isinstance(device.options, MqttOptions):
        return issues
    topic = device.options.topic
    problem = filter_problem(topic)
    if problem is not None:
        return [*issues, (("mqtt", "topic"), f"{topic!r} is not a topic filter: {problem}")]
    prof = cfg.profiles().get(device.profile)
    if isinstance(prof, MqttProfile):
        template = template_filter(prof.topic)
        if not filters_overlap(topic, template):
            issues.append(
                (
                    ("mqtt", "topic"),
                    f"{topic!r} matches no topic of profile {prof.name!r}'s template "
                    f"{prof.topic!r}: nothing it receives could be read",
                )
            )
        unknown = sorted(set(device.options.tag_values or {}) - prof.topic_tags())
        if unknown:
            issues.append(
                (
                    ("mqtt", "tag_values"),
                    f"{', '.join(unknown)}: not a tag of the template {prof.topic!r} "
                    f"(its tags: {', '.join(sorted(prof.topic_tags())) or 'none'})",
                )
            )
    if device.enabled:
        for other in cfg.devices:
            if other is device:
                break
            if not (other.enabled and isinstance(other.options, MqttOptions)):
                continue
            if filter_problem(other.options.topic) is not None:
                continue  # reported on that device
            both = common_topic(topic, other.options.topic)
            if both is not None:
                issues.append(
                    (
                        ("mqtt", "topic"),
                        f"{topic!r} overlaps device {other.name!r}'s topic "
                        f"{other.options.topic!r} (both match {both!r}): a topic must map to "
                        "one device; make the filters disjoint",
                    )
                )
    return issues


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
