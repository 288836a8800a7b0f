"""collectors.snmp._fastber (the compiled decoder) against wire.py's Python decoder, its
reference: the same Message (or the same WireError, same message) for every input, the same
neutral form, on datagrams of a real agent (snmpsim serving real devices' walks), on
hypothesis-built messages (long-form lengths, non-minimal integers, 9-byte values, large OID
arcs) and on damaged and random bytes; and no reference leaked by either path."""

from __future__ import annotations

import bz2
import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import snmpsim_data
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.snmp import _fastber, codec
from collectors.snmp import wire as w
from tests.collectors.snmp.test_wire import (
    NETSNMP_GET,
    NETSNMP_GETBULK,
    NETSNMP_GETNEXT_V1,
    SNMPD_V1_NO_SUCH_NAME,
    SNMPD_V2C_RESPONSE,
)
from tests.collectors.snmpsim_server import Snmpsim, start_snmpsim

REPO = Path(__file__).resolve().parents[3]
WALKS = Path(snmpsim_data.__file__).resolve().parent / "data" / "UPS"
CAPTURES = REPO / "tests" / "captures" / "snmp"
VECTORS = [NETSNMP_GET, NETSNMP_GETNEXT_V1, NETSNMP_GETBULK, SNMPD_V2C_RESPONSE]
VECTORS.append(SNMPD_V1_NO_SUCH_NAME)

C_DECODE: Callable[[bytes], w.Message] = _fastber.decode_message
C_NEUTRAL: Callable[[Any], list[w.Neutral]] = _fastber.neutral


def outcome(fn: Callable[[Any], Any], arg: Any) -> tuple[Any, ...]:
    """What ``fn(arg)`` gives: ("ok", result) or ("raise", exception type, message)."""
    try:
        return ("ok", fn(arg))
    except Exception as exc:  # noqa: BLE001 - any exception is compared, not only WireError
        return ("raise", type(exc), str(exc))


def same_decoding(data: bytes | bytearray | memoryview) -> tuple[Any, ...]:
    """Both decoders agree on ``data`` (and, when it decodes, on its neutral form)."""
    py, c = outcome(w._py_decode_message, data), outcome(C_DECODE, data)
    assert c == py, data.hex()
    if py[0] == "raise":
        assert py[1] is w.WireError, (py, data.hex())  # nothing but WireError, ever
    else:
        msg = py[1]
        assert type(c[1]) is w.Message
        assert outcome(C_NEUTRAL, msg.varbinds) == outcome(w._py_neutral, msg.varbinds)
    return py


# -- the compiled path is the one in use --------------------------------------------------------


def test_the_extension_is_built_and_is_what_runs() -> None:
    assert Path(_fastber.__file__).suffix in (".so", ".pyd")
    if os.environ.get("DCIM_SNMP_DECODER", "").lower() == "python":
        assert (w.DECODER, w.decode_message, w.neutral) == (
            "python",
            w._py_decode_message,
            w._py_neutral,
        )
    else:
        assert (w.DECODER, w.decode_message, w.neutral) == ("c", C_DECODE, C_NEUTRAL)


