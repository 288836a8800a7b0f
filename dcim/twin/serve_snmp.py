"""The twin's SNMP agents: one UDP socket per SNMP device of the site, v1 and v2c.

Each agent answers GET, GETNEXT and GETBULK for its profile's OIDs plus sysDescr,
sysUpTime and sysName. Values come from ``values(device_name)`` (canonical units), called
once per request, and are encoded through the device's profile, the exact inverse of the
collector: ``raw = round((value - offset) / scale)``, then the inverse ``map`` (the first
code listed for a value wins), then the field's ``snmp_type`` (Counter32 wraps modulo
2**32, Integer32 and Gauge32 saturate). A field missing from ``values`` is absent from the
agent (noSuchInstance). A wrong community or a blackholed device gets no answer, as from a
real agent.

Table rows (the profile's ``tables``) are served for the keys ``"<table>/<index>/<name>"``
of ``values``, e.g. ``"outlet/3/power_w": 212.0`` or ``"outlet/3/outlet_name": "srv-01"``
(index dotted for a multi-part index: ``"probe/1.2/temp_c"``): each field at its column and
that index, each tag at its column (text, or the first code ``map`` gives for it). Columns a
field depends on are served so that it decodes: its ``when`` columns with the first code
listed, its ``exponent`` columns with the value that makes the exponent 0 (whole units).
A table ``values`` has no rows for is not walked: its cells that are also scalar fields
(upsInputTruePower.1 is the `ups` reading's input_power_w and line 1 of upsInputTable) still
answer a GET, but GETNEXT/GETBULK pass over them, so that a model giving only per-device
values does not turn them into partial rows.

The messages are decoded and built with pysnmp's protocol API on plain asyncio datagram
endpoints: far cheaper than one SnmpEngine per device when one process serves ~400 agents.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from pyasn1.codec.ber import decoder, encoder
from pyasn1.error import PyAsn1Error
from pysnmp.proto import api, rfc1902, rfc1905

from collectors.snmp.options import SnmpOptions
from collectors.snmp.profile import SnmpField, SnmpProfile, TableSpec
from dcim.config import Device, SiteConfig

log = logging.getLogger(__name__)

Values = Callable[[str], Mapping[str, float | int | str]]
Oid = tuple[int, ...]

SYS_DESCR: Oid = (1, 3, 6, 1, 2, 1, 1, 1, 0)
SYS_UPTIME: Oid = (1, 3, 6, 1, 2, 1, 1, 3, 0)
SYS_NAME: Oid = (1, 3, 6, 1, 2, 1, 1, 5, 0)

_NO_SUCH_NAME, _GEN_ERR, _NOT_WRITABLE = 2, 5, 17
_MAX_VARBINDS = 250  # per response: keeps a GETBULK answer well under a UDP datagram
_RANGE = {
    "Integer32": (-(2**31), 2**31 - 1),
    "Gauge32": (0, 2**32 - 1),
}
_WRAP = {"Counter32": 2**32, "Counter64": 2**64, "TimeTicks": 2**32}
_TYPES: dict[str, Any] = {
    "Integer32": rfc1902.Integer32,
    "Gauge32": rfc1902.Gauge32,
    "Counter32": rfc1902.Counter32,
    "Counter64": rfc1902.Counter64,
    "TimeTicks": rfc1902.TimeTicks,
}


def encode_value(f: SnmpField, value: float) -> Any | None:
    """A canonical value as the SNMP value the device would serve (None: not servable)."""
    if value is None or not math.isfinite(value):
        return None
    x = (value - f.offset) / f.scale
    snmp_type = f.snmp_type or "Integer32"
    if snmp_type == "OctetString":
        return rfc1902.OctetString(f"{x:.10g}")
    raw = round(x)
    if f.map:
        codes = [k for k, v in f.map.items() if math.isclose(v, x, rel_tol=1e-9, abs_tol=1e-9)]
        if not codes:
            return None
        raw = codes[0]
    if snmp_type in _WRAP:
        raw %= _WRAP[snmp_type]
    else:
        lo, hi = _RANGE[snmp_type]
        raw = min(max(raw, lo), hi)
    return _TYPES[snmp_type](raw)


@dataclass(frozen=True, slots=True)
class _Table:
    """The OIDs one profile serves, in SNMP (lexicographic) order."""

    oids: list[Oid]
    fields: list[SnmpField | None]  # None: a system object
    descr: bytes
    tables: dict[str, TableSpec]
    columns: list[Oid]  # every column of the profile's tables
    in_table: list[str | None]  # per entry of ``oids``: the table whose column holds it

    @classmethod
    def of(cls, profile: SnmpProfile) -> _Table:
        rows: list[tuple[Oid, SnmpField | None]] = [
            (SYS_DESCR, None),
            (SYS_UPTIME, None),
            (SYS_NAME, None),
        ]
        for f in profile.fields:
            assert f.oid is not None
            rows.append((tuple(int(p) for p in f.oid.split(".")), f))
        rows.sort(key=lambda r: r[0])
        descr = f"dcim twin agent: {profile.description or profile.name} [{profile.name}]"
        columns = sorted({_oid(c) for t in profile.tables for c in t.columns()})
        in_table: list[str | None] = []
        for oid, _ in rows:
            owner = [
                t.name
                for t in profile.tables
                if any(oid[: len(c)] == c for c in map(_oid, t.columns()))
            ]
            in_table.append(owner[0] if owner else None)
        return cls(
            [r[0] for r in rows],
            [r[1] for r in rows],
            descr.encode(),
            {t.name: t for t in profile.tables},
            columns,
            in_table,
        )

    def cells(self, values: Mapping[str, float | int | str]) -> dict[Oid, Any]:
        """The table cells ``values`` holds (keys ``table/index/name``), encoded."""
        rows: dict[tuple[str, str], dict[str, float | int | str]] = {}
        for key, value in values.items():
            if "/" in key:
                table, index, name = key.split("/", 2)
                rows.setdefault((table, index), {})[name] = value
        out: dict[Oid, Any] = {}
        for (table, index), row in rows.items():
            spec = self.tables.get(table)
            if spec is None:
                continue
            idx = _oid(index)
            codes: dict[Oid, int] = {}
            for t in spec.tags:
                if t.name not in row:
                    continue
                col, val = _oid(t.oid), row[t.name]
                if t.map:
                    found = [k for k, v in t.map.items() if v == val]
                    if found:
                        codes[col] = found[0]
                elif isinstance(val, str):
                    out[col + idx] = rfc1902.OctetString(val.encode())
                else:
                    codes[col] = int(val)
            for f in spec.fields:
                if f.oid is None or f.name not in row or isinstance(row[f.name], str):
                    continue
                enc = encode_value(f, float(row[f.name]))
                if enc is None:
                    continue
                out[_oid(f.oid) + idx] = enc
                for col_text, accepted in (f.when or {}).items():
                    codes.setdefault(_oid(col_text), accepted[0])
                for e in f.exponent:
                    codes.setdefault(_oid(e.oid), -e.plus)
            for col, code in codes.items():
                out.setdefault(col + idx, rfc1902.Integer32(code))
        return out


def _oid(text: str) -> Oid:
    return tuple(int(p) for p in text.split("."))


class _View:
    """What one agent serves for one request: the table with this request's values."""

    def __init__(self, agent: _Agent, values: Mapping[str, float | int | str], v1: bool) -> None:
        self.agent = agent
        self.values = values
        self.v1 = v1
        self.cells = agent.table.cells(values) if agent.table.tables else {}
        self.walked_tables = (
            {k.split("/", 1)[0] for k in values if "/" in k} if agent.table.tables else set()
        )
        if v1:
            self.cells = {
                k: v for k, v in self.cells.items() if not isinstance(v, rfc1902.Counter64)
            }
        self.cell_oids = sorted(self.cells)

    def value_at(self, i: int) -> Any | None:
        table = self.agent.table
        f = table.fields[i]
        if f is None:
            oid = table.oids[i]
            if oid == SYS_UPTIME:
                ticks = int((time.monotonic() - self.agent.started) * 100)
                return rfc1902.TimeTicks(ticks % 2**32)
            if oid == SYS_DESCR:
                return rfc1902.OctetString(table.descr)
            return rfc1902.OctetString(self.agent.device.name.encode())
        value = self.values.get(f.name)
        if value is None or isinstance(value, str):
            return None
        val = encode_value(f, value)
        if self.v1 and isinstance(val, rfc1902.Counter64):
            return None  # SNMPv1 has no Counter64
        return val

    def get(self, oid: Oid) -> Any | None:
        oids = self.agent.table.oids
        i = bisect.bisect_left(oids, oid)
        if i < len(oids) and oids[i] == oid:
            return self.value_at(i)
        return self.cells.get(oid)

    def next(self, oid: Oid) -> tuple[Oid, Any] | None:
        oids = self.agent.table.oids
        found: tuple[Oid, Any] | None = None
        in_table = self.agent.table.in_table
        for i in range(bisect.bisect_right(oids, oid), len(oids)):
            if in_table[i] is not None and in_table[i] not in self.walked_tables:
                continue
            val = self.value_at(i)
            if val is not None:
                found = (oids[i], val)
                break
        j = bisect.bisect_right(self.cell_oids, oid)
        if j < len(self.cell_oids) and (found is None or self.cell_oids[j] < found[0]):
            found = (self.cell_oids[j], self.cells[self.cell_oids[j]])
        return found


