"""The twin's Modbus TCP servers, checked with a third-party client (libmodbus' mbpoll) and
raw MBAP frames for the protocol's corner cases."""

from __future__ import annotations

import asyncio
import re
import shutil
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from collectors.modbus.codec import FieldCodec, field_codecs
from collectors.modbus.options import ModbusOptions
from dcim.config import SiteConfig
from dcim.twin.serve_modbus import ModbusTwin
from tests.collectors.modbus.test_poller import fake_values, site, tolerance

LINE = re.compile(r"^\[(\d+)\]:\s+(\S+)", re.M)


def run(cfg: SiteConfig, body: Callable[[ModbusTwin], Awaitable[Any]], values: Any = None) -> Any:
    async def go() -> Any:
        twin = ModbusTwin(cfg, values or fake_values(cfg))
        await twin.start()
        try:
            return await body(twin)
        finally:
            await twin.stop()

    return asyncio.run(go())


async def mbpoll(
    port: int, unit: int, table: str, start: int, count: int, kind: str = ""
) -> dict[int, str]:
    """``mbpoll`` (0-based addresses, one poll): {address: printed value}."""
    exe = shutil.which("mbpoll")
    if exe is None:
        raise RuntimeError("mbpoll not found: install the Debian package 'mbpoll'")
    t = {"coil": "0", "discrete": "1", "input": "3", "holding": "4"}[table] + kind
    args = [
        exe,
        "-m",
        "tcp",
        "-p",
        str(port),
        "-a",
        str(unit),
        "-0",
        "-r",
        str(start),
        "-c",
        str(count),
        "-t",
        t,
        "-1",
        "-o",
        "2",
    ]
    if kind and kind != ":hex":
        args.append("-B")  # the profiles' 32-bit values with big-endian word order
    proc = await asyncio.create_subprocess_exec(
        *args, "127.0.0.1", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, (args, out.decode(), err.decode())
    return {int(a): v for a, v in LINE.findall(out.decode())}


def test_mbpoll_reads_the_same_registers_as_the_codec_encodes() -> None:
    cfg = site()
    values = fake_values(cfg)
    profiles = cfg.profiles()

    async def check(dev: Any, f: FieldCodec) -> int:
        assert dev.port is not None
        want = f.encode(values(dev.name)[f.name])
        assert want is not None
        unit = dev.options_as(ModbusOptions).unit_id
        # raw 16-bit words, whatever the type and order
        got = await mbpoll(dev.port, unit, f.table, f.address, f.count)
        assert [int(got[f.address + i]) for i in range(f.count)] == want, (dev.name, f.name)
        if not (f.count == 2 and f.word_order == "big" and f.byte_order == "big"):
            return 1
        kind = ":float" if f.type == "float32" else ":int"
        got = await mbpoll(dev.port, unit, f.table, f.address, 1, kind)
        want_value = values(dev.name)[f.name]
        # mbpoll prints floats with 6 significant digits (%g)
        slack = abs(want_value) * 1e-5 if f.type == "float32" else tolerance(f, want_value)
        assert _as_value(f, got[f.address]) == pytest.approx(want_value, abs=slack), (
            dev.name,
            f.name,
        )
        return 2

    async def body(twin: ModbusTwin) -> int:
        # one mbpoll process per field, a few at a time (each connects, reads once, exits)
        slots = asyncio.Semaphore(8)

        async def one(dev: Any, f: FieldCodec) -> int:
            async with slots:
                return await check(dev, f)

        jobs = [one(d, f) for d in cfg.devices for f in field_codecs(profiles[d.profile])]
        return sum(await asyncio.gather(*jobs))

    assert run(cfg, body) > 60


def _as_value(f: FieldCodec, text: str) -> float:
    raw = float(text)
    if f.type == "uint32" and raw < 0:
        raw += 2**32  # mbpoll prints 32-bit ints signed
    return raw * f.scale + f.offset


def test_mbpoll_float_little_word_order_and_coils() -> None:
    cfg = site()
    values = fake_values(cfg)
    crah = cfg.device("crah-2")  # float32 CDAB input registers: mbpoll's default word order
    hp = cfg.device("hp-2")

    async def body(twin: ModbusTwin) -> None:
        assert crah.port and hp.port
        exe = shutil.which("mbpoll") or "mbpoll"
        proc = await asyncio.create_subprocess_exec(
            exe,
            "-m",
            "tcp",
            "-p",
            str(crah.port),
            "-a",
            "1",
            "-0",
            "-r",
            "10",
            "-c",
            "1",
            "-t",
            "3:float",
            "-1",
            "127.0.0.1",
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await proc.communicate()
        assert float(dict(LINE.findall(out.decode()))["10"]) == pytest.approx(
            values("crah-2")["fan_power_w"], rel=1e-5
        )
        coil = await mbpoll(hp.port, 1, "coil", 1, 1)
        assert int(coil[1]) == values("hp-2")["running"]

    run(cfg, body)


async def _request(
    port: int, unit: int, pdu: bytes, tid: int = 7, timeout: float = 0.5
) -> bytes | None:
    """One raw Modbus TCP request; the response PDU, or None when nothing came back."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu)
        await writer.drain()
        try:
            head = await asyncio.wait_for(reader.readexactly(7), timeout)
        except TimeoutError:
            return None
        rtid, proto, length, runit = struct.unpack(">HHHB", head)
        assert (rtid, proto, runit) == (tid, 0, unit)
        return await reader.readexactly(length - 1)
    finally:
        writer.close()


def test_protocol_errors_like_a_real_device() -> None:
    cfg = site()
    hx = cfg.device("hx-1")  # holding registers 11200..11212
    gw = cfg.device("meter-incomer")

    async def body(twin: ModbusTwin) -> None:
        assert hx.port and gw.port
        ok = await _request(hx.port, 1, struct.pack(">BHH", 3, 11200, 13))
        assert ok is not None and ok[:2] == bytes((3, 26))
        # writes are refused: illegal function, and the value is unchanged
        assert await _request(hx.port, 1, struct.pack(">BHH", 6, 11200, 999)) == bytes((0x86, 1))
        assert await _request(
            hx.port, 1, struct.pack(">BHHB", 16, 11200, 1, 2) + b"\x00\x01"
        ) == bytes((0x90, 1))
        assert await _request(hx.port, 1, bytes((0x2B, 0x0E, 1, 0))) == bytes((0xAB, 1))
        assert await _request(hx.port, 1, struct.pack(">BHH", 3, 11200, 13)) == ok
        # outside the register map; the wrong table; too many registers
        assert await _request(hx.port, 1, struct.pack(">BHH", 3, 11190, 12)) == bytes((0x83, 2))
        assert await _request(hx.port, 1, struct.pack(">BHH", 3, 11212, 2)) == bytes((0x83, 2))
        assert await _request(hx.port, 1, struct.pack(">BHH", 4, 11200, 1)) == bytes((0x84, 2))
        assert await _request(hx.port, 1, struct.pack(">BHH", 3, 11200, 126)) == bytes((0x83, 3))
        # unknown unit: no answer, like a gateway with no such device on its line
        assert await _request(gw.port, 42, struct.pack(">BHH", 3, 2999, 2), timeout=0.3) is None

    run(cfg, body)


def test_unreachable_unit_is_silent_while_others_on_the_connection_answer() -> None:
    cfg = site()
    gw = cfg.device("meter-incomer")

    async def body(twin: ModbusTwin) -> None:
        assert gw.port
        twin.set_unreachable("meter-ups-a-out")  # unit 2
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        for tid, unit in ((1, 2), (2, 3), (3, 1)):
            writer.write(struct.pack(">HHHBBHH", tid, 0, 6, unit, 3, 3203, 4))
        await writer.drain()
        got = []
        for _ in range(2):
            tid, _, length, unit = struct.unpack(
                ">HHHB", await asyncio.wait_for(reader.readexactly(7), 2)
            )
            await reader.readexactly(length - 1)
            got.append((tid, unit))
        assert got == [(2, 3), (3, 1)]
        twin.set_unreachable("meter-ups-a-out", False)
        writer.write(struct.pack(">HHHBBHH", 4, 0, 6, 2, 3, 3203, 4))
        tid, _, _, unit = struct.unpack(">HHHB", await asyncio.wait_for(reader.readexactly(7), 2))
        assert (tid, unit) == (4, 2)
        writer.close()

    run(cfg, body)


def test_values_failing_is_a_device_failure() -> None:
    cfg = site()
    wm = cfg.device("wm-1")

    def broken(device: str) -> dict[str, float]:
        raise RuntimeError("model diverged")

    async def body(twin: ModbusTwin) -> None:
        assert wm.port
        assert await _request(wm.port, 1, struct.pack(">BHH", 3, 3016, 4)) == bytes((0x83, 4))

    run(cfg, body, broken)


def test_one_server_per_endpoint() -> None:
    cfg = site()
    twin = ModbusTwin(cfg, fake_values(cfg))
    endpoints = {(d.host, d.port) for d in cfg.devices if d.protocol == "modbus"}
    assert set(twin.endpoints) == endpoints and len(twin.endpoints) == len(endpoints)
