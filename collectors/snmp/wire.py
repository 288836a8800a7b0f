"""SNMP v1/v2c on the wire: a small BER codec and one asyncio UDP client for a process.

Why it exists: ``benchmarks/collect.py`` measured pysnmp's pollers at 14-16 times net-snmp's
CPU per value (pyasn1's generic BER codec and pysnmp's message-processing layers); with this
module the same pollers read the same values for about 2 times net-snmp's (ezsnmp, C
bindings to net-snmp but synchronous, needing a thread per request in flight: 3-3.7 times).
pysnmp stays in use for SNMPv3 (USM authentication and privacy), where its layers are the
point.

Scope, on purpose small:

* Messages: ``SEQUENCE { version, community, PDU }`` of SNMPv1 (version 0) and SNMPv2c
  (version 1). PDUs built: GetRequest, GetNextRequest, GetBulkRequest (and Response, for
  test agents). There is no way to build a SetRequest here: collectors only read.
* Values decoded: INTEGER, OCTET STRING, NULL, OBJECT IDENTIFIER, IpAddress, Counter32,
  Gauge32, TimeTicks, Opaque, Counter64 and the v2c exceptions noSuchObject,
  noSuchInstance, endOfMibView. A var-bind is ``(oid, tag, value)``: the OID as its BER
  content bytes (cheap to compare, :func:`oid_tuple` turns it into numbers), the value's
  BER tag (``INTEGER``, ``COUNTER32``, ...), and ``int`` for the integer types, ``bytes``
  for OCTET STRING / IpAddress / Opaque, the OID content bytes for OBJECT IDENTIFIER,
  ``None`` for NULL and the exceptions.
* Anything malformed (truncated, bad lengths, indefinite length, non-minimal OID arcs,
  trailing bytes, unknown tags, out-of-range unsigned values) raises :class:`WireError`
  and nothing else: the client drops that datagram and keeps waiting for a good answer,
  as an agent's garbage must never take the collector down.

:class:`WireClient` multiplexes every request of the process over one UDP socket per
address family, by request id. An answer is accepted only from the address the request
went to, with the same version, community and request id. Each request has its own timer:
``timeout`` per attempt, ``retries`` resends with the same request id (so a late answer to
the first attempt still counts), then :class:`WireTimeout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import math
import os
import random
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

# -- tags -------------------------------------------------------------------------------------
INTEGER, OCTET_STRING, NULL, OBJECT_IDENTIFIER, SEQUENCE = 0x02, 0x04, 0x05, 0x06, 0x30
IP_ADDRESS, COUNTER32, GAUGE32, TIMETICKS, OPAQUE, COUNTER64 = 0x40, 0x41, 0x42, 0x43, 0x44, 0x46
NO_SUCH_OBJECT, NO_SUCH_INSTANCE, END_OF_MIB_VIEW = 0x80, 0x81, 0x82
GET, GET_NEXT, RESPONSE, GET_BULK = 0xA0, 0xA1, 0xA2, 0xA5
# SetRequest is 0xA3: deliberately absent from everything below.
REQUEST_PDUS = frozenset({GET, GET_NEXT, GET_BULK})
_ENCODABLE_PDUS = REQUEST_PDUS | {RESPONSE}
V1, V2C = 0, 1

_UNSIGNED_MAX = {
    COUNTER32: 2**32 - 1,
    GAUGE32: 2**32 - 1,
    TIMETICKS: 2**32 - 1,
    COUNTER64: 2**64 - 1,
}
_INT32 = (-(2**31), 2**31 - 1)
_BYTES_TAGS = frozenset({OCTET_STRING, IP_ADDRESS, OPAQUE})
_EMPTY_TAGS = frozenset({NULL, NO_SUCH_OBJECT, NO_SUCH_INSTANCE, END_OF_MIB_VIEW})
EXCEPTIONS = frozenset({NO_SUCH_OBJECT, NO_SUCH_INSTANCE, END_OF_MIB_VIEW})
TAG_NAMES = {
    INTEGER: "Integer",
    OCTET_STRING: "OctetString",
    NULL: "Null",
    OBJECT_IDENTIFIER: "ObjectIdentifier",
    IP_ADDRESS: "IpAddress",
    COUNTER32: "Counter32",
    GAUGE32: "Gauge32",
    TIMETICKS: "TimeTicks",
    OPAQUE: "Opaque",
    COUNTER64: "Counter64",
    NO_SUCH_OBJECT: "NoSuchObject",
    NO_SUCH_INSTANCE: "NoSuchInstance",
    END_OF_MIB_VIEW: "EndOfMibView",
}
MAX_MESSAGE = 65507  # the largest UDP payload over IPv4
_CLOCK_RESOLUTION = time.get_clock_info("monotonic").resolution  # asyncio's, for due timers

Value = int | bytes | None
VarBind = tuple[bytes, int, Value]  # (OID content bytes, value tag, value)


class WireError(ValueError):
    """A message that is not a well-formed SNMP v1/v2c message of the kind expected."""


class WireTimeout(WireError):
    """No acceptable answer within the timeout and retries."""


# -- encoding -----------------------------------------------------------------------------------


def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def _tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes((tag, n)) + content
    return bytes((tag,)) + _len(n) + content


def _int_content(x: int) -> bytes:
    return x.to_bytes(((~x if x < 0 else x).bit_length()) // 8 + 1, "big", signed=True)


def encode_int(x: int, tag: int = INTEGER) -> bytes:
    return _tlv(tag, _int_content(x))


def encode_oid(oid: str | Sequence[int]) -> bytes:
    """The BER content of an OBJECT IDENTIFIER (no tag, no length): the form var-binds carry."""
    arcs = [int(a) for a in oid.strip(".").split(".")] if isinstance(oid, str) else list(oid)
    if len(arcs) < 2 or not 0 <= arcs[0] <= 2 or (arcs[0] < 2 and not 0 <= arcs[1] < 40):
        raise WireError(f"not an encodable OID: {oid!r}")
    out = bytearray()
    for arc in [40 * arcs[0] + arcs[1], *arcs[2:]]:
        if arc < 0:
            raise WireError(f"negative arc in OID {oid!r}")
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return bytes(out)


def encode_value(tag: int, value: Value) -> bytes:
    if tag == INTEGER or tag in _UNSIGNED_MAX:
        if not isinstance(value, int) or isinstance(value, bool):
            raise WireError(f"{TAG_NAMES[tag]} needs an int, not {value!r}")
        if tag == INTEGER and not _INT32[0] <= value <= _INT32[1]:
            raise WireError(f"INTEGER out of range: {value}")
        if tag != INTEGER and not 0 <= value <= _UNSIGNED_MAX[tag]:
            raise WireError(f"{TAG_NAMES[tag]} out of range: {value}")
        return encode_int(value, tag)
    if tag in _BYTES_TAGS or tag == OBJECT_IDENTIFIER:
        if not isinstance(value, bytes):
            raise WireError(f"{TAG_NAMES[tag]} needs bytes, not {value!r}")
        if tag == IP_ADDRESS and len(value) != 4:
            raise WireError("IpAddress needs 4 bytes")
        return _tlv(tag, value)
    if tag in _EMPTY_TAGS:
        return bytes((tag, 0))
    raise WireError(f"unknown value tag 0x{tag:02x}")


def encode_varbinds(varbinds: Iterable[VarBind]) -> bytes:
    """The encoded var-bind list's content (no SEQUENCE header): cache it for fixed OIDs."""
    return b"".join(
        _tlv(SEQUENCE, _tlv(OBJECT_IDENTIFIER, oid) + encode_value(tag, value))
        for oid, tag, value in varbinds
    )


