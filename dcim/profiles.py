"""Device profiles: data files that map OIDs, registers or JSON keys to canonical fields.

A profile lives in ``collectors/profiles/<name>.yaml`` (or a directory listed in the
site config under ``profile_dirs``). A new device model is a new profile, not new code.

This module holds what every protocol's profile shares (:class:`Profile`, :class:`FieldSpec`:
name, kind, scale, offset, description, map); each protocol plugin subclasses them with its
own keys (``oid``, ``address``, ``json``...) and the file is validated by the model of the
plugin its ``protocol:`` names (:func:`parse_profile`).

The twin serves its simulated devices through the same profiles, so what the collectors
read back is decoded by exactly the inverse of what the twin encoded.

Scaling convention, everywhere: ``value = raw * scale + offset`` (raw as read from the
device), so the twin encodes ``raw = (value - offset) / scale``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from dcim import protocols
from dcim.modelbase import BaseModel, ConfigDict, Field, model_validator
from dcim.yamlload import load_yaml

FieldKind = Literal["gauge", "counter", "state", "info"]
# Tags every reading already carries (SiteConfig.tags_of): a profile's row tags may not reuse them.
RESERVED_TAGS = frozenset({"site", "device", "room", "rack", "role"})
NAME_PATTERN = r"^[a-z][a-z0-9_]*$"

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "collectors" / "profiles"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldSpec(_Strict):
    """One canonical field of a profile: the keys every protocol shares. A protocol's field
    model subclasses it with where the value is read (``oid``, ``address``, ``json``...)."""

    name: str = Field(pattern=NAME_PATTERN)
    kind: FieldKind = "gauge"
    scale: float = 1.0
    offset: float = 0.0
    description: str = ""
    # Integer-valued raw codes mapped to canonical values (e.g. upsOutputSource 5 -> on_battery 1).
    map: dict[int, float] | None = None
    # Raw codes the vendor serves for "no reading" (-1, 65535, 4294967295, -32768...): a
    # value decoded from one is refused with reason no_value (dcim.plausible), never stored.
    no_value: tuple[float, ...] = ()
    # The physical range of the value, [min, max]; None: the default of the field's name or
    # unit suffix (dcim.plausible.SUFFIX_RANGES, the glossary). A value outside is refused.
    range: tuple[float, float] | None = None

    @model_validator(mode="after")
    def _range(self) -> FieldSpec:
        if self.range is not None:
            lo, hi = self.range
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise ValueError(
                    f"field {self.name!r}: 'range' is [min, max] with min < max, "
                    f"got {list(self.range)}"
                )
        return self

    @property
    def counter_bits(self) -> int | None:
        """Width of the unsigned register a counter is read from, where it rolls over (the
        protocol's field model says; None: it cannot, or not in practice)."""
        return None

    @property
    def wrap_at(self) -> float | None:
        """Where an unsigned counter register rolls over, in the field's unit (``2**bits *
        scale``); None where it cannot (signed, float, 64-bit: centuries at any site)."""
        bits = self.counter_bits
        if self.kind != "counter" or bits is None:
            return None
        return float(2**bits) * self.scale

    @property
    def divisor(self) -> int | None:
        """``n`` where ``scale`` is exactly ``1/n`` (0.1 -> 10): ``raw / n`` gives 273.1 where
        ``raw * 0.1`` gives 273.09999999999997. None for any other scale."""
        if not self.scale or abs(self.scale) >= 1:
            return None
        inv = 1.0 / self.scale
        return round(inv) if abs(inv - round(inv)) < 1e-9 else None

    @property
    def whole_scaling(self) -> bool:
        """``scale``, ``offset`` and every mapped value are whole numbers: an integer raw value
        stays an integer."""
        return (
            integral(self.scale)
            and integral(self.offset)
            and all(integral(v) for v in (self.map or {}).values())
        )


def integral(x: float) -> bool:
    """A finite whole number (``3.0`` yes, ``3.5``, ``inf``, ``nan`` no)."""
    return math.isfinite(x) and float(x).is_integer()


class ReadingShape(BaseModel):
    """What one kind of reading of a profile holds: its measurement, the tags it adds to the
    device's (a table's row index, an MQTT topic's segments) and its fields."""

    measurement: str
    tags: frozenset[str] = frozenset()
    fields: frozenset[str]


class Profile(_Strict):
    """A device profile: the keys every protocol shares. A protocol's profile model
    subclasses it (``protocol: Literal["snmp"]``, ``fields: tuple[SnmpField, ...]``, its own
    profile-level keys) and is registered as its plugin's ``profile``."""

    name: str = Field(pattern=NAME_PATTERN)
    protocol: str
    measurement: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    source: str = ""  # the MIB, register map or datasheet the profile follows
    fields: tuple[FieldSpec, ...] = ()

    @model_validator(mode="after")
    def _common(self) -> Profile:
        if not self.shapes():
            raise ValueError(f"a profile needs 'fields'{self._fields_hint()}")
        seen: set[str] = set()
        for f in self.fields:
            if f.name in seen:
                raise ValueError(f"field {f.name!r} is defined twice")
            seen.add(f.name)
        return self

    def _fields_hint(self) -> str:
        """What else than ``fields`` a profile of the protocol may give (SNMP: tables)."""
        return ""

    def shapes(self) -> list[ReadingShape]:
        """The readings a poll of this profile gives (the device reading from ``fields``; a
        protocol adds its own, e.g. SNMP's table rows)."""
        if not self.fields:
            return []
        return [ReadingShape(measurement=self.measurement, fields=self.field_names)]

    def field_specs(self) -> list[tuple[str, FieldSpec]]:
        """Every field this profile produces, with the measurement it is stored in (a
        protocol with more than the top-level fields, SNMP's tables, adds its own)."""
        return [(self.measurement, f) for f in self.fields]

    def field(self, name: str) -> FieldSpec:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"profile {self.name!r} has no field {name!r}")

    @property
    def field_names(self) -> frozenset[str]:
        return frozenset(f.name for f in self.fields)


