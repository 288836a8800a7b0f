"""Modbus profiles: each field is a value at a register (or coil) ``address`` of a ``table``,
with its ``type``, byte and word order, and ``length`` (registers) for strings. The profile's
``modbus:`` section gives the defaults of ``table``, ``byte_order`` and ``word_order``."""

from __future__ import annotations

from typing import Literal

from dcim.modelbase import BaseModel, ConfigDict, Field
from dcim.profiles import FieldSpec, Profile

ModbusTable = Literal["holding", "input", "coil", "discrete"]
ModbusType = Literal[
    "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "string", "bool"
]
ByteOrder = Literal["big", "little"]
_COUNTER_BITS = {"uint16": 16, "uint32": 32}


class ModbusField(FieldSpec):
    """One field of a Modbus profile. ``table``, ``byte_order`` and ``word_order`` default to
    the profile's ``modbus:`` section."""

    table: ModbusTable | None = None
    address: int = Field(ge=0, le=65535)
    type: ModbusType
    byte_order: ByteOrder | None = None
    word_order: ByteOrder | None = None
    length: int | None = Field(default=None, ge=1, le=125)  # registers, for strings

    @property
    def counter_bits(self) -> int | None:
        # Signed, float and 64-bit registers: no defined wrap, or centuries at any site.
        return _COUNTER_BITS.get(self.type)


class ModbusDefaults(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    table: ModbusTable = "holding"
    byte_order: ByteOrder = "big"
    word_order: ByteOrder = "big"


class ModbusProfile(Profile):
    protocol: Literal["modbus"]
    fields: tuple[ModbusField, ...] = ()
    modbus: ModbusDefaults = ModbusDefaults()

    def field(self, name: str) -> ModbusField:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"profile {self.name!r} has no field {name!r}")