def null_varbinds(oids: Iterable[bytes]) -> bytes:
    """The var-bind list content of a request for ``oids`` (OID content bytes)."""
    return b"".join(_tlv(SEQUENCE, _tlv(OBJECT_IDENTIFIER, oid) + b"\x05\x00") for oid in oids)


def encode_message(
    version: int,
    community: bytes,
    pdu_type: int,
    request_id: int,
    varbinds_content: bytes,
    *,
    error_status: int = 0,
    error_index: int = 0,
) -> bytes:
    """A whole message. For GetBulk, ``error_status`` is non-repeaters and ``error_index``
    max-repetitions (RFC 3416 puts them in the same places). Only read requests and
    responses can be built."""
    if pdu_type not in _ENCODABLE_PDUS:
        raise WireError(f"PDU type 0x{pdu_type:02x} is not a read request or a response")
    if version not in (V1, V2C) or (version == V1 and pdu_type == GET_BULK):
        raise WireError(f"PDU type 0x{pdu_type:02x} in version {version}")
    pdu = _tlv(
        pdu_type,
        encode_int(request_id)
        + encode_int(error_status)
        + encode_int(error_index)
        + _tlv(SEQUENCE, varbinds_content),
    )
    return _tlv(SEQUENCE, encode_int(version) + _tlv(OCTET_STRING, community) + pdu)


