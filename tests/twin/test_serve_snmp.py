"""The twin's SNMP agents, read by net-snmp's command-line tools (a third-party client)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from pysnmp.proto import rfc1902

from collectors.snmp.profile import SnmpField
from dcim.config import SiteConfig
from dcim.twin.ports import free_ports
from dcim.twin.serve_snmp import SYS_DESCR, SYS_NAME, SYS_UPTIME, SnmpTwin, encode_value
from dcim.twin.site import paris_chapelle


def need(binary: str, package: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise RuntimeError(
            f"{binary} not found: install the Debian package {package!r} (see README)"
        )
    return path


@pytest.fixture
def site() -> SiteConfig:
    return SiteConfig.model_validate(
        paris_chapelle(
            racks=2, servers_per_rack=2, snmp_base_port=free_ports(10, kind=socket.SOCK_DGRAM)
        )
    )


@pytest.fixture
def netsnmp_env(tmp_path: Path) -> dict[str, str]:
    # No MIB loading, no system config, no state written under /var/lib/snmp.
    return dict(os.environ, MIBS="", SNMP_PERSISTENT_DIR=str(tmp_path), SNMPCONFPATH=str(tmp_path))


def values_for(cfg: SiteConfig) -> dict[str, dict[str, float | int]]:
    out: dict[str, dict[str, float | int]] = {}
    for i, d in enumerate(d for d in cfg.devices if d.protocol == "snmp"):
        if d.profile == "ups_rfc1628":
            out[d.name] = {
                "input_power_w": 40_000 + i,
                "output_power_w": 38_000 + i,
                "output_load_pct": 40 + i,
                "battery_charge_pct": 100,
                "battery_status": 2,
                "on_battery": i % 2,
                "battery_runtime_min": 30,
            }
        elif d.profile == "apc_rpdu2":
            out[d.name] = {
                "power_w": 4_120 + 10 * i,
                "energy_wh_total": 2**31 * 100 + 500 + 100 * i,
                "current_a": 9.87,
                "voltage_v": 229,
            }
        else:
            out[d.name] = {"inlet_temp_c": 22.46, "power_w": 301 + i}
    return out


async def netsnmp(env: dict[str, str], tool: str, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        need(tool, "snmp"),
        "-On",
        "-t",
        "0.5",
        "-r",
        "0",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    rc = proc.returncode or 0
    return rc, out.decode() + (err.decode() if rc else "")  # stderr: errors, and net-snmp chatter


def run_with_twin(cfg: SiteConfig, values: Any, body: Any) -> Any:
    async def go() -> Any:
        twin = SnmpTwin(cfg, values)
        await twin.start()
        try:
            return await body(twin)
        finally:
            await twin.stop()

    return asyncio.run(go())


def dotted(oid: tuple[int, ...]) -> str:
    return "." + ".".join(map(str, oid))


# -- encoding -------------------------------------------------------------------------------


def test_encoding_is_the_inverse_of_the_profile() -> None:
    f = SnmpField(name="t", oid="1.3", scale=0.1, snmp_type="Integer32")
    assert encode_value(f, 22.46) == rfc1902.Integer32(225)
    assert isinstance(encode_value(f, 22.46), rfc1902.Integer32)
    assert encode_value(SnmpField(name="o", oid="1.3", offset=-40, scale=0.5), 10.0) == 100
    wrap = SnmpField(name="c", oid="1.3", kind="counter", scale=100, snmp_type="Counter32")
    assert encode_value(wrap, (2**32 + 7) * 100) == rfc1902.Counter32(7)
    sat = SnmpField(name="i", oid="1.3", kind="counter", scale=100, snmp_type="Integer32")
    assert encode_value(sat, 2**31 * 100 + 500) == 2**31 - 1  # INTEGER saturates, no wrap
    assert encode_value(SnmpField(name="g", oid="1.3", snmp_type="Gauge32"), -5) == 0
    mapped = SnmpField(name="m", oid="1.3", kind="state", map={3: 0, 5: 1, 4: 0})
    assert encode_value(mapped, 0) == 3  # first code listed for the value
    assert encode_value(mapped, 1) == 5
    assert encode_value(mapped, 2) is None
    assert encode_value(f, float("nan")) is None


# -- third-party client ---------------------------------------------------------------------


def test_snmpget_reads_the_profile_encoding_of_every_value(
    site: SiteConfig, netsnmp_env: dict[str, str]
) -> None:
    values = values_for(site)
    profiles = site.profiles()
    devices = [d for d in site.devices if d.protocol == "snmp"]

    async def body(_twin: SnmpTwin) -> dict[str, tuple[int, str]]:
        out = {}
        for d in devices:
            oids = [f.oid or "" for f in profiles[d.profile].fields]
            out[d.name] = await netsnmp(
                netsnmp_env, "snmpget", "-v2c", "-c", "public", "-Oqv", f"127.0.0.1:{d.port}", *oids
            )
        return out

    got = run_with_twin(site, lambda n: values[n], body)
    for d in devices:
        rc, out = got[d.name]
        assert rc == 0, out
        fields = profiles[d.profile].fields
        raws = out.split()
        assert len(raws) == len(fields), out
        for f, raw in zip(fields, raws, strict=True):
            encoded = encode_value(f, values[d.name][f.name])
            assert encoded is not None and int(raw) == int(encoded), (d.name, f.name, raw)
            canonical = f.map[int(raw)] if f.map else int(raw) * f.scale + f.offset
            if f.name != "energy_wh_total":  # beyond INTEGER's range on purpose: saturated
                assert canonical == pytest.approx(
                    values[d.name][f.name], abs=abs(f.scale) / 2 + 1e-9
                )


def test_snmpbulkwalk_and_v1_snmpwalk_cover_every_served_oid(
    site: SiteConfig, netsnmp_env: dict[str, str]
) -> None:
    values = values_for(site)
    profiles = site.profiles()
    pdu, ups = site.device("pdu-R01-A"), site.device("ups-a")

    async def body(_twin: SnmpTwin) -> list[tuple[int, str]]:
        return [
            await netsnmp(
                netsnmp_env,
                "snmpbulkwalk",
                "-v2c",
                "-c",
                "public",
                "-Cr3",
                f"127.0.0.1:{pdu.port}",
                ".1",
            ),
            await netsnmp(
                netsnmp_env, "snmpwalk", "-v1", "-c", "public", f"127.0.0.1:{ups.port}", ".1"
            ),
            await netsnmp(
                netsnmp_env,
                "snmpbulkwalk",
                "-v2c",
                "-c",
                "public",
                f"127.0.0.1:{ups.port}",
                ".1.3.6.1.2.1.33.1.2",
            ),
        ]

    results = run_with_twin(site, lambda n: values[n], body)
    for (rc, out), dev in zip(results[:2], (pdu, ups), strict=True):
        assert rc == 0, out
        # Walking to the end of the agent's view ends on endOfMibView, as with net-snmp's snmpd.
        walked = [
            line.split(" = ")[0]
            for line in out.splitlines()
            if " = " in line and "No more variables" not in line
        ]
        # A scalar that is also a cell of a table the values have no rows for (the PDU's
        # phase 1 current, the UPS's line 1 powers) answers a GET but is not walked.
        columns = [
            tuple(map(int, c.split("."))) for t in profiles[dev.profile].tables for c in t.columns()
        ]
        oids = [tuple(map(int, (f.oid or "").split("."))) for f in profiles[dev.profile].fields]
        want = sorted(
            [SYS_DESCR, SYS_UPTIME, SYS_NAME]
            + [o for o in oids if not any(o[: len(c)] == c for c in columns)]
        )
        assert walked == [dotted(o) for o in want], out
        assert f'STRING: "{dev.name}"' in out
    rc, out = results[2]
    assert rc == 0 and len(out.splitlines()) == 3, out  # upsBattery: status, minutes, charge
    assert ".1.3.6.1.2.1.33.1.2.4.0 = INTEGER: 100" in out


def test_getbulk_non_repeaters_and_repetitions(
    site: SiteConfig, netsnmp_env: dict[str, str]
) -> None:
    values = values_for(site)
    srv = site.device("srv-R01-01")

    async def body(_twin: SnmpTwin) -> tuple[int, str]:
        return await netsnmp(
            netsnmp_env,
            "snmpbulkget",
            "-v2c",
            "-c",
            "public",
            "-Cn1",
            "-Cr4",
            f"127.0.0.1:{srv.port}",
            ".1.3.6.1.2.1.1.1.0",
            ".1.3.6.1.4.1.674",
        )

    rc, out = run_with_twin(site, lambda n: values[n], body)
    assert rc == 0, out
    lines = out.splitlines()
    assert lines[0].startswith(".1.3.6.1.2.1.1.3.0 = Timeticks")  # the non-repeater's next
    assert (
        lines[1]
        == f".1.3.6.1.4.1.674.10892.5.4.600.30.1.6.1.3 = INTEGER: {values[srv.name]['power_w']}"
    )
    assert lines[2] == ".1.3.6.1.4.1.674.10892.5.4.700.20.1.6.1.1 = INTEGER: 225"
    assert "No more variables left in this MIB View" in lines[3]


def test_wrong_community_and_blackhole_get_no_answer(
    site: SiteConfig, netsnmp_env: dict[str, str]
) -> None:
    values = values_for(site)
    a, b = site.device("srv-R01-01"), site.device("srv-R01-02")
    oid = ".1.3.6.1.2.1.1.5.0"

    async def body(twin: SnmpTwin) -> list[tuple[int, str]]:
        out = [
            await netsnmp(
                netsnmp_env, "snmpget", "-v2c", "-c", "private", f"127.0.0.1:{a.port}", oid
            )
        ]
        twin.set_unreachable(a.name)
        out.append(
            await netsnmp(
                netsnmp_env, "snmpget", "-v2c", "-c", "public", f"127.0.0.1:{a.port}", oid
            )
        )
        out.append(
            await netsnmp(
                netsnmp_env, "snmpget", "-v2c", "-c", "public", f"127.0.0.1:{b.port}", oid
            )
        )
        twin.set_unreachable(a.name, False)
        out.append(
            await netsnmp(netsnmp_env, "snmpget", "-v1", "-c", "public", f"127.0.0.1:{a.port}", oid)
        )
        return out

    wrong, dead, other, back = run_with_twin(site, lambda n: values[n], body)
    assert wrong[0] != 0 and "Timeout" in wrong[1]
    assert dead[0] != 0 and "Timeout" in dead[1]
    assert other == (0, f'{oid} = STRING: "{b.name}"\n')
    assert back == (0, f'{oid} = STRING: "{a.name}"\n')


def test_missing_values_and_unknown_oids(site: SiteConfig, netsnmp_env: dict[str, str]) -> None:
    values = values_for(site)
    del values["ups-a"]["battery_runtime_min"]
    ups = site.device("ups-a")
    runtime, unknown = ".1.3.6.1.2.1.33.1.2.3.0", ".1.3.6.1.2.1.33.1.9.9.0"

    async def body(_twin: SnmpTwin) -> list[tuple[int, str]]:
        addr = f"127.0.0.1:{ups.port}"
        return [
            await netsnmp(
                netsnmp_env,
                "snmpget",
                "-v2c",
                "-c",
                "public",
                addr,
                runtime,
                unknown,
                ".1.3.6.1.2.1.33.1.2.4.0",
            ),
            await netsnmp(
                netsnmp_env,
                "snmpget",
                "-v1",
                "-c",
                "public",
                addr,
                ".1.3.6.1.2.1.33.1.2.4.0",
                runtime,
            ),
        ]

    (rc2, v2), (rc1, v1) = run_with_twin(site, lambda n: values[n], body)
    assert "No Such Instance" in v2.splitlines()[0] or "No Such Object" in v2.splitlines()[0]
    assert "No Such Object" in v2.splitlines()[1]
    assert v2.splitlines()[2] == ".1.3.6.1.2.1.33.1.2.4.0 = INTEGER: 100"
    assert rc1 != 0 and "noSuchName" in v1 and runtime in v1


def test_values_called_once_per_request_and_failures_are_generr(
    site: SiteConfig, netsnmp_env: dict[str, str]
) -> None:
    values = values_for(site)
    calls: list[str] = []

    def counted(name: str) -> Mapping[str, float | int]:
        calls.append(name)
        if name == "srv-R02-02":
            raise RuntimeError("model failure")
        return values[name]

    srv, broken = site.device("srv-R01-01"), site.device("srv-R02-02")

    async def body(_twin: SnmpTwin) -> list[tuple[int, str]]:
        return [
            await netsnmp(
                netsnmp_env,
                "snmpget",
                "-v2c",
                "-c",
                "public",
                f"127.0.0.1:{srv.port}",
                ".1.3.6.1.2.1.1.3.0",
                ".1.3.6.1.4.1.674.10892.5.4.600.30.1.6.1.3",
                ".1.3.6.1.4.1.674.10892.5.4.700.20.1.6.1.1",
            ),
            await netsnmp(
                netsnmp_env,
                "snmpget",
                "-v2c",
                "-c",
                "public",
                f"127.0.0.1:{broken.port}",
                ".1.3.6.1.2.1.1.5.0",
            ),
        ]

    ok, failed = run_with_twin(site, counted, body)
    assert ok[0] == 0 and len(ok[1].splitlines()) == 3
    assert calls == [srv.name, broken.name]
    assert failed[0] != 0 and "genErr" in failed[1]


def test_bind_conflict_names_the_device_and_stop_frees_ports(site: SiteConfig) -> None:
    ups = site.device("ups-a")

    async def go() -> None:
        blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        blocker.bind(("127.0.0.1", ups.port or 0))
        try:
            with pytest.raises(OSError, match="ups-a"):
                await SnmpTwin(site, lambda n: {}).start()
        finally:
            blocker.close()
        twin = SnmpTwin(site, lambda n: {})
        await twin.start()
        assert len(twin.ports) == 10
        await twin.stop()
        again = SnmpTwin(site, lambda n: {})  # every port was released
        await again.start()
        await again.stop()

    asyncio.run(go())


def test_table_rows_are_served_through_the_profile(
    site: SiteConfig, netsnmp_env: dict[str, str]
) -> None:
    """Rows given as ``table/index/name`` values are served at their columns: a v2c
    snmpbulkwalk of the outlet table reads each outlet's power and name; the phase table's
    row 1 is the scalar fields' OIDs (one value for one OID); SNMPv1 walks them too."""
    values: dict[str, dict[str, float | int | str]] = dict(values_for(site))
    pdu = site.device("pdu-R01-A")
    for o in range(1, 25):
        values[pdu.name] |= {f"outlet/{o}/power_w": 10.0 * o, f"outlet/{o}/outlet_name": f"srv {o}"}
    values[pdu.name] |= {"phase/2/current_a": 4.5, "phase/2/voltage_v": 231}

    async def body(_twin: SnmpTwin) -> list[tuple[int, str]]:
        addr = f"127.0.0.1:{pdu.port}"
        return [
            await netsnmp(
                netsnmp_env,
                "snmpbulkwalk",
                "-v2c",
                "-c",
                "public",
                "-Cr10",
                addr,
                ".1.3.6.1.4.1.318.1.1.26.9.4.3.1",
            ),
            await netsnmp(
                netsnmp_env,
                "snmpwalk",
                "-v1",
                "-c",
                "public",
                addr,
                ".1.3.6.1.4.1.318.1.1.26.6.3.1",
            ),
        ]

    (rc, outlets), (rc1, phases) = run_with_twin(site, lambda n: values[n], body)
    assert rc == 0 and rc1 == 0, outlets + phases
    lines = [line for line in outlets.splitlines() if " = " in line and "No more" not in line]
    assert len(lines) == 48, outlets  # names (.3) then powers (.7) of 24 outlets
    assert '.1.3.6.1.4.1.318.1.1.26.9.4.3.1.3.24 = STRING: "srv 24"' in lines
    assert ".1.3.6.1.4.1.318.1.1.26.9.4.3.1.7.24 = INTEGER: 240" in lines
    assert phases.splitlines() == [
        ".1.3.6.1.4.1.318.1.1.26.6.3.1.5.1 = INTEGER: 99",  # the scalar current_a (9.87 A)
        ".1.3.6.1.4.1.318.1.1.26.6.3.1.5.2 = INTEGER: 45",
        ".1.3.6.1.4.1.318.1.1.26.6.3.1.6.1 = INTEGER: 229",
        ".1.3.6.1.4.1.318.1.1.26.6.3.1.6.2 = INTEGER: 231",
    ], phases
