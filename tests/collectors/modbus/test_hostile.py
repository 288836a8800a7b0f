"""A misbehaving Modbus server (exception responses, garbage lengths, wrong transaction ids
and function codes, disconnects mid-frame, noise) beside a good device (the twin's server):
the scheduler polls both; the bad one's failures are counted by kind and logged once per
transition or at a limited rate, never as a traceback; the good one stays on cadence."""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import struct
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from collectors.modbus import logs
from collectors.modbus.poller import make_poller
from dcim.config import SiteConfig
from dcim.protocols import PollError
from dcim.reading import Reading
from dcim.scheduler import Scheduler
from dcim.twin.ports import free_ports
from dcim.twin.serve_modbus import ModbusTwin

INTERVAL_S = 0.5
RUN_S = 8.0
MODES = (
    "exception",  # FC | 0x80, server device failure
    "long_length",  # the MBAP header announces 250 bytes, 5 follow
    "byte_count",  # PDU byte count 200 for 2 registers
    "wrong_tid",  # a well-formed answer to another transaction
    "wrong_fc",  # an answer with another function code
    "half_frame",  # 3 bytes of a header, then the connection is closed
    "noise",  # 64 random bytes
    "zero_length",  # MBAP length 0
)


class HostileServer:
    """Modbus TCP on 127.0.0.1 answering each request with the next misbehaviour of MODES."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.served: Counter[str] = Counter()
        self._next: Iterator[str] = itertools.cycle(MODES)
        self._rng = random.Random(7)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for w in self._writers:
                w.close()
            if self._tasks:  # each connection's handler ends (not cancelled by the loop's end)
                await asyncio.wait(self._tasks, timeout=2)
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readexactly(7)
                tid, _pid, length, unit = struct.unpack(">HHHB", head)
                pdu = await reader.readexactly(length - 1)
                fc, count = pdu[0], struct.unpack(">H", pdu[3:5])[0]
                mode = next(self._next)
                self.served[mode] += 1
                regs = bytes(2 * count)
                out = {
                    "exception": struct.pack(">HHHBBB", tid, 0, 3, unit, fc | 0x80, 4),
                    "long_length": struct.pack(">HHHB", tid, 0, 250, unit) + bytes([fc, 4, 0, 1]),
                    "byte_count": struct.pack(">HHHBBB", tid, 0, 7, unit, fc, 200) + bytes(4),
                    "wrong_tid": struct.pack(">HHHBBB", (tid + 1) & 0xFFFF, 0, 3 + len(regs),
                                             unit, fc, len(regs)) + regs,
                    "wrong_fc": struct.pack(">HHHBBB", tid, 0, 3 + len(regs), unit, fc ^ 7,
                                            len(regs)) + regs,
                    "half_frame": head[:3],
                    "noise": self._rng.randbytes(64),
                    "zero_length": struct.pack(">HHHB", tid, 0, 0, unit),
                }[mode]  # fmt: skip
                writer.write(out)
                await writer.drain()
                if mode == "half_frame":
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()


def site(good_port: int, bad_port: int) -> SiteConfig:
    def dev(name: str, port: int) -> dict[str, Any]:
        return {"name": name, "protocol": "modbus", "profile": "energy_meter_3ph",
                "host": "127.0.0.1", "port": port, "modbus": {"unit_id": 1}}  # fmt: skip

    return SiteConfig.model_validate(
        {
            "site": {"name": "hostile"},
            "defaults": {"interval_s": INTERVAL_S, "timeout_s": 0.2, "retries": 0},
            "devices": [dev("good-meter", good_port), dev("bad-meter", bad_port)],
        }
    )


def test_a_hostile_modbus_server_is_counted_not_a_traceback_and_the_good_device_keeps_cadence(
    caplog: pytest.LogCaptureFixture,
) -> None:
    good_port = free_ports(2)
    bad_port = good_port + 1
    cfg = site(good_port, bad_port)
    readings: list[Reading] = []
    hostile = HostileServer(bad_port)
    values = {f.name: 1.0 for f in cfg.profiles()["energy_meter_3ph"].fields}

    async def main() -> None:
        twin = ModbusTwin(
            SiteConfig.model_validate({**cfg.model_dump(), "devices": [cfg.devices[0]]}),
            lambda _name: values,
        )
        await twin.start()
        await hostile.start()
        sched = Scheduler(cfg, [make_poller(cfg, d) for d in cfg.devices], readings.extend)
        try:
            await sched.start()
            await asyncio.sleep(RUN_S)
            await sched.stop()
        finally:
            for p in sched.pollers.values():
                await p.close()
            await hostile.stop()
            await twin.stop()

    caplog.set_level(logging.DEBUG)
    seen_before = logs.tracebacks.seen
    asyncio.run(main())

    polls = [r for r in readings if r.measurement == "dcim_poll"]
    health = {
        n: [r.fields for r in polls if r.tags["device"] == n] for n in ("good-meter", "bad-meter")
    }
    # The good device: every cycle read, on cadence.
    good = health["good-meter"]
    assert len(good) >= RUN_S / INTERVAL_S - 2, len(good)
    assert all(h["up"] == 1 for h in good), [h["error"] for h in good if not h["up"]]
    assert max(float(h["late_s"]) for h in good) < INTERVAL_S / 2
    # The hostile one: each misbehaviour was served, each failure is a counted gap.
    assert set(hostile.served) == set(MODES), hostile.served
    bad = health["bad-meter"]
    kinds = Counter(h["error"] for h in bad if not h["up"])
    assert len(bad) >= RUN_S / INTERVAL_S - 2 and sum(kinds.values()) == len(bad), kinds
    assert set(kinds) <= {"protocol", "timeout", "refused", "decode"}, kinds
    # The log: no traceback, and a bounded number of lines whatever the number of polls.
    assert not [r for r in caplog.records if r.exc_info], [
        (r.name, r.getMessage()) for r in caplog.records if r.exc_info
    ]
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(noisy) <= 8, [(r.name, r.getMessage()) for r in noisy]
    assert logs.tracebacks.seen - seen_before >= 2  # undecodable answers, reported...
    undecodable = [r for r in noisy if r.name == "asyncio"]  # ... at most once a minute
    assert len(undecodable) <= 1 and all(
        "could not be decoded" in r.getMessage() for r in undecodable
    )


# The kind each misbehaviour fails a poll with: an answer that is no answer to the request is
# dropped by pymodbus (or closes the connection), so the request times out.
KIND = {m: "timeout" for m in MODES} | {"exception": "protocol", "wrong_fc": "protocol"}


@pytest.mark.parametrize("mode", MODES)
def test_each_misbehaviour_is_a_failed_poll_of_its_kind(
    mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_ports(1)
    cfg = site(port, port)
    hostile = HostileServer(port)
    hostile._next = itertools.repeat(mode)

    async def main() -> list[str]:
        await hostile.start()
        poller = make_poller(cfg, cfg.devices[1])
        out = []
        try:
            for _ in range(3):
                try:
                    await poller.poll()
                    out.append("")
                except PollError as exc:
                    out.append(f"{exc.kind}: {exc}")
        finally:
            await poller.close()
            await hostile.stop()
        return out

    caplog.set_level(logging.DEBUG)
    got = asyncio.run(main())
    assert not [r for r in caplog.records if r.exc_info]
    assert [g.split(":")[0] for g in got] == [KIND[mode]] * 3, got
    if mode == "wrong_fc":  # pymodbus checks the ids, not the function code: the poller does
        assert "answer with function code 4 to FC 3" in got[0]
