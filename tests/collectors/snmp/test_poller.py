"""SNMP collector against the twin's agents (v1, v2c) and net-snmp's snmpd (v3)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from pysnmp.proto import rfc1902, rfc1905

from collectors.snmp.codec import _Decoder
from collectors.snmp.options import SnmpOptions
from collectors.snmp.poller import SnmpPoller, make_poller
from collectors.snmp.profile import SnmpField, SnmpProfile
from collectors.snmp.usm import neutral
from dcim.config import Device, Secret, SiteConfig
from dcim.profiles import load_profiles
from dcim.protocols import PollError
from dcim.twin.ports import free_ports
from dcim.twin.serve_snmp import SnmpTwin
from dcim.twin.site import paris_chapelle

REPO = Path(__file__).resolve().parents[3]


def small_site(*, extra_profiles: bool = False, **defaults: Any) -> SiteConfig:
    """The reference site with 2 racks of 2 servers (10 SNMP devices); ``extra_profiles``
    adds a switch (entity_sensor) and a rack probe (apc_env_probe)."""
    base = free_ports(12, kind=socket.SOCK_DGRAM)
    doc = paris_chapelle(racks=2, servers_per_rack=2, snmp_base_port=base)
    doc["defaults"].update(defaults)
    if extra_profiles:
        for k, (name, profile) in enumerate(
            (("sw-R01-tor1", "entity_sensor"), ("env-R01", "apc_env_probe"))
        ):
            doc["devices"].append(
                {
                    "name": name,
                    "protocol": "snmp",
                    "profile": profile,
                    "host": "127.0.0.1",
                    "port": base + 10 + k,
                    "rack": "R01",
                    "snmp": {"version": "2c", "community": {"value": "public"}},
                }
            )
    return SiteConfig.model_validate(doc)


def table_values(profile: str, i: int) -> dict[str, float | int | str]:
    """Rows of the profile's tables (keys ``table/index/name``, see the twin's serve_snmp)."""
    out: dict[str, float | int | str] = {}
    if profile == "apc_rpdu2":
        for ph in (1, 2, 3):
            out |= {
                f"phase/{ph}/current_a": 7.3 + ph + i,
                f"phase/{ph}/voltage_v": 229 + ph,
                f"phase/{ph}/power_w": 1_650.0 + 10 * ph,
                f"phase/{ph}/apparent_power_va": 1_700.0 + 10 * ph,
                f"phase/{ph}/power_factor": 0.97,
                f"phase/{ph}/pdu_module": 1,
            }
        for o in range(1, 25):
            out |= {
                f"outlet/{o}/current_a": 0.1 * o,
                f"outlet/{o}/power_w": 20.0 * o + i,
                f"outlet/{o}/energy_wh_total": 1_000_000 + 100 * o,
                f"outlet/{o}/outlet_name": f"srv-{o:02d} PSU1",
                f"outlet/{o}/pdu_module": 1,
            }
    elif profile == "ups_rfc1628":
        for line in (1, 2, 3):
            out |= {
                f"input_line/{line}/frequency_hz": 50.0,
                f"input_line/{line}/voltage_v": 230 + line,
                f"input_line/{line}/current_a": 40.1 + line,
                f"input_line/{line}/power_w": 9_000.0 + line + i,
                f"output_line/{line}/voltage_v": 230,
                f"output_line/{line}/current_a": 39.4 + line,
                f"output_line/{line}/power_w": 8_800.0 + line,
                f"output_line/{line}/load_pct": 44 + line,
            }
    elif profile == "entity_sensor":
        for idx, field, value, name in (
            (100006001, "temp_c", 46.0, "Cpu temp sensor"),
            (100711301, "power_w", 287.0, "PowerSupply1 input power"),
            (100711201, "current_a", 2.0, "PowerSupply1 input current"),
            (100006002, "voltage_v", 12.0, "Rail1 12V"),
            (100601111, "fan_rpm", 8_220.0, "Fan Tray 1 Fan 1"),
        ):
            out |= {
                f"sensor/{idx}/{field}": value,
                f"sensor/{idx}/sensor": name,
                f"sensor/{idx}/description": f"{name} sensor",
            }
    elif profile == "apc_env_probe":
        out |= {
            "probe/1.1/temp_c": 24,
            "probe/1.1/humidity_pct": 41,
            "probe/1.1/probe_name": "R01 front top",
            "probe/2.1/temp_c": 35,
            "probe/2.1/probe_name": "R01 rear top",
        }
    return out


def known_values(
    cfg: SiteConfig, *, tables: bool = False
) -> dict[str, dict[str, float | int | str]]:
    """Distinct values per device, off the profiles' resolution grid on purpose; ``tables``:
    with rows for the profiles' tables too."""
    out: dict[str, dict[str, float | int | str]] = {}
    for i, d in enumerate(d for d in cfg.devices if d.protocol == "snmp"):
        if d.profile == "ups_rfc1628":
            out[d.name] = {
                "input_power_w": 41_000 + i,
                "output_power_w": 39_500.4 + i,
                "output_load_pct": 41,
                "battery_charge_pct": 97,
                "battery_status": 2,
                "on_battery": i % 2,
                "battery_runtime_min": 35 + i,
                "output_frequency_hz": 50.1,
                "battery_voltage_v": 432.5 + i,
                "battery_temp_c": 26 + i,
            }
        elif d.profile == "apc_rpdu2":
            out[d.name] = {
                "power_w": 3_456.0 + 10 * i,
                "energy_wh_total": 98_765_400 + 100 * i,
                "current_a": 7.34 + i,
                "voltage_v": 231.2,
            }
        elif d.profile == "bmc_server":
            out[d.name] = {"inlet_temp_c": 21.37 + i / 10, "power_w": 287 + i}
        else:
            out[d.name] = {}
        if tables:
            out[d.name] |= table_values(d.profile, i)
            # A scalar and its table row are the same OID (upsInputTruePower.1 is line 1's
            # power): one device serves one value for both.
            for scalar, cell in SAME_OID.get(d.profile, {}).items():
                out[d.name][cell] = out[d.name][scalar]
    return out