# -- decoding -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    version: int
    community: bytes
    pdu_type: int
    request_id: int
    error_status: int  # non-repeaters in a GetBulk request
    error_index: int  # max-repetitions in a GetBulk request
    varbinds: list[VarBind]


def _header(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the TLV at ``pos``; everything checked."""
    if pos + 2 > end:
        raise WireError("truncated TLV header")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise WireError("multi-byte tags are not used by SNMP")
    n = data[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0:
            raise WireError("indefinite length is not allowed in SNMP")
        if k > 4 or pos + k > end:
            raise WireError("bad long-form length")
        n = int.from_bytes(data[pos : pos + k], "big")
        pos += k
    if pos + n > end:
        raise WireError("length runs past the end of its container")
    return tag, pos, pos + n


def _int(data: bytes, start: int, stop: int) -> int:
    if start == stop:
        raise WireError("empty INTEGER")
    if stop - start > 9:
        raise WireError("INTEGER longer than 9 bytes")
    return int.from_bytes(data[start:stop], "big", signed=True)


def _expect_int(data: bytes, pos: int, end: int, what: str) -> tuple[int, int]:
    tag, start, stop = _header(data, pos, end)
    if tag != INTEGER:
        raise WireError(f"{what}: INTEGER expected, found tag 0x{tag:02x}")
    return _int(data, start, stop), stop


def _check_oid(data: bytes, start: int, stop: int) -> None:
    if start == stop:
        raise WireError("empty OBJECT IDENTIFIER")
    if data[stop - 1] & 0x80:
        raise WireError("OBJECT IDENTIFIER ends inside an arc")
    prev_end = True
    for i in range(start, stop):
        b = data[i]
        if prev_end and b == 0x80:
            raise WireError("non-minimal OID arc")
        prev_end = not b & 0x80


def _value(data: bytes, tag: int, start: int, stop: int) -> Value:
    if tag == INTEGER:  # wider than Integer32 is tolerated (up to 9 bytes, as _int checks)
        return _int(data, start, stop)
    if tag in _UNSIGNED_MAX:
        x = _int(data, start, stop)
        if not 0 <= x <= _UNSIGNED_MAX[tag]:
            raise WireError(f"{TAG_NAMES[tag]} out of range")
        return x
    if tag in _BYTES_TAGS:
        if tag == IP_ADDRESS and stop - start != 4:
            raise WireError("IpAddress is not 4 bytes")
        return data[start:stop]
    if tag in _EMPTY_TAGS:
        if stop != start:
            raise WireError(f"{TAG_NAMES[tag]} with content")
        return None
    if tag == OBJECT_IDENTIFIER:
        _check_oid(data, start, stop)
        return data[start:stop]
    raise WireError(f"unknown value tag 0x{tag:02x}")


def _py_decode_message(data: bytes) -> Message:
    """Any SNMP v1/v2c message with a PDU of the standard layout (not v1 Trap-PDU).

    Raises :class:`WireError` and nothing else for whatever ``data`` is."""
    if not isinstance(data, bytes):
        data = bytes(data)
    end = len(data)
    tag, pos, mend = _header(data, 0, end)
    if tag != SEQUENCE:
        raise WireError("not a SEQUENCE")
    if mend != end:
        raise WireError("trailing bytes after the message")
    version, pos = _expect_int(data, pos, mend, "version")
    if version not in (V1, V2C):
        raise WireError(f"version {version} is not SNMPv1/v2c")
    tag, start, pos = _header(data, pos, mend)
    if tag != OCTET_STRING:
        raise WireError("community: OCTET STRING expected")
    community = data[start:pos]
    pdu_type, pos, pend = _header(data, pos, mend)
    if pdu_type not in (GET, GET_NEXT, RESPONSE, GET_BULK, 0xA3, 0xA6, 0xA7, 0xA8):
        raise WireError(f"unsupported PDU type 0x{pdu_type:02x}")
    if pend != mend:
        raise WireError("trailing bytes after the PDU")
    request_id, pos = _expect_int(data, pos, pend, "request-id")
    error_status, pos = _expect_int(data, pos, pend, "error-status")
    error_index, pos = _expect_int(data, pos, pend, "error-index")
    tag, pos, vend = _header(data, pos, pend)
    if tag != SEQUENCE or vend != pend:
        raise WireError("var-bind list: SEQUENCE expected, ending the PDU")
    varbinds: list[VarBind] = []
    append = varbinds.append
    seen = _oid_of_bytes
    # Each var-bind's three headers read inline when their length is in short form (under
    # 128 bytes, as nearly all are), else by _header; the same checks either way.
    while pos < vend:
        if pos + 2 <= vend and data[pos] == SEQUENCE and data[pos + 1] < 0x80:
            bend = pos + 2 + data[pos + 1]
            pos += 2
            if bend > vend:
                raise WireError("length runs past the end of its container")
        else:
            tag, pos, bend = _header(data, pos, vend)
            if tag != SEQUENCE:
                raise WireError("var-bind: SEQUENCE expected")
        if pos + 2 <= bend and data[pos] == OBJECT_IDENTIFIER and data[pos + 1] < 0x80:
            start = pos + 2
            pos = start + data[pos + 1]
            if pos > bend:
                raise WireError("length runs past the end of its container")
        else:
            tag, start, pos = _header(data, pos, bend)
            if tag != OBJECT_IDENTIFIER:
                raise WireError("var-bind name: OBJECT IDENTIFIER expected")
        oid = data[start:pos]
        if oid not in seen:  # an OID seen (and checked) before needs no check
            _check_oid(data, start, pos)
        if pos + 2 <= bend and data[pos + 1] < 0x80 and pos + 2 + data[pos + 1] == bend:
            vtag = data[pos]  # short form, ending the var-bind
            start, pos = pos + 2, bend
            if vtag & 0x1F == 0x1F:
                raise WireError("multi-byte tags are not used by SNMP")
        else:
            vtag, start, pos = _header(data, pos, bend)
            if pos != bend:
                raise WireError("trailing bytes in a var-bind")
        if vtag == INTEGER and 0 < pos - start < 10:
            append((oid, vtag, int.from_bytes(data[start:pos], "big", signed=True)))
        else:
            append((oid, vtag, _value(data, vtag, start, pos)))
    return Message(version, community, pdu_type, request_id, error_status, error_index, varbinds)


def oid_tuple(content: bytes) -> tuple[int, ...]:
    """OID content bytes -> arcs (``b'+\\x06\\x01'`` -> ``(1, 3, 6, 1)``)."""
    arcs: list[int] = []
    arc = 0
    for b in content:
        arc = (arc << 7) | (b & 0x7F)
        if not b & 0x80:
            arcs.append(arc)
            arc = 0
    if not arcs or content[-1] & 0x80:
        raise WireError("not an OID")
    first = arcs[0]
    head = (0, first) if first < 40 else (1, first - 40) if first < 80 else (2, first - 80)
    return (*head, *arcs[1:])


def oid_str(content: bytes) -> str:
    return ".".join(map(str, oid_tuple(content)))


# -- the neutral form of collectors.snmp.codec: ((arcs), (type name, python value)) -------------

Oid = tuple[int, ...]
Neutral = tuple[Oid, tuple[str, Any]]
NEUTRAL_NAMES = TAG_NAMES | {  # pysnmp's names, which the codec was written against
    INTEGER: "Integer32",
    NO_SUCH_OBJECT: "noSuchObject",
    NO_SUCH_INSTANCE: "noSuchInstance",
    END_OF_MIB_VIEW: "endOfMibView",
}
_CACHE_MAX = 50_000
_oid_of_bytes: dict[bytes, Oid] = {}  # OIDs repeat: every device of a profile asks the same
_request_vb: dict[Oid, bytes] = {}


def _cached_oid(content: bytes) -> Oid:
    oid = _oid_of_bytes.get(content)
    if oid is None:
        oid = oid_tuple(content)
        if len(_oid_of_bytes) >= _CACHE_MAX:
            _oid_of_bytes.clear()
        _oid_of_bytes[content] = oid
    return oid


def request_varbinds(oids: Iterable[Oid]) -> bytes:
    """The var-bind list content asking for ``oids`` (arcs), each encoded once per process."""
    out = []
    for oid in oids:
        vb = _request_vb.get(oid)
        if vb is None:
            content = encode_oid(oid)
            vb = null_varbinds((content,))
            if len(_request_vb) >= _CACHE_MAX:
                _request_vb.clear()
                _oid_of_bytes.clear()
            _request_vb[oid] = vb
            _oid_of_bytes[content] = tuple(oid)
        out.append(vb)
    return b"".join(out)


def _py_neutral(varbinds: Iterable[VarBind]) -> list[Neutral]:
    """Decoded var-binds in the transport-neutral form of :mod:`collectors.snmp.codec`."""
    out: list[Neutral] = []
    append, seen, names = out.append, _oid_of_bytes, NEUTRAL_NAMES
    for oid, tag, value in varbinds:
        arcs = seen.get(oid)  # _cached_oid's lookup inline: the OIDs of a poll recur
        if arcs is None:
            arcs = _cached_oid(oid)
        if tag == OBJECT_IDENTIFIER:
            assert isinstance(value, bytes)
            append((arcs, ("ObjectIdentifier", oid_str(value))))
        else:
            append((arcs, (names[tag], value)))
    return out


# -- the compiled decoder ----------------------------------------------------------------------
# collectors/snmp/_fastber.c does what _py_decode_message and _py_neutral do (the reference:
# same results, same WireError messages, the same OID cache), about ten times faster. Built by
# `pip install`; without it (no compiler), or with DCIM_SNMP_DECODER=python, the Python runs.


def _load_decoder() -> tuple[str, Callable[[bytes], Message], Callable[..., list[Neutral]]]:
    try:
        from collectors.snmp import _fastber
    except ImportError:
        return "python", _py_decode_message, _py_neutral
    _fastber.setup(  # set up even when not used: the tests compare it with the Python
        WireError, Message, _oid_of_bytes, _cached_oid, oid_str, _py_neutral, NEUTRAL_NAMES
    )
    if os.environ.get("DCIM_SNMP_DECODER", "").strip().lower() == "python":
        return "python", _py_decode_message, _py_neutral
    return "c", _fastber.decode_message, _fastber.neutral


DECODER, decode_message, neutral = _load_decoder()
"""Which decoder runs ("c" or "python"); decode_message(data) -> Message and
neutral(varbinds) -> [(arcs, (type name, value))] are that decoder's."""

# -- the client ---------------------------------------------------------------------------------

Addr = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Target:
    """One agent: a resolved address (``host`` is a numeric IP) and its community."""

    host: str
    port: int
    version: int  # V1 or V2C
    community: bytes
    family: int = socket.AF_INET


async def resolve(host: str, port: int) -> tuple[str, int]:
    """(numeric address, address family) of ``host``; raises OSError."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_DGRAM, proto=socket.IPPROTO_UDP
    )
    fam, _, _, _, sockaddr = infos[0]
    return str(sockaddr[0]), int(fam)


class _Pending:
    __slots__ = ("addr", "attempts", "due", "fut", "packet", "target", "timeout")

    def __init__(
        self,
        target: Target,
        addr: Addr,
        packet: bytes,
        fut: asyncio.Future[Message],
        timeout: float,
        attempts: int,
    ) -> None:
        self.target, self.addr, self.packet, self.fut = target, addr, packet, fut
        self.timeout, self.attempts = timeout, attempts
        self.due = 0.0  # loop time the current attempt times out


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(self, client: WireClient) -> None:
        self.client = client
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.client._received(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:  # ICMP errors on some platforms
        self.client.errors += 1


class WireClient:
    """Concurrent SNMP v1/v2c requests over one UDP socket per address family."""

    RCVBUF_BYTES = 4 * 1024 * 1024

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._endpoints: dict[int, _Endpoint] = {}
        self._pending: dict[int, _Pending] = {}
        # Time-outs: a heap of (due, seq, request id, pending) and one loop timer for the
        # earliest live one, not a loop timer per request (set, then cancelled by the answer:
        # about a tenth of the collector's CPU on a metered-outlet PDU). An answered request's
        # entry stays in the heap until it comes to the top, then is dropped.
        self._due: list[tuple[float, int, int, _Pending]] = []
        self._due_seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._ids = itertools.count(random.randrange(1, 2**30))
        self.malformed = 0  # datagrams dropped: undecodable
        self.unmatched = 0  # datagrams dropped: no request of theirs waiting (late, spoofed)
        self.errors = 0

    async def _endpoint(self, family: int) -> _Endpoint:
        ep = self._endpoints.get(family)
        if ep is not None and ep.transport is not None:
            return ep
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            # One socket receives every agent's answers: when hundreds of polls fall on the
            # same instant, the default ~208 KiB buffer overflows (capped by rmem_max).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.RCVBUF_BYTES)
            sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", 0))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        ep = _Endpoint(self)
        await self._loop.create_datagram_endpoint(lambda: ep, sock=sock)
        self._endpoints[family] = ep
        return ep

    def _next_id(self) -> int:
        rid = next(self._ids) & 0x7FFFFFFF
        while rid == 0 or rid in self._pending:
            rid = next(self._ids) & 0x7FFFFFFF
        return rid

    async def request(
        self,
        target: Target,
        pdu_type: int,
        varbinds_content: bytes,
        *,
        timeout: float,
        retries: int,
        non_repeaters: int = 0,
        max_repetitions: int = 0,
    ) -> Message:
        """Send one read request (``GET``, ``GET_NEXT``, ``GET_BULK``) and return the answer.

        ``varbinds_content`` comes from :func:`null_varbinds`. Raises :class:`WireTimeout`
        after ``retries`` resends without an acceptable answer, :class:`WireError` for a
        request that cannot be built, OSError when the socket cannot send."""
        if pdu_type not in REQUEST_PDUS:
            raise WireError(f"PDU type 0x{pdu_type:02x} is not a read request")
        ep = self._endpoints.get(target.family)
        if ep is None or ep.transport is None:
            ep = await self._endpoint(target.family)
        rid = self._next_id()
        packet = encode_message(
            target.version,
            target.community,
            pdu_type,
            rid,
            varbinds_content,
            error_status=non_repeaters,
            error_index=max_repetitions,
        )
        if len(packet) > MAX_MESSAGE:
            raise WireError(f"request of {len(packet)} bytes does not fit a datagram")
        fut: asyncio.Future[Message] = self._loop.create_future()
        p = _Pending(target, (target.host, target.port), packet, fut, timeout, retries + 1)
        self._pending[rid] = p
        try:
            self._send(rid, p)
            return await fut
        finally:
            if self._pending.get(rid) is p:
                del self._pending[rid]
                if not self._pending:
                    self._idle()

    async def read(
        self,
        target: Target,
        kind: str,
        oids: Sequence[Oid],
        *,
        timeout: float,
        retries: int,
        non_repeaters: int = 0,
        max_repetitions: int = 0,
    ) -> tuple[int, int, list[Neutral]]:
        """GET (``kind="get"``), GETNEXT (``"next"``) or GETBULK (``"bulk"``) of ``oids``:
        (error-status, error-index, var-binds in the neutral form). Raises as
        :meth:`request`."""
        msg = await self.request(
            target,
            _KINDS[kind],
            request_varbinds(oids),
            timeout=timeout,
            retries=retries,
            non_repeaters=non_repeaters,
            max_repetitions=max_repetitions,
        )
        return msg.error_status, msg.error_index, neutral(msg.varbinds)

    def _send(self, rid: int, p: _Pending) -> None:
        ep = self._endpoints[p.target.family]
        assert ep.transport is not None
        p.attempts -= 1
        ep.transport.sendto(p.packet, p.addr)
        p.due = due = self._loop.time() + p.timeout
        heapq.heappush(self._due, (due, next(self._due_seq), rid, p))
        if due < self._timer_at:
            self._arm()

    def _live(self, due: float, rid: int, p: _Pending) -> bool:
        """The time-out entry is the current attempt of a request still waiting."""
        return p.due == due and not p.fut.done() and self._pending.get(rid) is p

    def _arm(self) -> None:
        """The loop timer at the earliest live time-out (answered ones dropped from the top)."""
        heap = self._due
        while heap and not self._live(heap[0][0], heap[0][2], heap[0][3]):
            heapq.heappop(heap)
        if self._timer is not None:
            if heap and self._timer_at <= heap[0][0]:
                return
            self._timer.cancel()
            self._timer, self._timer_at = None, math.inf
        if heap:
            self._timer_at = heap[0][0]
            self._timer = self._loop.call_at(self._timer_at, self._expire_due)

    def _expire_due(self) -> None:
        """The loop timer: every request whose attempt has timed out is sent again, or
        fails with WireTimeout after its last attempt."""
        self._timer, self._timer_at = None, math.inf
        heap = self._due
        end = self._loop.time() + _CLOCK_RESOLUTION  # as the loop tells a due timer
        try:
            while heap and heap[0][0] < end:
                due, _, rid, p = heapq.heappop(heap)
                if not self._live(due, rid, p):
                    continue
                if p.attempts > 0:
                    try:
                        self._send(rid, p)
                    except OSError as exc:
                        p.fut.set_exception(exc)
                    continue
                self._pending.pop(rid, None)
                p.fut.set_exception(WireTimeout(f"no answer from {p.addr[0]}:{p.addr[1]}"))
        finally:
            self._arm()

    def _received(self, data: bytes, addr: Addr) -> None:
        try:
            msg = decode_message(data)
        except WireError:
            self.malformed += 1
            return
        p = self._pending.get(msg.request_id)
        if (
            p is None
            or p.fut.done()
            or msg.pdu_type != RESPONSE
            or addr[1] != p.addr[1]
            or addr[0] != p.addr[0]
            or msg.version != p.target.version
            or msg.community != p.target.community
        ):
            self.unmatched += 1
            return
        del self._pending[msg.request_id]  # its time-out entry is dropped in its turn
        if not self._pending:
            self._idle()
        p.fut.set_result(msg)

    def _idle(self) -> None:
        """Nothing in flight: every time-out entry is dead and the loop timer is dropped.
        Else it woke the loop at the time-out of the earliest request of the last few
        seconds, answered long ago (each wake-up of an idle loop is a few hundred µs of
        CPU, cold caches; a PDU's poll takes a few ms every 10 s: mostly idle)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._timer_at = None, math.inf
        self._due.clear()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._timer_at = None, math.inf
        self._due.clear()
        for p in list(self._pending.values()):
            if not p.fut.done():
                p.fut.cancel()
        self._pending.clear()
        for ep in self._endpoints.values():
            if ep.transport is not None:
                ep.transport.close()
                ep.transport = None
        self._endpoints.clear()


_KINDS = {"get": GET, "next": GET_NEXT, "bulk": GET_BULK}
_shared: tuple[asyncio.AbstractEventLoop, WireClient] | None = None


def shared_client() -> WireClient:
    """The process's client for the running loop (a new loop gets a new client)."""
    global _shared
    loop = asyncio.get_running_loop()
    if _shared is not None and _shared[0] is loop:
        return _shared[1]
    close_shared_client()
    client = WireClient()
    _shared = (loop, client)
    return client


def close_shared_client() -> None:
    global _shared
    if _shared is None:
        return
    _, client = _shared
    _shared = None
    with contextlib.suppress(RuntimeError):  # its loop is already closed
        client.close()
