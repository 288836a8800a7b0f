"""Redfish paths, decoding and profile checks: pure logic on hand-written JSON."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from pydantic import ValidationError

from collectors.redfish.codec import Decoder, Plan, chassis_links, get, pick_chassis
from collectors.redfish.profile import RedfishField, RedfishProfile, parse_path
from dcim.profiles import load_profiles

THERMAL = {
    "Temperatures": [
        {"Name": "CPU1 Temp", "PhysicalContext": "CPU", "ReadingCelsius": 51},
        {"Name": "CPU1 DTS", "PhysicalContext": "CPU", "ReadingCelsius": -47},
        {"Name": "Inlet", "PhysicalContext": "Intake", "ReadingCelsius": 21.5},
        {
            "Name": "GPU",
            "PhysicalContext": "GPU",
            "ReadingCelsius": 0,
            "Status": {"State": "Absent"},
        },
    ],
    "Fans": [
        {"FanName": "Fan 1", "Reading": 5400, "ReadingUnits": "RPM"},
        {"Name": "Fan 2", "Reading": 43, "ReadingUnits": "Percent"},
        {"Name": "Fan 3", "Reading": None, "ReadingUnits": "RPM", "Status": {"Health": "OK"}},
    ],
}


def test_paths_index_filter_and_regex() -> None:
    assert get(THERMAL, parse_path("Temperatures.2.ReadingCelsius")) == 21.5
    assert get(THERMAL, parse_path("Temperatures[PhysicalContext=Intake].ReadingCelsius")) == 21.5
    assert get(THERMAL, parse_path("Temperatures[Name~(?i)^cpu1 t].ReadingCelsius")) == 51
    assert get(THERMAL, parse_path("Temperatures[PhysicalContext=CPU,Name~DTS].Name")) == "CPU1 DTS"
    assert get(THERMAL, parse_path("Temperatures[PhysicalContext=Exhaust].ReadingCelsius")) is None
    assert get(THERMAL, parse_path("Temperatures.9.ReadingCelsius")) is None
    assert get(THERMAL, parse_path("Fans.ReadingUnits")) is None  # a list has no keys
    assert get([{"a": {"b": 1}}], parse_path("[a.b=1].a.b")) == 1


@pytest.mark.parametrize("bad", ["", "A..B", "A[B", "A[K]", "A[=1]", "A[K~(]", "[K=1"], ids=repr)
def test_bad_paths_say_what_is_wrong(bad: str) -> None:
    with pytest.raises(ValueError, match="path"):
        parse_path(bad)


def _field(**kw: Any) -> RedfishField:
    return RedfishField.model_validate({"name": "x", "path": "v", **kw})


def test_decoder_numbers_codes_and_what_is_left_out() -> None:
    dec = Decoder.of(_field(scale=1000), "v")
    assert dec.decode({"v": 1.5}) == 1500.0
    for nothing in (None, True, "12", math.nan, math.inf, [1]):
        assert dec.decode({"v": nothing}) is None, nothing
    health = Decoder.of(
        _field(kind="state", codes={"OK": 0, "Warning": 1, "Critical": 2}), "Status.Health"
    )
    got = [health.decode({"Status": {"Health": h}}) for h in ("OK", "Warning", "Critical")]
    assert got == [0, 1, 2] and all(type(v) is int for v in got)
    assert health.decode({"Status": {"Health": "Unknown"}}) is None
    assert health.decode({"Status": {}}) is None
    rpm = Decoder.of(_field(where={"ReadingUnits": ["RPM"]}), "Reading")
    assert rpm.decode({"Reading": 5400, "ReadingUnits": "RPM"}) == 5400.0
    assert rpm.decode({"Reading": 43, "ReadingUnits": "Percent"}) is None


def test_thermal_rows_of_the_generic_profile() -> None:
    plan = Plan.of(profile())

    async def fetch(resources: set[str]) -> None:
        docs.update({r: THERMAL for r in resources if r == "thermal"})

    docs: dict[str, Any] = {}
    reader = plan.read({"chassis", "thermal"}, fetch, {"device": "d"}, 7)
    out = asyncio.run(reader.run(docs))
    rows = {
        (r.measurement, *(v for k, v in r.tags.items() if k != "device")): r.fields for r in out
    }
    assert rows == {
        ("server",): {"inlet_temp_c": 21.5},
        ("server_temperature", "CPU1 Temp"): {"temp_c": 51.0},
        ("server_temperature", "Inlet"): {"temp_c": 21.5},
        ("server_fan", "Fan 1"): {"speed_rpm": 5400.0},
        ("server_fan", "Fan 2"): {"speed_pct": 43.0},
        ("server_fan", "Fan 3"): {"health": 0},
    }
    assert all(r.time_ns == 7 for r in out)


def test_a_field_moves_to_its_next_source_when_the_first_has_nothing() -> None:
    """EnvironmentMetrics served but without PowerWatts: the older Power resource is read in
    a second round of the same poll."""
    power_w = {
        "name": "power_w",
        "from": [
            {"resource": "environment_metrics", "path": "PowerWatts.Reading"},
            {"resource": "power", "path": "PowerControl.0.PowerConsumedWatts"},
        ],
    }
    plan = Plan.of(RedfishProfile.model_validate(_doc(fields=[power_w])))
    fetched: list[set[str]] = []
    bodies = {
        "environment_metrics": {"TemperatureCelsius": {"Reading": 20}},
        "power": {"PowerControl": [{"PowerConsumedWatts": 412}]},
    }

    async def fetch(resources: set[str]) -> None:
        fetched.append(set(resources))
        docs.update({r: bodies[r] for r in resources if r in bodies})

    docs: dict[str, Any] = {}
    out = asyncio.run(plan.read(set(bodies), fetch, {}, 1).run(docs))
    assert out[0].fields == {"power_w": 412.0}
    assert fetched == [{"environment_metrics"}, {"power"}]


def test_chassis_choice_and_links() -> None:
    bodies = {
        "/redfish/v1/Chassis/Enclosure": {"Id": "Enclosure"},
        "/redfish/v1/Chassis/1": {"Id": "1", "Power": {"@odata.id": "/redfish/v1/Chassis/1/Power"}},
    }
    assert pick_chassis(bodies, None) == "/redfish/v1/Chassis/1"
    assert pick_chassis(bodies, "Enclosure") == "/redfish/v1/Chassis/Enclosure"
    assert pick_chassis(bodies, "nope") is None
    links = chassis_links("/redfish/v1/Chassis/1", bodies["/redfish/v1/Chassis/1"])
    assert links == {"chassis": "/redfish/v1/Chassis/1", "power": "/redfish/v1/Chassis/1/Power"}


def profile() -> RedfishProfile:
    prof = load_profiles()["redfish_dmtf"]
    assert isinstance(prof, RedfishProfile)
    return prof


def _doc(**kw: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "p",
        "protocol": "redfish",
        "measurement": "server",
        "fields": [{"name": "power_w", "from": [{"resource": "power", "path": "X"}]}],
    }
    doc.update(kw)
    return doc


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"fields": [{"name": "power_w", "path": "X"}]}, "give 'from'"),
        ({"fields": [{"name": "p", "from": [{"resource": "nope", "path": "X"}]}]}, "resource"),
        ({"fields": [{"name": "p", "from": [{"resource": "power", "path": "A["}]}]}, "path"),
        ({"fields": [{"name": "p", "oid": "1.3.6", "from": []}]}, "oid\n  Extra inputs"),
        (
            {
                "tables": [
                    {
                        "name": "t",
                        "from": [
                            {
                                "resource": "thermal",
                                "tags": {"s": "Name"},
                                "fields": [{"name": "x", "path": "R"}],
                            }
                        ],
                    }
                ]
            },
            "not a collection",
        ),
        (
            {
                "tables": [
                    {
                        "name": "t",
                        "from": [
                            {
                                "resource": "sensors",
                                "tags": {"device": "Name"},
                                "fields": [{"name": "x", "path": "R"}],
                            }
                        ],
                    }
                ]
            },
            "tag 'device'",
        ),
    ],
)
def test_profile_errors_say_what_is_wrong(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RedfishProfile.model_validate(_doc(**change))


def test_generic_profile_reads_both_generations() -> None:
    prof = profile()
    assert {"environment_metrics", "power", "sensors", "thermal"} <= prof.resources()
    for t in prof.tables:
        assert len(t.sources) == 2, t.name  # newer resource first, then the older one