class ProfileError(ValueError):
    pass


def parse_profile(data: Any) -> Profile:
    """A profile document validated by the profile model of the protocol it names. Raises
    ValueError (pydantic's ValidationError, or an unknown protocol naming the registered
    ones) and :class:`dcim.protocols.PluginError`."""
    if not isinstance(data, dict):
        raise ValueError("a profile is a mapping with 'name', 'protocol', 'measurement', 'fields'")
    proto = data.get("protocol")
    if not isinstance(proto, str):
        raise ValueError(
            f"a profile needs 'protocol:', one of the registered protocols: "
            f"{', '.join(protocols.names())}"
        )
    try:
        model = protocols.plugin(proto).profile
    except protocols.UnknownProtocol as exc:
        raise ValueError(f"protocol: {exc}") from None
    return model.model_validate(data)


def load_profile(path: Path) -> Profile:
    import yaml  # here: dcim run's process has its profiles loaded already (dcim.runconfig)

    try:
        data = load_yaml(path.read_text())
        return parse_profile(data)
    except (OSError, yaml.YAMLError, ValueError, protocols.PluginError) as exc:
        raise ProfileError(f"{path}: {exc}") from exc


_DIRS: dict[Path, dict[str, Profile]] = {}  # each folder's profiles, loaded once


def _load_dir(directory: Path) -> dict[str, Profile]:
    got = _DIRS.get(directory)
    if got is not None:
        return got
    out: dict[str, Profile] = {}
    for path in sorted(directory.glob("*.yaml")):
        prof = load_profile(path)
        if prof.name != path.stem:
            raise ProfileError(f"{path}: profile name {prof.name!r} must match the file name")
        out[prof.name] = prof
    return _DIRS.setdefault(directory, out)


def loaded_dirs(extra_dirs: tuple[Path, ...] = ()) -> dict[Path, dict[str, Profile]]:
    """The profiles :func:`load_profiles` reads, by folder (loaded if they were not): what a
    process that does not validate them itself is given (:func:`prime`, dcim.runconfig)."""
    return {d: _load_dir(d) for d in (BUILTIN_DIR, *(d.resolve() for d in extra_dirs))}


def prime(dirs: dict[Path, dict[str, Profile]]) -> None:
    """Take the profiles of these folders as loaded (validated by another process)."""
    _DIRS.update(dirs)


def load_profiles(extra_dirs: tuple[Path, ...] = ()) -> dict[str, Profile]:
    """Built-in profiles, overridden by those in ``extra_dirs`` (later wins)."""
    out = dict(_load_dir(BUILTIN_DIR))
    for d in extra_dirs:
        out.update(_load_dir(d.resolve()))
    return out
