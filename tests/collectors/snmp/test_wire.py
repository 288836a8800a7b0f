"""collectors.snmp_wire: the BER codec (byte vectors captured from net-snmp, round trips,
malformed input), the UDP client (retries, what answers it accepts) and real snmpd (v1, v2c),
alone and under the SNMP poller."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.snmp import poller as snmp
from collectors.snmp import wire as w
from collectors.snmp.options import SnmpOptions
from collectors.snmp.poller import SnmpPoller
from collectors.snmp.profile import SnmpProfile
from dcim.config import Device, Secret, SiteConfig
from dcim.protocols import PollError
from dcim.twin.ports import free_ports

REPO = Path(__file__).resolve().parents[3]

SYS_DESCR = (1, 3, 6, 1, 2, 1, 1, 1, 0)
SYS_OBJECT_ID = (1, 3, 6, 1, 2, 1, 1, 2, 0)
SYS_UPTIME = (1, 3, 6, 1, 2, 1, 1, 3, 0)
SYS_LOCATION = (1, 3, 6, 1, 2, 1, 1, 6, 0)
NOWHERE = (1, 3, 6, 1, 2, 1, 1, 9, 9, 9)
PDU_POWER = (1, 3, 6, 1, 4, 1, 318, 1, 1, 26, 4, 3, 1, 5, 1)

# Requests sent by net-snmp 5.9.3's tools for sysUpTime.0 and rPDU2DeviceStatusPower.1
# (captured on a UDP socket), and snmpd 5.9.3's answers to this module's requests.
NETSNMP_GET = bytes.fromhex(
    "303e02010104067075626c6963a03102043dddee280201000201003023300c06082b0601020101030005"
    "003013060f2b06010401823e01011a04030105010500"
)
NETSNMP_GETNEXT_V1 = bytes.fromhex(
    "303f020100040770726976617465a131020468cd0ad20201000201003023300c06082b06010201010300"
    "05003013060f2b06010401823e01011a04030105010500"
)
NETSNMP_GETBULK = bytes.fromhex(
    "303e02010104067075626c6963a531020424d3df030201010201053023300c06082b0601020101030005"
    "003013060f2b06010401823e01011a04030105010500"
)
SNMPD_V2C_RESPONSE = bytes.fromhex(
    "30818202010104067075626c6963a275020212340201000201003069301b06082b06010201010100040f"
    "6463696d2074657374206167656e74301606082b06010201010200060a2b06010401bf0803020a300e06"
    "082b060102010103004302009f301306082b06010201010600040773616c6c652d61300d06092b060102"
    "01010909098000"
)
SNMPD_V1_NO_SUCH_NAME = bytes.fromhex(
    "306002010004067075626c6963a253020212340201020201053047300c06082b06010201010100050030"
    "0c06082b060102010102000500300c06082b060102010103000500300c06082b06010201010600050030"
    "0d06092b06010201010909090500"
)


# -- known vectors ------------------------------------------------------------------------------


def test_net_snmp_requests_decode_and_encode_to_the_same_bytes() -> None:
    for data, version, community, pdu, nr, mr in (
        (NETSNMP_GET, w.V2C, b"public", w.GET, 0, 0),
        (NETSNMP_GETNEXT_V1, w.V1, b"private", w.GET_NEXT, 0, 0),
        (NETSNMP_GETBULK, w.V2C, b"public", w.GET_BULK, 1, 5),
    ):
        m = w.decode_message(data)
        assert (m.version, m.community, m.pdu_type) == (version, community, pdu)
        assert (m.error_status, m.error_index) == (nr, mr)
        assert [w.oid_tuple(o) for o, _, _ in m.varbinds] == [SYS_UPTIME, PDU_POWER]
        assert all(tag == w.NULL and v is None for _, tag, v in m.varbinds)
        again = w.encode_message(
            version,
            community,
            pdu,
            m.request_id,
            w.request_varbinds([SYS_UPTIME, PDU_POWER]),
            error_status=nr,
            error_index=mr,
        )
        assert again == data


def test_snmpd_responses_decode() -> None:
    m = w.decode_message(SNMPD_V2C_RESPONSE)  # long-form length (0x81 0x82)
    assert (m.version, m.pdu_type, m.request_id, m.error_status) == (w.V2C, w.RESPONSE, 0x1234, 0)
    assert w.neutral(m.varbinds) == [
        (SYS_DESCR, ("OctetString", b"dcim test agent")),
        (SYS_OBJECT_ID, ("ObjectIdentifier", "1.3.6.1.4.1.8072.3.2.10")),
        (SYS_UPTIME, ("TimeTicks", 159)),
        (SYS_LOCATION, ("OctetString", b"salle-a")),
        (NOWHERE, ("noSuchObject", None)),
    ]
    v1 = w.decode_message(SNMPD_V1_NO_SUCH_NAME)
    assert (v1.version, v1.error_status, v1.error_index) == (w.V1, 2, 5)
    assert [tag for _, tag, _ in v1.varbinds] == [w.NULL] * 5


def test_integers_oids_and_lengths_encode_minimally() -> None:
    assert w.encode_int(0) == b"\x02\x01\x00"
    assert w.encode_int(127) == b"\x02\x01\x7f"
    assert w.encode_int(128) == b"\x02\x02\x00\x80"
    assert w.encode_int(-128) == b"\x02\x01\x80"
    assert w.encode_int(-129) == b"\x02\x02\xff\x7f"
    assert w.encode_value(w.COUNTER32, 2**32 - 1) == b"\x41\x05\x00\xff\xff\xff\xff"
    assert w.encode_value(w.COUNTER64, 2**64 - 1) == b"\x46\x09\x00" + b"\xff" * 8
    assert w.encode_oid("1.3.6.1.4.1.318") == bytes.fromhex("2b06010401823e")
    assert w.encode_oid((2, 999, 3)) == bytes.fromhex("883703")  # X.690 8.19.5 example
    assert w.oid_tuple(bytes.fromhex("883703")) == (2, 999, 3)
    assert w._len(127) == b"\x7f" and w._len(128) == b"\x81\x80" and w._len(256) == b"\x82\x01\x00"


def test_set_requests_cannot_be_built_or_sent() -> None:
    with pytest.raises(w.WireError):
        w.encode_message(w.V2C, b"public", 0xA3, 1, w.request_varbinds([SYS_UPTIME]))
    with pytest.raises(w.WireError):
        w.encode_message(w.V1, b"public", w.GET_BULK, 1, b"")  # no GETBULK in SNMPv1

    async def body() -> None:
        client = w.WireClient()
        try:
            target = w.Target("127.0.0.1", 9, w.V2C, b"public")
            with pytest.raises(w.WireError):
                await client.request(target, 0xA3, b"", timeout=0.1, retries=0)
        finally:
            client.close()

    asyncio.run(body())


@pytest.mark.parametrize(
    "data, why",
    [
        (b"", "truncated"),
        (b"\x30\x80\x02\x01\x01\x00\x00", "indefinite"),
        (SNMPD_V2C_RESPONSE + b"\x00", "trailing"),
        (SNMPD_V2C_RESPONSE[:-1], "length"),
        (bytes.fromhex("300b020103040170a2030201"), "version"),  # SNMPv3
        (b"\x30\x03\x02\x01\x01", "community"),
        (NETSNMP_GET.replace(bytes.fromhex("06082b06"), bytes.fromhex("06088006"), 1), "minimal"),
        (NETSNMP_GET.replace(b"\x05\x00", b"\x09\x00", 1), "tag"),
        (bytes.fromhex("3011020101040170a40a020100020100020100"), "PDU"),  # v1 Trap-PDU
    ],
)
def test_malformed_messages_are_wire_errors(data: bytes, why: str) -> None:
    with pytest.raises(w.WireError):
        w.decode_message(data)


def test_out_of_range_values_are_wire_errors() -> None:
    oid = w._tlv(w.OBJECT_IDENTIFIER, w.encode_oid(SYS_UPTIME))
    for value in (b"\x41\x05\x01\x00\x00\x00\x00", b"\x41\x01\xff", b"\x46\x01\x80"):
        data = w.encode_message(w.V2C, b"c", w.RESPONSE, 7, w._tlv(w.SEQUENCE, oid + value))
        with pytest.raises(w.WireError, match="out of range"):
            w.decode_message(data)


# -- property tests -----------------------------------------------------------------------------

oids = st.lists(st.integers(0, 2**32 - 1), min_size=0, max_size=12).flatmap(
    lambda rest: st.tuples(st.integers(0, 1), st.integers(0, 39)).map(lambda h: (*h, *rest))
)
values = st.one_of(
    st.tuples(st.just(w.INTEGER), st.integers(-(2**31), 2**31 - 1)),
    st.tuples(st.sampled_from([w.COUNTER32, w.GAUGE32, w.TIMETICKS]), st.integers(0, 2**32 - 1)),
    st.tuples(st.just(w.COUNTER64), st.integers(0, 2**64 - 1)),
    st.tuples(st.sampled_from([w.OCTET_STRING, w.OPAQUE]), st.binary(max_size=300)),
    st.tuples(st.just(w.IP_ADDRESS), st.binary(min_size=4, max_size=4)),
    st.tuples(st.just(w.OBJECT_IDENTIFIER), oids.map(w.encode_oid)),
    st.tuples(
        st.sampled_from([w.NULL, w.NO_SUCH_OBJECT, w.NO_SUCH_INSTANCE, w.END_OF_MIB_VIEW]),
        st.none(),
    ),
)
varbinds = st.lists(st.tuples(oids.map(w.encode_oid), values), max_size=20).map(
    lambda vbs: [(o, t, v) for o, (t, v) in vbs]
)


@given(
    version=st.sampled_from([w.V1, w.V2C]),
    community=st.binary(max_size=200),
    pdu=st.sampled_from([w.GET, w.GET_NEXT, w.RESPONSE]),
    rid=st.integers(-(2**31), 2**31 - 1),
    status=st.integers(0, 18),
    index=st.integers(0, 2**31 - 1),
    vbs=varbinds,
)
@settings(max_examples=300, deadline=None)
def test_round_trip(
    version: int,
    community: bytes,
    pdu: int,
    rid: int,
    status: int,
    index: int,
    vbs: list[w.VarBind],
) -> None:
    data = w.encode_message(
        version,
        community,
        pdu,
        rid,
        w.encode_varbinds(vbs),
        error_status=status,
        error_index=index,
    )
    m = w.decode_message(data)
    assert m == w.Message(version, community, pdu, rid, status, index, vbs)
    for oid, _, _ in vbs:
        assert w.encode_oid(w.oid_tuple(oid)) == oid


@given(st.binary(max_size=400))
@settings(max_examples=1000, deadline=None)
def test_random_bytes_never_raise_anything_but_wire_error(data: bytes) -> None:
    with contextlib.suppress(w.WireError):
        w.decode_message(data)


@given(
    base=st.sampled_from([SNMPD_V2C_RESPONSE, SNMPD_V1_NO_SUCH_NAME, NETSNMP_GETBULK]),
    cuts=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), min_size=1, max_size=4),
    truncate=st.integers(0, 200),
)
@settings(max_examples=1000, deadline=None)
def test_damaged_packets_never_raise_anything_but_wire_error(
    base: bytes, cuts: list[tuple[int, int]], truncate: int
) -> None:
    data = bytearray(base)
    for at, byte in cuts:
        data[at % len(data)] = byte
    for candidate in (bytes(data), bytes(data[: len(data) - truncate % len(data)])):
        try:
            m = w.decode_message(candidate)
        except w.WireError:
            continue
        w.neutral(m.varbinds)  # whatever decodes also converts


# -- the client against a scripted agent --------------------------------------------------------


class Scripted(asyncio.DatagramProtocol):
    """Answers each request with what ``reply(request, count)`` returns (a list of
    datagrams, each sent from this agent's socket)."""

    def __init__(self, reply: Any) -> None:
        self.reply = reply
        self.seen: list[w.Message] = []
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        req = w.decode_message(data)
        self.seen.append(req)
        for out in self.reply(req, len(self.seen)):
            self.transport.sendto(out, addr)


def answer(req: w.Message, *, community: bytes | None = None, rid: int | None = None) -> bytes:
    vbs = [(o, w.GAUGE32, 42) for o, _, _ in req.varbinds]
    return w.encode_message(
        req.version,
        req.community if community is None else community,
        w.RESPONSE,
        req.request_id if rid is None else rid,
        w.encode_varbinds(vbs),
    )


async def with_agent(reply: Any, body: Any) -> Any:
    loop = asyncio.get_running_loop()
    agent = Scripted(reply)
    transport, _ = await loop.create_datagram_endpoint(lambda: agent, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    client = w.WireClient()
    try:
        return await body(client, w.Target("127.0.0.1", port, w.V2C, b"public"), agent)
    finally:
        client.close()
        transport.close()


def test_garbage_and_foreign_answers_are_dropped_then_the_good_one_taken() -> None:
    def reply(req: w.Message, n: int) -> list[bytes]:
        return [
            b"\x30\x80garbage",
            answer(req, community=b"other"),
            answer(req, rid=req.request_id + 1),
            answer(req),
        ]

    async def body(client: w.WireClient, target: w.Target, agent: Scripted) -> Any:
        got = await client.read(target, "get", [SYS_UPTIME, PDU_POWER], timeout=1, retries=0)
        return got, client.malformed, client.unmatched

    (status, index, vbs), malformed, unmatched = asyncio.run(with_agent(reply, body))
    assert (status, index) == (0, 0)
    assert vbs == [(SYS_UPTIME, ("Gauge32", 42)), (PDU_POWER, ("Gauge32", 42))]
    assert malformed == 1 and unmatched == 2


def test_retries_resend_the_same_request_and_a_late_answer_counts() -> None:
    def reply(req: w.Message, n: int) -> list[bytes]:
        return [answer(req)] if n == 3 else []  # the third attempt is answered

    async def body(client: w.WireClient, target: w.Target, agent: Scripted) -> Any:
        t0 = time.monotonic()
        got = await client.read(target, "get", [SYS_UPTIME], timeout=0.2, retries=2)
        return got, time.monotonic() - t0, agent.seen

    (_, _, vbs), elapsed, seen = asyncio.run(with_agent(reply, body))
    assert vbs == [(SYS_UPTIME, ("Gauge32", 42))]
    assert 0.35 < elapsed < 1.0
    assert len(seen) == 3 and len({m.request_id for m in seen}) == 1


def test_no_answer_is_a_timeout_after_every_retry() -> None:
    async def body(client: w.WireClient, target: w.Target, agent: Scripted) -> Any:
        t0 = time.monotonic()
        with pytest.raises(w.WireTimeout):
            await client.read(target, "get", [SYS_UPTIME], timeout=0.15, retries=1)
        return time.monotonic() - t0, len(agent.seen), len(client._pending)

    elapsed, sent, pending = asyncio.run(with_agent(lambda req, n: [], body))
    assert 0.28 < elapsed < 0.8 and sent == 2 and pending == 0


def test_time_outs_share_one_loop_timer_and_each_keeps_its_own() -> None:
    """One loop timer for all the requests in flight (not one set and cancelled per
    request); a shorter time-out asked later still ends on its own time."""

    def reply(req: w.Message, n: int) -> list[bytes]:  # only PDU_POWER is answered
        return [answer(req)] if w.neutral(req.varbinds)[0][0] == PDU_POWER else []

    async def body(client: w.WireClient, target: w.Target, agent: Scripted) -> Any:
        slow = asyncio.create_task(client.read(target, "get", [SYS_UPTIME], timeout=3, retries=0))
        await asyncio.sleep(0.02)
        await client.read(target, "get", [PDU_POWER], timeout=1, retries=0)
        timer = client._timer  # set for the 1 s time-out, sooner than the 3 s one
        for _ in range(20):  # answered: no loop timer of their own
            await client.read(target, "get", [PDU_POWER], timeout=1, retries=0)
        same = client._timer is timer and timer is not None
        t0 = time.monotonic()
        with pytest.raises(w.WireTimeout):
            await client.read(target, "get", [SYS_UPTIME], timeout=0.1, retries=1)
        quick = time.monotonic() - t0
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        await asyncio.sleep(0)
        return same, quick, len(client._pending)

    same, quick, pending = asyncio.run(with_agent(reply, body))
    assert same
    assert 0.18 < quick < 1.0  # two attempts of 0.1 s, not the 3 s one's timer
    assert pending == 0


def test_nothing_in_flight_leaves_no_loop_timer() -> None:
    """Once every request is answered (or cancelled), the client's loop timer is gone: it
    would wake an idle loop at the time-out of a request answered long ago (a PDU's poll
    takes a few ms every 10 s; each such wake-up costs a few hundred µs)."""

    async def body(client: w.WireClient, target: w.Target, agent: Scripted) -> Any:
        loop = asyncio.get_running_loop()
        await client.read(target, "get", [PDU_POWER], timeout=2, retries=1)
        answered = client._timer, len(client._due)
        live = [h for h in loop._scheduled if not h.cancelled()]  # type: ignore[attr-defined]
        task = asyncio.create_task(client.read(target, "get", [SYS_UPTIME], timeout=5, retries=0))
        await asyncio.sleep(0.05)
        armed = client._timer is not None
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return answered, live, armed, client._timer, len(client._due)

    def reply(req: w.Message, n: int) -> list[bytes]:  # only PDU_POWER is answered
        return [answer(req)] if w.neutral(req.varbinds)[0][0] == PDU_POWER else []

    answered, live, armed, after_cancel, due = asyncio.run(with_agent(reply, body))
    assert answered == (None, 0) and live == []
    assert armed and after_cancel is None and due == 0


def test_an_answer_from_another_address_is_not_taken() -> None:
    async def body(client: w.WireClient, target: w.Target, agent: Scripted) -> Any:
        loop = asyncio.get_running_loop()
        other, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
        )
        try:
            task = asyncio.create_task(
                client.read(target, "get", [SYS_UPTIME], timeout=0.3, retries=0)
            )
            while not agent.seen:
                await asyncio.sleep(0.01)
            ep = client._endpoints[socket.AF_INET].transport
            assert ep is not None
            other.sendto(answer(agent.seen[0]), ep.get_extra_info("sockname"))
            with pytest.raises(w.WireTimeout):
                await task
            return client.unmatched
        finally:
            other.close()

    assert asyncio.run(with_agent(lambda req, n: [], body)) == 1


def test_a_cancelled_request_leaves_nothing_behind() -> None:
    async def body(client: w.WireClient, target: w.Target, agent: Scripted) -> Any:
        task = asyncio.create_task(client.read(target, "get", [SYS_UPTIME], timeout=5, retries=3))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return len(client._pending)

    assert asyncio.run(with_agent(lambda req, n: [], body)) == 0


# -- real snmpd (net-snmp 5.9), v1 and v2c ------------------------------------------------------


@pytest.fixture(scope="module")
def snmpd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    binary = shutil.which("snmpd")
    if binary is None:
        raise RuntimeError("snmpd not found: install the Debian package 'snmpd' (see README)")
    tmp = tmp_path_factory.mktemp("snmpd")
    port = free_ports(1, kind=socket.SOCK_DGRAM)
    conf = tmp / "snmpd.conf"
    conf.write_text(
        f"agentAddress udp:127.0.0.1:{port}\n"
        "rocommunity public 127.0.0.1\n"
        "sysDescr dcim test agent\n"
        "sysLocation salle-a\n"
    )
    env = dict(os.environ, MIBS="", SNMP_PERSISTENT_DIR=str(tmp), SNMPCONFPATH=str(tmp))
    proc = subprocess.Popen(
        [binary, "-f", "-Lo", "-C", "-c", str(conf)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:  # snmpd takes a moment to bind
            try:
                asyncio.run(_get(port, w.V2C, [SYS_UPTIME], timeout=0.3))
                break
            except w.WireTimeout:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


async def _read(
    port: int, version: int, kind: str, oids: list[tuple[int, ...]], **kw: Any
) -> tuple[int, int, list[w.Neutral]]:
    client = w.WireClient()
    try:
        target = w.Target("127.0.0.1", port, version, b"public")
        kw.setdefault("timeout", 1.0)
        return await client.read(target, kind, oids, retries=1, **kw)
    finally:
        client.close()


async def _get(port: int, version: int, oids: list[tuple[int, ...]], **kw: Any) -> Any:
    return await _read(port, version, "get", oids, **kw)


@pytest.mark.parametrize("version", [w.V1, w.V2C])
def test_snmpd_get(snmpd: int, version: int) -> None:
    status, index, vbs = asyncio.run(
        _get(snmpd, version, [SYS_DESCR, SYS_OBJECT_ID, SYS_UPTIME, SYS_LOCATION])
    )
    assert (status, index) == (0, 0)
    got = dict(vbs)
    assert got[SYS_DESCR] == ("OctetString", b"dcim test agent")
    assert got[SYS_OBJECT_ID] == ("ObjectIdentifier", "1.3.6.1.4.1.8072.3.2.10")
    assert got[SYS_UPTIME][0] == "TimeTicks" and got[SYS_UPTIME][1] >= 0
    assert got[SYS_LOCATION] == ("OctetString", b"salle-a")


def test_snmpd_missing_object_v1_no_such_name_v2c_exception(snmpd: int) -> None:
    status, index, _ = asyncio.run(_get(snmpd, w.V1, [SYS_UPTIME, NOWHERE]))
    assert (status, index) == (2, 2)  # noSuchName at the second var-bind
    status, index, vbs = asyncio.run(_get(snmpd, w.V2C, [SYS_UPTIME, NOWHERE]))
    assert (status, index) == (0, 0)
    assert vbs[1] == (NOWHERE, ("noSuchObject", None))


def test_snmpd_getnext_and_getbulk(snmpd: int) -> None:
    _, _, vbs = asyncio.run(_read(snmpd, w.V1, "next", [SYS_DESCR[:-1]]))
    assert vbs == [(SYS_DESCR, ("OctetString", b"dcim test agent"))]
    _, _, vbs = asyncio.run(
        _read(
            snmpd,
            w.V2C,
            "bulk",
            [SYS_UPTIME[:-1], SYS_DESCR[:-1]],
            non_repeaters=1,
            max_repetitions=3,
        )
    )
    assert vbs[0][0] == SYS_UPTIME and vbs[0][1][0] == "TimeTicks"
    assert vbs[1] == (SYS_DESCR, ("OctetString", b"dcim test agent"))
    assert len(vbs) == 4  # one non-repeater, then three repetitions of one column


def test_the_same_values_as_net_snmp_snmpget(snmpd: int) -> None:
    out = subprocess.run(
        ["snmpget", "-v2c", "-c", "public", "-On", "-Oqv", f"127.0.0.1:{snmpd}"]
        + [".".join(map(str, o)) for o in (SYS_DESCR, SYS_LOCATION, SYS_OBJECT_ID)],
        env=dict(os.environ, MIBS=""),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    _, _, vbs = asyncio.run(_get(snmpd, w.V2C, [SYS_DESCR, SYS_LOCATION, SYS_OBJECT_ID]))
    assert out[0] == f'"{vbs[0][1][1].decode()}"' and out[1] == f'"{vbs[1][1][1].decode()}"'
    assert out[2] == "." + vbs[2][1][1]


@pytest.mark.parametrize("version", ["1", "2c"])
def test_poller_over_the_wire_transport_reads_snmpd(snmpd: int, version: str) -> None:
    assert snmp.V1_V2C_TRANSPORT == "wire"
    prof = SnmpProfile.model_validate(
        {
            "name": "net_snmp_system",
            "protocol": "snmp",
            "measurement": "system",
            "fields": [
                {
                    "name": "or_last_change_s",
                    "oid": "1.3.6.1.2.1.1.8.0",
                    "snmp_type": "TimeTicks",
                    "scale": 0.01,
                },
                {"name": "missing", "oid": "1.3.6.1.2.1.1.9.9.9", "snmp_type": "Integer32"},
            ],
        }
    )
    dev = Device.model_validate(
        {
            "name": f"snmpd-v{version}",
            "protocol": "snmp",
            "profile": "net_snmp_system",
            "host": "localhost",  # resolved once, to 127.0.0.1
            "port": snmpd,
            "timeout_s": 1.0,
            "retries": 1,
            "snmp": {"version": version, "community": {"value": "public"}},
        }
    )
    cfg = SiteConfig.model_validate({"site": {"name": "lab"}})

    async def body() -> Any:
        poller = SnmpPoller(cfg, dev, prof)
        readings = await poller.poll()
        assert poller._pysnmp is None and poller._wire is not None  # pysnmp not involved
        wrong = SnmpPoller(
            SiteConfig.model_validate({"site": {"name": "lab"}}),
            dev.model_copy(
                update={"name": "snmpd-wrong", "timeout_s": 0.2, "retries": 0}
            ).with_options(
                dev.options_as(SnmpOptions).model_copy(update={"community": Secret(value="nope")})
            ),
            prof,
        )
        with pytest.raises(PollError) as err:
            await wrong.poll()
        await poller.close()
        w.close_shared_client()
        return readings, err.value

    readings, err = asyncio.run(body())
    assert readings[0].fields["or_last_change_s"] >= 0
    assert "missing" not in readings[0].fields
    assert err.kind == "timeout"


def test_pysnmp_is_imported_only_for_a_device_that_needs_it() -> None:
    """A site polling v1/v2c through the wire codec does not load pysnmp (about 19 MB of the
    collector's memory); an SNMPv3 device loads it while the pollers are built."""
    code = """
import sys
from collectors.snmp.poller import SnmpPoller
from collectors.snmp.profile import SnmpProfile
from dcim.config import Device, SiteConfig
from dcim.runtime import Collector  # noqa: F401 - everything `dcim run` imports
prof = SnmpProfile.model_validate({"name": "p", "protocol": "snmp", "measurement": "m",
    "fields": [{"name": "uptime_s", "oid": "1.3.6.1.2.1.1.3.0", "snmp_type": "TimeTicks"}]})
cfg = SiteConfig.model_validate({"site": {"name": "lab"}})
def dev(snmp):
    return Device.model_validate({"name": "d", "protocol": "snmp", "profile": "p",
        "host": "127.0.0.1", "port": 161, "snmp": snmp})
SnmpPoller(cfg, dev({"version": "2c", "community": {"value": "public"}}), prof)
print(sorted({m.split(".")[0] for m in sys.modules} & {"pysnmp", "pyasn1", "pysmi"}))
SnmpPoller(cfg, dev({"version": "3", "user": "u"}), prof)
print(sorted({m.split(".")[0] for m in sys.modules} & {"pysnmp", "pyasn1", "pysmi"}))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout.splitlines()
    assert out[0] == "[]", out
    assert "pysnmp" in out[1], out