SAME_OID = {
    "ups_rfc1628": {
        "input_power_w": "input_line/1/power_w",
        "output_power_w": "output_line/1/power_w",
        "output_load_pct": "output_line/1/load_pct",
    },
    "apc_rpdu2": {"current_a": "phase/1/current_a", "voltage_v": "phase/1/voltage_v"},
}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def with_twin(
    cfg: SiteConfig, values: Mapping[str, Mapping[str, float | int | str]], body: Any
) -> Any:
    twin = SnmpTwin(cfg, lambda name: values[name])
    await twin.start()
    try:
        return await body(twin)
    finally:
        await twin.stop()


def resolution(f: SnmpField) -> float:
    return abs(f.scale) / 2 + 1e-9


# -- against the twin -----------------------------------------------------------------------


def test_collector_reads_every_field_of_every_profile_back() -> None:
    """Every field and every table row of every SNMP profile, through the twin's agents: the
    twin encodes through the profile, the collector decodes through it."""
    cfg = small_site(extra_profiles=True)
    values = known_values(cfg, tables=True)
    profiles = cfg.profiles()
    devices = [d for d in cfg.devices if d.protocol == "snmp"]

    async def body(_twin: SnmpTwin) -> list[tuple[Device, Any, int, int]]:
        out = []
        for d in devices:
            poller = make_poller(cfg, d)
            before = time.time_ns()
            readings = await poller.poll()
            out.append((d, readings, before, time.time_ns()))
            await poller.close()
        return out

    seen_profiles = set()
    for dev, readings, before, after in run(with_twin(cfg, values, body)):
        prof = profiles[dev.profile]
        seen_profiles.add(prof.name)
        want = values[dev.name]
        expected_rows = {k.rsplit("/", 1)[0] for k in want if "/" in k}
        scalar = [
            r for r in readings if r.measurement == prof.measurement and r.tags == cfg.tags_of(dev)
        ]
        assert len(scalar) == (1 if prof.fields else 0), (dev.name, readings)
        assert len(readings) == len(scalar) + len(expected_rows), (dev.name, len(readings))
        for r in readings:
            assert before <= r.time_ns <= after
            assert r.tags.items() >= cfg.tags_of(dev).items()
            if r in scalar:
                specs, prefix = list(prof.fields), ""
            else:
                table = next(
                    t
                    for t in prof.tables
                    if (t.measurement or prof.measurement) == r.measurement
                    and set(t.index) <= set(r.tags)
                )
                index = ".".join(r.tags[n] for n in table.index)
                prefix = f"{table.name}/{index}/"
                specs = [f for f in table.fields if prefix + f.name in want]
                for t in table.tags:
                    assert r.tags[t.name] == str(want[prefix + t.name]), (dev.name, t.name)
            assert set(r.fields) == {f.name for f in specs}, (dev.name, r.measurement, r.tags)
            for f in specs:
                wanted, got = want[prefix + f.name], r.fields[f.name]
                assert isinstance(wanted, int | float)
                tolerance = 0.5 + 1e-9 if f.exponent else resolution(f)
                assert abs(got - wanted) <= tolerance, (dev.name, f.name, got, wanted)
                # A field's type is fixed by the profile (InfluxDB rejects int/float flips).
                ints = f.kind in ("counter", "state") and not f.exponent
                assert type(got) is (int if ints else float), (f.name, got)
    assert seen_profiles == {name for name, p in profiles.items() if p.protocol == "snmp"}


def test_polls_of_many_devices_run_concurrently_on_one_engine() -> None:
    cfg = small_site()
    values = known_values(cfg)
    pollers = [make_poller(cfg, d) for d in cfg.devices if d.protocol == "snmp"]

    async def body(_twin: SnmpTwin) -> list[Any]:
        for _ in range(3):
            results = await asyncio.gather(*(p.poll() for p in pollers))
        return results

    results = run(with_twin(cfg, values, body))
    assert all(len(r[0].fields) >= 2 for r in results)


def test_blackholed_device_times_out_others_unaffected() -> None:
    cfg = small_site(timeout_s=0.4, retries=1)
    values = known_values(cfg)
    dead = "srv-R01-02"
    budget = 0.4 * (1 + 1)

    async def timed(p: SnmpPoller) -> tuple[str, float, Any]:
        t0 = time.monotonic()
        try:
            res: Any = await p.poll()
        except PollError as exc:
            res = exc
        return p.device.name, time.monotonic() - t0, res

    async def body(twin: SnmpTwin) -> tuple[list[Any], Any]:
        twin.set_unreachable(dead)
        pollers = [SnmpPoller(cfg, d) for d in cfg.devices if d.protocol == "snmp"]
        results = await asyncio.gather(*(timed(p) for p in pollers))
        twin.set_unreachable(dead, False)
        again = await SnmpPoller(cfg, cfg.device(dead)).poll()
        return results, again

    results, again = run(with_twin(cfg, values, body))
    for name, elapsed, res in results:
        if name == dead:
            assert isinstance(res, PollError) and res.kind == "timeout", res
            # pysnmp's timer ticks every 0.1 s: allow a few ticks past the budget.
            assert budget * 0.9 <= elapsed <= budget + 0.5, elapsed
        else:
            assert isinstance(res, list), (name, res)
            assert elapsed < budget, (name, elapsed)
    assert again[0].fields["power_w"] == pytest.approx(values[dead]["power_w"])


