"""Profile model: what the built-in profiles declare, and where counters wrap."""

from __future__ import annotations

import re

import pytest

from collectors.snmp.profile import SnmpField, SnmpProfile
from dcim.profiles import load_profiles, parse_profile


@pytest.mark.parametrize(
    ("profile", "field", "wrap_at"),
    [
        ("heat_meter_en1434", "heat_energy_wh_total", 2.0**32),  # uint32 Wh
        ("heat_meter_en1434", "volume_m3_total", 2.0**32 * 0.001),  # uint32 litres
        ("heat_pump", "heat_energy_wh_total", None),  # checked below: uint32 with its scale
        ("energy_meter_3ph", "energy_wh_total", None),  # int64: no wrap in practice
        ("apc_rpdu2", "energy_wh_total", None),  # Integer32 (signed): no defined wrap
        ("heat_meter_en1434", "heat_power_w", None),  # a gauge
    ],
)
def test_counter_wrap_follows_the_register_type(
    profile: str, field: str, wrap_at: float | None
) -> None:
    spec = load_profiles()[profile].field(field)
    if profile == "heat_pump":
        assert spec.type == "uint32" and spec.wrap_at == pytest.approx(2.0**32 * spec.scale)
    else:
        assert spec.wrap_at == (pytest.approx(wrap_at) if wrap_at else None)


@pytest.mark.parametrize(
    ("scale", "offset", "mapping", "divisor", "whole"),
    [
        (0.1, 0.0, None, 10, False),
        (0.001, 0.0, None, 1000, False),
        (0.25, 0.0, None, 4, False),
        (0.3, 0.0, None, None, False),  # 1/0.3 is not whole
        (-0.5, 0.0, None, -2, False),
        (1.0, 0.0, None, None, True),
        (1000.0, -5.0, None, None, True),
        (1.0, 0.5, None, None, False),
        (1.0, 0.0, {1: 0.0, 2: 1.0}, None, True),
        (1.0, 0.0, {1: 0.5}, None, False),
    ],
)
def test_exact_scaling_of_a_field(
    scale: float,
    offset: float,
    mapping: dict[int, float] | None,
    divisor: int | None,
    whole: bool,
) -> None:
    spec = SnmpField(name="x", oid="1.3.6.1.2.1.1.3.0", scale=scale, offset=offset, map=mapping)
    assert spec.divisor == divisor
    assert spec.whole_scaling is whole
    if divisor:
        assert 2731 / divisor == pytest.approx(2731 * scale)


SNMP = {"name": "p", "protocol": "snmp", "measurement": "m"}
COL = "1.3.6.1.2.1.2.2.1.10"


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({**SNMP}, "needs 'fields'"),
        (
            {**SNMP, "fields": [{"name": "r", "rate_of": "x"}]},
            "'rate_of' must name a counter field of the same profile",
        ),
        (
            {**SNMP, "fields": [{"name": "r", "rate_of": "x", "oid": "1.3.6"}]},
            "a rate ('rate_of') is computed, it has no 'oid'",
        ),
        (
            {**SNMP, "fields": [{"name": "g", "oid": "1.3.6", "rate_max": 5}]},
            "'rate_max' needs 'rate_of'",
        ),
        (
            {**SNMP, "fields": [{"name": "g", "oid": "1.3.6", "when": {"1.3": [1]}}]},
            "'when' and 'exponent' are for table columns",
        ),
        (
            {
                **SNMP,
                "tables": [
                    {"name": "t", "index": ["device"], "fields": [{"name": "f", "oid": COL}]}
                ],
            },
            "tag 'device' is reserved",
        ),
        (
            {
                **SNMP,
                "tables": [
                    {
                        "name": "t",
                        "index": ["port"],
                        "tags": [{"name": "port", "oid": COL}],
                        "fields": [{"name": "f", "oid": COL}],
                    }
                ],
            },
            "a tag name is used twice",
        ),
        (
            {
                "name": "p",
                "protocol": "modbus",
                "measurement": "m",
                "fields": [{"name": "f", "address": 0, "type": "uint16", "no_value": [65535]}],
            },
            "fields.0.no_value\n  Extra inputs are not permitted",
        ),
        ({**SNMP, "protocol": "modbusx"}, "unknown protocol 'modbusx'; the registered protocols"),
    ],
)
def test_profile_keys_are_checked_by_the_protocols_model(
    doc: dict,  # type: ignore[type-arg]
    message: str,
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_profile(doc)


def test_table_rate_of_a_counter_of_the_same_row() -> None:
    prof = parse_profile(
        {
            **SNMP,
            "tables": [
                {
                    "name": "interface",
                    "index": ["if_index"],
                    "fields": [
                        {"name": "o", "kind": "counter", "oid": COL, "snmp_type": "Counter64"},
                        {"name": "bps", "rate_of": "o", "scale": 8, "rate_max": 1e11},
                    ],
                }
            ],
        }
    )
    assert isinstance(prof, SnmpProfile)
    assert prof.tables[0].columns() == frozenset({COL})
    assert prof.field_names == frozenset()  # table fields are not the device reading's
