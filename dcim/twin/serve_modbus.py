"""The twin's Modbus TCP servers: one listening socket per distinct (host, port) among the
site's Modbus devices, answering for the unit ids of the devices behind it (a gateway with
several meters, or a controller with its own port).

Registers are computed at request time: ``values(device_name)`` (canonical units) is called
once per request and the fields the request covers are encoded through the device's profile
with :mod:`collectors.modbus.codec`, the exact inverse of the collector's decoding. A field
missing from ``values`` reads as its profile's ``no_value`` code if it has one (what the
device serves when it has no reading), else NaN in float registers and 0, except identity
fields (``kind: info``, e.g. a meter's serial number), which the physics model does not
know: they read as a stable number (8 digits) or text derived from the device name.

What a real device does, and so does the twin:

- function codes 1, 2, 3, 4 (read coils, discrete inputs, holding and input registers);
  every other function code, writes included, gets exception 01 (illegal function);
- a read outside the device's register map gets exception 02 (illegal data address); the map
  of a table is the span from its first to its last register, holes inside read as 0;
- a count beyond the protocol limits (125 registers, 2000 bits) gets exception 03;
- ``values`` raising gets exception 04 (server device failure);
- an unknown unit id, or a unit made unreachable, gets no answer at all (as behind a gateway
  whose serial line has no such device), while the other units on the port still answer.

Why not pymodbus's server: its ``SimDevice`` ``action`` hook can refresh registers per
request, but its request handler keeps a single ``last_pdu`` per connection (pipelined or
late requests race), undefined addresses inside a read span answer 02 (so reads across
holes fail), and unknown unit ids are ignored server-wide only. The protocol is small
(MBAP header + four read PDUs), so the twin speaks it directly; mbpoll (libmodbus) and
pymodbus's client read it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import struct
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from collectors.modbus.codec import BIT_TABLES, FieldCodec, encode_registers, field_codecs
from collectors.modbus.options import ModbusOptions
from collectors.modbus.profile import ModbusProfile
from dcim.config import Device, SiteConfig

log = logging.getLogger(__name__)

Values = Callable[[str], Mapping[str, float | int]]

_TABLE_OF_FC = {1: "coil", 2: "discrete", 3: "holding", 4: "input"}
_MAX_COUNT = {1: 2000, 2: 2000, 3: 125, 4: 125}
ILLEGAL_FUNCTION, ILLEGAL_ADDRESS, ILLEGAL_VALUE, DEVICE_FAILURE = 1, 2, 3, 4
_MBAP = struct.Struct(">HHHB")  # transaction id, protocol id (0), length, unit id


@dataclass
class _Unit:
    """One simulated device: its fields per table, in address order, and each table's span."""

    device: Device
    tables: dict[str, list[FieldCodec]]
    spans: dict[str, tuple[int, int]]  # table -> [first, end) of its register map
    identity: dict[str, float | int | str] = field(default_factory=dict)  # info fields
    warned: set[str] = field(default_factory=set)
    no_value: dict[str, float | int] = field(default_factory=dict)  # field -> profile's code

    @classmethod
    def of(cls, device: Device, codecs: list[FieldCodec]) -> _Unit:
        tables: dict[str, list[FieldCodec]] = {}
        for f in sorted(codecs, key=lambda f: f.address):
            tables.setdefault(f.table, []).append(f)
        spans = {t: (fs[0].address, max(f.end for f in fs)) for t, fs in tables.items()}
        serial = 10_000_000 + zlib.crc32(device.name.encode()) % 90_000_000
        identity: dict[str, float | int | str] = {
            f.name: device.name if f.type == "string" else serial
            for f in codecs
            if f.kind == "info"
        }
        return cls(device, tables, spans, identity)

    def block(
        self, table: str, start: int, count: int, values: Mapping[str, float | int]
    ) -> list[int]:
        """The ``count`` registers (or bits) of ``table`` from ``start``, encoded now."""
        out = [0] * count
        end = start + count
        for f in self.tables.get(table, ()):
            if f.end <= start:
                continue
            if f.address >= end:
                break
            value = values.get(f.name, self.identity.get(f.name))
            words = f.encode(value)
            if value is None and f.name in self.no_value:  # what the device says: no reading
                words = encode_registers(
                    self.no_value[f.name],
                    f.type,
                    byte_order=f.byte_order,
                    word_order=f.word_order,
                    length=f.count,
                )
            if value is None and f.name not in self.warned:
                self.warned.add(f.name)
                log.warning("twin %s: no value for field %s", self.device.name, f.name)
            if words is None:
                continue
            for i, w in enumerate(words):
                if start <= f.address + i < end:
                    out[f.address + i - start] = w
        return out