def test_the_environment_variable_forces_the_python_path() -> None:
    code = "from collectors.snmp import wire as w; print(w.DECODER, w.decode_message.__module__)"
    env = {**os.environ, "DCIM_SNMP_DECODER": "python"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["python", "collectors.snmp.wire"], out.stderr
    env.pop("DCIM_SNMP_DECODER")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["c", "collectors.snmp._fastber"], out.stderr


# -- real datagrams: snmpsim serving real devices' walks ------------------------------------


def walk_text(name: str) -> str:
    plain = WALKS / f"{name}.snmprec"
    raw = (
        plain.read_bytes()
        if plain.exists()
        else bz2.decompress(plain.with_suffix(".snmprec.bz2").read_bytes())
    )
    return raw.decode("latin-1")


@pytest.fixture(scope="module")
def agent() -> Iterator[Snmpsim]:
    texts = {name: walk_text(name) for name in ("apc-8641", "apc-7902b", "eaton-93e-80")}
    texts["rpdu2"] = (CAPTURES / "apc_rpdu2" / "device.snmprec").read_text()
    texts["quirks"] = (CAPTURES / "quirks" / "ups_nonsense.snmprec").read_text()
    sim = start_snmpsim(texts)
    try:
        yield sim
    finally:
        sim.cleanup()


def exchange(sock: socket.socket, port: int, request: bytes) -> bytes:
    sock.sendto(request, ("127.0.0.1", port))
    while True:
        data, addr = sock.recvfrom(w.MAX_MESSAGE)
        if addr[1] == port:
            return data


def walk_datagrams(port: int, community: bytes, max_rep: int) -> list[bytes]:
    """Every GETBULK answer of a whole walk of the agent's ``community``, as received."""
    out: list[bytes] = []
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(10)
    try:
        oid: w.Oid = (1, 3)
        for rid in range(1, 10_000):
            req = w.encode_message(
                w.V2C, community, w.GET_BULK, rid, w.request_varbinds([oid]), error_index=max_rep
            )
            data = exchange(sock, port, req)
            out.append(data)
            vbs = w._py_decode_message(data).varbinds
            if not vbs or vbs[-1][1] == w.END_OF_MIB_VIEW:
                return out
            oid = w.oid_tuple(vbs[-1][0])
        raise AssertionError("the walk did not end")
    finally:
        sock.close()


def test_every_datagram_of_real_walks_decodes_the_same(agent: Snmpsim) -> None:
    kinds: set[int] = set()
    count = 0
    for community in (b"apc-8641", b"apc-7902b", b"eaton-93e-80", b"rpdu2", b"quirks"):
        for max_rep in (25, 7):
            for data in walk_datagrams(agent.port, community, max_rep):
                result = same_decoding(data)
                assert result[0] == "ok"
                kinds.update(tag for _, tag, _ in result[1].varbinds)
                count += len(result[1].varbinds)
    # the walks carry every kind a PDU answer has, including the end of the MIB view
    assert {w.INTEGER, w.OCTET_STRING, w.OBJECT_IDENTIFIER, w.TIMETICKS} <= kinds
    assert {w.GAUGE32, w.COUNTER32, w.END_OF_MIB_VIEW} <= kinds
    assert count > 3000


def test_real_get_answers_with_exceptions_decode_the_same(agent: Snmpsim) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(10)
    asked = [(1, 3, 6, 1, 2, 1, 1, 1, 0), (1, 3, 6, 1, 2, 1, 1, 9, 9, 9), (1, 3, 6, 1, 4, 1, 318)]
    try:
        for version in (w.V1, w.V2C):
            req = w.encode_message(version, b"apc-8641", w.GET, 77, w.request_varbinds(asked))
            result = same_decoding(exchange(sock, agent.port, req))
            assert result[0] == "ok" and result[1].request_id == 77
    finally:
        sock.close()
    assert {t for _, t, _ in result[1].varbinds} & w.EXCEPTIONS  # v2c: exceptions per var-bind


def test_known_vectors_and_their_damaged_forms_decode_the_same() -> None:
    for data in VECTORS:
        assert same_decoding(data)[0] == "ok"
        for cut in range(len(data)):  # every truncation, every one-byte change
            same_decoding(data[:cut])
            for byte in (0x00, 0x1F, 0x7F, 0x80, 0x81, 0x84, 0x85, 0xFF):
                same_decoding(data[:cut] + bytes((byte,)) + data[cut + 1 :])
    assert same_decoding(bytearray(SNMPD_V2C_RESPONSE))[0] == "ok"  # bytes(data) first
    assert same_decoding(memoryview(NETSNMP_GET))[0] == "ok"


# -- hypothesis: messages built with every form BER allows --------------------------------------


@st.composite
def lengths(draw: st.DrawFn, n: int) -> bytes:
    """A length ``n`` in short form or, drawn, in long form of 1-4 bytes (non-minimal too)."""
    form = draw(st.integers(0, 4))
    need = (n.bit_length() + 7) // 8
    if form == 0 and n < 0x80:
        return bytes((n,))
    k = max(form, need, 1)
    return bytes((0x80 | k,)) + n.to_bytes(k, "big")


@st.composite
def tlv(draw: st.DrawFn, tag: int, content: bytes) -> bytes:
    return bytes((tag,)) + draw(lengths(len(content))) + content


@st.composite
def int_content(draw: st.DrawFn, lo: int, hi: int) -> bytes:
    """A two's complement content for a value in [lo, hi], padded (non-minimal) when drawn."""
    x = draw(st.integers(lo, hi))
    size = max(1, ((~x if x < 0 else x).bit_length()) // 8 + 1)
    size = draw(st.integers(size, max(size, 9)))
    return x.to_bytes(size, "big", signed=True)


arcs = st.lists(st.integers(0, 2**70), min_size=0, max_size=14).flatmap(
    lambda rest: st.tuples(st.integers(0, 2), st.integers(0, 39)).map(lambda h: (*h, *rest))
)
TAGS = sorted(w.TAG_NAMES)


@st.composite
def value_tlv(draw: st.DrawFn) -> bytes:
    tag = draw(st.sampled_from(TAGS + [0x09, 0x45, 0x47, 0x83, 0x1F]))
    if tag == w.INTEGER:
        content = draw(int_content(-(2**71), 2**71 - 1))
    elif tag in (w.COUNTER32, w.GAUGE32, w.TIMETICKS):
        content = draw(int_content(-(2**8), 2**33))
    elif tag == w.COUNTER64:
        content = draw(int_content(-(2**8), 2**65))
    elif tag == w.OBJECT_IDENTIFIER:
        content = w.encode_oid(draw(arcs))
    elif tag in (w.NULL, *w.EXCEPTIONS):
        content = draw(st.sampled_from([b"", b"", b"", b"\x00"]))
    elif tag == w.IP_ADDRESS:
        content = draw(st.binary(min_size=3, max_size=5))
    else:
        content = draw(st.binary(max_size=300))
    return draw(tlv(tag, content))


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    vbs = b""
    for _ in range(draw(st.integers(0, 30))):
        name = draw(tlv(w.OBJECT_IDENTIFIER, w.encode_oid(draw(arcs))))
        vbs += draw(tlv(w.SEQUENCE, name + draw(value_tlv())))
    pdu = draw(st.sampled_from([w.GET, w.GET_NEXT, w.RESPONSE, w.GET_BULK, 0xA3, 0xA4, 0xA8]))
    fields = [draw(tlv(w.INTEGER, draw(int_content(-(2**40), 2**40)))) for _ in range(3)]
    body = b"".join(fields) + draw(tlv(w.SEQUENCE, vbs))
    version = draw(tlv(w.INTEGER, draw(int_content(-1, 3))))
    community = draw(tlv(w.OCTET_STRING, draw(st.binary(max_size=40))))
    return bytes(draw(tlv(w.SEQUENCE, version + community + draw(tlv(pdu, body)))))


@given(messages())
@settings(max_examples=800, deadline=None)
def test_built_messages_decode_the_same(data: bytes) -> None:
    same_decoding(data)


@given(messages(), st.lists(st.tuples(st.integers(0), st.integers(0, 255)), max_size=4))
@settings(max_examples=800, deadline=None)
def test_damaged_built_messages_decode_the_same(data: bytes, hits: list[tuple[int, int]]) -> None:
    buf = bytearray(data)
    for at, byte in hits:  # changed, inserted, removed bytes and a cut
        at %= len(buf) + 1
        if byte < 64 and at < len(buf):
            del buf[at]
        elif byte < 128:
            buf.insert(at, byte)
        elif at < len(buf):
            buf[at] = byte
    same_decoding(bytes(buf))
    same_decoding(bytes(buf[: len(buf) // 2]))


@given(st.binary(max_size=300))
@settings(max_examples=800, deadline=None)
def test_random_bytes_decode_the_same(data: bytes) -> None:
    same_decoding(b"\x30" + bytes((len(data) % 256,)) + data)
    same_decoding(data)


def test_values_at_their_limits_decode_the_same() -> None:
    name = w._tlv(w.OBJECT_IDENTIFIER, w.encode_oid((1, 3, 6, 1, 2**64 + 5, 2**32, 0)))
    contents = [b"\x80" + b"\x00" * 8, b"\x7f" + b"\xff" * 8, b"\xff" * 9, b"\xfe" + b"\x00" * 8]
    contents += [b"\x00" * 9, b"\x00" + b"\xff" * 8, b"\x01" + b"\x00" * 8, b"\x80" + b"\xff" * 7]
    contents += [b"\x00\xff\xff\xff\xff", b"\x01\x00\x00\x00\x00", b"\xff", b"", b"\x00" * 10]
    decoded = 0
    for tag in (w.INTEGER, w.COUNTER32, w.GAUGE32, w.TIMETICKS, w.COUNTER64):
        for content in contents:
            vb = w._tlv(w.SEQUENCE, name + w._tlv(tag, content))
            data = w.encode_message(w.V2C, b"x", w.RESPONSE, -(2**31), vb)
            decoded += same_decoding(data)[0] == "ok"
    assert decoded == 21  # 11 INTEGERs (1-9 bytes), 2 per 32-bit type, 4 Counter64s
    got = w.decode_message(
        w.encode_message(
            w.V1, b"", w.RESPONSE, 1, w._tlv(w.SEQUENCE, name + b"\x02\x09\x80" + b"\x00" * 8)
        )
    )
    assert got.varbinds[0][2] == -(2**71)
    assert w.neutral(got.varbinds)[0][0] == (1, 3, 6, 1, 2**64 + 5, 2**32, 0)


def test_an_empty_var_bind_list_and_long_form_lengths_decode_the_same() -> None:
    empty = w.encode_message(w.V2C, b"public", w.RESPONSE, 5, b"")
    assert same_decoding(empty)[1].varbinds == []

    # every header in long form (0x84: four length bytes), as some agents send
    def long(tag: int, content: bytes) -> bytes:
        return bytes((tag, 0x84)) + len(content).to_bytes(4, "big") + content

    vb = long(w.SEQUENCE, long(w.OBJECT_IDENTIFIER, b"\x2b\x06") + long(w.GAUGE32, b"\x05"))
    body = long(w.INTEGER, b"\x01") + long(w.INTEGER, b"\x00") + long(w.INTEGER, b"\x00")
    msg = long(
        w.SEQUENCE,
        long(w.INTEGER, b"\x01")
        + long(w.OCTET_STRING, b"c")
        + long(w.RESPONSE, body + long(w.SEQUENCE, vb)),
    )
    assert same_decoding(msg)[1].varbinds == [(b"\x2b\x06", w.GAUGE32, 5)]
    huge = bytes((w.SEQUENCE, 0x84)) + (2**32 - 1).to_bytes(4, "big") + b"\x02\x01\x01"
    assert same_decoding(huge) == (
        "raise",
        w.WireError,
        "length runs past the end of its container",
    )
    assert same_decoding(b"\x30\x85\x00\x00\x00\x00\x01\x00") == (
        "raise",
        w.WireError,
        "bad long-form length",
    )


# -- neutral: the same list, the same errors ----------------------------------------------------


def test_neutral_gives_the_same_for_whatever_it_is_given() -> None:
    oid = w.encode_oid((1, 3, 6, 1, 4, 1, 318, 9))
    fresh = w.encode_oid((1, 3, 6, 1, 4, 1, 99_999_999, 2**40))
    cases: list[Any] = [
        [],
        [(oid, w.GAUGE32, 7), (fresh, w.OBJECT_IDENTIFIER, oid), (oid, w.END_OF_MIB_VIEW, None)],
        [(oid, tag, b"v") for tag in TAGS],
        ((oid, w.INTEGER, 1),),  # not a list
        iter([(oid, w.INTEGER, 1)]),
        [(oid, w.INTEGER, 1), [oid, w.INTEGER, 2]],  # a list item
        [(oid, 0x99, 1)],  # an unknown tag: KeyError
        [(oid, True, 1)],
        [(oid, 2**70, 1)],
        [(b"", w.INTEGER, 1)],  # not an OID: WireError
        [(b"\x2b\x86", w.INTEGER, 1)],
        [(oid, w.OBJECT_IDENTIFIER, b"\x80")],  # an OID value ending inside an arc
        [(oid, w.OBJECT_IDENTIFIER, "1.3")],
        [("1.3", w.INTEGER, 1)],
        [(oid, w.INTEGER)],
        None,
    ]
    for case in cases:
        items = list(case) if isinstance(case, list | tuple) else case
        w._oid_of_bytes.pop(fresh, None)  # a cache miss on the compiled side first
        c = outcome(C_NEUTRAL, items)
        w._oid_of_bytes.pop(fresh, None)
        if not isinstance(case, list | tuple):  # an iterator is used up: a new one
            items = iter([(oid, w.INTEGER, 1)]) if case is not None else None
        assert c == outcome(w._py_neutral, items), case
    assert C_NEUTRAL([(fresh, w.INTEGER, 3)]) == [
        ((1, 3, 6, 1, 4, 1, 99_999_999, 2**40), ("Integer32", 3))
    ]


# -- references ---------------------------------------------------------------------------------


def test_no_reference_is_leaked_or_lost() -> None:
    answer = walk_like_answer()
    msg = C_DECODE(answer)
    arcs = w._oid_of_bytes[msg.varbinds[0][0]]
    names = [w.NEUTRAL_NAMES[w.GAUGE32], w.NEUTRAL_NAMES[w.INTEGER]]
    head, gauge, tail = answer.rpartition(bytes((w.GAUGE32, 2, 0, 250)))
    bad = [answer[:-1], head + bytes((0x09, 2, 0, 250)) + tail, b"\x30\x03\x02\x01\x07"]
    bad.append(head + bytes((w.GAUGE32, 0x84, 0, 0, 0, 2, 0, 250)) + tail)  # the last one fails
    watched = [arcs, *names, w.WireError, w.Message, answer]
    before = [sys.getrefcount(x) for x in watched]
    for _ in range(2000):
        C_NEUTRAL(C_DECODE(answer).varbinds)
        for data in bad:
            with pytest.raises(w.WireError):
                C_DECODE(data)
        with pytest.raises(KeyError):
            C_NEUTRAL([(msg.varbinds[0][0], 0x99, 1)])
    assert [sys.getrefcount(x) for x in watched] == before


def walk_like_answer() -> bytes:
    """A GETBULK answer as an AP8641 gives for its outlets (25 var-binds)."""
    vbs = [
        (w.encode_oid((1, 3, 6, 1, 4, 1, 318, 1, 1, 26, 9, 4, 3, 1, 7, i)), w.GAUGE32, 10 * i)
        for i in range(1, 26)
    ]
    w.request_varbinds([w.oid_tuple(o) for o, _, _ in vbs])  # the OIDs known, as in a poll
    return w.encode_message(w.V2C, b"public", w.RESPONSE, 1234, w.encode_varbinds(vbs))


def test_rss_stays_flat_over_many_decodes() -> None:
    answer = walk_like_answer()
    bad = answer[:-3]

    def rss_kib() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024

    def run(n: int) -> None:
        for _ in range(n):
            C_NEUTRAL(C_DECODE(answer).varbinds)
            with contextlib.suppress(w.WireError):
                C_DECODE(bad)

    run(20_000)
    start = rss_kib()
    run(200_000)  # 5 million var-binds: one leaked object each would be hundreds of MB
    assert rss_kib() - start < 2048


# -- codec.Walk.feed's loop ---------------------------------------------------------------------


def fed(columns: list[w.Oid], answers: list[tuple[list[Any], list[Any]]], compiled: bool) -> Any:
    """A Walk of ``columns`` fed ``answers`` (batch, var-binds), by the compiled loop or the
    Python one: what it holds after."""
    saved = codec._walk_feed
    codec._walk_feed = _fastber.walk_feed if compiled else None
    try:
        walk = codec.Walk(columns, max_varbinds=60, uptime=False)
        for batch, vbs in answers:
            walk.feed(batch, vbs, 7)
        return walk.results, walk.cursor, walk.active, walk.looped
    finally:
        codec._walk_feed = saved


BASE = (1, 3, 6, 1, 4, 1, 318, 1, 1, 26, 9, 4, 3, 1)
names = st.sampled_from(["Integer32", "Gauge32", "OctetString", *codec.EXCEPTIONS])


@st.composite
def walk_answers(draw: st.DrawFn) -> tuple[list[w.Oid], list[tuple[list[Any], list[Any]]]]:
    columns = sorted(set(draw(st.lists(st.integers(1, 6), min_size=1, max_size=5))))
    cols: list[w.Oid] = [(*BASE, c) for c in columns]
    answers: list[tuple[list[Any], list[Any]]] = []
    for _ in range(draw(st.integers(1, 4))):
        batch = draw(st.lists(st.sampled_from(cols), min_size=1, max_size=5, unique=True))
        vbs = []
        for k in range(draw(st.integers(0, 40))):
            col = batch[k % len(batch)]
            # mostly the next rows of the column; else another column's, a step back, a
            # shorter OID, another subtree
            kind = draw(st.integers(0, 9))
            row = draw(st.integers(0, 30))
            if kind < 6:
                oid: tuple[int, ...] = (*col, row, *draw(st.lists(st.integers(0, 3), max_size=2)))
            elif kind == 6:
                oid = (*draw(st.sampled_from(cols)), row)
            elif kind == 7:
                oid = col[: draw(st.integers(1, len(col)))]
            elif kind == 8:
                oid = (*BASE[:-1], 2, 1, row)
            else:
                oid = (*col, 2**64 + row)
            vbs.append((oid, (draw(names), row)))
        answers.append((batch, vbs))
    return cols, answers


@given(walk_answers())
@settings(max_examples=800, deadline=None)
def test_walk_feed_compiled_holds_what_the_python_holds(case: Any) -> None:
    columns, answers = case
    assert fed(columns, answers, True) == fed(columns, answers, False)


def test_walk_feed_row_limit_and_unusual_arguments_are_the_pythons() -> None:
    col = (*BASE, 5)
    rows = [((*col, r), ("Integer32", r)) for r in range(1, 30)]
    saved = codec.MAX_ROWS
    codec.MAX_ROWS = 10
    try:
        limited = fed([col], [([col], rows)], True)
        assert limited == fed([col], [([col], rows)], False)
        assert len(limited[0][col]) == 10 and limited[2] == []
    finally:
        codec.MAX_ROWS = saved
    # not the plain types the compiled loop takes: it declines, the Python loop runs
    walk_feed: Any = _fastber.walk_feed
    assert not walk_feed(
        (col,), rows, 7, [{}], [col], [False], [], codec.EXCEPTIONS, 10
    )  # fmt: skip
    assert not walk_feed(
        [col], [([*col, 1], ("Integer32", 1))], 7, [{}], [col], [False], [], codec.EXCEPTIONS, 10
    )
    for vbs in ([((*col, 1), ["Integer32", 1])], [((*col, 1.0), ("Integer32", 1))], rows):
        assert fed([col], [([col], vbs)], True) == fed([col], [([col], vbs)], False)
    assert codec._walk_feed is _fastber.walk_feed or os.environ.get("DCIM_SNMP_DECODER") == "python"


def test_walk_feed_leaks_no_reference() -> None:
    col, other = (*BASE, 5), (*BASE, 6)
    val = ("Integer32", 12345678)
    vbs = [((*col, r), val) for r in range(1, 25)] + [((*other, 1), val)]
    before = [sys.getrefcount(x) for x in (col, val, vbs[3][0])]
    for _ in range(3000):
        walk = codec.Walk([col], max_varbinds=60, uptime=False)
        assert _fastber.walk_feed(
            [col], vbs, 7, [walk.results[col]], [col], [False], walk.looped, codec.EXCEPTIONS, 99
        )
        del walk
    assert [sys.getrefcount(x) for x in (col, val, vbs[3][0])] == before
