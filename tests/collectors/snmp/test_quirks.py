"""Synthetic walks of each quirk real agents were seen with (``tests/captures/snmp/quirks/``),
served by snmpsim, polled through the profile and screened as the pipeline screens them
(:mod:`dcim.plausible`): no implausible value passes, each refusal is counted with its
reason, and the quirks the profile knows (rows ``1.0``, lines a device does not have,
transceiver light levels) give the right readings."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collectors.snmp.poller import SnmpPoller
from dcim.config import SiteConfig
from dcim.plausible import Screen
from dcim.reading import Reading
from tests.collectors.snmpsim_server import Snmpsim, start_snmpsim

QUIRKS = Path(__file__).resolve().parents[2] / "captures" / "snmp" / "quirks"
WALKS = sorted(p.stem for p in QUIRKS.glob("*.snmprec"))


@pytest.fixture(scope="module")
def agent() -> Iterator[Snmpsim]:
    sim = start_snmpsim({name: QUIRKS / f"{name}.snmprec" for name in WALKS})
    try:
        yield sim
    finally:
        sim.cleanup()


def poll(
    agent: Snmpsim, walk: str, profile: str = "ups_rfc1628", **device: Any
) -> tuple[list[Reading], dict[tuple[str, str, str], int]]:
    cfg = SiteConfig.model_validate(
        {
            "site": {"name": "quirks"},
            "devices": [
                {
                    "name": walk,
                    "protocol": "snmp",
                    "profile": profile,
                    "host": "127.0.0.1",
                    "port": agent.port,
                    "snmp": {"community": {"value": walk}},
                    **device,
                }
            ],
        }
    )
    screen = Screen.of(cfg)

    async def go() -> list[Reading]:
        poller = SnmpPoller(cfg, cfg.devices[0])
        try:
            return screen(await poller.poll())
        finally:
            await poller.close()

    return asyncio.run(go()), screen.totals()


def field(readings: list[Reading], meas: str, name: str, **tags: str) -> list[Any]:
    return [
        r.fields[name]
        for r in readings
        if r.measurement == meas and name in r.fields and r.tags.items() >= tags.items()
    ]


def test_unknown_codes_are_refused_as_no_value(agent: Snmpsim) -> None:
    readings, totals = poll(agent, "ups_unknown")
    assert field(readings, "ups_input", "current_a") == []  # -1 on every line
    assert field(readings, "ups_input", "voltage_v") == [232.0, 230.0, 233.0]
    for name in ("battery_charge_pct", "battery_temp_c", "battery_runtime_min"):
        assert field(readings, "ups", name) == [], name
        assert totals[("ups_unknown", name, "no_value")] == 1, name
    assert totals[("ups_unknown", "current_a", "no_value")] == 3


def test_wrong_scaling_is_refused_then_corrected_in_the_site_file(agent: Snmpsim) -> None:
    readings, totals = poll(agent, "ups_scaled")
    assert field(readings, "ups_input", "voltage_v") == []
    assert field(readings, "ups_input", "frequency_hz") == []
    assert totals[("ups_scaled", "voltage_v", "above_range")] == 3
    assert totals[("ups_scaled", "frequency_hz", "above_range")] == 3
    assert totals[("ups_scaled", "output_frequency_hz", "above_range")] == 1
    fixes = {
        "voltage_v": {"scale": 0.1},
        "frequency_hz": {"scale": 0.1},
        "output_frequency_hz": {"scale": 0.1},
    }
    readings, totals = poll(agent, "ups_scaled", corrections=fixes)
    assert field(readings, "ups_input", "voltage_v") == [231.8, 230.2, 232.7]
    assert field(readings, "ups_input", "frequency_hz") == [50.0, 50.0, 50.0]
    assert field(readings, "ups", "output_frequency_hz") == [49.98]
    # "voltage_v" corrects every voltage_v of the profile: the output's too (in volts here)
    assert field(readings, "ups_output", "voltage_v") == [23.0, 23.0, 23.0]
    assert not any(r.endswith("_range") for _, _, r in totals)
    # "ups_input.voltage_v" corrects the input lines only
    fixes["ups_input.voltage_v"] = fixes.pop("voltage_v")
    readings, totals = poll(agent, "ups_scaled", corrections=fixes)
    assert field(readings, "ups_input", "voltage_v") == [231.8, 230.2, 232.7]
    assert field(readings, "ups_output", "voltage_v") == [230.0, 230.0, 230.0]


def test_lines_a_single_phase_ups_does_not_have_are_not_readings(agent: Snmpsim) -> None:
    readings, totals = poll(agent, "ups_single_phase")
    for meas in ("ups_input", "ups_output"):
        assert {r.tags["line"] for r in readings if r.measurement == meas} == {"1"}, meas
    assert field(readings, "ups_input", "voltage_v") == [232.0]
    assert totals == {}  # not refusals: no row at all


def test_rows_indexed_dot_zero_are_rows(agent: Snmpsim) -> None:
    readings, _ = poll(agent, "ups_index_dot0")
    assert {r.tags["line"] for r in readings if r.measurement == "ups_input"} == {"1", "2", "3"}
    assert field(readings, "ups_input", "power_w", line="2") == [9180.0]
    # the scalars read from row 1 (upsInputTruePower.1...) are answered at .1.0
    assert field(readings, "ups", "input_power_w") == [9370.0]
    assert field(readings, "ups", "output_power_w") == [9020.0]
    assert field(readings, "ups", "output_load_pct") == [45.0]


def test_transceiver_light_is_not_electrical_power(agent: Snmpsim) -> None:
    readings, totals = poll(agent, "entity_optics", profile="entity_sensor")
    by_sensor = {r.tags["sensor"]: r.fields for r in readings}
    assert by_sensor["PowerSupply1 input power"] == {"power_w": 187.0}
    assert by_sensor["Ethernet1/1 Rx Power"] == {"optical_power_dbm": -3.12}
    # micro- and milliwatt sensors (a transceiver's light level): no field at all
    assert "Ethernet1/1 Tx Power" not in by_sensor
    assert "Ethernet1/2 Tx Power" not in by_sensor
    # -50 dBm (no light) is outside the optical range: refused, counted
    assert "Ethernet1/2 Rx Power" not in by_sensor
    assert totals == {("entity_optics", "optical_power_dbm", "below_range"): 1}
    assert all(float(v) < 1000 for f in by_sensor.values() for v in f.values())


def test_nonsense_types_and_extremes_never_pass(agent: Snmpsim) -> None:
    readings, totals = poll(agent, "ups_nonsense")
    ups = next(r.fields for r in readings if r.measurement == "ups")
    for name in ("battery_status", "battery_runtime_min", "battery_charge_pct"):
        assert name not in ups, name  # wrong types: left out by the codec
    for name in ("battery_voltage_v", "battery_temp_c", "output_frequency_hz", "input_power_w"):
        assert name not in ups, name
    assert field(readings, "ups_input", "voltage_v", line="1") == []
    assert field(readings, "ups_input", "voltage_v", line="2") == []
    assert field(readings, "ups_output", "load_pct", line="1") == []
    assert field(readings, "ups_output", "voltage_v", line="2") == []
    assert field(readings, "ups_output", "voltage_v", line="3") == [230.0]
    assert totals[("ups_nonsense", "battery_voltage_v", "above_range")] == 1
    assert totals[("ups_nonsense", "battery_temp_c", "below_range")] == 1
    assert totals[("ups_nonsense", "voltage_v", "above_range")] == 3
    assert totals[("ups_nonsense", "load_pct", "above_range")] == 1


def test_a_no_value_code_is_never_a_rate_sample() -> None:
    """A counter answering -1 (no reading) between two good samples: the rate is computed
    from the good ones only, never from -1 to a real index (a huge rate)."""
    from collectors.snmp.codec import RateState, ScalarPlan, oid_of
    from collectors.snmp.profile import SnmpField

    fields = [
        SnmpField(name="energy_wh_total", kind="counter", oid="1.3.6.1.4.1.9.1.0",
                  snmp_type="Integer32", scale=100, no_value=(-1,)),
        SnmpField(name="power_w", rate_of="energy_wh_total", scale=3600),
    ]  # fmt: skip
    plan = ScalarPlan.of(fields, max_varbinds=10)
    state = RateState()
    oid = oid_of("1.3.6.1.4.1.9.1.0")
    got = []
    for t, raw in ((0.0, 1000), (10.0, -1), (20.0, 1010)):
        missing: list[tuple[str, str]] = []
        got.append(plan.decode({oid: ("Integer32", raw)}, {}, t, state, missing))
    assert "power_w" not in got[0] and "power_w" not in got[1]
    # 10 counts of 100 Wh in 20 s: 180 kW, from the two good samples
    assert got[2]["power_w"] == pytest.approx(10 * 100 * 3600 / 20)