def test_missing_values_are_left_out_not_fatal() -> None:
    """A field the agent lacks (noSuchInstance / noSuchObject, or noSuchName in v1) is left
    out; the other fields are still read. Checked for v2c and v1."""
    cfg = small_site()
    values = known_values(cfg)
    del values["ups-b"]["battery_runtime_min"]
    bmc = load_profiles()["bmc_server"]
    # The same profile plus an OID the agent has never heard of (exhaust temperature).
    extra = SnmpField(
        name="exhaust_temp_c",
        oid="1.3.6.1.4.1.674.10892.5.4.700.20.1.6.1.2",
        scale=0.1,
        snmp_type="Integer32",
    )
    wider = SnmpProfile.model_validate(
        {
            **bmc.model_dump(by_alias=True),
            "fields": [*bmc.model_dump(by_alias=True)["fields"], extra.model_dump(by_alias=True)],
        }
    )

    async def body(_twin: SnmpTwin) -> dict[str, Any]:
        out = {}
        for version in ("2c", "1"):
            ups = cfg.device("ups-b")
            ups_v = ups.with_options(
                ups.options_as(SnmpOptions).model_copy(update={"version": version})
            )
            out[f"ups-{version}"] = (await SnmpPoller(cfg, ups_v).poll())[0].fields
            srv = cfg.device("srv-R02-01")
            srv_v = srv.with_options(
                srv.options_as(SnmpOptions).model_copy(update={"version": version})
            )
            out[f"srv-{version}"] = (await SnmpPoller(cfg, srv_v, wider).poll())[0].fields
        return out

    got = run(with_twin(cfg, values, body))
    for version in ("2c", "1"):
        assert "battery_runtime_min" not in got[f"ups-{version}"]
        assert got[f"ups-{version}"]["input_power_w"] == values["ups-b"]["input_power_w"]
        assert set(got[f"srv-{version}"]) == {"inlet_temp_c", "power_w"}


def test_sys_uptime_field_survives_a_missing_oid_in_its_request() -> None:
    """sysUpTime.0 read as a field of its own, in the same GET as an OID the agent lacks: in
    v1 the missing OID fails the request (noSuchName) and is asked again without it, which
    leaves sysUpTime.0 alone in the request; it is still read (it is not only the helper a
    counter rate needs). Checked for v1 and v2c."""
    cfg = small_site()
    values = known_values(cfg)
    bmc = load_profiles()["bmc_server"]
    fields = bmc.model_dump(by_alias=True)["fields"]
    uptime = SnmpField(name="uptime_s", oid="1.3.6.1.2.1.1.3.0", snmp_type="TimeTicks", scale=0.01)
    absent = SnmpField(
        name="exhaust_temp_c",
        oid="1.3.6.1.4.1.674.10892.5.4.700.20.1.6.1.2",
        scale=0.1,
        snmp_type="Integer32",
    )
    # max_varbinds 2: GET [inlet, power], then GET [sysUpTime.0, exhaust] (no rate in this
    # profile, so no sysUpTime.0 helper in front of the chunks).
    prof = SnmpProfile.model_validate(
        {
            **bmc.model_dump(by_alias=True),
            "fields": [*fields, uptime.model_dump(by_alias=True), absent.model_dump(by_alias=True)],
        }
    )

    async def body(twin: SnmpTwin) -> dict[str, Any]:
        out = {}
        srv = cfg.device("srv-R02-01")
        for version in ("2c", "1"):
            opts = srv.options_as(SnmpOptions).model_copy(
                update={"version": version, "max_varbinds": 2}
            )
            dev = srv.with_options(opts)
            out[version] = (await SnmpPoller(cfg, dev, prof).poll())[0].fields
        return out

    t0 = time.monotonic()
    got = run(with_twin(cfg, values, body))
    elapsed = time.monotonic() - t0
    for version in ("2c", "1"):
        assert set(got[version]) == {"inlet_temp_c", "power_w", "uptime_s"}, version
        assert 0 <= got[version]["uptime_s"] <= elapsed + 0.01, got[version]
        assert got[version]["power_w"] == values["srv-R02-01"]["power_w"]


def test_nothing_readable_is_a_poll_error() -> None:
    cfg = small_site()
    values = known_values(cfg)
    values["srv-R01-01"] = {}

    async def body(_twin: SnmpTwin) -> None:
        with pytest.raises(PollError) as err:
            await SnmpPoller(cfg, cfg.device("srv-R01-01")).poll()
        assert err.value.kind == "decode"

    run(with_twin(cfg, values, body))


def test_wrong_community_is_a_timeout() -> None:
    cfg = small_site(timeout_s=0.3, retries=0)
    values = known_values(cfg)
    dev = cfg.device("ups-a")
    wrong = dev.with_options(
        dev.options_as(SnmpOptions).model_copy(update={"community": Secret(value="private")})
    )

    async def body(_twin: SnmpTwin) -> None:
        with pytest.raises(PollError) as err:
            await SnmpPoller(cfg, wrong).poll()
        assert err.value.kind == "timeout"

    run(with_twin(cfg, values, body))


def test_small_max_varbinds_splits_the_get() -> None:
    doc = paris_chapelle(
        racks=1, servers_per_rack=1, snmp_base_port=free_ports(4, kind=socket.SOCK_DGRAM)
    )
    for d in doc["devices"]:
        if d["protocol"] == "snmp":
            d["snmp"]["max_varbinds"] = 2
    cfg = SiteConfig.model_validate(doc)
    values = known_values(cfg)

    async def body(_twin: SnmpTwin) -> Any:
        return (await SnmpPoller(cfg, cfg.device("ups-a")).poll())[0].fields

    fields = run(with_twin(cfg, values, body))
    assert set(fields) == set(values["ups-a"])  # every field, in GETs of 2


# -- decoding rules -------------------------------------------------------------------------