class _Agent(asyncio.DatagramProtocol):
    def __init__(self, twin: SnmpTwin, device: Device, table: _Table, community: bytes) -> None:
        self.twin = twin
        self.device = device
        self.table = table
        self.community = community
        self.started = time.monotonic()
        self.transport: asyncio.DatagramTransport | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.device.name in self.twin._unreachable or self.transport is None:
            return
        try:
            rsp = self.twin._answer(self, data)
        except (PyAsn1Error, ValueError, KeyError) as exc:  # garbage in: a real agent drops it
            log.debug("%s: undecodable request from %s: %s", self.device.name, addr, exc)
            return
        if rsp is not None:
            self.transport.sendto(rsp, addr)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def error_received(self, exc: Exception) -> None:
        log.debug("%s: %s", self.device.name, exc)


def _factory(agent: _Agent) -> Callable[[], _Agent]:
    return lambda: agent


class SnmpTwin:
    """SNMP v1/v2c agents for every SNMP device of ``cfg``, each on its own host:port."""

    def __init__(self, cfg: SiteConfig, values: Values) -> None:
        self.cfg = cfg
        self.values = values
        self._unreachable: set[str] = set()
        self._agents: dict[str, _Agent] = {}
        self._failed_values: set[str] = set()

    async def start(self) -> None:
        """Bind every SNMP device of the config (raises OSError naming the device)."""
        loop = asyncio.get_running_loop()
        profiles = self.cfg.profiles()
        tables: dict[str, _Table] = {}
        try:
            for dev in self.cfg.devices:
                opts, prof = dev.options, profiles.get(dev.profile)
                if not isinstance(opts, SnmpOptions) or not isinstance(prof, SnmpProfile):
                    continue
                if dev.host is None or dev.port is None:
                    continue
                if opts.version == "3" or opts.community is None:
                    log.warning("%s: SNMPv3 is not served by the twin; skipped", dev.name)
                    continue
                if dev.profile not in tables:
                    tables[dev.profile] = _Table.of(prof)
                agent = _Agent(self, dev, tables[dev.profile], opts.community.resolve().encode())
                try:
                    await loop.create_datagram_endpoint(
                        _factory(agent), local_addr=(dev.host, dev.port)
                    )
                except OSError as exc:
                    raise OSError(
                        exc.errno,
                        f"SNMP agent {dev.name}: cannot bind {dev.host}:{dev.port}: {exc.strerror}",
                    ) from exc
                self._agents[dev.name] = agent
        except BaseException:
            await self.stop()
            raise
        log.info("SNMP twin: %d agents", len(self._agents))

    async def stop(self) -> None:
        """Close every socket; returns once the ports are free again."""
        closing = []
        for agent in self._agents.values():
            if agent.transport is not None:
                agent.transport.close()  # the socket itself closes on the next loop turn
                agent.transport = None
                closing.append(agent.closed)
        self._agents.clear()
        if closing:
            await asyncio.wait(closing, timeout=5)

    def set_unreachable(self, device: str, unreachable: bool = True) -> None:
        """Blackhole ``device``: its requests are dropped silently (a dead agent or link)."""
        if unreachable:
            self._unreachable.add(device)
        else:
            self._unreachable.discard(device)

    @property
    def ports(self) -> dict[str, int]:
        return {name: a.device.port or 0 for name, a in self._agents.items()}

    # -- one request -------------------------------------------------------------------------

    def _answer(self, agent: _Agent, data: bytes) -> bytes | None:
        version = int(api.decodeMessageVersion(data))
        if version not in api.PROTOCOL_MODULES:
            return None  # SNMPv3 and unknown versions: not served
        p = api.PROTOCOL_MODULES[version]
        req, _ = decoder.decode(data, asn1Spec=p.Message())
        if bytes(p.apiMessage.get_community(req)) != agent.community:
            return None
        pdu = p.apiMessage.get_pdu(req)
        rsp = p.apiMessage.get_response(req)
        rsp_pdu = p.apiMessage.get_pdu(rsp)
        req_vbs = [(tuple(oid), oid) for oid, _ in p.apiPDU.get_varbinds(pdu)]
        v1 = version == api.SNMP_VERSION_1
        try:
            view = _View(agent, self.values(agent.device.name), v1)
        except Exception:  # noqa: BLE001 - a model failure is the agent's genErr, not a crash
            if agent.device.name not in self._failed_values:
                self._failed_values.add(agent.device.name)
                log.exception("%s: values() failed", agent.device.name)
            return self._error(p, rsp, rsp_pdu, _GEN_ERR, 1, req_vbs)
        out: list[tuple[Any, Any]] = []
        if pdu.isSameTypeWith(p.GetRequestPDU()):
            for i, (key, oid) in enumerate(req_vbs):
                val = view.get(key)
                if val is None:
                    if v1:
                        return self._error(p, rsp, rsp_pdu, _NO_SUCH_NAME, i + 1, req_vbs)
                    known = any(
                        o[: len(key)] == key or key[: len(o)] == o
                        for o in (*agent.table.oids, *agent.table.columns)
                    )
                    val = rfc1905.noSuchInstance if known else rfc1905.noSuchObject
                out.append((oid, val))
        elif pdu.isSameTypeWith(p.GetNextRequestPDU()):
            for i, (key, oid) in enumerate(req_vbs):
                nxt = view.next(key)
                if nxt is None:
                    if v1:
                        return self._error(p, rsp, rsp_pdu, _NO_SUCH_NAME, i + 1, req_vbs)
                    out.append((oid, rfc1905.endOfMibView))
                else:
                    out.append((rfc1902.ObjectName(nxt[0]), nxt[1]))
        elif not v1 and pdu.isSameTypeWith(p.GetBulkRequestPDU()):
            out = self._bulk(p, pdu, view, req_vbs)
        else:  # SET and anything else: this is a read-only community
            status = _NO_SUCH_NAME if v1 else _NOT_WRITABLE
            return self._error(p, rsp, rsp_pdu, status, 1, req_vbs)
        p.apiPDU.set_varbinds(rsp_pdu, out)
        return bytes(encoder.encode(rsp))

    @staticmethod
    def _bulk(
        p: Any, pdu: Any, view: _View, req_vbs: list[tuple[Oid, Any]]
    ) -> list[tuple[Any, Any]]:
        non_rep = max(0, int(p.apiBulkPDU.get_non_repeaters(pdu)))
        max_rep = max(0, int(p.apiBulkPDU.get_max_repetitions(pdu)))
        out: list[tuple[Any, Any]] = []
        for key, oid in req_vbs[:non_rep]:
            nxt = view.next(key)
            out.append(
                (oid, rfc1905.endOfMibView) if nxt is None else (rfc1902.ObjectName(nxt[0]), nxt[1])
            )
        cursors = [(key, oid) for key, oid in req_vbs[non_rep:]]
        for _ in range(max_rep):
            if not cursors or len(out) + len(cursors) > _MAX_VARBINDS:
                break
            row_ended = True
            for j, (key, oid) in enumerate(cursors):
                nxt = view.next(key)
                if nxt is None:
                    out.append((oid, rfc1905.endOfMibView))
                else:
                    row_ended = False
                    name = rfc1902.ObjectName(nxt[0])
                    out.append((name, nxt[1]))
                    cursors[j] = (nxt[0], name)
            if row_ended:
                break
        return out

    @staticmethod
    def _error(
        p: Any, rsp: Any, rsp_pdu: Any, status: int, index: int, req_vbs: list[tuple[Oid, Any]]
    ) -> bytes:
        p.apiPDU.set_error_status(rsp_pdu, status)
        p.apiPDU.set_error_index(rsp_pdu, index)
        p.apiPDU.set_varbinds(rsp_pdu, [(oid, p.null) for _, oid in req_vbs])
        return bytes(encoder.encode(rsp))
