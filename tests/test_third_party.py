"""Another implementation reads the twin the same: net-snmp's snmpget and libmodbus' mbpoll
read the same values as our collectors, on the whole reference-site twin (clock frozen so
both reads see the same instant)."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest

from collectors.modbus.options import ModbusOptions
from collectors.modbus.profile import ModbusProfile
from collectors.snmp.profile import SnmpProfile
from dcim.config import SiteConfig
from dcim.protocols import build_pollers
from dcim.testing.servers import free_ports, need
from dcim.twin.runner import TwinRunner, TwinThread
from dcim.twin.site import paris_chapelle


@pytest.fixture
def frozen_twin():  # type: ignore[no-untyped-def]
    doc = paris_chapelle(
        racks=2,
        servers_per_rack=2,
        snmp_base_port=free_ports(12, kind=2),
        modbus_base_port=free_ports(16),
    )
    doc["devices"] = [d for d in doc["devices"] if d["protocol"] != "mqtt"]
    cfg = SiteConfig.model_validate(doc)
    t = 1_790_000_000.0
    runner = TwinRunner(cfg, t0=t - 3600, clock=lambda: t)
    with TwinThread(runner):
        yield cfg


def _poll_all(cfg: SiteConfig) -> dict[str, dict[str, float]]:
    """Each device's own reading (the profile's measurement and the device's tags, not the
    per-row readings of its tables)."""
    profiles = cfg.profiles()

    async def go() -> dict[str, dict[str, float]]:
        out = {}
        for p in build_pollers(cfg):
            readings = await p.poll()
            dev = p.device
            out[dev.name] = {
                k: v
                for r in readings
                if r.measurement == profiles[dev.profile].measurement and r.tags == cfg.tags_of(dev)
                for k, v in r.fields.items()
            }
            await p.close()
        return out

    return asyncio.run(go())


def test_snmpget_and_mbpoll_read_what_the_collectors_store(
    frozen_twin: SiteConfig, tmp_path: Path
) -> None:
    cfg = frozen_twin
    # net-snmp: no MIBs, no persistent state outside the temp dir.
    env = {
        **os.environ,
        "MIBS": "",
        "SNMP_PERSISTENT_DIR": str(tmp_path),
        "SNMPCONFPATH": str(tmp_path),
    }
    ours = _poll_all(cfg)
    profiles = cfg.profiles()
    snmpget, mbpoll = need("snmpget", "snmp"), need("mbpoll", "mbpoll")
    checked = 0
    for dev in cfg.devices:
        prof = profiles[dev.profile]
        if isinstance(prof, SnmpProfile):
            oids = [f.oid for f in prof.fields]
            out = subprocess.run(
                [
                    snmpget,
                    "-v2c",
                    "-c",
                    "public",
                    "-On",
                    "-Oqv",
                    "-t",
                    "2",
                    f"127.0.0.1:{dev.port}",
                    *oids,
                ],
                capture_output=True,
                text=True,
                check=True,
                env=env,
            )
            for f, raw in zip(prof.fields, out.stdout.split(), strict=True):
                value = (
                    f.map.get(int(raw), float(raw)) if f.map else float(raw) * f.scale + f.offset
                )
                assert ours[dev.name][f.name] == pytest.approx(value), (dev.name, f.name)
                checked += 1
        elif isinstance(prof, ModbusProfile):
            unit_id = dev.options_as(ModbusOptions).unit_id
            for f in prof.fields:
                if f.type not in ("uint16", "int16") or (f.table or prof.modbus.table) != "holding":
                    continue
                out = subprocess.run(
                    [
                        mbpoll,
                        "-m",
                        "tcp",
                        "-p",
                        str(dev.port),
                        "-a",
                        str(unit_id),
                        "-0",
                        "-r",
                        str(f.address),
                        "-c",
                        "1",
                        "-t",
                        "4",
                        "-1",
                        "-q",
                        "127.0.0.1",
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                raw = (
                    int(out.stdout.split("]:")[-1].split()[0])
                    if "]:" in out.stdout
                    else int(out.stdout.split()[-1])
                )
                if f.type == "int16" and raw >= 32768:
                    raw -= 65536
                assert ours[dev.name][f.name] == pytest.approx(raw * f.scale + f.offset), (
                    dev.name,
                    f.name,
                    out.stdout,
                )
                checked += 1
    assert checked > 50
