"""Modbus register codec and read planning: pure functions, shared by the collector and the twin.

Registers are 16-bit unsigned ints as on the wire. A value of N registers is laid out as its
big-endian bytes cut into N words, then:

- ``word_order: little`` reverses the words (low word first, "CDAB" for a float32);
- ``byte_order: little`` swaps the two bytes inside every word ("BADC").

Strings are characters in register order (``word_order`` does not apply), two per register,
high byte first unless ``byte_order: little``; trailing NULs and spaces are stripped. In the
bit tables (coils, discrete inputs) every field is one bit.

Scaling, everywhere: ``value = raw * scale + offset``; encoding is the exact inverse,
``raw = round((value - offset) / scale)`` for integer types. Integer counters wrap modulo
their range (the device's register rolls over); other integers saturate. A float32 decodes
to the shortest decimal that is the same float32 (230.1, not 230.10000610351562). Counters,
states and info values (serial numbers) with integral scale and offset in integer registers
decode to ``int``, all else to ``float``, so a field's type never changes between polls
(InfluxDB rejects that).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from collectors.modbus.options import ModbusOptions
from collectors.modbus.profile import (
    ByteOrder,
    ModbusField,
    ModbusProfile,
    ModbusTable,
    ModbusType,
)
from dcim.profiles import FieldKind, integral
from dcim.reading import FieldValue

BIT_TABLES: frozenset[str] = frozenset({"coil", "discrete"})
FUNCTION_CODE: dict[str, int] = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}
MAX_BITS_PER_REQUEST = 2000  # Modbus application protocol v1.1b3, FC 1 and 2

_WORDS: dict[str, int] = {
    "int16": 1, "uint16": 1, "bool": 1,
    "int32": 2, "uint32": 2, "float32": 2,
    "int64": 4, "uint64": 4, "float64": 4,
}  # fmt: skip
_INTS: dict[str, tuple[int, bool]] = {  # bits, signed
    "int16": (16, True), "uint16": (16, False),
    "int32": (32, True), "uint32": (32, False),
    "int64": (64, True), "uint64": (64, False),
}  # fmt: skip
_FLOATS: dict[str, str] = {"float32": ">f", "float64": ">d"}

Raw = int | float | str | bool


def register_count(type_: ModbusType, length: int | None = None) -> int:
    """Registers a value of this type occupies (``length`` for strings, default 1)."""
    if type_ == "string":
        return length or 1
    return _WORDS[type_]


def _to_words(data: bytes, byte_order: ByteOrder, word_order: ByteOrder) -> list[int]:
    words = [data[i : i + 2] for i in range(0, len(data), 2)]
    if word_order == "little":
        words.reverse()
    return [int.from_bytes(w, byte_order) for w in words]


def _from_words(regs: Sequence[int], byte_order: ByteOrder, word_order: ByteOrder) -> bytes:
    words = [int(r & 0xFFFF).to_bytes(2, byte_order) for r in regs]
    if word_order == "little":
        words.reverse()
    return b"".join(words)


def _shortest_float32(x: float) -> float:
    """The shortest decimal that is the same float32 (230.1, not 230.10000610351562)."""
    if not math.isfinite(x):
        return x
    packed = struct.pack(">f", x)
    for digits in range(6, 9):
        y = float(f"{x:.{digits}g}")
        if struct.pack(">f", y) == packed:
            return y
    return x


def decode_registers(
    regs: Sequence[int],
    type_: ModbusType,
    *,
    byte_order: ByteOrder = "big",
    word_order: ByteOrder = "big",
) -> Raw:
    """Raw value of ``type_`` from its registers (exactly ``register_count`` of them)."""
    if type_ == "string":
        data = b"".join(int(r & 0xFFFF).to_bytes(2, byte_order) for r in regs)
        return data.decode("utf-8", errors="replace").rstrip("\x00 ")
    n = _WORDS[type_]
    if len(regs) != n:
        raise ValueError(f"{type_} needs {n} registers, got {len(regs)}")
    if type_ == "bool":
        return bool(regs[0])
    data = _from_words(regs, byte_order, word_order)
    if type_ == "float32":
        return _shortest_float32(struct.unpack(">f", data)[0])
    if type_ == "float64":
        return float(struct.unpack(">d", data)[0])
    return int.from_bytes(data, "big", signed=_INTS[type_][1])


def encode_registers(
    raw: Raw,
    type_: ModbusType,
    *,
    byte_order: ByteOrder = "big",
    word_order: ByteOrder = "big",
    length: int | None = None,
) -> list[int]:
    """Registers holding ``raw`` (an int in range for integer types; see ``wrap_raw``)."""
    if type_ == "string":
        n = length or 1
        data = str(raw).encode("utf-8")[: 2 * n].ljust(2 * n, b"\x00")
        return [int.from_bytes(data[i : i + 2], byte_order) for i in range(0, 2 * n, 2)]
    if type_ == "bool":
        return [1 if raw else 0]
    if type_ in _FLOATS:
        data = struct.pack(_FLOATS[type_], float(raw))
    else:
        bits, signed = _INTS[type_]
        data = int(raw).to_bytes(bits // 8, "big", signed=signed)
    return _to_words(data, byte_order, word_order)


def wrap_raw(raw: int, type_: ModbusType, *, counter: bool) -> int:
    """Fit an integer into ``type_``: counters roll over (modulo), other values saturate."""
    if type_ not in _INTS:
        return raw
    bits, signed = _INTS[type_]
    span = 1 << bits
    lo, hi = (-(span >> 1), (span >> 1) - 1) if signed else (0, span - 1)
    if counter:
        raw %= span
        return raw - span if signed and raw > hi else raw
    return min(max(raw, lo), hi)


@dataclass(frozen=True, slots=True)
class FieldCodec:
    """One profile field resolved against the profile's Modbus defaults."""

    name: str
    table: ModbusTable
    address: int
    type: ModbusType
    count: int  # registers, or bits in a bit table (always 1)
    byte_order: ByteOrder
    word_order: ByteOrder
    kind: FieldKind
    scale: float
    offset: float
    mapping: Mapping[int, float] | None
    as_int: bool  # an int: counters, states and info (serials) with integral scaling
    divisor: int | None  # raw / divisor is exact where scale = 1/divisor (0.1 -> 10)

    @classmethod
    def of(cls, f: ModbusField, profile: ModbusProfile) -> FieldCodec:
        table = f.table or profile.modbus.table
        count = 1 if table in BIT_TABLES else register_count(f.type, f.length)
        if f.address + count > 65536:
            raise ValueError(f"field {f.name!r} runs past register 65535")
        ints = f.whole_scaling
        return cls(
            name=f.name,
            table=table,
            address=f.address,
            type="bool" if table in BIT_TABLES else f.type,
            count=count,
            byte_order=f.byte_order or profile.modbus.byte_order,
            word_order=f.word_order or profile.modbus.word_order,
            kind=f.kind,
            scale=f.scale,
            offset=f.offset,
            mapping=dict(f.map) if f.map else None,
            as_int=ints and f.kind in ("counter", "state", "info") and f.type not in _FLOATS,
            divisor=f.divisor,
        )

    @property
    def end(self) -> int:
        return self.address + self.count

    def decode(self, regs: Sequence[int]) -> FieldValue | None:
        """Canonical value from the field's registers (None: not a value, leave it out)."""
        raw = decode_registers(
            regs, self.type, byte_order=self.byte_order, word_order=self.word_order
        )
        if isinstance(raw, str):
            return raw
        x: float = int(raw) if isinstance(raw, bool) else raw
        if not math.isfinite(x):  # float registers answer NaN for "not available"
            return None
        if self.mapping is not None:
            if not integral(x) or int(x) not in self.mapping:
                return None
            x = self.mapping[int(x)]
        if self.as_int:
            return int(x) * int(self.scale) + int(self.offset)
        if self.divisor is not None and integral(x):
            return x / self.divisor + self.offset
        return float(x * self.scale + self.offset)

    def encode(self, value: float | int | str | None) -> list[int] | None:
        """Registers the device would hold for a canonical value (None: cannot be served;
        float registers then hold NaN, the usual "not available")."""
        if self.type == "string":
            return (
                None
                if value is None
                else encode_registers(
                    str(value), "string", byte_order=self.byte_order, length=self.count
                )
            )
        if value is None or isinstance(value, str) or not math.isfinite(value):
            if self.type in _FLOATS:
                return encode_registers(
                    math.nan, self.type, byte_order=self.byte_order, word_order=self.word_order
                )
            return None
        x = (value - self.offset) / self.scale
        if self.mapping is not None:
            codes = [
                k for k, v in self.mapping.items() if math.isclose(v, x, rel_tol=1e-9, abs_tol=1e-9)
            ]
            if not codes:
                return None
            x = codes[0]
        raw: Raw
        if self.type in _FLOATS:
            raw = x
            if self.type == "float32" and abs(x) > 3.4028234663852886e38:
                raw = math.copysign(math.inf, x)
        elif self.type == "bool":
            raw = bool(round(x))
        else:
            raw = wrap_raw(round(x), self.type, counter=self.kind == "counter")
        return encode_registers(
            raw, self.type, byte_order=self.byte_order, word_order=self.word_order
        )

    def wrap_at(self) -> float | None:
        """For an integer counter: the canonical value at which it rolls over to 0."""
        if self.kind != "counter" or self.type not in _INTS:
            return None
        bits, signed = _INTS[self.type]
        return float((1 << (bits - 1) if signed else 1 << bits) * self.scale)


