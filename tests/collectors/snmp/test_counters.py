"""Rates from SNMP counters: Counter32/Counter64 wraps and agent restarts (sysUpTime going
back) never give a negative or a huge rate. The rule alone (``counter_rate``), then a real
agent: snmpsim serving IF-MIB octet counters that wrap every few seconds, restarted mid-test."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collectors.snmp.codec import RateState, Sample, _Rate, counter_rate
from collectors.snmp.poller import SnmpPoller
from collectors.snmp.profile import SnmpProfile
from dcim.config import SiteConfig
from tests.collectors.snmpsim_server import Snmpsim, start_snmpsim

CASE = Path(__file__).resolve().parents[2] / "captures" / "snmp" / "counter_wrap"
OCTETS_PER_S = 1_000_000_000  # interface 1 in device.snmprec: 8 Gbit/s
IDLE_OCTETS_PER_S = 2_500  # interface 2


# -- the rule -------------------------------------------------------------------------------


def s(raw: int, ticks: int | None, mono: float = 0.0) -> Sample:
    return Sample(raw, ticks, mono)


def test_a_counter32_wrap_is_one_step_across_2_pow_32() -> None:
    assert counter_rate(s(2**32 - 1000, 100), s(500, 200), bits=32) == 1500.0
    assert counter_rate(s(10, 100), s(510, 300), bits=32) == 250.0


def test_a_counter64_wrap_is_one_step_across_2_pow_64() -> None:
    assert counter_rate(s(2**64 - 10, 0), s(90, 1000), bits=64) == 10.0


def test_no_rate_where_there_is_no_honest_one() -> None:
    # first sample, agent restarted (sysUpTime back), no time passed
    assert counter_rate(None, s(5, 100), bits=32) is None
    assert counter_rate(s(5_000, 90_000), s(6_000, 100), bits=32) is None
    assert counter_rate(s(5, 100), s(6, 100), bits=32) is None
    # a Counter32 that would have to count more than half its range to wrap back to where it
    # is was reset, not wrapped (a reset from near the top looks like a wrap: then only
    # sysUpTime or rate_max can tell, which is why sysUpTime is read with every counter)
    assert counter_rate(s(1_000_000_000, 100), s(5, 200), bits=32) is None
    # a Counter64 going down is never a wrap in practice: a reset
    assert counter_rate(s(10**12, 100), s(10, 200), bits=64) is None
    # an INTEGER counter (APC energy) going down was reset by a user
    assert counter_rate(s(98_765, 100), s(3, 200), bits=None) is None


def test_without_sysuptime_the_collector_clock_is_used() -> None:
    assert counter_rate(s(0, None, 10.0), s(50, None, 12.0), bits=32) == 25.0
    assert counter_rate(s(0, 100, 10.0), s(50, None, 12.0), bits=32) == 25.0


def test_rate_max_refuses_an_impossible_rate() -> None:
    state = RateState()
    r = _Rate(name="power_w", counter="e", factor=3600.0, bits=32, rate_max=50_000.0)
    assert state.rate(("e",), s(0, 0), r) is None
    assert state.rate(("e",), s(10, 100), r) == 36_000.0  # 10 Wh in 1 s: 36 kW
    assert state.rate(("e",), s(30, 200), r) is None  # 72 kW: above rate_max, left out
    assert state.rate(("e",), s(31, 300), r) == 3_600.0


# -- against a real agent -------------------------------------------------------------------


@pytest.fixture
def agent() -> Iterator[Snmpsim]:
    sim = start_snmpsim({"counter_wrap": CASE / "device.snmprec"})
    try:
        yield sim
    finally:
        sim.cleanup()


def site(port: int) -> SiteConfig:
    return SiteConfig.model_validate(
        {
            "site": {"name": "lab"},
            "profile_dirs": [str(CASE / "profiles")],
            "devices": [
                {
                    "name": "sw-R01-tor1",
                    "protocol": "snmp",
                    "profile": "if_traffic",
                    "host": "127.0.0.1",
                    "port": port,
                    "timeout_s": 1.0,
                    "retries": 2,
                    "snmp": {"version": "2c", "community": {"value": "counter_wrap"}},
                }
            ],
        }
    )


def rows(readings: list[Any]) -> dict[str, dict[str, Any]]:
    """{"uplink" | "if1" | "if2": fields} of one poll."""
    out = {}
    for r in readings:
        key = "uplink" if r.measurement == "uplink" else f"if{r.tags['if_index']}"
        out[key] = r.fields
    return out


def test_wraps_and_a_restart_never_give_a_spike(agent: Snmpsim) -> None:
    cfg = site(agent.port)
    profile = cfg.profiles()["if_traffic"]
    assert isinstance(profile, SnmpProfile)
    assert profile.tables[0].fields[-1].rate_of == "hc_in_octets_total"

    async def polls(poller: SnmpPoller, n: int) -> list[dict[str, dict[str, Any]]]:
        out = []
        for _ in range(n):
            out.append(rows(await poller.poll()))
            await asyncio.sleep(0.45)
        return out

    async def go() -> tuple[list[Any], list[Any]]:
        poller = SnmpPoller(cfg, cfg.devices[0])
        # Counter32 and Counter64 of interface 1 wrap 3 s after the agent started, then the
        # Counter32 every 4.3 s: 14 polls about half a second apart see at least one of each.
        before = await polls(poller, 14)
        agent.stop()  # the agent restarts: sysUpTime and every counter start again
        agent.start()
        agent.wait_ready("counter_wrap")
        after = await polls(poller, 3)
        await poller.close()
        return before, after

    before, after = asyncio.run(go())

    def wrapped(series: list[dict[str, dict[str, Any]]], key: str, field: str) -> list[int]:
        return [
            i for i in range(1, len(series)) if series[i][key][field] < series[i - 1][key][field]
        ]

    c32 = wrapped(before, "if1", "in_octets_total")
    c64 = wrapped(before, "if1", "hc_in_octets_total")
    assert c32 and c64, "the counters did not wrap during the test"
    fast, idle = 8 * OCTETS_PER_S, 8 * IDLE_OCTETS_PER_S
    # Every rate read, wrap or not: the agent's real rate, never negative, never huge.
    for poll in before[1:] + after:
        for key, want in (("uplink", fast), ("if1", fast), ("if2", idle)):
            for rate in ("in_bps", "hc_in_bps"):
                if rate in poll[key]:
                    assert poll[key][rate] == pytest.approx(want, rel=0.1), (key, rate, poll)
    # Right after each wrap the rate is there (a wrap is not a reset).
    for i in c32:
        assert before[i]["if1"]["in_bps"] == pytest.approx(fast, rel=0.1)
        assert before[i]["uplink"]["in_bps"] == pytest.approx(fast, rel=0.1)
    for i in c64:
        assert before[i]["if1"]["hc_in_bps"] == pytest.approx(fast, rel=0.1)
    # Every poll but the first has its rates...
    assert all("in_bps" in p["if1"] and "hc_in_bps" in p["if2"] for p in before[1:])
    # ...except the first after the restart: sysUpTime went back, so no rate at all, although
    # the counters themselves are read (the KPI code handles their reset).
    first = after[0]
    assert "in_octets_total" in first["if1"] and "hc_in_octets_total" in first["if1"]
    assert not any(k.endswith("_bps") for fields in first.values() for k in fields), first
    assert all("in_bps" in p["if1"] and "in_bps" in p["uplink"] for p in after[1:])
