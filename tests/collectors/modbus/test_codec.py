"""Modbus codec: register layouts, scaling, wrap, read planning, and the built-in profiles."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collectors.modbus.codec import (
    FieldCodec,
    ReadRequest,
    decode_registers,
    encode_registers,
    field_codecs,
    plan_reads,
    register_count,
)
from collectors.modbus.options import ModbusOptions
from collectors.modbus.profile import ModbusField, ModbusProfile
from dcim.profiles import load_profiles

ORDERS = st.sampled_from(["big", "little"])
INT_RANGES = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
}

# The glossary of docs/architecture.md: these names are the dashboards' and reports' contract.
GLOSSARY = {
    "energy_meter_3ph": (
        "energy_meter",
        "energy_wh_total power_w power_l1_w power_l2_w power_l3_w voltage_l1_v voltage_l2_v"
        " voltage_l3_v current_l1_a current_l2_a current_l3_a frequency_hz power_factor",
    ),
    "heat_meter_en1434": (
        "heat_meter",
        "heat_energy_wh_total volume_m3_total heat_power_w flow_m3_per_h"
        " supply_temp_c return_temp_c status meter_serial",
    ),
    "plate_heat_exchanger": (
        "heat_exchanger",
        "primary_supply_temp_c primary_return_temp_c secondary_supply_temp_c"
        " secondary_return_temp_c heat_power_w primary_flow_m3_per_h",
    ),
    "heat_pump": (
        "heat_pump",
        "electrical_power_w heat_output_w electrical_energy_wh_total heat_energy_wh_total"
        " source_inlet_temp_c source_outlet_temp_c supply_temp_c return_temp_c cop running"
        " fault_code",
    ),
    "crah": ("crah", "supply_air_temp_c return_air_temp_c fan_power_w cooling_power_w valve_pct"),
    "dry_cooler": (
        "dry_cooler",
        "power_w heat_rejected_w fan_speed_pct water_inlet_temp_c water_outlet_temp_c"
        " outdoor_temp_c",
    ),
    "water_meter": ("water_meter", "volume_m3_total"),
}


def codec(**kw: object) -> FieldCodec:
    spec = {"name": "x", "address": 0, "type": "uint16", **kw}
    prof = ModbusProfile.model_validate(
        {"name": "p", "protocol": "modbus", "measurement": "m", "fields": [spec]}
    )
    return field_codecs(prof)[0]


@pytest.mark.parametrize(
    ("byte_order", "word_order", "regs"),
    [
        ("big", "big", [0x3F80, 0x0000]),
        ("big", "little", [0x0000, 0x3F80]),
        ("little", "big", [0x803F, 0x0000]),
        ("little", "little", [0x0000, 0x803F]),
    ],
)
def test_float32_layouts_abcd_cdab_badc_dcba(
    byte_order: str, word_order: str, regs: list[int]
) -> None:
    assert encode_registers(1.0, "float32", byte_order=byte_order, word_order=word_order) == regs  # type: ignore[arg-type]
    assert decode_registers(regs, "float32", byte_order=byte_order, word_order=word_order) == 1.0  # type: ignore[arg-type]


def test_known_integer_and_string_layouts() -> None:
    assert encode_registers(-1, "int16") == [0xFFFF]
    assert encode_registers(0x12345678, "uint32") == [0x1234, 0x5678]
    assert encode_registers(0x12345678, "uint32", word_order="little") == [0x5678, 0x1234]
    assert encode_registers(0x0102030405060708, "uint64") == [0x0102, 0x0304, 0x0506, 0x0708]
    assert decode_registers([0xFFFF, 0xFFFE], "int32") == -2
    assert encode_registers("AB", "string", length=2) == [0x4142, 0]
    assert encode_registers("AB", "string", byte_order="little", length=1) == [0x4241]
    assert decode_registers([0x4142, 0x4300], "string") == "ABC"
    assert decode_registers([0x3F80, 0], "float32") == 1.0
    assert decode_registers([0x4366, 0x199A], "float32") == 230.1  # shortest float32 decimal
    assert register_count("float64") == 4 and register_count("string", 8) == 8
    with pytest.raises(ValueError):
        decode_registers([1], "uint32")


@given(st.sampled_from(sorted(INT_RANGES)), st.data(), ORDERS, ORDERS)
def test_integer_round_trip(type_: str, data: st.DataObject, bo: str, wo: str) -> None:
    lo, hi = INT_RANGES[type_]
    x = data.draw(st.integers(lo, hi))
    regs = encode_registers(x, type_, byte_order=bo, word_order=wo)  # type: ignore[arg-type]
    assert all(0 <= r <= 0xFFFF for r in regs) and len(regs) == register_count(type_)  # type: ignore[arg-type]
    assert decode_registers(regs, type_, byte_order=bo, word_order=wo) == x  # type: ignore[arg-type]


@given(st.floats(width=32, allow_nan=False), ORDERS, ORDERS)
def test_float32_round_trip_is_the_same_float32(x: float, bo: str, wo: str) -> None:
    regs = encode_registers(x, "float32", byte_order=bo, word_order=wo)  # type: ignore[arg-type]
    y = decode_registers(regs, "float32", byte_order=bo, word_order=wo)  # type: ignore[arg-type]
    assert isinstance(y, float) and struct.pack(">f", y) == struct.pack(">f", x)


@given(st.floats(allow_nan=False), ORDERS, ORDERS)
def test_float64_round_trip(x: float, bo: str, wo: str) -> None:
    regs = encode_registers(x, "float64", byte_order=bo, word_order=wo)  # type: ignore[arg-type]
    assert decode_registers(regs, "float64", byte_order=bo, word_order=wo) == x  # type: ignore[arg-type]


@given(st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=16), ORDERS)
def test_string_round_trip(s: str, bo: str) -> None:
    regs = encode_registers(s, "string", byte_order=bo, length=8)  # type: ignore[arg-type]
    assert decode_registers(regs, "string", byte_order=bo) == s  # type: ignore[arg-type]


@given(
    st.sampled_from(sorted(INT_RANGES)),
    st.sampled_from([1, 10, 0.1, 0.01, 0.001, 100]),
    st.sampled_from([0.0, -40.0, 273.15]),
    st.data(),
)
def test_scaled_field_round_trip_is_exact_to_resolution(
    type_: str, scale: float, offset: float, data: st.DataObject
) -> None:
    lo, hi = INT_RANGES[type_]
    raw = data.draw(st.integers(max(lo, -(2**50)), min(hi, 2**50)))
    f = codec(type=type_, scale=scale, offset=offset)
    value = raw * scale + offset
    regs = f.encode(value)
    assert regs is not None
    got = f.decode(regs)
    assert isinstance(got, float) and math.isclose(got, value, rel_tol=1e-12, abs_tol=scale * 1e-6)


def test_counters_wrap_and_gauges_saturate() -> None:
    counter = codec(type="uint32", kind="counter")
    assert counter.decode(counter.encode(2**32 + 5) or []) == 5
    assert counter.wrap_at() == 2**32
    assert codec(type="uint32", kind="counter", scale=0.001).wrap_at() == pytest.approx(
        4_294_967.296
    )
    assert codec(type="float64", kind="counter").wrap_at() is None
    signed = codec(type="int16", kind="counter")
    assert signed.decode(signed.encode(32768) or []) == -32768
    gauge = codec(type="int16", scale=0.1)
    assert gauge.decode(gauge.encode(5000.0) or []) == 3276.7
    assert gauge.decode(gauge.encode(-5000.0) or []) == -3276.8
    assert codec(type="uint16").decode(codec(type="uint16").encode(-3) or []) == 0


def test_types_of_decoded_values_never_change() -> None:
    assert isinstance(codec(type="uint32", kind="counter").decode([0, 7]), int)
    assert isinstance(codec(type="uint16", kind="state").decode([1]), int)
    assert isinstance(codec(type="uint16").decode([1]), float)
    assert isinstance(codec(type="float64", kind="counter").decode([0x4000, 0, 0, 0]), float)
    assert codec(type="int16", scale=0.1).decode([215]) == 21.5
    assert codec(type="uint16", scale=0.01).decode([3]) == 0.03  # raw / 100, not raw * 0.01


def test_nan_map_and_bits() -> None:
    f = codec(type="float32")
    assert f.decode(f.encode(None) or []) is None  # "not available" in a float register
    assert codec(type="uint16").encode(None) is None
    mapped = codec(type="uint16", kind="state", map={5: 1, 3: 0})
    assert mapped.decode([5]) == 1 and mapped.decode([3]) == 0 and mapped.decode([9]) is None
    assert mapped.encode(1) == [5]
    bit = codec(type="bool", table="coil", kind="state")
    assert bit.count == 1 and bit.encode(1) == [1] and bit.decode([1]) == 1 and bit.decode([0]) == 0
    text = codec(type="string", length=4)
    assert text.decode(text.encode("MAG 6000") or []) == "MAG 6000"
    one = ModbusProfile.model_validate(
        {
            "name": "p",
            "protocol": "modbus",
            "measurement": "m",
            "fields": [{"name": "x", "address": 0, "type": "uint16"}],
        }
    )
    with pytest.raises(ValueError):
        FieldCodec.of(ModbusField(name="x", address=65535, type="uint32"), one)


def test_plan_coalesces_near_registers_and_respects_limits() -> None:
    layout = [(0, "uint16"), (1, "float32"), (3, "uint16"), (20, "uint16"), (31, "uint32")]
    layout.append((200, "float64"))
    fields = [codec(name=f"f{a}", address=a, type=t) for a, t in layout]
    fields.append(codec(name="c", address=5, table="coil", type="bool"))
    plan = plan_reads(fields, ModbusOptions(max_hole=10))
    assert [(r.table, r.start, r.count) for r in plan] == [
        ("holding", 0, 4),
        ("holding", 20, 13),
        ("holding", 200, 4),
        ("coil", 5, 1),
    ]
    assert [(r.start, r.count) for r in plan_reads(fields[:5], ModbusOptions(max_hole=0))] == [
        (0, 4),
        (20, 1),
        (31, 2),
    ]
    assert [
        (r.start, r.count)
        for r in plan_reads(fields[:5], ModbusOptions(max_hole=50, max_registers_per_request=21))
    ] == [(0, 21), (31, 2)]
    assert len(plan_reads(fields, ModbusOptions(single_value_reads=True))) == len(fields)
    assert plan[0].function_code == 3 and plan[-1].function_code == 1
    # a value larger than the limit is still read, alone
    assert [
        (r.start, r.count)
        for r in plan_reads([fields[-2]], ModbusOptions(max_registers_per_request=2))
    ] == [(200, 4)]


@given(
    st.lists(
        st.tuples(st.integers(0, 400), st.sampled_from(["uint16", "uint32", "float64"])),
        min_size=1,
        max_size=30,
    ),
    st.integers(1, 125),
    st.integers(0, 20),
    st.booleans(),
)
def test_plan_covers_every_field_once_within_limits(
    spec: list[tuple[int, str]], limit: int, hole: int, single: bool
) -> None:
    fields = [codec(name=f"f{i}", address=a, type=t) for i, (a, t) in enumerate(spec)]
    plan = plan_reads(
        fields,
        ModbusOptions(max_registers_per_request=limit, max_hole=hole, single_value_reads=single),
    )
    names = [f.name for r in plan for f in r.fields]
    assert sorted(names) == sorted(f.name for f in fields)
    for r in plan:
        assert r.count <= limit or len(r.fields) == 1
        assert all(r.start <= f.address and f.end <= r.start + r.count for f in r.fields)


def test_request_decode_leaves_out_nan() -> None:
    a, b = codec(name="a", type="float32"), codec(name="b", address=2, type="uint16")
    req = ReadRequest("holding", 0, 3, (a, b))
    values, missing = req.decode([0x7FC0, 0, 7])
    assert values == {"b": 7.0} and missing == ["a"]


@pytest.mark.parametrize("name", sorted(GLOSSARY))
def test_builtin_profiles_follow_the_glossary_and_resolve(name: str) -> None:
    prof = load_profiles()[name]
    measurement, fields = GLOSSARY[name]
    assert prof.protocol == "modbus" and prof.measurement == measurement and prof.source
    assert prof.field_names == set(fields.split())
    codecs = field_codecs(prof)
    plan_reads(codecs, ModbusOptions())
    for f in codecs:
        assert f.encode(1.0) is not None
        if f.name.endswith("_wh_total"):  # 1-minute windows at ~20 kW: Wh resolution
            assert f.kind == "counter" and f.scale <= 1
        if f.name.startswith("volume_m3"):
            assert f.kind == "counter" and (f.type.startswith("float") or f.scale <= 0.001)


def test_profiles_use_a_mix_of_types_and_orders() -> None:
    codecs = [f for n in GLOSSARY for f in field_codecs(load_profiles()[n])]
    assert {f.type for f in codecs} >= {
        "int16",
        "uint16",
        "int32",
        "uint32",
        "int64",
        "float32",
        "float64",
        "bool",
    }
    assert {(f.byte_order, f.word_order) for f in codecs if f.count > 1} >= {
        ("big", "big"),
        ("big", "little"),
        ("little", "big"),
    }
    assert {f.table for f in codecs} >= {"holding", "input", "coil"}
