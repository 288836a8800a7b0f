"""Several devices behind one SNMP agent address (a proxy agent, a chassis manager, a PDU's
modules): told apart by community (v1/v2c) or by SNMPv3 user and context, each polled on its
own cadence with its own credentials, by a real collector into its embedded store. The agent
is snmpsim: one data file per community, whose name is also the SNMPv3 contextName."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dcim.config import parse_config
from dcim.runtime import Collector
from tests.collectors.snmpsim_server import Snmpsim, start_snmpsim

POWER = "1.3.6.1.4.1.318.1.1.26.4.3.1.5.1"  # rPDU2DeviceStatusPower.1, hundredths of kW
VOLTAGE = "1.3.6.1.4.1.318.1.1.26.6.3.1.6.1"  # rPDU2PhaseStatusVoltage.1, V
# data file (= community = v3 context) -> (power in hundredths of kW, voltage)
MODULES = {"pdu-a": (123, 229), "pdu-b": (234, 230), "module1": (345, 231), "module2": (456, 232)}
ENGINE_ID = "8000c53f0401020304"  # the agent's snmpEngineID, also module-2's contextEngineID
USERS = {  # snmpsim's v3 users: (auth proto, auth key, priv proto, priv key)
    "alice": ("SHA", "alice-auth-123", "AES", "alice-priv-456"),
    "bob": ("SHA256", "bob-auth-789", "AES256", "bob-priv-012"),
}


def snmprec(power: int, voltage: int) -> str:
    return f"1.3.6.1.2.1.1.3.0|67|4242\n{POWER}|2|{power}\n{VOLTAGE}|2|{voltage}\n"


@pytest.fixture(scope="module")
def agent() -> Iterator[Snmpsim]:
    users: list[str] = []
    for user, (ap, ak, pp, pk) in USERS.items():
        users += [
            f"--v3-user={user}",
            f"--v3-auth-proto={ap}",
            f"--v3-auth-key={ak}",
            f"--v3-priv-proto={pp}",
            f"--v3-priv-key={pk}",
        ]
    sim = start_snmpsim(
        {name: snmprec(*v) for name, v in MODULES.items()}, *users, engine_id=ENGINE_ID
    )
    try:
        yield sim
    finally:
        sim.cleanup()


def v3(user: str, context: str, *, auth_key: str | None = None) -> dict[str, Any]:
    ap, ak, pp, pk = USERS[user]
    return {
        "version": "3",
        "user": user,
        "context": context,
        "auth_protocol": ap,
        "auth_key": {"value": auth_key or ak},
        "priv_protocol": "AES256" if pp == "AES256" else pp,
        "priv_key": {"value": pk},
    }


# name -> (interval_s, snmp section); the last two have wrong credentials
DEVICES: dict[str, tuple[float, dict[str, Any]]] = {
    "pdu-a": (1.0, {"version": "2c", "community": {"value": "pdu-a"}}),
    "pdu-b": (2.0, {"version": "1", "community": {"value": "pdu-b"}}),
    "module-1": (1.0, v3("alice", "module1")),
    "module-2": (2.0, v3("bob", "module2") | {"context_engine_id": ENGINE_ID}),
    "wrong-community": (1.0, {"version": "2c", "community": {"value": "pdu-x"}}),
    # alice's name with another key, on the other context: must not replace alice's keys
    "wrong-key": (1.0, v3("alice", "module2", auth_key="not-alice-at-all")),
}


def site_yaml(tmp: Path, port: int) -> str:
    doc = {
        "site": {"name": "plant-room"},
        "defaults": {"timeout_s": 0.5, "retries": 0},
        "storage": {
            "spool_dir": str(tmp / "spool"),
            "sink": {"type": "embedded", "path": str(tmp / "store.sqlite")},
        },
        "alerts": {"default_pack": False},
        "devices": [
            {
                "name": name,
                "protocol": "snmp",
                "profile": "apc_rpdu2",
                "host": "127.0.0.1",
                "port": port,
                "interval_s": interval,
                "snmp": snmp,
            }
            for name, (interval, snmp) in DEVICES.items()
        ],
    }
    return yaml.safe_dump(doc)


def stored(path: Path) -> list[tuple[str, dict[str, str], str, Any]]:
    con = sqlite3.connect(path)
    try:
        rows = con.execute(
            "SELECT s.measurement, s.tags, f.name, p.value FROM point p "
            "JOIN series s ON s.id = p.series_id JOIN field_key f ON f.id = p.field_id"
        ).fetchall()
    finally:
        con.close()
    return [(m, json.loads(t), f, v) for m, t, f, v in rows]


def errors_of(points: list[tuple[str, dict[str, str], str, Any]], name: str) -> list[Any]:
    """The errors of a device's failed polls."""
    return [
        v
        for m, t, f, v in points
        if m == "dcim_poll" and f == "error" and t["device"] == name and v
    ]


def test_devices_behind_one_agent_each_on_its_cadence_and_credentials(
    agent: Snmpsim, tmp_path: Path
) -> None:
    cfg = parse_config(site_yaml(tmp_path, agent.port), filename="site.yaml")  # no duplicate
    seconds = 8.5

    async def go() -> None:
        col = Collector(cfg)
        await col.start()
        try:
            await asyncio.sleep(seconds)
        finally:
            await col.stop()
        col.store.close()

    asyncio.run(go())
    points = stored(tmp_path / "store.sqlite")
    # Each device's readings are its own module's, never another's.
    for name, data in (
        ("pdu-a", "pdu-a"),
        ("pdu-b", "pdu-b"),
        ("module-1", "module1"),
        ("module-2", "module2"),
    ):
        power, volt = MODULES[data]
        got = {(f, v) for m, t, f, v in points if m == "pdu" and t["device"] == name}
        assert got == {("power_w", power * 10.0), ("voltage_v", float(volt))}, name
    # Each on its own cadence: polls as its interval says (a second's slack for start/stop).
    polls = Counter(t["device"] for m, t, f, v in points if m == "dcim_poll" and f == "up")
    up = Counter(t["device"] for m, t, f, v in points if m == "dcim_poll" and f == "up" and v)
    for name, (interval, _) in DEVICES.items():
        expected = seconds / interval
        assert expected - 2 <= polls[name] <= expected + 1, (name, polls[name], expected)
    # Wrong credentials on one device: its polls fail, the others' succeed (all but maybe
    # the first, which imports pysnmp and discovers the v3 engine, and one more on a loaded
    # machine) and never for want of credentials.
    assert up["wrong-community"] == 0 and up["wrong-key"] == 0
    for name in ("pdu-a", "pdu-b", "module-1", "module-2"):
        assert up[name] >= polls[name] - 2, (name, up[name], polls[name], errors_of(points, name))
        assert set(errors_of(points, name)) <= {"deadline", "timeout", "missed"}, name
    errors = {t["device"]: v for m, t, f, v in points if m == "dcim_poll" and f == "error" and v}
    assert errors["wrong-community"] == "timeout", errors
    assert errors["wrong-key"] == "auth", errors
    assert not any(m == "pdu" and t["device"].startswith("wrong") for m, t, f, v in points)