def field_codecs(profile: ModbusProfile) -> list[FieldCodec]:
    """The profile's fields, resolved (raises ValueError for a field past register 65535)."""
    return [FieldCodec.of(f, profile) for f in profile.fields]


# -- read planning ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """One read: ``count`` registers (or bits) of ``table`` from ``start`` (0-based)."""

    table: ModbusTable
    start: int
    count: int
    fields: tuple[FieldCodec, ...]

    @property
    def function_code(self) -> int:
        return FUNCTION_CODE[self.table]

    def decode(self, words: Sequence[int | bool]) -> tuple[dict[str, FieldValue], list[str]]:
        """Values of the request's fields from its response, and the names left out."""
        values: dict[str, FieldValue] = {}
        missing: list[str] = []
        for f in self.fields:
            lo = f.address - self.start
            regs = [int(w) for w in words[lo : lo + f.count]]
            value = f.decode(regs) if len(regs) == f.count else None
            if value is None:
                missing.append(f.name)
            else:
                values[f.name] = value
        return values, missing


def plan_reads(fields: Iterable[FieldCodec], options: ModbusOptions) -> list[ReadRequest]:
    """Read requests covering ``fields``: per table, in address order, a field joins the
    current request when the hole before it is at most ``max_hole`` registers and the request
    stays within ``max_registers_per_request`` (bit tables: 16 bits per register, at most
    2000). A field larger than the limit is read alone. ``single_value_reads``: one request per
    field (devices that refuse reads across value boundaries)."""
    out: list[ReadRequest] = []
    by_table: dict[str, list[FieldCodec]] = {}
    for f in fields:
        by_table.setdefault(f.table, []).append(f)
    for table in ("holding", "input", "coil", "discrete"):
        group = sorted(by_table.get(table, []), key=lambda f: (f.address, f.count))
        if not group:
            continue
        bits = table in BIT_TABLES
        limit = (
            min(MAX_BITS_PER_REQUEST, 16 * options.max_registers_per_request)
            if bits
            else options.max_registers_per_request
        )
        hole = 16 * options.max_hole if bits else options.max_hole
        cur: list[FieldCodec] = []
        start = end = 0
        for f in group:
            if (
                cur
                and not options.single_value_reads
                and f.address - end <= hole
                and max(end, f.end) - start <= limit
            ):
                cur.append(f)
                end = max(end, f.end)
                continue
            if cur:
                out.append(ReadRequest(f.table, start, end - start, tuple(cur)))
            cur, start, end = [f], f.address, f.end
        out.append(ReadRequest(cur[0].table, start, end - start, tuple(cur)))
    return out
