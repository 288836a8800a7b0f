"""Hostile devices beside good ones, through the real collector (scheduler, pipeline and its
screen, spool, embedded store): a Modbus server serving garbage registers (seeded random
words, a disconnected heat-meter sensor's -32768, floats that decode to NaN, infinities
and 10^38) and an SNMP agent answering nonsense types (text, an IpAddress, an OID and binary
junk where integers belong, Counter64 and INTEGER extremes). No traceback in the log, every
refusal counted with its reason, nothing implausible stored, and the good devices polled on
their cadence all along."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from dcim.config import SiteConfig
from dcim.plausible import default_range
from dcim.runtime import Collector
from tests.collectors.modbus.test_captures import CAPTURES as MODBUS
from tests.collectors.modbus.test_captures import Dump, load_dump, serve
from tests.collectors.snmpsim_server import start_snmpsim

SNMP = Path(__file__).resolve().parents[1] / "captures" / "snmp"
SECONDS = 4.5
INTERVAL = 1.0


def garbage(dump: Dump, seed: int) -> Dump:
    """The same addresses, every register a random word (seeded)."""
    rnd = random.Random(seed)
    return {
        unit: {table: {a: rnd.randrange(65536) for a in regs} for table, regs in tables.items()}
        for unit, tables in dump.items()
    }


def hostile_heat_meter() -> Dump:
    dump = garbage(load_dump(MODBUS / "heat_meter_en1434" / "dump.csv"), seed=11)
    dump[3]["input"][8] = 0x8000  # supply sensor disconnected: -327.68 degC
    dump[3]["input"][9] = 0x7FFF  # return: overflow code
    return dump


def hostile_meter() -> Dump:
    dump = garbage(load_dump(MODBUS / "energy_meter_3ph" / "dump.csv"), seed=12)
    regs = dump[1]["holding"]
    first = min(regs)
    # float32 NaN, +inf, 3.4e38 in the first three values (I1, I2, I3)
    for k, (hi, lo) in enumerate([(0x7FC0, 0), (0x7F80, 0), (0x7F7F, 0xFFFF)]):
        regs[first + 2 * k], regs[first + 2 * k + 1] = hi, lo
    return dump


def device(name: str, profile: str, proto: str, port: int, **extra: Any) -> dict[str, Any]:
    return {"name": name, "protocol": proto, "profile": profile, "host": "127.0.0.1",
            "port": port, **extra}  # fmt: skip


def site(tmp: Path, snmp_port: int, hostile_port: int, good_port: int) -> SiteConfig:
    snmp = {"snmp": {"community": {"value": "ups_nonsense"}}}
    good_snmp = {"snmp": {"community": {"value": "ups_good"}}}
    return SiteConfig.model_validate(
        {
            "site": {"name": "hostile"},
            "defaults": {"interval_s": INTERVAL, "timeout_s": 0.5, "retries": 0},
            "storage": {
                "spool_dir": str(tmp / "spool"),
                "sink": {"type": "embedded", "path": str(tmp / "store.sqlite")},
            },
            "devices": [
                device("ups-bad", "ups_rfc1628", "snmp", snmp_port, **snmp),
                device("ups-good", "ups_rfc1628", "snmp", snmp_port, **good_snmp),
                device(
                    "hm-bad",
                    "heat_meter_en1434",
                    "modbus",
                    hostile_port,
                    modbus={"unit_id": 3, "max_registers_per_request": 16},
                ),
                device(
                    "meter-bad", "energy_meter_3ph", "modbus", hostile_port, modbus={"unit_id": 1}
                ),
                device(
                    "hx-good",
                    "plate_heat_exchanger",
                    "modbus",
                    good_port,
                    modbus={"single_value_reads": True},
                ),
            ],
        }  # fmt: skip
    )


def stored(path: Path) -> list[tuple[str, dict[str, str], str, Any, int]]:
    con = sqlite3.connect(path)
    try:
        rows = con.execute(
            "SELECT s.measurement, s.tags, f.name, p.value, p.time_ns FROM point p "
            "JOIN series s ON s.id = p.series_id JOIN field_key f ON f.id = p.field_id"
        ).fetchall()
    finally:
        con.close()
    return [(m, json.loads(t), f, v, ns) for m, t, f, v, ns in rows]


def test_hostile_devices_beside_good_ones(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    sim = start_snmpsim(
        {
            "ups_nonsense": SNMP / "quirks" / "ups_nonsense.snmprec",
            "ups_good": SNMP / "ups_rfc1628" / "device.snmprec",
        }
    )
    hostile: Dump = {**hostile_meter(), **hostile_heat_meter()}
    good = load_dump(MODBUS / "plate_heat_exchanger" / "dump.csv")

    async def go() -> Collector:
        async with serve(hostile) as bad_port, serve(good) as good_port:
            cfg = site(tmp_path, sim.port, bad_port, good_port)
            col = Collector(cfg)
            await col.start()
            try:
                await asyncio.sleep(SECONDS)
            finally:
                await col.stop()
            return col

    try:
        with caplog.at_level(logging.DEBUG):
            col = asyncio.run(go())
    finally:
        sim.cleanup()
    col.store.close()

    # no traceback anywhere in the log
    assert not [r for r in caplog.records if r.exc_info], [
        r.getMessage() for r in caplog.records if r.exc_info
    ]
    assert "Traceback" not in caplog.text

    # every refusal counted with its reason
    totals = col.pipeline.screen.totals() if col.pipeline.screen else {}
    by_device: dict[str, set[str]] = {}
    for (dev, _field, reason), n in totals.items():
        assert n >= 1
        by_device.setdefault(dev, set()).add(reason)
    assert by_device.get("ups-bad", set()) >= {"above_range", "below_range"}, by_device
    assert "no_value" in by_device.get("hm-bad", set()), by_device
    assert by_device.get("meter-bad"), by_device
    assert ("hm-bad", "supply_temp_c", "no_value") in totals
    assert "ups-good" not in by_device and "hx-good" not in by_device, by_device

    points = stored(tmp_path / "store.sqlite")
    profiles = col.cfg.profiles()
    data = [p for p in points if p[0] not in ("dcim_poll", "dcim_spool", "dcim_collector")]
    assert {p[1]["device"] for p in data} >= {"ups-good", "hx-good", "ups-bad"}
    for meas, tags, name, value, _ in data:
        spec = {
            (m, f.name): f
            for m, f in profiles[col.cfg.device(tags["device"]).profile].field_specs()
        }[(meas, name)]
        if isinstance(value, str):
            continue
        lo, hi = spec.range or default_range(name) or (-math.inf, math.inf)
        assert lo <= value <= hi and math.isfinite(value), (tags["device"], meas, name, value)
        assert value not in [r * spec.scale + spec.offset for r in spec.no_value]

    # the dcim_poll rows say how many values each cycle refused and why
    def poll_rows(dev: str) -> dict[int, dict[str, Any]]:
        rows: dict[int, dict[str, Any]] = {}
        for m, t, f, v, ns in points:
            if m == "dcim_poll" and t.get("device") == dev:
                rows.setdefault(ns, {})[f] = v
        return rows

    bad = poll_rows("hm-bad")
    assert bad and all(r["refused"] >= 1 and r["refused_reason"] for r in bad.values()), bad
    # the good devices: every cycle up, on cadence, nothing refused
    for dev in ("ups-good", "hx-good"):
        rows = poll_rows(dev)
        assert len(rows) >= int(SECONDS / INTERVAL) - 1, (dev, len(rows))
        assert all(r["up"] == 1 and r["refused"] == 0 for r in rows.values()), (dev, rows)
        assert max(r["late_s"] for r in rows.values()) < 0.5, (dev, rows)
        times = sorted(rows)
        gaps = [(b - a) / 1e9 for a, b in zip(times, times[1:], strict=False)]
        assert all(0.5 < g < 1.5 for g in gaps), (dev, gaps)
