"""Device profiles: data files that map OIDs, registers or JSON keys to canonical fields.

A profile lives in ``collectors/profiles/<name>.yaml`` (or a directory listed in the
site config under ``profile_dirs``). A new device model is a new profile, not new code.
The twin serves its simulated devices through the same profiles, so what the collectors
read back is decoded by exactly the inverse of what the twin encoded.

Scaling convention, everywhere: ``value = raw * scale + offset`` (raw as read from the
device), so the twin encodes ``raw = (value - offset) / scale``.
"""

from __future__ import annotations

import math
import re
from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

Protocol = Literal["snmp", "modbus", "mqtt"]
FieldKind = Literal["gauge", "counter", "state", "info"]
ModbusTable = Literal["holding", "input", "coil", "discrete"]
ModbusType = Literal[
    "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "string", "bool"
]
ByteOrder = Literal["big", "little"]
SnmpType = Literal["Integer32", "Gauge32", "Counter32", "Counter64", "OctetString", "TimeTicks"]
SNMP_COUNTER_BITS = {"Counter32": 32, "Counter64": 64}
# Tags every reading already carries (SiteConfig.tags_of): a table's row tags may not reuse them.
RESERVED_TAGS = frozenset({"site", "device", "room", "rack", "role"})

_OID = re.compile(r"^\d+(\.\d+)+$")
_TAG_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "collectors" / "profiles"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Exponent(_Strict):
    """SNMP: a power of ten read from another column of the same row,
    ``10 ** (times * (raw + plus))`` (ENTITY-SENSOR-MIB: entPhySensorScale gives
    ``times: 3, plus: -9``, entPhySensorPrecision ``times: -1``)."""

    oid: str = Field(pattern=r"^\d+(\.\d+)+$")
    times: int = 1
    plus: int = 0


class FieldSpec(_Strict):
    """One canonical field of a profile. Protocol-specific keys: ``oid`` (SNMP),
    ``address``/``type``/``table`` (Modbus), ``json`` (MQTT).

    SNMP extras: ``no_value`` raw codes that mean "no reading" (APC serves -1), left out
    like noSuchInstance; in a table, ``when`` (column OID -> accepted codes: the field exists
    only in rows whose columns hold one of them, e.g. entPhySensorType celsius(8)) and
    ``exponent``; ``rate_of`` makes a field the per-second rate of a counter field of the
    same row, times ``scale`` (no ``oid``), computed by the collector across wraps and
    never across an agent restart; a rate above ``rate_max`` is refused as impossible."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    kind: FieldKind = "gauge"
    scale: float = 1.0
    offset: float = 0.0
    description: str = ""
    # Integer-valued raw codes mapped to canonical values (e.g. upsOutputSource 5 -> on_battery 1).
    map: dict[int, float] | None = None
    # SNMP
    oid: str | None = Field(default=None, pattern=r"^\d+(\.\d+)+$")
    snmp_type: SnmpType | None = None
    # Modbus
    table: ModbusTable | None = None
    address: int | None = Field(default=None, ge=0, le=65535)
    type: ModbusType | None = None
    byte_order: ByteOrder | None = None
    word_order: ByteOrder | None = None
    length: int | None = Field(default=None, ge=1, le=125)  # registers, for strings
    # MQTT: dot-separated path in the JSON payload
    json_path: str | None = Field(default=None, alias="json")
    # SNMP extras (see the class docstring)
    no_value: tuple[int, ...] = ()
    when: dict[str, tuple[int, ...]] | None = None
    exponent: tuple[Exponent, ...] = ()
    rate_of: str | None = None
    rate_max: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _snmp_extras(self) -> FieldSpec:
        if self.when:
            for oid in self.when:
                if not _OID.match(oid):
                    raise ValueError(f"field {self.name!r}: 'when' key {oid!r} is not an OID")
        if self.rate_of is not None:
            if self.oid is not None:
                raise ValueError(
                    f"field {self.name!r}: a rate ('rate_of') is computed, it has no 'oid'"
                )
            if self.kind != "gauge":
                raise ValueError(f"field {self.name!r}: a rate ('rate_of') is a gauge")
        elif self.rate_max is not None:
            raise ValueError(f"field {self.name!r}: 'rate_max' needs 'rate_of'")
        return self

    @property
    def wrap_at(self) -> float | None:
        """Where an unsigned counter register rolls over, in the field's unit (``2**bits *
        scale``); None where it cannot (signed, float, 64-bit: centuries at any site)."""
        bits = {"uint16": 16, "uint32": 32, "Counter32": 32}.get(self.type or self.snmp_type or "")
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


class TagSpec(_Strict):
    """SNMP table: a tag read from a column (a text column as it is, an integer column as its
    number or through ``map``), e.g. the outlet's name. ``oid``: the column, without index."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    oid: str = Field(pattern=r"^\d+(\.\d+)+$")
    map: dict[int, str] | None = None
    description: str = ""