def test_decoder_rules() -> None:
    counter = _Decoder.of(SnmpField(name="e", kind="counter", oid="1.3", scale=100))
    assert counter.decode(neutral(rfc1902.Integer32(1234567))) == 123_456_700
    assert isinstance(counter.decode(neutral(rfc1902.Counter32(5))), int)
    tenths = _Decoder.of(SnmpField(name="t", oid="1.3", scale=0.1))
    assert tenths.decode(neutral(rfc1902.Integer32(2731))) == 273.1  # exact, not 273.09999999999997
    assert tenths.decode(neutral(rfc1902.Integer32(-52))) == -5.2
    state = _Decoder.of(SnmpField(name="s", kind="state", oid="1.3", map={3: 0, 5: 1}))
    assert state.decode(neutral(rfc1902.Integer32(5))) == 1
    assert state.decode(neutral(rfc1902.Integer32(4))) is None  # an unmapped code is left out
    gauge = _Decoder.of(SnmpField(name="g", oid="1.3"))
    assert gauge.decode(neutral(rfc1902.OctetString(b"12"))) is None  # wrong type
    assert gauge.decode(neutral(rfc1905.noSuchInstance)) is None
    assert gauge.decode(neutral(rfc1905.noSuchObject)) is None
    assert gauge.decode(neutral(rfc1905.endOfMibView)) is None
    assert gauge.decode(neutral(rfc1902.Gauge32(7))) == 7.0 and isinstance(
        gauge.decode(neutral(rfc1902.Gauge32(7))), float
    )
    text = _Decoder.of(SnmpField(name="x", oid="1.3", snmp_type="OctetString", offset=-1))
    assert text.decode(neutral(rfc1902.OctetString(b" 21.5"))) == 20.5
    assert text.decode(neutral(rfc1902.OctetString(b"n/a"))) is None


def test_sample_config_is_a_valid_device() -> None:
    data = yaml.safe_load((REPO / "collectors" / "snmp" / "sample.yaml").read_text())
    dev = Device.model_validate(data)
    prof = load_profiles()[dev.profile]
    assert dev.protocol == "snmp" == prof.protocol
    assert dev.options_as(SnmpOptions).community is not None


# -- SNMPv3 against net-snmp's snmpd ---------------------------------------------------------


# (our name, net-snmp's name) of the authentication and privacy protocols tested
V3_PROTOCOLS = [
    (("SHA", "SHA"), ("AES", "AES")),
    (("SHA256", "SHA-256"), ("AES256", "AES-256")),  # Blumenthal AES-256 on both sides
    (("SHA512", "SHA-512"), ("AES192", "AES-192")),
]


