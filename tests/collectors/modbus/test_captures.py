"""Every Modbus profile against a register dump of a real device model of its kind.

Each ``tests/captures/modbus/<profile>/`` holds ``dump.csv`` (the registers), ``config.yaml``
(the device(s) as a site would configure them) and ``expected.lp`` (what the collector must
store). The dump is loaded into pymodbus's own server (``SimDevice``/``SimData``: another
implementation than the twin's), the collector polls it through the profile, and the line
protocol at the capture time must equal ``expected.lp``. libmodbus' ``mbpoll`` then reads the
same registers from the same server.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import struct
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from collectors.modbus.options import ModbusOptions
from collectors.modbus.poller import make_poller
from dcim.config import SiteConfig, parse_config
from dcim.storage.lineprotocol import encode
from dcim.twin.ports import free_port
from tests.captures.modbus.build import CAPTURE_TIME_NS

CAPTURES = Path(__file__).resolve().parents[2] / "captures" / "modbus"
PROFILES = sorted(p.name for p in CAPTURES.iterdir() if (p / "dump.csv").exists())
TABLES = ("coil", "discrete", "holding", "input")  # SimDevice's tuple order
LINE = re.compile(r"^\[(\d+)\]:\s+(\S+)", re.M)

Dump = dict[int, dict[str, dict[int, int]]]  # unit -> table -> address -> register (or bit)


def load_dump(path: Path) -> Dump:
    """``dump.csv``: ``#`` header lines, then ``unit,table,address,hex,note`` (the note is the
    rest of the line and may hold commas)."""
    out: Dump = defaultdict(lambda: defaultdict(dict))
    lines = [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines[0] == "unit,table,address,hex,note", path
    for ln in lines[1:]:
        unit, table, address, word, _note = ln.split(",", 4)
        assert table in TABLES, ln
        out[int(unit)][table][int(address)] = int(word, 16)
    return out


def runs(regs: dict[int, int], limit: int = 125) -> list[tuple[int, list[int]]]:
    """Contiguous address runs (at most ``limit`` long) as (start, values)."""
    out: list[tuple[int, list[int]]] = []
    for addr in sorted(regs):
        if out and out[-1][0] + len(out[-1][1]) == addr and len(out[-1][1]) < limit:
            out[-1][1].append(regs[addr])
        else:
            out.append((addr, [regs[addr]]))
    return out


@dataclass
class Requests:
    """What the server was asked: (unit, function code, address, count)."""

    seen: list[tuple[int, int, int, int]] = field(default_factory=list)


def sim_devices(dump: Dump, requests: Requests) -> list[SimDevice]:
    """One SimDevice per unit with separate tables (coils and discrete inputs addressed per
    bit); addresses not in the dump answer exception 02, as on the real device."""
    devices = []
    for unit, tables in sorted(dump.items()):

        async def action(fc: int, _start: int, address: int, count: int, *_: Any, u: int = unit):
            requests.seen.append((u, fc, address, count))
            return None

        blocks: list[list[SimData]] = []
        for table in TABLES:
            bits = table in ("coil", "discrete")
            regs = tables.get(table, {})
            if not regs:  # SimDevice wants every table; one unused bit/register far away
                regs = {65535: 0}
            blocks.append(
                [
                    SimData(start, values=[bool(v) for v in vals], datatype=DataType.BITS)
                    if bits
                    else SimData(start, values=vals, datatype=DataType.REGISTERS)
                    for start, vals in runs(regs, limit=65536)
                ]
            )
        devices.append(SimDevice(id=unit, simdata=tuple(blocks), action=action))  # type: ignore[arg-type]
    return devices


@contextlib.asynccontextmanager
async def serve(dump: Dump, requests: Requests | None = None) -> AsyncIterator[int]:
    """A pymodbus Modbus TCP server on 127.0.0.1 holding ``dump``; yields its port."""
    port = free_port()
    server = ModbusTcpServer(
        context=sim_devices(dump, requests or Requests()), address=("127.0.0.1", port)
    )
    task = asyncio.create_task(server.serve_forever())
    try:
        for _ in range(100):
            try:
                _r, w = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.02)
                continue
            w.close()
            break
        yield port
    finally:
        await server.shutdown()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(task, 5)


def site(profile: str, port: int, **modbus: Any) -> SiteConfig:
    doc = yaml.safe_load((CAPTURES / profile / "config.yaml").read_text())
    for dev in doc["devices"]:
        dev["port"] = port
        if modbus:
            dev["modbus"] = {**(dev.get("modbus") or {}), **modbus}
    return parse_config(yaml.safe_dump(doc), filename=f"{profile}/config.yaml")


async def poll_lines(cfg: SiteConfig) -> list[str]:
    lines = []
    for dev in cfg.devices:
        poller = make_poller(cfg, dev)
        try:
            for r in await poller.poll():
                r.time_ns = CAPTURE_TIME_NS
                lines.append(encode(r))
        finally:
            await poller.close()
    return lines


@pytest.mark.parametrize("profile", PROFILES)
def test_capture_decodes_to_the_golden_line_protocol(profile: str) -> None:
    dump = load_dump(CAPTURES / profile / "dump.csv")
    expected = (CAPTURES / profile / "expected.lp").read_text().splitlines()
    requests = Requests()

    async def go() -> list[str]:
        async with serve(dump, requests) as port:
            return await poll_lines(site(profile, port))

    assert asyncio.run(go()) == expected
    cfg = site(profile, 1)
    assert {fc for _u, fc, _a, _c in requests.seen} <= {1, 2, 3, 4}  # read function codes only
    for dev in cfg.devices:
        opts = dev.options_as(ModbusOptions)
        counts = [c for u, _fc, _a, c in requests.seen if u == opts.unit_id]
        assert counts and max(counts) <= opts.max_registers_per_request


def test_every_profile_has_a_capture() -> None:
    from dcim.profiles import load_profiles

    modbus = {n for n, p in load_profiles().items() if p.protocol == "modbus"}
    assert set(PROFILES) == modbus


# -- the per-device read options, seen from the server ----------------------------------------


def test_single_value_reads_send_one_request_per_value() -> None:
    dump = load_dump(CAPTURES / "plate_heat_exchanger" / "dump.csv")
    requests = Requests()

    async def go() -> None:
        async with serve(dump, requests) as port:
            assert await poll_lines(site("plate_heat_exchanger", port)) == (
                (CAPTURES / "plate_heat_exchanger" / "expected.lp").read_text().splitlines()
            )

    asyncio.run(go())
    assert sorted((a, c) for _u, _fc, a, c in requests.seen) == [
        (11200, 1), (11201, 1), (11202, 1), (11203, 1), (11210, 2), (11212, 1)
    ]  # fmt: skip


def test_register_limit_and_hole_limit_shape_the_requests() -> None:
    dump = load_dump(CAPTURES / "energy_meter_3ph" / "dump.csv")

    async def requests_for(**modbus: Any) -> list[tuple[int, int]]:
        requests = Requests()
        async with serve(dump, requests) as port:
            cfg = site("energy_meter_3ph", port, **modbus)
            cfg.devices.pop()  # unit 1 only
            lines = await poll_lines(cfg)
        assert len(lines) == 1 and "energy_wh_total=1234567890i" in lines[0]
        return [(a, c) for _u, _fc, a, c in requests.seen]

    async def go() -> None:
        # max_hole 10: the six groups of the profile apart
        assert await requests_for(max_hole=10) == [
            (2999, 6), (3027, 6), (3053, 8), (3083, 2), (3109, 2), (3203, 4)
        ]  # fmt: skip
        # a wide hole merges the float block, cut before a field that would pass 60 registers
        assert await requests_for(max_hole=100, max_registers_per_request=60) == [
            (2999, 60), (3059, 52), (3203, 4)
        ]  # fmt: skip
        assert await requests_for(single_value_reads=True) == [
            (a, 2) for a in (2999, 3001, 3003, 3027, 3029, 3031, 3053, 3055, 3057, 3059, 3083, 3109)
        ] + [(3203, 4)]

    asyncio.run(go())


def test_a_read_across_a_hole_of_the_map_loses_only_that_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The dry cooler's controller has no registers 104-109: with max_hole 7 the first read
    # (100..110) gets exception 02; the fields of the other requests are kept.
    dump = load_dump(CAPTURES / "dry_cooler" / "dump.csv")

    async def go() -> list[Any]:
        async with serve(dump) as port:
            cfg = site("dry_cooler", port, max_hole=7)
            poller = make_poller(cfg, cfg.devices[0])
            try:
                return await poller.poll()
            finally:
                await poller.close()

    [reading] = asyncio.run(go())
    assert reading.fields == {"power_w": 4250.0, "heat_rejected_w": 250000.5}
    assert any("illegal data address" in r.getMessage() for r in caplog.records)


# -- a third-party client reads the same ------------------------------------------------------

# profile -> (unit, table, address, mbpoll type, value mbpoll must print): one typed value
# per profile where mbpoll has the type (32-bit ints and floats, either word order).
TYPED: dict[str, list[tuple[int, str, int, str, float]]] = {
    "heat_meter_en1434": [(3, "input", 4, ":int", 521400), (3, "input", 12, ":int", 71234567)],
    "energy_meter_3ph": [
        (1, "holding", 3027, ":float:B", 231.4), (2, "holding", 3059, ":float:B", 38.0)
    ],
    "crah": [(1, "input", 10, ":float", 3500.25), (1, "input", 12, ":float", 80.5)],
    "dry_cooler": [(1, "holding", 120, ":int:B", 4250)],
    "heat_pump": [(1, "holding", 20, ":int", 160250), (1, "coil", 1, "", 1)],
    "plate_heat_exchanger": [(1, "holding", 11210, ":int:B", 3968)],
    "water_meter": [(1, "holding", 3000, ":float:B", 1.25)],
}  # fmt: skip


async def mbpoll(
    port: int, unit: int, table: str, start: int, count: int, kind: str
) -> dict[int, str]:
    exe = shutil.which("mbpoll")
    if exe is None:
        raise RuntimeError("mbpoll not found: install the Debian package 'mbpoll'")
    t = {"coil": "0", "discrete": "1", "input": "3", "holding": "4"}[table]
    big = kind.endswith(":B")
    args = [exe, "-m", "tcp", "-p", str(port), "-a", str(unit), "-0", "-1", "-o", "2"]
    args += ["-r", str(start), "-c", str(count), "-t", t + kind.removesuffix(":B")]
    args += ["-B"] if big else []
    proc = await asyncio.create_subprocess_exec(
        *args, "127.0.0.1", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, (args, out.decode(), err.decode())
    return {int(a): v for a, v in LINE.findall(out.decode())}


@pytest.mark.parametrize("profile", PROFILES)
def test_mbpoll_reads_the_dump_from_the_same_server(profile: str) -> None:
    dump = load_dump(CAPTURES / profile / "dump.csv")

    async def go() -> int:
        checked = 0
        async with serve(dump) as port:
            for unit, tables in dump.items():
                for table, regs in tables.items():
                    bits = table in ("coil", "discrete")
                    for start, vals in runs(regs):
                        got = await mbpoll(
                            port, unit, table, start, len(vals), "" if bits else ":hex"
                        )
                        assert [int(got[start + i], 0) for i in range(len(vals))] == vals, (
                            unit, table, start,
                        )  # fmt: skip
                        checked += len(vals)
            for unit, table, addr, kind, want in TYPED[profile]:
                got = await mbpoll(port, unit, table, addr, 1, kind)
                assert float(got[addr]) == pytest.approx(want, rel=1e-6), (unit, addr, kind)
                checked += 1
        return checked

    assert asyncio.run(go()) >= len(TYPED[profile]) + 1


# -- every table, type and layout, against the third-party server -----------------------------

ALL_TYPES = {
    "name": "all_types",
    "protocol": "modbus",
    "measurement": "all_types",
    "source": "test: one field per table, type and layout",
    "fields": [
        {"name": "i16_c", "address": 0, "type": "int16", "scale": 0.1, "offset": -40},
        {"name": "u16", "address": 1, "type": "uint16"},
        {"name": "i32_cdab", "address": 2, "type": "int32", "word_order": "little"},
        {"name": "u32_total", "kind": "counter", "address": 4, "type": "uint32"},
        {"name": "i64_total", "kind": "counter", "address": 6, "type": "int64"},
        {"name": "u64_total", "kind": "counter", "address": 10, "type": "uint64",
         "word_order": "little", "byte_order": "little"},
        {"name": "f32_badc", "table": "input", "address": 0, "type": "float32",
         "byte_order": "little"},
        {"name": "f64_dcba", "table": "input", "address": 2, "type": "float64",
         "word_order": "little", "byte_order": "little"},
        {"name": "serial", "kind": "info", "table": "input", "address": 6, "type": "string",
         "length": 4},
        {"name": "running", "kind": "state", "table": "coil", "address": 5, "type": "bool"},
        {"name": "alarm", "kind": "state", "table": "discrete", "address": 3, "type": "bool"},
    ],
}  # fmt: skip


def test_every_table_type_and_layout_from_pymodbus_server(tmp_path: Path) -> None:
    from tests.captures.modbus.build import words

    (tmp_path / "all_types.yaml").write_text(yaml.safe_dump(ALL_TYPES))
    regs: dict[str, dict[int, int]] = {"holding": {}, "input": {}, "coil": {}, "discrete": {}}

    def put(table: str, address: int, ws: list[int]) -> None:
        regs[table].update({address + i: w for i, w in enumerate(ws)})

    put("holding", 0, words("i16", -123))
    put("holding", 1, words("u16", 65535))
    put("holding", 2, words("i32_cdab", -123456))
    put("holding", 4, words("u32", 4_000_000_000))
    put("holding", 6, words("i64", -9_000_000_000_000_000))
    u64 = (1_234_567_890_123_456_789).to_bytes(8, "big")  # words reversed, bytes swapped: DCBA
    put("holding", 10, [int.from_bytes(u64[i : i + 2][::-1], "big") for i in (6, 4, 2, 0)])
    put("input", 0, words("f32_badc", 21.5))
    f64 = struct.pack(">d", 1234.5678)
    put("input", 2, [int.from_bytes(f64[i : i + 2][::-1], "big") for i in (6, 4, 2, 0)])
    text = b"SN-7123\x00"
    put("input", 6, [int.from_bytes(text[i : i + 2], "big") for i in range(0, 8, 2)])
    regs["coil"].update({4: 0, 5: 1, 6: 0})
    regs["discrete"].update({3: 1})
    dump: Dump = {7: regs}
    doc = {
        "site": {"name": "t"},
        "profile_dirs": [str(tmp_path)],
        "devices": [{"name": "dev", "protocol": "modbus", "profile": "all_types",
                     "host": "127.0.0.1", "port": 1, "modbus": {"unit_id": 7}}],
    }  # fmt: skip
    requests = Requests()

    async def go() -> list[str]:
        async with serve(dump, requests) as port:
            doc["devices"][0]["port"] = port  # type: ignore[index]
            return await poll_lines(parse_config(yaml.safe_dump(doc)))

    [line] = asyncio.run(go())
    assert line == (
        "all_types,device=dev,site=t i16_c=-52.3,u16=65535.0,i32_cdab=-123456.0,"
        "u32_total=4000000000i,i64_total=-9000000000000000i,u64_total=1234567890123456789i,"
        f'f32_badc=21.5,f64_dcba=1234.5678,serial="SN-7123",running=1i,alarm=1i {CAPTURE_TIME_NS}'
    )
    assert sorted({fc for _u, fc, _a, _c in requests.seen}) == [1, 2, 3, 4]
