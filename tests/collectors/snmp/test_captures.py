"""Every SNMP profile against a recorded walk of a device of its kind, served by a real agent
(snmpsim): one poll through the profile must give exactly the golden line protocol, and
net-snmp's own client must read the same raw values the collector decoded.

Cases are folders ``tests/captures/snmp/<profile>/`` with ``device.snmprec`` (the walk),
``config.yaml`` (a site with the one device) and ``expected.lp``. Run with
``DCIM_UPDATE_GOLDEN=1`` to rewrite ``expected.lp`` after a deliberate change, then review
the diff: it is the change users' dashboards will see.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from collectors.snmp.codec import INTEGER_TYPES, _Decoder, oid_of
from collectors.snmp.options import SnmpOptions
from collectors.snmp.poller import SnmpPoller
from collectors.snmp.profile import SnmpField, SnmpProfile
from dcim.config import Device, SiteConfig
from dcim.profiles import load_profiles
from dcim.reading import Reading
from dcim.storage.lineprotocol import encode
from dcim.testing.servers import need
from tests.collectors.snmpsim_server import Snmpsim, start_snmpsim

REPO = Path(__file__).resolve().parents[3]
CAPTURES = REPO / "tests" / "captures" / "snmp"
CASES = sorted(
    p.name
    for p in CAPTURES.iterdir()
    if (p / "device.snmprec").is_file() and (p / "config.yaml").is_file()
)  # counter_wrap/ has no config: tests/collectors/snmp/test_counters.py uses it
T_NS = 1_735_689_600_000_000_000  # 2025-01-01T00:00:00Z: golden files need a fixed time


@pytest.fixture(scope="module")
def agent() -> Iterator[Snmpsim]:
    sim = start_snmpsim({case: CAPTURES / case / "device.snmprec" for case in CASES})
    try:
        yield sim
    finally:
        sim.cleanup()


def case_device(case: str, port: int) -> tuple[SiteConfig, Device]:
    doc = yaml.safe_load((CAPTURES / case / "config.yaml").read_text())
    assert len(doc["devices"]) == 1, "one device per case"
    doc["devices"][0].update(host="127.0.0.1", port=port)
    cfg = SiteConfig.model_validate(doc)
    return cfg, cfg.devices[0]


def poll_once(cfg: SiteConfig, dev: Device) -> list[Reading]:
    async def go() -> list[Reading]:
        poller = SnmpPoller(cfg, dev)
        try:
            return await poller.poll()
        finally:
            await poller.close()

    return asyncio.run(go())


def test_every_snmp_profile_has_a_capture() -> None:
    snmp = {name for name, p in load_profiles().items() if p.protocol == "snmp"}
    assert snmp <= set(CASES), f"profiles without a capture case: {sorted(snmp - set(CASES))}"
    for case in CASES:
        assert (CAPTURES / case / "config.yaml").is_file(), case
        assert (CAPTURES / case / "expected.lp").is_file() or os.environ.get("DCIM_UPDATE_GOLDEN")


@pytest.mark.parametrize("case", CASES)
def test_capture_gives_the_golden_line_protocol(agent: Snmpsim, case: str) -> None:
    cfg, dev = case_device(case, agent.port)
    readings = poll_once(cfg, dev)
    lines = []
    for r in readings:
        r.time_ns = T_NS
        lines.append(encode(r))
    got = "\n".join(lines) + "\n"
    golden = CAPTURES / case / "expected.lp"
    if os.environ.get("DCIM_UPDATE_GOLDEN"):
        golden.write_text(got)
    assert got.splitlines() == golden.read_text().splitlines()
    # The field-type rule: a field's type is fixed by the profile, never by the value read.
    prof = cfg.profiles()[dev.profile]
    specs = {(prof.measurement, f.name): f for f in prof.fields}
    for t in prof.tables:
        specs.update({(t.measurement or prof.measurement, f.name): f for f in t.fields})
    for r in readings:
        for name, value in r.fields.items():
            f = specs[(r.measurement, name)]
            ints = f.kind in ("counter", "state") and not f.exponent and float(f.scale) >= 1
            assert type(value) is (int if ints else float), (r.measurement, name, value)


# -- a third-party client reads the same raw values ----------------------------------------------


def netsnmp_walk(port: int, community: str, version: str, tmp: Path) -> dict[str, tuple[str, str]]:
    """{dotted OID: (net-snmp type, raw text)} of the whole agent view (snmpbulkwalk, or
    snmpwalk for SNMPv1), numeric OIDs, no MIBs."""
    env = dict(os.environ, MIBS="", SNMP_PERSISTENT_DIR=str(tmp), SNMPCONFPATH=str(tmp))
    tool = need("snmpwalk" if version == "1" else "snmpbulkwalk", "snmp")
    out = subprocess.run(
        [tool, f"-v{version}", "-c", community, "-On", "-Oe", "-t", "2", f"127.0.0.1:{port}", ".1"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    got: dict[str, tuple[str, str]] = {}
    for line in out.splitlines():
        if " = " not in line:
            continue
        oid, rest = line.split(" = ", 1)
        kind, _, raw = rest.partition(": ")
        got[oid.lstrip(".")] = (kind, raw.strip().strip('"'))
    return got


def _raw_value(kind: str, raw: str) -> tuple[str, Any]:
    names = {"INTEGER": "Integer32", "Counter32": "Counter32", "Counter64": "Counter64"}
    names |= {"Gauge32": "Gauge32", "Timeticks": "TimeTicks", "STRING": "OctetString"}
    t = names.get(kind, kind)
    if t == "TimeTicks":
        return t, int(raw.split(")")[0].strip("("))
    if t in INTEGER_TYPES:
        return t, int(raw)
    return t, raw.encode()


def _expected(f: SnmpField, oid: str, walk: dict[str, tuple[str, str]], index: str) -> Any:
    exp10 = 0
    for e in f.exponent:
        exp10 += e.times * (int(walk[f"{e.oid}.{index}"][1]) + e.plus)
    return _Decoder.of(f).decode(_raw_value(*walk[oid]), exp10)


@pytest.mark.parametrize("case", CASES)
def test_net_snmp_reads_the_same_raw_values(agent: Snmpsim, case: str, tmp_path: Path) -> None:
    cfg, dev = case_device(case, agent.port)
    opts = dev.options_as(SnmpOptions)
    prof = cfg.profiles()[dev.profile]
    assert isinstance(prof, SnmpProfile)
    readings = poll_once(cfg, dev)
    walk = netsnmp_walk(agent.port, case, opts.version, tmp_path)
    checked = 0
    tables: dict[str, list[Any]] = {}
    for t in prof.tables:
        tables.setdefault(t.measurement or prof.measurement, []).append(t)
    for r in readings:
        table = next(
            (t for t in tables.get(r.measurement, []) if set(t.index) <= set(r.tags)), None
        )
        if table is None:  # the device's scalar reading
            for f in prof.fields:
                if f.name in r.fields and f.oid:
                    assert r.fields[f.name] == _expected(f, f.oid, walk, ""), (case, f.name)
                    checked += 1
            continue
        index = ".".join(r.tags[name] for name in table.index)
        for f in table.fields:
            if f.name in r.fields:
                assert f.oid is not None
                want = _expected(f, f"{f.oid}.{index}", walk, index)
                assert r.fields[f.name] == want, (case, r.tags, f.name)
                checked += 1
        for t in table.tags:
            cell = walk.get(f"{t.oid}.{index}")
            if cell is not None and cell[1]:
                assert r.tags[t.name] == cell[1], (case, t.name)
    assert checked >= 2, case
    assert all(oid_of(k) for k in walk)