class TableSpec(_Strict):
    """SNMP table: the columns under ``fields`` and ``tags`` are walked (GETBULK) and give one
    reading per row. The row index (what follows the column OID) becomes the tags named in
    ``index``, one per index component (one name for a multi-part index: the dotted index).
    Field and tag ``oid``s are column OIDs without index."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    measurement: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""
    index: tuple[str, ...] = Field(min_length=1)
    tags: tuple[TagSpec, ...] = ()
    fields: tuple[FieldSpec, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _names(self) -> TableSpec:
        tags = [*self.index, *(t.name for t in self.tags)]
        for name in tags:
            if not _TAG_NAME.match(name):
                raise ValueError(f"table {self.name!r}: tag name {name!r} is not [a-z][a-z0-9_]*")
            if name in RESERVED_TAGS:
                raise ValueError(
                    f"table {self.name!r}: tag {name!r} is reserved for every reading "
                    f"({', '.join(sorted(RESERVED_TAGS))}); name it after the row (e.g. outlet)"
                )
        if len(set(tags)) != len(tags):
            raise ValueError(f"table {self.name!r}: a tag name is used twice in {tags}")
        _check_fields(self.fields, table=True)
        return self

    def columns(self) -> frozenset[str]:
        """Every column OID the table reads (fields, tags, when and exponent columns)."""
        out = {t.oid for t in self.tags}
        for f in self.fields:
            if f.oid:
                out.add(f.oid)
            out.update(f.when or ())
            out.update(e.oid for e in f.exponent)
        return frozenset(out)


def _check_fields(fields: tuple[FieldSpec, ...], *, table: bool) -> None:
    seen: dict[str, FieldSpec] = {}
    for f in fields:
        if f.name in seen:
            raise ValueError(f"field {f.name!r} is defined twice")
        seen[f.name] = f
    for f in fields:
        if not table and (f.when or f.exponent):
            raise ValueError(f"field {f.name!r}: 'when' and 'exponent' are for table columns")
        if f.rate_of is None:
            if not f.oid:
                raise ValueError(f"field {f.name!r}: an SNMP profile needs 'oid' on every field")
            continue
        src = seen.get(f.rate_of)
        if src is None or src.kind != "counter" or src.rate_of is not None:
            counters = sorted(g.name for g in fields if g.kind == "counter")
            raise ValueError(
                f"field {f.name!r}: 'rate_of' must name a counter field of the same "
                f"{'table' if table else 'profile'} (counters: {counters})"
            )


class ModbusDefaults(_Strict):
    table: ModbusTable = "holding"
    byte_order: ByteOrder = "big"
    word_order: ByteOrder = "big"


class Profile(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    protocol: Protocol
    measurement: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""
    source: str = ""  # the MIB, register map or datasheet the profile follows
    fields: tuple[FieldSpec, ...] = ()
    # SNMP: tables walked each poll, one reading per row (see TableSpec)
    tables: tuple[TableSpec, ...] = ()
    modbus: ModbusDefaults = ModbusDefaults()
    # MQTT: topic template; ``{name}`` segments become tags, e.g. "greenhouse/{zone}/climate"
    topic: str | None = None

    @model_validator(mode="after")
    def _protocol_keys(self) -> Profile:
        if not self.fields and not self.tables:
            raise ValueError("a profile needs 'fields' (or, for SNMP, 'tables')")
        if self.tables and self.protocol != "snmp":
            raise ValueError("'tables' are for SNMP profiles")
        if len({t.name for t in self.tables}) != len(self.tables):
            raise ValueError("two tables have the same name")
        if self.protocol == "snmp":
            _check_fields(self.fields, table=False)
        seen: set[str] = set()
        for f in self.fields:
            if f.name in seen:
                raise ValueError(f"field {f.name!r} is defined twice")
            seen.add(f.name)
            if self.protocol != "snmp" and (
                f.no_value or f.when or f.exponent or f.rate_of is not None
            ):
                raise ValueError(
                    f"field {f.name!r}: no_value, when, exponent and rate_of are SNMP keys"
                )
            if self.protocol == "modbus" and (f.address is None or f.type is None):
                raise ValueError(
                    f"field {f.name!r}: a Modbus profile needs 'address' and 'type' on every field"
                )
            if self.protocol == "mqtt" and not f.json_path:
                raise ValueError(f"field {f.name!r}: an MQTT profile needs 'json' on every field")
        if self.protocol == "mqtt" and not self.topic:
            raise ValueError("an MQTT profile needs a 'topic' template")
        return self

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


def profile_model(protocol: object) -> type[Profile]:
    """The profile model of ``protocol``: :class:`Profile` for the built-in protocols, else
    the ``profile`` of the plugin registered under that name in the ``dcim.protocols``
    entry-point group (see :mod:`dcim.protocols`)."""
    if protocol in ("snmp", "modbus", "mqtt") or not isinstance(protocol, str):
        return Profile
    from importlib.metadata import entry_points

    for ep in entry_points(group="dcim.protocols", name=protocol):
        model: type[Profile] = ep.load().profile
        return model
    return Profile  # whose validation names the protocols it knows


def load_profile(path: Path) -> Profile:
    try:
        data = yaml.safe_load(path.read_text())
        model = profile_model(data.get("protocol") if isinstance(data, dict) else None)
        return model.model_validate(data)
    except (OSError, yaml.YAMLError, ValueError) as exc:
        raise ProfileError(f"{path}: {exc}") from exc


@cache
def _load_dir(directory: Path) -> dict[str, Profile]:
    out: dict[str, Profile] = {}
    for path in sorted(directory.glob("*.yaml")):
        prof = load_profile(path)
        if prof.name != path.stem:
            raise ProfileError(f"{path}: profile name {prof.name!r} must match the file name")
        out[prof.name] = prof
    return out


def load_profiles(extra_dirs: tuple[Path, ...] = ()) -> dict[str, Profile]:
    """Built-in profiles, overridden by those in ``extra_dirs`` (later wins)."""
    out = dict(_load_dir(BUILTIN_DIR))
    for d in extra_dirs:
        out.update(_load_dir(d.resolve()))
    return out
