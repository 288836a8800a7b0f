"""Device profiles: data files that map OIDs, registers or JSON keys to canonical fields.

A profile lives in ``collectors/profiles/<name>.yaml`` (or a directory listed in the
site config under ``profile_dirs``). A new device model is a new profile, not new code.
The twin serves its simulated devices through the same profiles, so what the collectors
read back is decoded by exactly the inverse of what the twin encoded.

Scaling convention, everywhere: ``value = raw * scale + offset`` (raw as read from the
device), so the twin encodes ``raw = (value - offset) / scale``.
"""

from __future__ import annotations

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

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "collectors" / "profiles"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldSpec(_Strict):
    """One canonical field of a profile. Protocol-specific keys: ``oid`` (SNMP),
    ``address``/``type``/``table`` (Modbus), ``json`` (MQTT)."""

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

    @property
    def wrap_at(self) -> float | None:
        """Where an unsigned counter register rolls over, in the field's unit (``2**bits *
        scale``); None where it cannot (signed, float, 64-bit: centuries at any site)."""
        bits = {"uint16": 16, "uint32": 32, "Counter32": 32}.get(self.type or self.snmp_type or "")
        if self.kind != "counter" or bits is None:
            return None
        return float(2**bits) * self.scale


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
    fields: tuple[FieldSpec, ...] = Field(min_length=1)
    modbus: ModbusDefaults = ModbusDefaults()
    # MQTT: topic template; ``{name}`` segments become tags, e.g. "greenhouse/{zone}/climate"
    topic: str | None = None

    @model_validator(mode="after")
    def _protocol_keys(self) -> Profile:
        seen: set[str] = set()
        for f in self.fields:
            if f.name in seen:
                raise ValueError(f"field {f.name!r} is defined twice")
            seen.add(f.name)
            if self.protocol == "snmp" and not f.oid:
                raise ValueError(f"field {f.name!r}: an SNMP profile needs 'oid' on every field")
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


def load_profile(path: Path) -> Profile:
    try:
        data = yaml.safe_load(path.read_text())
        return Profile.model_validate(data)
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
