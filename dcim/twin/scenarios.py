"""Fault scenarios of the twin: realistic faults injected into what its devices serve, with
their ground truth (the default alert rules each one must fire, and how soon).

A scenario is a named :class:`Fault` placed in time: ``NAME[@OFFSET][:DURATION]`` (see
:func:`parse`), e.g. ``crah-failure@5m:30m`` starts 5 minutes after the twin (or the
backfill's ``--from``) and lasts 30 minutes. While it lasts its *effect* reshapes the
healthy model's values of the devices it breaks, physically: a CRAH whose valve sticks
warms its room's inlets with a time constant, a UPS on battery runs its runtime down, an
exchanger fouls over hours. The twin's protocol servers serve the reshaped values (they
read them through :meth:`dcim.twin.runner.TwinRunner.values`), so the real collectors see
the fault; a *silent* device's server stops answering (the runner blackholes it).

An effect is ``effect(state, device, measurement, fields, dt)``: ``fields`` the healthy
reading, ``dt`` the seconds into the fault (``None`` outside it), ``state`` a dict of the
running scenario (registers' offsets, ...); it returns the fields to serve, or ``None``
for "no reading" (used on readings the twin does not serve itself, see tests/alerts). The
fault ends at once: the plant's recovery is its healthy model from the fault's end.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from dcim.reading import FieldValue, Reading

Fields = dict[str, FieldValue]
State = dict[str, float]
Effect = Callable[[State, str, str, Fields, float | None], Fields | None]
H = 3600.0


@dataclass(frozen=True)
class Fault:
    """A kind of fault: its effect, the devices it silences and its ground truth."""

    name: str
    effect: Effect
    fires: dict[str, float]  # default rule -> fires within this many s of the fault's start
    start_s: float = 1800.0  # default offset from the start of the run
    duration_s: float = 1800.0  # default duration
    silent: tuple[str, ...] = ()  # devices whose servers stop answering
    step_s: float = 60.0  # the poll interval its tests use (virtual time)

    @property
    def doc(self) -> str:
        return (self.effect.__doc__ or "").strip()


@dataclass
class Scenario:
    """A fault placed in time: from ``start_s`` to ``start_s + duration_s`` seconds after
    the start of the run (the twin's start, or the backfill's ``--from``)."""

    fault: Fault
    start_s: float
    duration_s: float
    state: State = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.fault.name

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    def dt(self, t_s: float) -> float | None:
        """Seconds into the fault at ``t_s`` seconds into the run; None outside it."""
        return t_s - self.start_s if self.start_s <= t_s < self.end_s else None

    def apply(self, device: str, measurement: str, fields: Fields, t_s: float) -> Fields | None:
        return self.fault.effect(self.state, device, measurement, dict(fields), self.dt(t_s))

    def silent(self, device: str, t_s: float) -> bool:
        return device in self.fault.silent and self.dt(t_s) is not None

    def __str__(self) -> str:
        return f"{self.name}@{self.start_s:g}s:{self.duration_s:g}s"


class ScenarioError(ValueError):
    pass


_SPEC = re.compile(r"(?P<name>[a-z0-9-]+)(?:@(?P<at>[^:]+))?(?::(?P<dur>.+))?")
_DUR = re.compile(r"(\d+(?:\.\d+)?)([smh]?)")


def _seconds(text: str, what: str, spec: str) -> float:
    m = _DUR.fullmatch(text.strip())
    if m is None:
        raise ScenarioError(f"scenario {spec!r}: {what} {text!r} is not a duration (90s, 5m, 2h)")
    return float(m[1]) * {"": 1, "s": 1, "m": 60, "h": 3600}[m[2]]


def parse(spec: str) -> Scenario:
    """``NAME[@OFFSET][:DURATION]`` -> a scenario; OFFSET and DURATION as ``90``, ``90s``,
    ``5m`` or ``2h`` (defaults: the fault's). Unknown names list the known ones."""
    m = _SPEC.fullmatch(spec.strip())
    if m is None or m["name"] not in FAULTS:
        raise ScenarioError(
            f"scenario {spec!r}: unknown; use NAME[@OFFSET][:DURATION] with NAME one of "
            + ", ".join(FAULTS)
        )
    f = FAULTS[m["name"]]
    at = f.start_s if m["at"] is None else _seconds(m["at"], "offset", spec)
    dur = f.duration_s if m["dur"] is None else _seconds(m["dur"], "duration", spec)
    if dur <= 0:
        raise ScenarioError(f"scenario {spec!r}: the duration must be positive")
    return Scenario(f, at, dur)


def apply_all(
    scenarios: Iterable[Scenario], device: str, measurement: str, fields: Fields, t_s: float
) -> Fields | None:
    """``fields`` of ``device`` at ``t_s`` s into the run through every scenario in turn."""
    out: Fields | None = fields
    for sc in scenarios:
        if out is None:
            break
        out = sc.apply(device, measurement, out, t_s)
    return out


def apply_to_batch(scenarios: list[Scenario], batch: list[Reading], t0: float) -> list[Reading]:
    """A backfill batch through ``scenarios`` (run started at UNIX ``t0``): a silent
    device's readings are dropped, the others reshaped."""
    out: list[Reading] = []
    for r in batch:
        dev = r.tags.get("device", "")
        t_s = r.time_ns / 1e9 - t0
        if any(sc.silent(dev, t_s) for sc in scenarios):
            continue
        f = apply_all(scenarios, dev, r.measurement, r.fields, t_s)
        if f is not None:
            out.append(Reading(r.measurement, r.tags, f, r.time_ns))
    return out


# -- the effects -------------------------------------------------------------------------------


def _es(t_c: float) -> float:
    """Saturation vapour pressure, hPa (Magnus, Alduchov & Eskridge 1996)."""
    return 6.1094 * math.exp(17.625 * t_c / (t_c + 243.04))


CRAH_TAU_S = 240.0  # the room's air and the racks' thermal mass: inlets rise with this
CRAH_RISE_K = 12.0  # the inlets' rise once the failed unit's share is lost


def crah_failure(s: State, dev: str, m: str, f: Fields, dt: float | None) -> Fields | None:
    """crah-1's chilled-water valve sticks closed: it blows the return air back (1 K
    cooler, no cooling); the inlets of its room rise 12 K with a 4-minute time constant
    (the remaining unit cannot hold the room); the racks' air keeps its water, so its
    relative humidity falls."""
    if dt is None:
        return f
    rise = CRAH_RISE_K * (1.0 - math.exp(-dt / CRAH_TAU_S))
    if dev == "crah-1" and m == "crah":
        f["supply_air_temp_c"] = float(f["return_air_temp_c"]) - 1.0
        f["cooling_power_w"], f["valve_pct"] = 0.0, 0.0
    elif m == "server":
        f["inlet_temp_c"] = float(f["inlet_temp_c"]) + rise
    elif m == "rack_env":
        t_old = float(f["temp_c"])
        f["temp_c"] = t_old + rise
        f["humidity_pct"] = float(f["humidity_pct"]) * _es(t_old) / _es(t_old + rise)
    return f


UPS_RUNTIME_MIN = 27.0  # ups-a's runtime at its load when the mains go


def ups_on_battery(s: State, dev: str, m: str, f: Fields, dt: float | None) -> Fields | None:
    """ups-a loses its mains: on battery, its runtime falls a minute a minute from 27 min
    (to 2 min), its charge with it; its input reads 0 V, 0 Hz; ups-b takes the B-side
    load (92 %)."""
    if dt is None:
        return f
    if dev == "ups-a" and m == "ups":
        left = max(2.0, UPS_RUNTIME_MIN - dt / 60)
        f["on_battery"], f["battery_status"] = 1, 2
        f["battery_runtime_min"] = left
        f["battery_charge_pct"] = 100.0 * left / UPS_RUNTIME_MIN
    elif dev == "ups-a" and m == "ups_input":
        f["voltage_v"], f["frequency_hz"] = 0.0, 0.0
    elif dev == "ups-b" and m == "ups":
        f["output_load_pct"] = 92.0
    return f


def ups_input_disturbed(s: State, dev: str, m: str, f: Fields, dt: float | None) -> Fields | None:
    """The utility supply sags to 200 V at 49.2 Hz (generator test) without a transfer."""
    if dt is None or m != "ups_input":
        return f
    f["voltage_v"], f["frequency_hz"] = 200.0, 49.2
    return f


HX_FOULING_TAU_S = 12 * H  # the approach grows linearly over this, then holds


def hx_fouling(s: State, dev: str, m: str, f: Fields, dt: float | None) -> Fields | None:
    """hx-1 fouls: its approach grows from ~2 K by 6 K over 12 hours (the secondary
    leaves colder for the same primary), then holds until it is cleaned at the end."""
    if dt is None or m != "heat_exchanger":
        return f
    extra = 6.0 * min(1.0, dt / HX_FOULING_TAU_S)
    f["secondary_supply_temp_c"] = float(f["secondary_supply_temp_c"]) - extra
    return f


HP_TRIP_CODE = 31  # the controller's high-pressure trip (HP pressostat)


def heat_pump_trip(s: State, dev: str, m: str, f: Fields, dt: float | None) -> Fields | None:
    """hp-1 trips on high pressure: compressor stopped, fault code 31, no power drawn, no
    heat made, its energy registers stand still (and count on from there once reset)."""
    if dev != "hp-1" or m != "heat_pump":
        return f
    keys = ("electrical_energy_wh_total", "heat_energy_wh_total")
    if dt is not None:
        for k in keys:
            base = s.setdefault(k, float(f[k]))
            s["lost_" + k] = float(f[k]) - base
            f[k] = base
        f["running"], f["fault_code"] = 0, HP_TRIP_CODE
        f["electrical_power_w"], f["heat_output_w"], f["cop"] = 0.0, 0.0, 0.0
    else:
        for k in keys:
            f[k] = float(f[k]) - s.get("lost_" + k, 0.0)
    return f


def cpcu_cannot_absorb(s: State, dev: str, m: str, f: Fields, dt: float | None) -> Fields | None:
    """The CPCU loop returns hot and the heat pumps cannot lift to the contract: supply falls
    to 56 degC; the heat goes to the dry coolers, at full fan speed and still 17 K over the
    air; the exchanger's primary delta-T collapses; the pumps' COP drops against a lift
    they cannot serve."""
    if dt is None:
        return f
    if dev == "hm-cpcu" and m == "heat_meter":
        f["supply_temp_c"] = 56.0
    elif m == "dry_cooler":
        f["fan_speed_pct"] = 100.0
        f["water_outlet_temp_c"] = float(f["outdoor_temp_c"]) + 17.0
    elif m == "heat_exchanger":
        f["primary_return_temp_c"] = float(f["primary_supply_temp_c"]) - 1.0
    elif m == "heat_pump":
        f["cop"] = 0.3 * float(f["cop"])
    return f


def cpcu_export_interrupted(
    s: State, dev: str, m: str, f: Fields, dt: float | None
) -> Fields | None:
    """The CPCU substation closes (their side): no flow, no heat delivered, the delivery
    meter stands still; the heat the loop cannot give goes to the dry coolers."""
    if dev == "hm-cpcu" and m == "heat_meter":
        for k in ("heat_energy_wh_total", "volume_m3_total"):
            if dt is not None:
                base = s.setdefault(k, float(f[k]))
                s["lost_" + k] = float(f[k]) - base
                f[k] = base
            else:
                f[k] = float(f[k]) - s.get("lost_" + k, 0.0)
        if dt is not None:
            s["cpcu_w"] = float(f["heat_power_w"])
            f["heat_power_w"], f["flow_m3_per_h"] = 0.0, 0.0
    elif m == "dry_cooler" and dt is not None:
        f["heat_rejected_w"] = float(f["heat_rejected_w"]) + s.get("cpcu_w", 4000.0) / 2
    return f


RESET = (
    ("hm-cpcu", "heat_energy_wh_total"),
    ("meter-incomer", "energy_wh_total"),
    ("wm-1", "volume_m3_total"),
)


def meter_reset(s: State, dev: str, m: str, f: Fields, dt: float | None) -> Fields | None:
    """The CPCU heat meter, the incomer and the water meter restart their registers from 0
    (a firmware update) at the fault's start and count on from there; the heat meter flags
    the event in its status byte while the fault lasts."""
    if dt is None and "reset" not in s:
        return f
    s["reset"] = 1
    for name, key in RESET:
        if dev == name and key in f:
            base = s.setdefault(name, float(f[key]))
            f[key] = float(f[key]) - base
    if dev == "hm-cpcu" and m == "heat_meter" and dt is not None:
        f["status"] = 8
    return f


FROZEN_VALUE = 21.37


def frozen_sensor(s: State, dev: str, m: str, f: Fields, dt: float | None) -> Fields | None:
    """srv-R01-01's inlet sensor sticks: it repeats 21.37 degC; hm-greenhouse answers
    without its energy register (a register the gateway no longer reads)."""
    if dt is None:
        return f
    if dev == "srv-R01-01" and m == "server":
        f["inlet_temp_c"] = FROZEN_VALUE
    if dev == "hm-greenhouse" and m == "heat_meter":
        f.pop("heat_energy_wh_total", None)
    return f


def device_silent(s: State, dev: str, m: str, f: Fields, dt: float | None) -> Fields | None:
    """pdu-R01-A (SNMP) and greenhouse zone 1 (MQTT) lose power: their servers stop
    answering (the twin blackholes them); no reading, so no value changes here."""
    return f


def greenhouse(s: State, dev: str, m: str, f: Fields, dt: float | None) -> Fields | None:
    """Winter night, the greenhouse heat supply fails: zone 2 falls to 3 degC; zone 3's
    vents jam shut (38 degC)."""
    if dt is None:
        return f
    if dev == "gh-zone-2":
        f["air_temp_c"] = 3.0
    if dev == "gh-zone-3":
        f["air_temp_c"] = 38.0
    return f


LEAK_M3_PER_H = 3.0


def leak_and_overload(s: State, dev: str, m: str, f: Fields, dt: float | None) -> Fields | None:
    """A leak draws 3 m3/h (what leaked stays counted after the repair); PDU pdu-R01-B's
    phase carries 14 A of 16; rack R01's air is humid (95 %); the collector's spool fills
    while the store is down and its polls start late."""
    if dev == "wm-1" and m == "water_meter":
        if dt is not None:
            s["leaked"] = LEAK_M3_PER_H * dt / H
        f["volume_m3_total"] = float(f["volume_m3_total"]) + s.get("leaked", 0.0)
    if dt is None:
        return f
    if dev == "pdu-R01-B" and m == "pdu_phase":
        f["current_a"] = 14.0
    if m == "rack_env":
        f["humidity_pct"] = 95.0
    if m == "dcim_spool":
        f["used_pct"], f["full"] = 100.0, 1
    if m == "dcim_poll":
        f["late_s"] = 7.0
    return f


# fires within: the rule's for_s plus the physics' time to cross its level, plus a poll
FAULTS: dict[str, Fault] = {
    f.name: f
    for f in (
        Fault(
            "crah-failure",
            crah_failure,
            {
                "CrahNotCooling": 600 + 60,
                "CrahSupplyAirHigh": 600 + 60,
                "ServerInletAboveRecommended": 300 + 600,
                "ServerInletAboveAllowable": 60 + 900,
                "RackInletAboveRecommended": 300 + 600,
                "RackInletAboveAllowable": 60 + 900,
            },
            step_s=30,
        ),
        Fault(
            "ups-on-battery",
            ups_on_battery,
            {
                "UpsOnBattery": 60,
                "UpsRuntimeLow": 18 * 60 + 60,
                "UpsLoadHigh": 300 + 60,
                "UpsInputVoltageOutOfTolerance": 120,
                "UpsInputFrequencyOutOfTolerance": 120,
            },
            duration_s=1500,
            step_s=30,
        ),
        Fault(
            "ups-input-disturbed",
            ups_input_disturbed,
            {"UpsInputVoltageOutOfTolerance": 120, "UpsInputFrequencyOutOfTolerance": 120},
            duration_s=900,
            step_s=30,
        ),
        Fault(
            "hx-fouling",
            hx_fouling,
            {"HeatExchangerApproachHigh": 12 * H},
            start_s=2 * H,
            duration_s=16 * H,
            step_s=300,
        ),
        Fault("heat-pump-trip", heat_pump_trip, {"HeatPumpTrip": 60}, duration_s=900, step_s=30),
        Fault(
            "cpcu-cannot-absorb",
            cpcu_cannot_absorb,
            {
                "CpcuSupplyBelowContract": 600 + 60,
                "DryCoolerApproachHigh": 1800 + 60,
                "HeatExchangerDeltaTCollapse": 600 + 60,
                "HeatPumpCopLow": 900 + 60,
            },
            duration_s=3600,
        ),
        Fault(
            "cpcu-export-interrupted",
            cpcu_export_interrupted,
            {"CpcuExportInterrupted": 900 + 60},
            duration_s=3600,
        ),
        Fault(
            "meter-reset",
            meter_reset,
            {
                "HeatMeterRegisterAnomaly": 60,
                "EnergyMeterRegisterAnomaly": 60,
                "WaterMeterRegisterAnomaly": 60,
                "HeatMeterError": 120,
            },
            duration_s=600,
        ),
        Fault(
            "frozen-sensor",
            frozen_sensor,
            {"SensorFrozen": H + 60, "HeatMeterEnergyMissing": 600 + 60},
            duration_s=2 * H,
        ),
        Fault(
            "device-silent",
            device_silent,
            {"DeviceUnreachable": 30 + 60},
            duration_s=600,
            silent=("pdu-R01-A", "gh-zone-1"),
        ),
        Fault(
            "greenhouse",
            greenhouse,
            {"GreenhouseFrost": 300 + 60, "GreenhouseOverheat": 600 + 60},
            duration_s=3600,
        ),
        Fault(
            "leak-overload-collector",
            leak_and_overload,
            {
                "WaterFlowUnexpected": 3600 + 1800 + 120,  # a rate over an hour
                "PduPhaseCurrentHigh": 300 + 60,
                "RackDewPointHigh": 600 + 60,
                "CollectorSpoolFilling": 600 + 60,
                "CollectorSpoolFull": 60,
                "CollectorPollsLate": 600 + 60,
            },
            duration_s=2 * H,
        ),
    )
}

__all__ = ["FAULTS", "Fault", "Scenario", "ScenarioError", "apply_all", "apply_to_batch", "parse"]