@dataclass
class _Gateway:
    host: str
    port: int
    units: dict[int, _Unit]
    server: asyncio.Server | None = None
    connections: set[asyncio.StreamWriter] = field(default_factory=set)
    handlers: set[asyncio.Task[None]] = field(default_factory=set)


class ModbusTwin:
    """Modbus TCP servers for every Modbus device of ``cfg``."""

    def __init__(self, cfg: SiteConfig, values: Values) -> None:
        self.cfg = cfg
        self.values = values
        self._unreachable: set[str] = set()
        self._gateways: dict[tuple[str, int], _Gateway] = {}
        profiles = cfg.profiles()
        # Enabled devices first: a disabled one may share its unit id with an enabled one.
        for dev in sorted(cfg.devices, key=lambda d: not d.enabled):
            prof = profiles.get(dev.profile)
            opts = dev.options
            if not isinstance(opts, ModbusOptions) or not isinstance(prof, ModbusProfile):
                continue
            if dev.host is None or dev.port is None:
                continue
            unit_id = opts.unit_id
            gw = self._gateways.setdefault((dev.host, dev.port), _Gateway(dev.host, dev.port, {}))
            if unit_id in gw.units:
                continue
            unit = gw.units[unit_id] = _Unit.of(dev, field_codecs(prof))
            unit.no_value = {
                f.name: f.no_value[0] if f.type.startswith("float") else int(f.no_value[0])
                for f in prof.fields
                if f.no_value and f.type not in ("bool", "string")
            }

    @property
    def endpoints(self) -> list[tuple[str, int]]:
        """The (host, port) pairs served."""
        return list(self._gateways)

    async def start(self) -> None:
        for gw in self._gateways.values():
            gw.server = await asyncio.start_server(
                functools.partial(self._serve, gw), gw.host, gw.port, reuse_address=True
            )
        log.info("twin: %d Modbus TCP endpoints", len(self._gateways))

    async def stop(self) -> None:
        for gw in self._gateways.values():
            if gw.server is not None:
                gw.server.close()
            for w in list(gw.connections):
                w.close()
        handlers = [t for gw in self._gateways.values() for t in gw.handlers]
        if handlers:  # closed connections end their handlers; let them finish cleanly
            await asyncio.wait(handlers, timeout=5)
        for gw in self._gateways.values():
            if gw.server is not None:
                await gw.server.wait_closed()
                gw.server = None

    def set_unreachable(self, device: str, unreachable: bool = True) -> None:
        """That unit stops answering (others on the same port still answer)."""
        if unreachable:
            self._unreachable.add(device)
        else:
            self._unreachable.discard(device)

    async def _serve(
        self, gw: _Gateway, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        gw.connections.add(writer)
        task = asyncio.current_task()
        if task is not None:
            gw.handlers.add(task)
        try:
            while True:
                tid, proto, length, unit_id = _MBAP.unpack(await reader.readexactly(_MBAP.size))
                if proto != 0 or not 2 <= length <= 254:
                    break  # not Modbus: drop the connection, as devices do
                pdu = await reader.readexactly(length - 1)
                rsp = self._answer(gw, unit_id, pdu)
                if rsp is None:
                    continue
                writer.write(_MBAP.pack(tid, 0, len(rsp) + 1, unit_id) + rsp)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            gw.connections.discard(writer)
            if task is not None:
                gw.handlers.discard(task)
            writer.close()

    def _answer(self, gw: _Gateway, unit_id: int, pdu: bytes) -> bytes | None:
        """The response PDU (None: no answer)."""
        unit = gw.units.get(unit_id)
        if unit is None or unit.device.name in self._unreachable or not pdu:
            return None
        fc = pdu[0]
        table = _TABLE_OF_FC.get(fc)
        if table is None:
            return bytes((fc | 0x80, ILLEGAL_FUNCTION))
        if len(pdu) != 5:
            return bytes((fc | 0x80, ILLEGAL_VALUE))
        start, count = struct.unpack(">HH", pdu[1:5])
        if not 1 <= count <= _MAX_COUNT[fc]:
            return bytes((fc | 0x80, ILLEGAL_VALUE))
        span = unit.spans.get(table)
        if span is None or start < span[0] or start + count > span[1]:
            return bytes((fc | 0x80, ILLEGAL_ADDRESS))
        try:
            values = self.values(unit.device.name)
        except Exception:  # noqa: BLE001 - the model failing is the device failing
            log.exception("twin %s: values() failed", unit.device.name)
            return bytes((fc | 0x80, DEVICE_FAILURE))
        words = unit.block(table, start, count, values)
        if table in BIT_TABLES:
            packed = bytearray((count + 7) // 8)
            for i, bit in enumerate(words):
                if bit:
                    packed[i // 8] |= 1 << (i % 8)
            return bytes((fc, len(packed))) + bytes(packed)
        return bytes((fc, 2 * count)) + struct.pack(f">{count}H", *words)
