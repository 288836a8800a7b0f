"""What the core knows of a protocol: the plugin interface and its registry.

A protocol (SNMP, Modbus TCP, MQTT, Redfish, or one a third-party package adds) is one
plugin: a package under ``collectors/`` (or anywhere) holding its collector, codec, option
schema, profile-field schema, sample config and README, exposing one
:class:`ProtocolPlugin` object through the ``dcim.protocols`` entry-point group::

    [project.entry-points."dcim.protocols"]
    snmp = "collectors.snmp:plugin"

The core (config, profiles, scheduler, pipeline, probe, runtime) imports no protocol module:
it asks the registry (:func:`plugin`, :func:`names`). This module and :mod:`dcim.reading` are
what the core and the plugins share; plugins import the core, the core never imports a
plugin by name. At run time this module imports nothing of the core (the core's types are
named for the type checker only), so the core modules that use the registry form no cycle.

The registry is lazy: the entry points are listed on first use, and a plugin's module is
imported only when a device, profile or command names its protocol (a site without Modbus
devices never imports pymodbus).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar, runtime_checkable

if TYPE_CHECKING:
    import importlib.metadata

    from prometheus_client.metrics_core import Metric
    from pydantic import BaseModel

    from dcim.config import Device, SiteConfig
    from dcim.profiles import Profile
    from dcim.reading import Reading

ENTRY_POINT_GROUP = "dcim.protocols"

ErrorKind = Literal["timeout", "refused", "protocol", "auth", "decode", "config", "other"]

# A problem found by a plugin's check: where (the path under the device, () for the device
# itself) and what is wrong, as the config's error report prints it.
Issue = tuple[tuple[str | int, ...], str]


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
    readings to ``emit`` (or ``offer``, which may refuse while the spool is full) itself.

    ``emit`` and ``offer`` may be called from the source's own threads: they are thread-safe
    and quick. Besides data, a source emits ``dcim_poll`` health rows (a message received, a
    device silent for too long) so that a silent device is a recorded gap."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


@runtime_checkable
class MetricsSource(Protocol):
    """A poller or push source with metrics of its own on the collector's ``/metrics``
    (prometheus_client metric families, e.g. MQTT's ``dcim_mqtt_connected``)."""

    def metrics(self) -> Iterable[Metric]: ...


Emit = Callable[[list["Reading"]], None]
Offer = Callable[[list["Reading"]], bool]


class PollerFactory(Protocol):
    def __call__(self, cfg: SiteConfig, device: Device) -> Poller: ...


class SourceFactory(Protocol):
    """``make_source(cfg, devices, emit, offer=...)``: one source for the given enabled devices
    of the protocol. ``offer`` (when given) takes readings the source can keep until they are
    taken (an unacknowledged QoS 1 message) and returns False while they cannot be."""

    def __call__(
        self,
        cfg: SiteConfig,
        devices: list[Device],
        emit: Emit,
        *,
        offer: Offer | None = None,
    ) -> PushSource: ...


@dataclass(frozen=True)
class ProtocolPlugin:
    """One protocol, as the core sees it.

    name: the ``protocol:`` value of a device, and the key of its options section.
    profile: pydantic model of a profile of this protocol: a subclass of
      :class:`dcim.profiles.Profile` whose ``fields`` are the protocol's own field model (a
      subclass of :class:`dcim.profiles.FieldSpec` with the protocol's keys: ``oid``,
      ``address``, ``json``, ``path``...) plus the protocol's profile-level keys.
    options: pydantic model of the device's ``<name>:`` section (None: the protocol has none).
    options_required: a device must write the section (else a default one is made).
    needs_endpoint: a device needs ``host`` and ``port``.
    make_poller: for polled protocols, one Poller per device (driven by the scheduler).
    make_source: for push protocols, one source for all the protocol's enabled devices.
    sample_config: the protocol's ``sample.yaml`` (a site file fragment, its documentation).
    endpoint: what a device polls, as text (``"10.0.0.5:502 unit 3"``); two enabled devices of
      the protocol with the same endpoint are a config error. None: ``host:port`` for a
      protocol that ``needs_endpoint``, no check otherwise.
    check: protocol-specific checks of a device against the whole site file (e.g. MQTT
      devices need the top-level broker section): problems with their place under the
      device, reported with every other config error.
    """

    name: str
    profile: type[Profile]
    options: type[BaseModel] | None = None
    options_required: bool = False
    needs_endpoint: bool = True
    make_poller: PollerFactory | None = None
    make_source: SourceFactory | None = None
    sample_config: Path | None = None
    endpoint: Callable[[Device], str | None] | None = None
    check: Callable[[SiteConfig, Device], Sequence[Issue]] | None = None

    def __post_init__(self) -> None:
        if (self.make_poller is None) == (self.make_source is None):
            raise ValueError(
                f"protocol plugin {self.name!r}: give exactly one of make_poller (polled) "
                "or make_source (pushed)"
            )

    @property
    def polled(self) -> bool:
        return self.make_poller is not None

    def endpoint_of(self, device: Device) -> str | None:
        """The device's endpoint for the duplicate check (see ``endpoint``)."""
        if self.endpoint is not None:
            return self.endpoint(device)
        if self.needs_endpoint and device.host is not None and device.port is not None:
            return f"{device.host}:{device.port}"
        return None


# -- the registry -----------------------------------------------------------------------------


class UnknownProtocol(LookupError):
    """A ``protocol:`` no installed plugin provides."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        self.name, self.known = name, list(known)
        registered = (
            ", ".join(known)
            if known
            else "none (is dcim-heat installed? 'pip install -e .' registers the built-in ones)"
        )
        super().__init__(
            f"unknown protocol {name!r}; the registered protocols are: {registered} (a "
            f"protocol is added by a package that declares it in the {ENTRY_POINT_GROUP!r} "
            "entry-point group)"
        )


class PluginError(RuntimeError):
    """A registered protocol plugin that cannot be loaded (import error, wrong object)."""


class _Given:
    """An entry point given by its value (``module:attribute``), as :func:`preset` takes it:
    ``load`` as importlib.metadata's, without importing importlib.metadata (2.5 MB with the
    email package it parses distributions' metadata with)."""

    dist = None

    def __init__(self, value: str) -> None:
        self.value = value

    def load(self) -> object:
        module, _, attr = self.value.partition(":")
        obj: object = importlib.import_module(module.strip())
        for name in filter(None, attr.strip().split(".")):
            obj = getattr(obj, name)
        return obj


_lock = threading.RLock()
_entry_points: dict[str, importlib.metadata.EntryPoint | _Given] | None = None
_loaded: dict[str, ProtocolPlugin] = {}


def entry_points() -> dict[str, str]:
    """The registered protocols' entry points, ``{name: "module:attribute"}``."""
    return {name: ep.value for name, ep in _registered().items()}


def preset(values: dict[str, str]) -> None:
    """Take these entry points (:func:`entry_points` of another process: dcim.runconfig) as
    the registered ones, without reading the installed distributions."""
    global _entry_points
    with _lock:
        _entry_points = {name: _Given(value) for name, value in values.items()}
        _loaded.clear()


def _registered() -> dict[str, importlib.metadata.EntryPoint | _Given]:
    global _entry_points
    with _lock:
        if _entry_points is None:
            import importlib.metadata

            found: dict[str, importlib.metadata.EntryPoint | _Given] = {}
            for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
                # The first distribution on sys.path wins, as for imports (a project checked
                # out and installed twice gives the same entry point twice).
                found.setdefault(ep.name, ep)
            _entry_points = found
        return _entry_points


def names() -> list[str]:
    """The registered protocols (sorted), without importing any plugin."""
    return sorted(_registered())


def plugin(name: str) -> ProtocolPlugin:
    """The plugin of protocol ``name``, imported on first use. Raises :class:`UnknownProtocol`
    (naming the registered protocols) or :class:`PluginError` (naming the plugin and why)."""
    with _lock:
        got = _loaded.get(name)
        if got is not None:
            return got
        ep = _registered().get(name)
        if ep is None:
            raise UnknownProtocol(name, names())
        where = f"{ep.value} (distribution {ep.dist.name if ep.dist else '?'})"
        try:
            obj = ep.load()
        except Exception as exc:  # noqa: BLE001 - any failure of a plugin is reported as its own
            raise PluginError(
                f"protocol plugin {name!r} from {where} failed to load: {type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(obj, ProtocolPlugin):
            raise PluginError(
                f"protocol plugin {name!r} from {where} is a {type(obj).__name__}, "
                "not a dcim.protocols.ProtocolPlugin"
            )
        if obj.name != name:
            raise PluginError(
                f"protocol plugin {name!r} from {where} calls itself {obj.name!r}: the "
                "entry point's name and the plugin's name must be the same"
            )
        _loaded[name] = obj
        return obj


def plugins() -> dict[str, ProtocolPlugin]:
    """Every registered plugin, loaded (for documentation and checks that need them all)."""
    return {n: plugin(n) for n in names()}


def reload() -> None:
    """Forget what was listed and loaded: the entry points are read again on next use (after
    a distribution was installed into the running process, and in tests)."""
    global _entry_points
    with _lock:
        _entry_points = None
        _loaded.clear()
        importlib.invalidate_caches()


P = TypeVar("P", bound="Profile")


def device_profile(cfg: SiteConfig, device: Device, model: type[P], kind: str) -> P:
    """The profile ``device`` names, as its protocol's profile ``model`` (``kind``: how a
    message names it, e.g. "an SNMP profile"); PollError("config") if there is none or it is
    another protocol's."""
    found = cfg.profiles().get(device.profile)
    if found is None:
        raise PollError("config", f"device {device.name!r}: unknown profile {device.profile!r}")
    if not isinstance(found, model):
        raise PollError("config", f"device {device.name!r}: profile {found.name!r} is not {kind}")
    return found


def make_poller(cfg: SiteConfig, device: Device) -> Poller:
    """The poller of a device of a polled protocol (ValueError for a pushed one)."""
    p = plugin(device.protocol)
    if p.make_poller is None:
        raise ValueError(f"{device.name}: protocol {device.protocol!r} is not polled")
    return p.make_poller(cfg, device)


def build_pollers(cfg: SiteConfig) -> list[Poller]:
    """A poller for every enabled device of a polled protocol."""
    return [make_poller(cfg, d) for d in cfg.devices if d.enabled and plugin(d.protocol).polled]


def build_sources(
    cfg: SiteConfig, emit: Emit, *, offer: Offer | None = None
) -> dict[str, PushSource]:
    """One source per pushed protocol with enabled devices, by protocol."""
    by_protocol: dict[str, list[Device]] = {}
    for d in cfg.devices:
        if d.enabled and not plugin(d.protocol).polled:
            by_protocol.setdefault(d.protocol, []).append(d)
    out: dict[str, PushSource] = {}
    for name, devices in by_protocol.items():
        factory = plugin(name).make_source
        assert factory is not None  # not polled: make_source is set (__post_init__)
        out[name] = factory(cfg, devices, emit, offer=offer)
    return out