@pytest.fixture
def snmpd_v3(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[int, str, str]]:
    (auth, auth_netsnmp), (priv, priv_netsnmp) = request.param
    binary = shutil.which("snmpd")
    if binary is None:
        raise RuntimeError("snmpd not found: install the Debian package 'snmpd' (see README)")
    port = free_ports(1, kind=socket.SOCK_DGRAM)
    conf = tmp_path / "snmpd.conf"
    conf.write_text(
        f"agentAddress udp:127.0.0.1:{port}\n"
        f'createUser dcimv3 {auth_netsnmp} "auth-pass-123" {priv_netsnmp} "priv-pass-456"\n'
        "rouser dcimv3 priv\n"
    )
    env = dict(os.environ, MIBS="", SNMP_PERSISTENT_DIR=str(tmp_path), SNMPCONFPATH=str(tmp_path))
    proc = subprocess.Popen(
        [binary, "-f", "-Lo", "-C", "-c", str(conf)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield port, auth, priv
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize(
    "snmpd_v3", V3_PROTOCOLS, indirect=True, ids=[f"{a[0]}-{p[0]}" for a, p in V3_PROTOCOLS]
)
def test_v3_auth_priv_against_snmpd(snmpd_v3: tuple[int, str, str]) -> None:
    port, auth, priv = snmpd_v3
    prof = SnmpProfile.model_validate(
        {
            "name": "net_snmp_system",
            "protocol": "snmp",
            "measurement": "system",
            "fields": [
                {
                    "name": "uptime_s",
                    "oid": "1.3.6.1.2.1.1.3.0",
                    "snmp_type": "TimeTicks",
                    "scale": 0.01,
                },
                {
                    "name": "engine_boots",
                    "kind": "counter",
                    "oid": "1.3.6.1.6.3.10.2.1.2.0",
                    "snmp_type": "Integer32",
                },
            ],
            # IF-MIB's ifTable, walked with GETBULK over authPriv
            "tables": [
                {
                    "name": "interface",
                    "measurement": "interface",
                    "index": ["if_index"],
                    "tags": [{"name": "if_name", "oid": "1.3.6.1.2.1.2.2.1.2"}],
                    "fields": [
                        {
                            "name": "in_octets_total",
                            "kind": "counter",
                            "oid": "1.3.6.1.2.1.2.2.1.10",
                            "snmp_type": "Counter32",
                        },
                        {"name": "in_bps", "rate_of": "in_octets_total", "scale": 8},
                    ],
                }
            ],
        }
    )

    def device(auth_key: str) -> Device:
        return Device.model_validate(
            {
                "name": "v3-agent",
                "protocol": "snmp",
                "profile": "net_snmp_system",
                "host": "127.0.0.1",
                "port": port,
                "timeout_s": 1.0,
                "retries": 1,
                "snmp": {
                    "version": "3",
                    "user": "dcimv3",
                    "auth_protocol": auth,
                    "auth_key": {"value": auth_key},
                    "priv_protocol": priv,
                    "priv_key": {"value": "priv-pass-456"},
                },
            }
        )

    cfg = SiteConfig.model_validate({"site": {"name": "lab"}})

    async def body() -> tuple[Any, PollError]:
        good = SnmpPoller(cfg, device("auth-pass-123"), prof)
        deadline = time.monotonic() + 15
        while True:  # snmpd takes a moment to bind
            try:
                readings = await good.poll()
                break
            except PollError:
                if time.monotonic() > deadline:
                    raise
        # Another engine ID cache entry is not needed: same user, wrong key -> wrong digest.
        bad = SnmpPoller(cfg, device("wrong-pass-999").model_copy(update={"name": "v3-bad"}), prof)
        try:
            await bad.poll()
        except PollError as exc:
            return readings, exc
        raise AssertionError("a wrong auth key was accepted")

    readings, err = run(body())
    fields = readings[0].fields
    assert fields["engine_boots"] >= 1  # snmpEngineBoots
    assert fields["uptime_s"] >= 0
    assert err.kind == "auth", (err.kind, err)
    interfaces = {r.tags["if_name"]: r.fields for r in readings if r.measurement == "interface"}
    assert "lo" in interfaces and isinstance(interfaces["lo"]["in_octets_total"], int)


# -- table walks ------------------------------------------------------------------------------


def test_walk_keeps_to_the_device_caps_and_learns_the_table_sizes() -> None:
    """GETs of at most ``max_varbinds`` OIDs, GETBULKs of at most ``max_varbinds`` columns and
    ``max_repetitions`` rows; the next poll asks for the rows it found last time plus one."""
    doc = paris_chapelle(
        racks=1, servers_per_rack=1, snmp_base_port=free_ports(4, kind=socket.SOCK_DGRAM)
    )
    for d in doc["devices"]:
        if d["protocol"] == "snmp":
            d["snmp"].update(max_varbinds=4, max_repetitions=3)
    cfg = SiteConfig.model_validate(doc)
    values = known_values(cfg, tables=True)
    pdu = cfg.device("pdu-R01-A")
    sent: list[tuple[str, int, int, int]] = []
    original = SnmpPoller._request

    async def spy(self: SnmpPoller, kind: str, oids: Any, *args: Any) -> Any:
        non_rep, reps = (args + (0, 0))[:2]
        sent.append((kind, len(oids), non_rep, reps))
        return await original(self, kind, oids, *args)

    async def body(_twin: SnmpTwin) -> list[Any]:
        poller = SnmpPoller(cfg, pdu)
        first = await poller.poll()
        n_first = len(sent)
        second = await poller.poll()
        return [first, second, n_first]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(SnmpPoller, "_request", spy)
        first, second, n_first = run(with_twin(cfg, values, body))
    for readings in (first, second):
        assert sum(r.measurement == "pdu_outlet" for r in readings) == 24
        assert sum(r.measurement == "pdu_phase" for r in readings) == 3
    assert all(n <= 4 for _, n, _, _ in sent), sent
    assert all(reps <= 3 for kind, _, _, reps in sent if kind == "bulk"), sent
    assert {kind for kind, *_ in sent} == {"get", "bulk"}
    assert len(sent) - n_first <= n_first  # the second poll needs no more requests


def test_scalars_ride_in_the_walks_first_getbulk() -> None:
    """SNMPv2c: a PDU's scalar fields are asked as non-repeaters of the walk's first GETBULK
    (each from the OID just before it): after the first poll (table sizes learnt), 2
    requests a poll and no GET, where a GET of them then the walk took 3 (``max_varbinds``
    too small for them: not folded). The readings are the same either way; a scalar the
    agent does not answer in the GETBULK (here left out of the agent) is asked by GET."""
    from collectors.snmp.poller import _before

    assert _before((1, 3, 6, 1, 9, 0)) == (1, 3, 6, 1, 9)
    assert _before((1, 3, 6, 1, 9, 5, 1)) == (1, 3, 6, 1, 9, 5, 0)
    doc = paris_chapelle(
        racks=1, servers_per_rack=1, snmp_base_port=free_ports(4, kind=socket.SOCK_DGRAM)
    )
    cfg = SiteConfig.model_validate(doc)
    values = known_values(cfg, tables=True)
    pdu = cfg.device("pdu-R01-A")
    narrow = pdu.with_options(pdu.options_as(SnmpOptions).model_copy(update={"max_varbinds": 5}))
    sent: list[tuple[str, str, int]] = []
    original = SnmpPoller._request

    async def spy(self: SnmpPoller, kind: str, oids: Any, *args: Any) -> Any:
        sent.append((self.device.options_as(SnmpOptions).max_varbinds, kind, len(oids)))
        return await original(self, kind, oids, *args)

    async def body(_twin: SnmpTwin) -> dict[int, list[Any]]:
        out = {}
        for dev in (pdu, narrow):
            poller = SnmpPoller(cfg, dev)
            await poller.poll()
            sent.clear()
            out[dev.options_as(SnmpOptions).max_varbinds] = [await poller.poll(), list(sent)]
        values["pdu-R01-A"] = {k: v for k, v in values["pdu-R01-A"].items() if k != "power_w"}
        poller = SnmpPoller(cfg, pdu)
        out[0] = [await poller.poll(), None]
        return out

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(SnmpPoller, "_request", spy)
        got = run(with_twin(cfg, values, body))
    (folded, folded_sent), (plain, plain_sent) = got[20], got[5]
    assert [k for _, k, _ in folded_sent] == ["bulk", "bulk"], folded_sent
    assert [k for _, k, _ in plain_sent].count("get") >= 1 and len(plain_sent) >= 3, plain_sent
    assert [(r.measurement, r.tags, r.fields) for r in folded] == [
        (r.measurement, r.tags, r.fields) for r in plain
    ]
    scalar = next(r for r in folded if r.measurement == "pdu")
    assert set(scalar.fields) == {"power_w", "energy_wh_total", "current_a", "voltage_v"}
    missing = next(r for r in got[0][0] if r.measurement == "pdu")
    assert "power_w" not in missing.fields
    assert missing.fields["voltage_v"] == scalar.fields["voltage_v"]


class _CutBulk(asyncio.DatagramProtocol):
    """A proxy in front of an agent that cuts the answer of a GETBULK with scalars in it
    (more than one non-repeater) to its non-repeaters, as an agent whose message size the
    columns' rows would pass may answer."""

    def __init__(self, agent: tuple[str, int]) -> None:
        self.agent, self.cut = agent, 0
        self.transport: Any = None
        self.asked: dict[int, tuple[Any, int]] = {}  # request id -> (client, non-repeaters)

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        from collectors.snmp import wire as w

        msg = w.decode_message(data)
        if msg.pdu_type != w.RESPONSE:
            nr = msg.error_status if msg.pdu_type == w.GET_BULK else 0
            self.asked[msg.request_id] = (addr, nr)
            self.transport.sendto(data, self.agent)
            return
        client, nr = self.asked.pop(msg.request_id)
        if nr > 1:
            self.cut += 1
            data = w.encode_message(
                msg.version,
                msg.community,
                w.RESPONSE,
                msg.request_id,
                w.encode_varbinds(msg.varbinds[:nr]),
            )
        self.transport.sendto(data, client)


def test_an_answer_cut_to_the_scalars_asks_the_columns_again() -> None:
    """The walk's first GETBULK answered with its non-repeaters only (sysUpTime and the
    scalars): the scalars are taken, the columns asked again without them; the readings are
    those read straight from the agent."""
    doc = paris_chapelle(
        racks=1, servers_per_rack=1, snmp_base_port=free_ports(4, kind=socket.SOCK_DGRAM)
    )
    cfg = SiteConfig.model_validate(doc)
    values = known_values(cfg, tables=True)
    pdu = cfg.device("pdu-R01-A")

    async def body(_twin: SnmpTwin) -> tuple[Any, Any, int]:
        loop = asyncio.get_running_loop()
        assert pdu.host is not None and pdu.port is not None
        proxy = _CutBulk((pdu.host, pdu.port))
        transport, _ = await loop.create_datagram_endpoint(
            lambda: proxy, local_addr=("127.0.0.1", 0)
        )
        try:
            port = transport.get_extra_info("sockname")[1]
            direct = await SnmpPoller(cfg, pdu).poll()
            cut = await SnmpPoller(cfg, pdu.model_copy(update={"port": port})).poll()
        finally:
            transport.close()
        return direct, cut, proxy.cut

    direct, cut, n_cut = run(with_twin(cfg, values, body))
    assert n_cut == 1
    assert sum(r.measurement == "pdu_outlet" for r in cut) == 24
    assert [(r.measurement, r.tags, r.fields) for r in cut] == [
        (r.measurement, r.tags, r.fields) for r in direct
    ]


def test_walk_ends_columns_on_leaving_their_subtree_and_on_broken_agents() -> None:
    from collectors.snmp.codec import Walk

    a, b = (1, 3, 6, 1, 9, 1), (1, 3, 6, 1, 9, 2)
    walk = Walk([b, a], max_varbinds=10, uptime=False)
    assert walk.request() == [a, b] and walk.repetitions([a, b], 5) == 5
    i = ("Integer32", 1)
    # row-major: (a.1, b.1), (a.2, b.2), then a leaves its subtree, b goes on
    walk.feed([a, b], [(a + (1,), i), (b + (1,), i), (a + (2,), i), (b + (2,), i)], None)
    assert not walk.done
    walk.feed([a, b], [(b + (1,), i), (b + (3,), i)], None)  # a: into b's subtree
    assert walk.request() == [b]
    assert set(walk.results[a]) == {(1,), (2,)} and set(walk.results[b]) == {(1,), (2,), (3,)}
    walk.feed([b], [(b + (2,), i)], None)  # not after the cursor: a looping agent
    assert walk.done and walk.looped == [b]
    # a shortened answer (fewer var-binds than asked) keeps the columns it did not reach
    short = Walk([a, b], max_varbinds=10, uptime=False, rows_hint={a: 2, b: 0})
    assert short.repetitions([a, b], 10) == 3
    short.feed([a, b], [(a + (1,), i)], None)
    assert short.request() == [a, b]
    short.feed([a, b], [(a + (2,), ("endOfMibView", None)), (b + (5,), ("noSuchObject", None))], 7)
    assert short.done


def test_walk_asks_a_short_column_with_the_long_ones_last_rows() -> None:
    """Sizes known from the last poll: a 3-row column waits for the GETBULK of a 24-row
    column's last rows rather than bring back 10 var-binds of which 6 are past its end."""
    from collectors.snmp.codec import Walk

    short, long_ = (1, 3, 6, 1, 9, 1), (1, 3, 6, 1, 9, 2)
    i = ("Integer32", 1)
    walk = Walk([short, long_], max_varbinds=10, uptime=False, rows_hint={short: 3, long_: 24})
    asked: list[tuple[list[tuple[int, ...]], int]] = []
    while not walk.done:
        batch = walk.request(10)
        reps = walk.repetitions(batch, 10)
        asked.append((batch, reps))
        vbs = []
        for k in range(1, reps + 1):  # row-major, as an agent answers, past the end
            for col in batch:
                n = len(walk.results[col]) + k
                rows = 3 if col == short else 24
                vbs.append((col + (n,) if n <= rows else (1, 3, 6, 1, 9, 3, n), i))
        walk.feed(batch, vbs, None)
    assert asked == [([long_], 10), ([long_], 10), ([short, long_], 5)]
    assert len(walk.results[short]) == 3 and len(walk.results[long_]) == 24
    # a first walk (sizes not known) asks every column together, as before
    assert Walk([short, long_], max_varbinds=10, uptime=False).request(10) == [short, long_]


def test_tag_values_from_columns() -> None:
    from collectors.snmp.codec import tag_text

    assert tag_text(("OctetString", b" srv-01 PSU1\r\n")) == "srv-01 PSU1"
    assert tag_text(("OctetString", b"DC\\rack 1\\")) == "DC\\rack 1/"
    assert tag_text(("OctetString", b"a\\ b")) == "a/ b"
    assert tag_text(("OctetString", b"")) is None
    assert tag_text(("Integer32", 8)) == "8"
    assert tag_text(("Integer32", 8), {8: "celsius"}) == "celsius"
    assert tag_text(("Integer32", 99), {8: "celsius"}) is None
    assert tag_text(("noSuchInstance", None)) is None


def test_tag_columns_are_walked_again_when_due_or_when_rows_change() -> None:
    """Outlet names (tag-only columns) are walked at the first poll, then kept for
    ``snmp.tag_refresh_s`` while every table has the same rows: a later poll asks none of
    their OIDs; a row added (or gone) has them walked in that same poll; ``0``: every poll."""
    doc = paris_chapelle(
        racks=1, servers_per_rack=1, snmp_base_port=free_ports(4, kind=socket.SOCK_DGRAM)
    )
    for d in doc["devices"]:
        if d["name"] == "pdu-R01-A":
            d["snmp"]["tag_refresh_s"] = 0.6
    cfg = SiteConfig.model_validate(doc)
    values = known_values(cfg, tables=True)
    pdu = cfg.device("pdu-R01-A")
    name_col = (1, 3, 6, 1, 4, 1, 318, 1, 1, 26, 9, 4, 3, 1, 3)  # rPDU2OutletMeteredStatusName
    asked: list[list[tuple[int, ...]]] = []
    original = SnmpPoller._request

    async def spy(self: SnmpPoller, kind: str, oids: Any, *args: Any) -> Any:
        asked[-1].extend(oids)
        return await original(self, kind, oids, *args)

    def names(readings: list[Any]) -> dict[str, str]:
        return {
            r.tags["outlet"]: r.tags["outlet_name"]
            for r in readings
            if r.measurement == "pdu_outlet"
        }

    def asked_names(oids: list[tuple[int, ...]]) -> bool:
        return any(o[: len(name_col)] == name_col for o in oids)

    async def body(_twin: SnmpTwin) -> list[tuple[list[Any], bool]]:
        poller = SnmpPoller(cfg, pdu)
        opts = pdu.options_as(SnmpOptions).model_copy(update={"tag_refresh_s": 0.0})
        every = SnmpPoller(cfg, pdu.model_copy(update={"options": opts}))
        out = []

        async def poll(p: SnmpPoller) -> None:
            asked.append([])
            readings = await p.poll()
            out.append((readings, asked_names(asked[-1])))

        await poll(poller)  # 0: the first poll walks everything
        values[pdu.name]["outlet/3/outlet_name"] = "renamed"
        await poll(poller)  # 1: the names as walked at the first poll
        await poll(every)  # 2: tag_refresh_s 0: walked every poll
        for name, value in table_values("apc_rpdu2", 0).items():
            if name.startswith("outlet/24/"):
                values[pdu.name]["outlet/25/" + name.split("/", 2)[2]] = value
        values[pdu.name]["outlet/25/outlet_name"] = "new outlet"
        await poll(poller)  # 3: a row more: the names walked again in this poll
        await poll(poller)  # 4: and kept again
        await asyncio.sleep(0.7)
        values[pdu.name]["outlet/3/outlet_name"] = "renamed again"
        await poll(poller)  # 5: tag_refresh_s passed: walked again
        return out

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(SnmpPoller, "_request", spy)
        polls = run(with_twin(cfg, values, body))
    assert [walked for _, walked in polls] == [True, False, True, True, False, True]
    got = [names(readings) for readings, _ in polls]
    assert got[0]["3"] == got[1]["3"] == "srv-03 PSU1" and len(got[1]) == 24
    assert got[2]["3"] == "renamed"
    assert got[3]["3"] == got[4]["3"] == "renamed" and got[3]["25"] == got[4]["25"] == "new outlet"
    assert got[5]["3"] == "renamed again" and len(got[5]) == 25
    # every other field and tag as the poll that walked the names read them
    for (a, _), (b, _) in ((polls[0], polls[1]), (polls[3], polls[4])):
        assert [(r.measurement, r.tags, r.fields) for r in a] == [
            (r.measurement, r.tags, r.fields) for r in b
        ]


class _OddAgent(asyncio.DatagramProtocol):
    """A proxy in front of an agent that behaves as some real agents do with GETBULK:
    ``nonrep0``: treats the non-repeaters as repeaters (the request passed on with
    non-repeaters 0, so its rows repeat them too); ``generr``: answers genErr to a GETBULK
    with scalars in it (more than one non-repeater); ``toobig``: answers tooBig to a
    GETBULK of more than ``limit`` repetitions while ``refuse`` is set."""

    def __init__(self, agent: tuple[str, int], mode: str, limit: int = 0) -> None:
        self.agent, self.mode, self.limit = agent, mode, limit
        self.refuse = True
        self.transport: Any = None
        self.clients: dict[int, Any] = {}
        self.bulks: list[tuple[int, int]] = []  # (non-repeaters, max-repetitions) asked
        self.marks: list[int] = []  # len(bulks) after each poll (set by the test)

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        from collectors.snmp import wire as w

        msg = w.decode_message(data)
        if msg.pdu_type == w.RESPONSE:
            self.transport.sendto(data, self.clients.pop(msg.request_id))
            return
        bulk = msg.pdu_type == w.GET_BULK
        if bulk:
            self.bulks.append((msg.error_status, msg.error_index))
        error = 0
        if bulk and self.mode == "generr" and msg.error_status > 1:
            error = 5  # genErr
        if bulk and self.mode == "toobig" and self.refuse and msg.error_index > self.limit:
            error = 1  # tooBig
        if error:
            body = w.encode_varbinds(msg.varbinds)
            out = w.encode_message(msg.version, msg.community, w.RESPONSE, msg.request_id, body,
                                   error_status=error)  # fmt: skip
            self.transport.sendto(out, addr)
            return
        self.clients[msg.request_id] = addr
        if bulk and self.mode == "nonrep0" and msg.error_status > 1:
            data = w.encode_message(msg.version, msg.community, w.GET_BULK, msg.request_id,
                                    w.encode_varbinds(msg.varbinds), error_status=0,
                                    error_index=msg.error_index)  # fmt: skip
        self.transport.sendto(data, self.agent)


def _through(mode: str, polls: int, limit: int = 0) -> tuple[Any, list[Any], _OddAgent]:
    """The PDU read straight from the agent once, then ``polls`` times through _OddAgent."""
    doc = paris_chapelle(
        racks=1, servers_per_rack=1, snmp_base_port=free_ports(4, kind=socket.SOCK_DGRAM)
    )
    cfg = SiteConfig.model_validate(doc)
    values = known_values(cfg, tables=True)
    pdu = cfg.device("pdu-R01-A")
    assert pdu.host is not None and pdu.port is not None
    proxy = _OddAgent((pdu.host, pdu.port), mode, limit)

    async def body(_twin: SnmpTwin) -> tuple[Any, list[Any]]:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: proxy, local_addr=("127.0.0.1", 0)
        )
        try:
            port = transport.get_extra_info("sockname")[1]
            direct = await SnmpPoller(cfg, pdu).poll()
            poller = SnmpPoller(cfg, pdu.model_copy(update={"port": port}))
            out = []
            for i in range(polls):
                if mode == "toobig" and i == 2:  # the agent answers 25 rows again
                    proxy.refuse = False
                    poller._max_rep_retry = 0.0  # as MAX_REP_RETRY_S later
                out.append(await poller.poll())
                proxy.marks.append(len(proxy.bulks))
        finally:
            transport.close()
        return direct, out

    direct, out = run(with_twin(cfg, values, body))
    return direct, out, proxy


def _same(a: Any, b: Any) -> bool:
    return [(r.measurement, r.tags, r.fields) for r in a] == [
        (r.measurement, r.tags, r.fields) for r in b
    ]


def test_an_agent_repeating_the_non_repeaters_loses_no_row() -> None:
    """Its answer to the GETBULK with the scalars holds more var-binds than a GETBULK can:
    the columns are asked again alone, and the scalars by GET from then on."""
    direct, polls, proxy = _through("nonrep0", 2)
    for got in polls:
        assert sum(r.measurement == "pdu_outlet" for r in got) == 24
        assert _same(got, direct)
    assert sum(nr > 1 for nr, _ in proxy.bulks) == 1  # folded once, not again


def test_error_answers_to_the_folded_getbulk_stop_folding() -> None:
    """genErr to every GETBULK with the scalars in it: each poll asks again without them, and
    after FOLD_ERRORS_MAX polls the scalars are asked by GET only: the readings the same."""
    from collectors.snmp.poller import FOLD_ERRORS_MAX

    direct, polls, proxy = _through("generr", FOLD_ERRORS_MAX + 2)
    for got in polls:
        assert _same(got, direct)
    assert sum(nr > 1 for nr, _ in proxy.bulks) == FOLD_ERRORS_MAX


def test_a_toobig_lowers_the_cap_until_it_is_tried_again() -> None:
    """tooBig above 12 repetitions: the poll asks half as many and the device's later polls
    start there (not 25 again); once the retry time has come the configured 25 is asked
    again, and kept when the agent answers it."""
    direct, polls, proxy = _through("toobig", 4, limit=12)
    for got in polls:
        assert _same(got, direct)
    reps = [r for _, r in proxy.bulks]
    per_poll = [reps[a:b] for a, b in zip([0, *proxy.marks], proxy.marks, strict=False)]
    assert per_poll[0][0] == 25 and max(per_poll[0][1:]) <= 12, per_poll
    assert max(per_poll[1]) <= 12, per_poll  # the device's later polls start at 12
    assert per_poll[2][0] == 25 and per_poll[3][0] == 25, per_poll  # tried again, kept


def test_walk_stops_a_column_at_max_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """A column that reaches MAX_ROWS (a looping agent's endless table) ends there, in the
    middle of an answer; the other columns of the batch go on."""
    from collectors.snmp import codec

    monkeypatch.setattr(codec, "MAX_ROWS", 3)
    a, b = (1, 3, 6, 1, 9, 1), (1, 3, 6, 1, 9, 2)
    i = ("Integer32", 1)
    walk = codec.Walk([a, b], max_varbinds=10, uptime=False)
    walk.feed([a, b], [(a + (1,), i), (b + (1,), i), (a + (2,), i), (b + (2,), i)], None)
    assert walk.request() == [a, b]
    walk.feed([a, b], [(a + (3,), i), (b + (3,), i), (a + (4,), i), (b + (4,), i)], None)
    assert walk.done  # both at 3 rows, the 4th of each not taken
    assert sorted(walk.results[a]) == sorted(walk.results[b]) == [(1,), (2,), (3,)]


def test_table_rows_share_their_tags_while_the_tag_columns_are_the_same() -> None:
    """A row's tags (the device's and the row's) are one dict from poll to poll while the tag
    columns are the very ones of the last poll and the device's tags too; new ones when
    either changes."""
    from collectors.snmp.codec import RateState, TablePlan, oid_of
    from collectors.snmp.profile import TableSpec

    spec = TableSpec.model_validate(
        {
            "name": "outlets",
            "index": ["outlet"],
            "tags": [{"name": "outlet_name", "oid": "1.3.6.1.9.2"}],
            "fields": [
                {"name": "power_w", "oid": "1.3.6.1.9.1", "kind": "gauge", "scale": 0.1},
                {"name": "energy_wh_total", "oid": "1.3.6.1.9.3", "kind": "counter"},
            ],
        }
    )
    plan = TablePlan(spec, "pdu_outlet")
    power, name, energy = (oid_of(f"1.3.6.1.9.{k}") for k in (1, 2, 3))
    walked: dict[Any, Any] = {
        power: {(1,): (("Integer32", 15), None), (2,): (("Gauge32", 7), None)},
        energy: {(1,): (("Counter32", 9), None), (2,): (("Counter32", 4), None)},
        name: {(1,): (("OctetString", b"srv-1"), None), (2,): (("OctetString", b"srv-2"), None)},
    }
    base = {"site": "s", "device": "pdu-1"}

    def rows(w: dict[Any, Any], tags: dict[str, str]) -> list[Any]:
        return plan.rows(w, tags, 7, 0.0, RateState(), [])

    first, again = rows(walked, base), rows(walked, base)
    assert [(r.tags, r.fields) for r in first] == [
        ({"site": "s", "device": "pdu-1", "outlet": "1", "outlet_name": "srv-1"},
         {"power_w": 1.5, "energy_wh_total": 9}),
        ({"site": "s", "device": "pdu-1", "outlet": "2", "outlet_name": "srv-2"},
         {"power_w": 0.7, "energy_wh_total": 4}),
    ]  # fmt: skip
    assert type(first[0].fields["power_w"]) is float
    assert type(first[0].fields["energy_wh_total"]) is int
    assert all(a.tags is b.tags for a, b in zip(first, again, strict=True))
    renamed = {**walked, name: {(1,): (("OctetString", b"web"), None)}}
    assert [r.tags.get("outlet_name") for r in rows(renamed, base)] == ["web", None]
    other = rows(renamed, {"site": "s", "device": "pdu-2"})
    assert [r.tags["device"] for r in other] == ["pdu-2", "pdu-2"]
