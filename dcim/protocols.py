"""What the core knows of a protocol: the plugin interface and its registry.

A protocol (SNMP, Modbus TCP, MQTT, Redfish, or one a third-party package adds) is one
plugin: a package under ``collectors/`` (or anywhere) holding its collector, codec, option
schema, profile-field schema, sample config and README, exposing one
:class:`ProtocolPlugin` object through the ``dcim.protocols`` entry-point group::

    [project.entry-points."dcim.protocols"]
    snmp = "collectors.snmp:plugin"

The core (config, scheduler, pipeline, probe, runtime) imports no protocol module: it asks
the registry. This module and :mod:`dcim.reading` are what the core and the plugins share;
plugins import the core, the core never imports a plugin by name, so there is no cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from pydantic import BaseModel

    from dcim.config import Device, SiteConfig
    from dcim.profiles import Profile
    from dcim.reading import Reading

ENTRY_POINT_GROUP = "dcim.protocols"

ErrorKind = Literal["timeout", "refused", "protocol", "auth", "decode", "config", "other"]


class PollError(Exception):
    """The one error type protocol code raises; the scheduler decides what it means."""

    def __init__(self, kind: ErrorKind, message: str):
        super().__init__(message)
        self.kind: ErrorKind = kind


class Poller(Protocol):
    """Reads one device. ``poll`` returns the readings of one cycle (usually one Reading with
    the profile's measurement, tags from ``SiteConfig.tags_of``, the poll's timestamp) or raises
    PollError. Values that fail alone (noSuchObject, one bad register) are left out of the
    fields; the poll still succeeds if any value was read."""

    device: Device

    async def poll(self) -> list[Reading]: ...

    async def close(self) -> None: ...


class PushSource(Protocol):
    """A protocol whose devices send (MQTT): started and stopped by the runtime, it hands
    readings to ``emit`` (or ``offer``, which may refuse while the spool is full) itself."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


Emit = Callable[[list["Reading"]], None]
Offer = Callable[[list["Reading"]], bool]


@dataclass(frozen=True)
class ProtocolPlugin:
    """One protocol, as the core sees it.

    name: the ``protocol:`` value of a device, and the key of its options section.
    options: pydantic model of the device's ``<name>:`` section (None: the protocol has none).
    options_required: a device must write the section (else a default one is made).
    needs_endpoint: a device needs ``host`` and ``port``.
    profile: pydantic model of a profile of this protocol: a subclass of
      :class:`dcim.profiles.Profile` whose ``fields`` are the protocol's own field model (a
      subclass of :class:`dcim.profiles.FieldSpec` with the protocol's keys: ``oid``,
      ``address``, ``json``, ``path``...) plus the protocol's profile-level keys.
    make_poller: for polled protocols, one Poller per device (driven by the scheduler).
    make_source: for push protocols, ``make_source(cfg, devices, emit, offer=...)``: one
      source for all the protocol's enabled devices.
    sample_config: the protocol's ``*.sample.yaml`` (a site file fragment).
    """

    name: str
    profile: type[Profile]
    options: type[BaseModel] | None = None
    options_required: bool = False
    needs_endpoint: bool = True
    make_poller: Callable[[SiteConfig, Device], Poller] | None = None
    make_source: Callable[..., PushSource] | None = None
    sample_config: Path | None = None
