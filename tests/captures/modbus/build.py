"""How the register dumps of this folder were made (run: ``python -m tests.captures.modbus.build``).

Each dump is the register image of one real device model at one operating point of the
reference site, written in the device's own layout (types, byte and word order, scale) with
``struct``, independently of the collector's codec. ``expected.lp`` holds the canonical
values the dump stands for, in line protocol at the fixed capture time: a collector that
decodes the dump through the device's profile must print exactly those lines.

These are synthesized images (no such device was on a bench here): the register addresses
and layouts follow the device's published Modbus map or the profile's source, the values are
one physically consistent state of the site (see the notes in each ``dump.csv``). A dump read
from a real device with ``mbpoll`` or ``modpoll`` goes in the same format.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
CAPTURE_TIME_NS = 1_767_261_600 * 10**9  # 2026-01-01T10:00:00Z, a winter morning

# layout -> (struct format of the big-endian value, word order, byte order inside words)
_LAYOUTS: dict[str, tuple[str, str, str]] = {
    "u16": (">H", "big", "big"),
    "i16": (">h", "big", "big"),
    "u32": (">I", "big", "big"),
    "u32_cdab": (">I", "little", "big"),
    "i32_cdab": (">i", "little", "big"),
    "f32": (">f", "big", "big"),
    "f32_cdab": (">f", "little", "big"),
    "f32_badc": (">f", "big", "little"),
    "i64": (">q", "big", "big"),
    "f64": (">d", "big", "big"),
}


def words(layout: str, raw: float | int) -> list[int]:
    """The registers of one raw value in ``layout``."""
    fmt, word_order, byte_order = _LAYOUTS[layout]
    data = struct.pack(fmt, raw)
    pairs = [data[i : i + 2] for i in range(0, len(data), 2)]
    if word_order == "little":
        pairs.reverse()
    if byte_order == "little":
        pairs = [p[::-1] for p in pairs]
    return [int.from_bytes(p, "big") for p in pairs]


@dataclass
class Unit:
    unit: int
    rows: dict[tuple[str, int], tuple[int, str]] = field(default_factory=dict)

    def put(self, table: str, address: int, layout: str, raw: float | int, note: str) -> None:
        for i, w in enumerate(words(layout, raw)):
            self.rows[(table, address + i)] = (w, note if i == 0 else "")

    def bit(self, table: str, address: int, on: bool, note: str) -> None:
        self.rows[(table, address)] = (int(on), note)


@dataclass
class Capture:
    profile: str
    header: str
    units: list[Unit]
    lines: list[str]  # expected line protocol, one line per device


def write(cap: Capture) -> None:
    folder = HERE / cap.profile
    folder.mkdir(exist_ok=True)
    out = [f"# {line}".rstrip() for line in cap.header.strip().splitlines()]
    out.append("unit,table,address,hex,note")
    for u in cap.units:
        for (table, addr), (w, note) in sorted(u.rows.items()):
            width = 1 if table in ("coil", "discrete") else 4
            out.append(f"{u.unit},{table},{addr},{w:0{width}X},{note}")
    (folder / "dump.csv").write_text("\n".join(out) + "\n")
    (folder / "expected.lp").write_text("\n".join(cap.lines) + "\n")


def lp(measurement: str, tags: dict[str, str], fields: dict[str, float | int]) -> str:
    """One expected line (tags sorted, ints with ``i``, floats as Python's repr)."""
    t = ",".join(f"{k}={v}" for k, v in sorted(tags.items()))
    f = ",".join(f"{k}={v}i" if isinstance(v, int) else f"{k}={v!r}" for k, v in fields.items())
    return f"{measurement},{t} {f} {CAPTURE_TIME_NS}"


def tags(device: str, **extra: str) -> dict[str, str]:
    return {"site": "paris-chapelle", "device": device, **extra}


# -- the devices ------------------------------------------------------------------------------


def heat_meter() -> Capture:
    # Heat delivered to the CPCU loop after the heat pumps: 65.12 / 40.35 degC, 18.456 m3/h
    # measured in the return pipe. EN 1434 k(65.12, 40.35, return) = 1.1405 kWh/(m3 K):
    # P = 18.456 * 24.77 * 1.1405 = 521.4 kW.
    u = Unit(3)
    t = "input"
    u.put(t, 0, "u32_cdab", 2_345_678_901, "E1 heat energy, Wh (uint32 CDAB)")
    u.put(t, 2, "u32_cdab", 81_234_567, "V1 volume, litres (uint32 CDAB)")
    u.put(t, 4, "i32_cdab", 521_400, "actual power, W (int32 CDAB)")
    u.put(t, 6, "u32_cdab", 18_456, "actual flow, l/h (uint32 CDAB)")
    u.put(t, 8, "i16", 6512, "t1 flow (supply) temperature, 0.01 degC")
    u.put(t, 9, "i16", 4035, "t2 return temperature, 0.01 degC")
    u.put(t, 10, "i16", 2477, "t1-t2 differential temperature, 0.01 K (not read)")
    u.put(t, 11, "u16", 0, "info code / M-Bus status (0 = no error)")
    u.put(t, 12, "u32_cdab", 71_234_567, "serial number (uint32 CDAB, from the BCD id)")
    u.put(t, 14, "u32_cdab", 26_544, "operating hours (not read)")
    u.put(t, 16, "u32_cdab", 12, "error hours (not read)")
    fields: dict[str, float | int] = {
        "heat_energy_wh_total": 2_345_678_901,
        "volume_m3_total": 81_234.567,
        "heat_power_w": 521_400.0,
        "flow_m3_per_h": 18.456,
        "supply_temp_c": 65.12,
        "return_temp_c": 40.35,
        "status": 0,
        "meter_serial": 71_234_567,
    }
    header = """
Capture: heat_meter_en1434 (measurement heat_meter)
Device modelled: Kamstrup MULTICAL 603 heat meter (qp 25 m3/h, DN50 ULTRAFLOW 54, Pt500
pair, flow sensor in the return pipe), serial 71234567, M-Bus primary address 3, read
through an M-Bus-to-Modbus TCP gateway (ADFweb HD67029M-style register groups: one group
of input registers per M-Bus data record, 32-bit values low word first).
State: heat export to the CPCU loop downstream of the heat pumps, 65.12 / 40.35 degC,
18.456 m3/h, 521.4 kW (EN 1434 k at 65/40 degC, return pipe: 1.1405 kWh/(m3 K)).
Synthesized register image (see build.py), not a wire capture. Columns: Modbus unit id,
table, 0-based address, register (or bit) in hex, what it holds."""
    return Capture(
        "heat_meter_en1434",
        header,
        [u],
        [lp("heat_meter", tags("hm-cpcu", role="heat_export_cpcu", room="plant"), fields)],
    )


def energy_meter() -> Capture:
    # Two Schneider iEM3255 behind one Modbus TCP gateway: the heat-pump board (unit 1) and
    # the cooling board (unit 2). Float32 block 3000..3110, INT64 Wh energy at 3204.
    units = []
    lines = []
    boards = [
        # unit, device, role, V1..3, I1..3, pf, f, kWh index (Wh)
        (1, "meter-heatpumps", "heat_pump_board", (231.4, 230.8, 232.1), (240.5, 238.9, 242.3),
         0.96, 49.98, 1_234_567_890),
        (2, "meter-cooling", "cooling_board", (231.5, 230.9, 232.0), (61.25, 58.5, 60.75),
         0.91, 49.98, 456_789_012),
    ]  # fmt: skip
    for unit, device, role, v, i, pf, hz, wh in boards:
        u = Unit(unit)
        h = "holding"
        for addr in range(2999, 3110, 2):  # the whole float block; reserved values read NaN
            u.put(h, addr, "f32", math.nan, f"{addr + 1} not measured or reserved (NaN)")
        p_phase = [round(vv * ii * pf / 1000, 2) for vv, ii in zip(v, i, strict=True)]
        p_total = round(sum(p_phase) * 4) / 4  # a quarter kW, exact in float32
        u.put(h, 2999, "f32", i[0], "3000 current I1, A")
        u.put(h, 3001, "f32", i[1], "3002 current I2, A")
        u.put(h, 3003, "f32", i[2], "3004 current I3, A")
        u.put(h, 3009, "f32", round(sum(i) / 3, 2), "3010 current avg, A")
        vll = [round(math.sqrt(3) * x, 1) for x in v]
        for k, (addr, name) in enumerate([(3019, "L1-L2"), (3021, "L2-L3"), (3023, "L3-L1")]):
            u.put(h, addr, "f32", vll[k], f"{addr + 1} voltage {name}, V")
        u.put(h, 3025, "f32", round(sum(vll) / 3, 1), "3026 voltage L-L avg, V")
        u.put(h, 3027, "f32", v[0], "3028 voltage L1-N, V")
        u.put(h, 3029, "f32", v[1], "3030 voltage L2-N, V")
        u.put(h, 3031, "f32", v[2], "3032 voltage L3-N, V")
        u.put(h, 3035, "f32", round(sum(v) / 3, 1), "3036 voltage L-N avg, V")
        for k in range(3):
            u.put(h, 3053 + 2 * k, "f32", p_phase[k], f"{3054 + 2 * k} active power L{k + 1}, kW")
        u.put(h, 3059, "f32", p_total, "3060 total active power, kW")
        u.put(h, 3075, "f32", round(p_total / pf, 1), "3076 total apparent power, kVA")
        u.put(h, 3083, "f32", pf, "3084 total power factor")
        u.put(h, 3109, "f32", hz, "3110 frequency, Hz")
        u.put(h, 3203, "i64", wh, "3204 total active energy import, Wh (INT64)")
        u.put(h, 3207, "i64", 0, "3208 total active energy export, Wh (INT64, not read)")
        units.append(u)
        fields: dict[str, float | int] = {
            "current_l1_a": i[0], "current_l2_a": i[1], "current_l3_a": i[2],
            "voltage_l1_v": v[0], "voltage_l2_v": v[1], "voltage_l3_v": v[2],
            "power_l1_w": p_phase[0] * 1000, "power_l2_w": p_phase[1] * 1000,
            "power_l3_w": p_phase[2] * 1000,
            "power_w": p_total * 1000, "power_factor": pf, "frequency_hz": hz,
            "energy_wh_total": wh,
        }  # fmt: skip
        lines.append(lp("energy_meter", tags(device, role=role, room="plant"), fields))
    header = """
Capture: energy_meter_3ph (measurement energy_meter)
Device modelled: two Schneider Electric iEM3255 three-phase meters (RS-485, units 1 and 2)
behind one Modbus TCP gateway. Register map of the iEM3150/3250/3350 user manual: float32
block 3000-3110 (register numbers; the address is the number minus 1), INT64 Wh energies
from 3204. Unmeasured values read NaN (0xFFC0 0000), as the meter serves them.
State: unit 1 heat-pump board (160.25 kW, pf 0.96), unit 2 cooling board (38 kW, pf 0.91).
Synthesized register image (see build.py), not a wire capture. Columns: Modbus unit id,
table, 0-based address, register in hex, what it holds (meter's register number first)."""
    return Capture("energy_meter_3ph", header, units, lines)


def crah() -> Capture:
    # 80.5 kW sensible at 35.2 -> 21.3 degC air: 5.76 kg/s (17,000 m3/h), EC fans 3.5 kW.
    u = Unit(1)
    t = "input"
    u.put(t, 0, "i16", 352, "return air temperature, 0.1 degC")
    u.put(t, 1, "i16", 213, "supply air temperature, 0.1 degC")
    u.put(t, 2, "u16", 456, "chilled-water valve opening, 0.1 %")
    u.put(t, 3, "u16", 385, "return air relative humidity, 0.1 % (not read)")
    u.put(t, 4, "i16", 220, "supply air setpoint, 0.1 degC (not read)")
    u.put(t, 5, "u16", 620, "fan speed, 0.1 % (not read)")
    u.put(t, 6, "i16", 142, "chilled water inlet, 0.1 degC (not read)")
    u.put(t, 7, "i16", 198, "chilled water outlet, 0.1 degC (not read)")
    u.put(t, 8, "u16", 0, "alarm word (not read)")
    u.put(t, 9, "u16", 1, "unit on (not read)")
    u.put(t, 10, "f32_cdab", 3500.25, "EC fans electrical power, W (float32 CDAB)")
    u.put(t, 12, "f32_cdab", 80.5, "sensible cooling power, kW (float32 CDAB)")
    fields: dict[str, float | int] = {
        "return_air_temp_c": 35.2,
        "supply_air_temp_c": 21.3,
        "valve_pct": 45.6,
        "fan_power_w": 3500.25,
        "cooling_power_w": 80_500.0,
    }
    header = """
Capture: crah (measurement crah)
Device modelled: Stulz CyberAir 3PRO chilled-water CRAH (CW, EC fans) with a C7000
controller; Modbus map in the style of the C7000 / Liebert iCOM maps (int16 tenths,
float32 computed powers low word first, input registers).
State: hot aisle 35.2 degC, supply 21.3 degC, valve 45.6 %, 80.5 kW sensible, fans 3.5 kW.
Synthesized register image (see build.py), not a wire capture. Columns: Modbus unit id,
table, 0-based address, register in hex, what it holds."""
    return Capture(
        "crah", header, [u], [lp("crah", tags("crah-1", rack="r01", room="salle-a"), fields)]
    )


def dry_cooler() -> Capture:
    # Winter night: surplus 250 kW rejected at -3.4 degC outdoor, 45.1 -> 35.2 degC water
    # (6.0 kg/s, 21.9 m3/h), fans at 35.5 % drawing 4.25 kW.
    u = Unit(1)
    h = "holding"
    u.put(h, 100, "i16", 451, "water inlet temperature, 0.1 degC")
    u.put(h, 101, "i16", 352, "water outlet temperature, 0.1 degC")
    u.put(h, 102, "i16", -34, "outdoor air temperature, 0.1 degC (signed)")
    u.put(h, 103, "i16", 350, "outlet setpoint, 0.1 degC (not read)")
    u.put(h, 110, "u16", 355, "fan speed, 0.1 %")
    u.put(h, 111, "u16", 8, "fans running (not read)")
    u.put(h, 120, "u32", 4250, "fans electrical power, W (uint32, high word first)")
    u.put(h, 130, "f32_badc", 250_000.5, "heat rejected, W (float32, bytes swapped: BADC)")
    fields: dict[str, float | int] = {
        "water_inlet_temp_c": 45.1,
        "water_outlet_temp_c": 35.2,
        "outdoor_temp_c": -3.4,
        "fan_speed_pct": 35.5,
        "power_w": 4250.0,
        "heat_rejected_w": 250_000.5,
    }
    header = """
Capture: dry_cooler (measurement dry_cooler)
Device modelled: Güntner GFD dry cooler with 8 EC fans and a GMM EC fan-management
controller behind a Modbus TCP gateway that swaps the bytes of each word of its float32
values (BADC).
State: winter night, -3.4 degC outdoor, 45.1 -> 35.2 degC water, 250 kW rejected.
Synthesized register image (see build.py), not a wire capture. Columns: Modbus unit id,
table, 0-based address, register in hex, what it holds."""
    return Capture("dry_cooler", header, [u], [lp("dry_cooler", tags("dc-1", room="roof"), fields)])


def heat_pump() -> Capture:
    # 160.25 kW electrical (the heat-pump board's meter), COP 3.25: 520.8 kW to the CPCU
    # loop (40.4 -> 65.1 degC); 360.6 kW taken from the recovered DC water (36.5 -> 30.2).
    u = Unit(1)
    u.bit("coil", 0, True, "unit enabled (not read)")
    u.bit("coil", 1, True, "compressor running")
    u.bit("coil", 2, False, "general alarm (not read)")
    u.bit("coil", 3, False, "defrost / oil return (not read)")
    h = "holding"
    for addr in range(40):  # the pCO serves every supervisory variable; unused ones read 0
        u.put(h, addr, "u16", 0, "unused variable")
    u.put(h, 0, "i16", 650, "sink supply setpoint, 0.1 degC (not read)")
    u.put(h, 1, "i16", 365, "evaporator water inlet, 0.1 degC")
    u.put(h, 2, "i16", 302, "evaporator water outlet, 0.1 degC")
    u.put(h, 3, "i16", 651, "condenser water outlet (supply), 0.1 degC")
    u.put(h, 4, "i16", 404, "condenser water inlet (return), 0.1 degC")
    u.put(h, 10, "u16", 325, "instantaneous COP, 0.01")
    u.put(h, 20, "u32_cdab", 160_250, "electrical input power, W (uint32 CDAB)")
    u.put(h, 22, "u32_cdab", 520_812, "heat output, W (uint32 CDAB)")
    u.put(h, 30, "u32_cdab", 987_654_321, "electrical energy, Wh (uint32 CDAB)")
    u.put(h, 32, "u32_cdab", 3_160_493_827, "heat energy delivered, Wh (uint32 CDAB)")
    u.put(h, 40, "u16", 0, "active alarm code (0 = none)")
    fields: dict[str, float | int] = {
        "running": 1,
        "source_inlet_temp_c": 36.5,
        "source_outlet_temp_c": 30.2,
        "supply_temp_c": 65.1,
        "return_temp_c": 40.4,
        "cop": 3.25,
        "electrical_power_w": 160_250.0,
        "heat_output_w": 520_812.0,
        "electrical_energy_wh_total": 987_654_321,
        "heat_energy_wh_total": 3_160_493_827,
        "fault_code": 0,
    }
    header = """
Capture: heat_pump (measurement heat_pump)
Device modelled: 550 kW water-to-water heat pump (R1234ze, two screw compressors) with a
Carel c.pCO controller, supervisory map as in the profile: digital variables as coils,
analogue variables int16 tenths, integers plain, 32-bit values low word first.
State: 160.25 kW electrical, COP 3.25, 520.8 kW heat to the CPCU loop (40.4 -> 65.1 degC),
source 36.5 -> 30.2 degC.
Synthesized register image (see build.py), not a wire capture. Columns: Modbus unit id,
table, 0-based address, register (or coil bit) in hex, what it holds."""
    return Capture(
        "heat_pump",
        header,
        [u],
        [lp("heat_pump", tags("hp-1", room="plant"), fields)],
    )


def plate_heat_exchanger() -> Capture:
    # Primary 38.2 -> 28.4 degC at 35.12 m3/h: 9.69 kg/s * 4.18 * 9.8 K = 396.8 kW.
    u = Unit(1)
    h = "holding"
    for k, (raw, what) in enumerate(
        [(382, "S1 primary supply"), (284, "S2 primary return"),
         (365, "S3 secondary supply"), (269, "S4 secondary return"),
         (-12, "S5 outdoor (not read)"), (365, "S6 secondary supply setpoint (not read)")]
    ):  # fmt: skip
        u.put(h, 11200 + k, "i16", raw, f"{what}, 0.1 degC")
    u.put(h, 11210, "u32", 3968, "heat power, 0.1 kW (uint32, high word first)")
    u.put(h, 11212, "u16", 3512, "primary volume flow, 0.01 m3/h")
    fields: dict[str, float | int] = {
        "primary_supply_temp_c": 38.2,
        "primary_return_temp_c": 28.4,
        "secondary_supply_temp_c": 36.5,
        "secondary_return_temp_c": 26.9,
        "heat_power_w": 396_800.0,
        "primary_flow_m3_per_h": 35.12,
    }
    header = """
Capture: plate_heat_exchanger (measurement heat_exchanger)
Device modelled: Alfa Laval plate heat exchanger (datacenter water / heat-recovery loop)
whose sensors and energy calculator are wired to a Danfoss ECL Comfort 310 substation
controller; register layout as in the profile (sensors from holding 11200 in 0.1 degC).
State: primary 38.2 -> 28.4 degC at 35.12 m3/h (396.8 kW), secondary 26.9 -> 36.5 degC.
Synthesized register image (see build.py), not a wire capture. Columns: Modbus unit id,
table, 0-based address, register in hex, what it holds."""
    return Capture(
        "plate_heat_exchanger",
        header,
        [u],
        [lp("heat_exchanger", tags("hx-1", room="plant"), fields)],
    )


def water_meter() -> Capture:
    u = Unit(1)
    h = "holding"
    u.put(h, 3000, "f32", 1.25, "flow rate, m3/h (not read)")
    u.put(h, 3016, "f64", 12_345.678, "totalizer 1, m3 (float64, high word first)")
    u.put(h, 3020, "f64", 0.0, "totalizer 2 (reverse), m3 (not read)")
    fields: dict[str, float | int] = {"volume_m3_total": 12_345.678}
    header = """
Capture: water_meter (measurement water_meter)
Device modelled: Siemens SITRANS F M MAG 8000 electromagnetic flow meter (make-up water of
the cooling plant) with its Modbus module: totalizer as float64, high word first; the
addresses follow the profile (illustrative, check the meter's manual).
State: 1.25 m3/h make-up water, index 12,345.678 m3.
Synthesized register image (see build.py), not a wire capture. Columns: Modbus unit id,
table, 0-based address, register in hex, what it holds."""
    return Capture(
        "water_meter",
        header,
        [u],
        [lp("water_meter", tags("wm-1", role="water", room="plant"), fields)],
    )


CAPTURES = (
    heat_meter,
    energy_meter,
    crah,
    dry_cooler,
    heat_pump,
    plate_heat_exchanger,
    water_meter,
)


def main() -> None:
    for make in CAPTURES:
        write(make())


if __name__ == "__main__":
    main()
