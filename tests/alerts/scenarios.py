"""Fault scenarios over the twin's healthy site, to show each default rule fire and resolve.

The baseline is the twin's own model (``SiteModel.values``: physically consistent values of
every device at any time). Four readings the twin does not simulate are derived from it:
``pdu_phase`` (the PDU's current on phase 1, with the site-file tag ``rated_current_a``),
``ups_input`` (230 V, 50 Hz), ``rack_env`` (a rack probe 0.3 K above the mean inlet of its
servers, 45 % RH) and the collector's ``dcim_spool`` / ``dcim_poll``. A scenario changes the
readings of the devices it breaks between ``start_s`` and ``end_s`` (seconds from the start
of the run), consistently: a CRAH whose valve sticks warms its room's inlets, a UPS on
battery runs its runtime down, a fouling exchanger's approach creeps up over hours.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from dcim.config import SiteConfig
from dcim.reading import FieldValue, Reading
from dcim.twin.model import SiteModel

NS = 1_000_000_000
Fields = dict[str, FieldValue]
# (device, measurement, fields, seconds into the fault or None outside it) -> fields, or None
# for "no reading" (a silent device)
Overlay = Callable[[str, str, Fields, float | None], Fields | None]


@dataclass
class Scenario:
    name: str
    start_s: float
    end_s: float
    total_s: float
    step_s: float
    overlay: Overlay
    fires: set[str]  # the default rules that must fire, and resolve, in it
    state: dict[str, float] = field(default_factory=dict)

    def fault(self, t_s: float) -> float | None:
        return t_s - self.start_s if self.start_s <= t_s < self.end_s else None


def baseline(model: SiteModel, cfg: SiteConfig, t: float) -> list[tuple[str, Reading]]:
    """(device, reading) of every device at ``t``, the derived readings included."""
    profiles = cfg.profiles()
    ns = int(t * NS)
    out: list[tuple[str, Reading]] = []
    inlets: dict[str, list[float]] = {}
    for d in cfg.devices:
        v: Fields = dict(model.values(d.name, t))
        tags = cfg.tags_of(d)
        out.append((d.name, Reading(profiles[d.profile].measurement, tags, v, ns)))
        if d.profile == "bmc_server" and d.rack:
            inlets.setdefault(d.rack, []).append(float(v["inlet_temp_c"]))
        if d.profile == "apc_rpdu2":
            phase = {**tags, "phase": "1", "rated_current_a": "16"}
            out.append((d.name, Reading("pdu_phase", phase, {"current_a": v["current_a"]}, ns)))
        if d.profile == "ups_rfc1628":
            wobble = 0.5 * math.sin(t / 600)
            inp: Fields = {"voltage_v": 230.0 + wobble, "frequency_hz": 50.0 + wobble / 100}
            out.append((d.name, Reading("ups_input", {**tags, "line": "1"}, inp, ns)))
    for rack, temps in inlets.items():
        name = f"env-{rack}"
        tags = {"site": cfg.site.name, "device": name, "rack": rack, "probe": "1"}
        env: Fields = {"temp_c": sum(temps) / len(temps) + 0.3, "humidity_pct": 45.0}
        out.append((name, Reading("rack_env", tags, env, ns)))
    spool: Fields = {"used_pct": 2.0, "full": 0, "pending": 10}
    out.append(("collector", Reading("dcim_spool", {"site": cfg.site.name}, spool, ns)))
    return out


def run(sc: Scenario, model: SiteModel, cfg: SiteConfig, t0: float) -> list[list[Reading]]:
    """The batches of readings of the scenario, one per step, with a ``dcim_poll`` reading
    per device (``up=0`` while the overlay silences it), as the collector writes them."""
    batches = []
    k = 0
    while k * sc.step_s <= sc.total_s:
        t_s = k * sc.step_s
        t = t0 + t_s
        fault = sc.fault(t_s)
        batch: list[Reading] = []
        polled: dict[str, bool] = {}
        for dev, r in baseline(model, cfg, t):
            fields = sc.overlay(dev, r.measurement, dict(r.fields), fault)
            polled[dev] = polled.get(dev, True) and fields is not None
            if fields is not None:
                batch.append(Reading(r.measurement, r.tags, fields, r.time_ns))
        for d in cfg.devices:  # MQTT too: a row per message, a gap row per silent interval
            up = polled.get(d.name, True)
            tags = {"site": cfg.site.name, "device": d.name, "protocol": d.protocol}
            poll = sc.overlay(d.name, "dcim_poll", {"up": int(up), "late_s": 0.01}, fault)
            poll = poll if poll is not None else {"up": 0, "late_s": 0.01}
            batch.append(Reading("dcim_poll", tags, poll, int(t * NS)))
        batches.append(batch)
        k += 1
    return batches


# -- the scenarios ----------------------------------------------------------------------------


def _crah_failure(dev: str, m: str, f: Fields, dt: float | None) -> Fields | None:
    """crah-1's chilled-water valve sticks closed: it blows return air back (1 K cooler);
    the inlets of room salle-a climb 12 K over 10 minutes."""
    if dt is None:
        return f
    rise = 12.0 * min(1.0, dt / 600)
    if dev == "crah-1" and m == "crah":
        f["supply_air_temp_c"] = float(f["return_air_temp_c"]) - 1.0
        f["cooling_power_w"], f["valve_pct"] = 0.0, 0.0
    elif m == "server":
        f["inlet_temp_c"] = float(f["inlet_temp_c"]) + rise
    elif m == "rack_env":
        # the same water content in warmer air: the relative humidity falls (Magnus)
        t_old = float(f["temp_c"])
        t_new = t_old + rise
        f["temp_c"] = t_new
        f["humidity_pct"] = float(f["humidity_pct"]) * _es(t_old) / _es(t_new)
    return f


def _es(t_c: float) -> float:
    """Saturation vapour pressure, hPa (Magnus, Alduchov & Eskridge 1996)."""
    return 6.1094 * math.exp(17.625 * t_c / (t_c + 243.04))


def _ups_on_battery(dev: str, m: str, f: Fields, dt: float | None) -> Fields | None:
    """ups-a loses its mains for 25 min: on battery, runtime from 27 min down to 2 min; its
    input reads 0 V; the other UPS takes the B-side load (92 %)."""
    if dt is None:
        return f
    if dev == "ups-a" and m == "ups":
        f["on_battery"] = 1
        f["battery_runtime_min"] = max(2.0, 27.0 - dt / 60)
    elif dev == "ups-a" and m == "ups_input":
        f["voltage_v"], f["frequency_hz"] = 0.0, 0.0
    elif dev == "ups-b" and m == "ups":
        f["output_load_pct"] = 92.0
    return f


def _hx_fouling(dev: str, m: str, f: Fields, dt: float | None) -> Fields | None:
    """hx-1 fouls over 16 hours: its approach grows from 2 K to 8 K; cleaned at the end."""
    if dt is None or m != "heat_exchanger":
        return f
    extra = 6.0 * min(1.0, dt / (12 * 3600))
    f["secondary_supply_temp_c"] = float(f["secondary_supply_temp_c"]) - extra
    return f


def _cpcu_cannot_absorb(dev: str, m: str, f: Fields, dt: float | None) -> Fields | None:
    """The CPCU loop returns hot and the heat pumps cannot lift to the contract: supply falls
    to 56 degC; heat goes to the dry coolers, at full fan speed and still 17 K over the air;
    the exchanger's primary delta-T collapses."""
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
        f["cop"] = 0.3 * float(f["cop"])  # against a lift it cannot serve
    return f


def _cpcu_export_interrupted(dev: str, m: str, f: Fields, dt: float | None) -> Fields | None:
    """The CPCU substation closes (their side): no flow, no heat delivered; the heat the
    loop could not take goes to the dry coolers."""
    if dt is None:
        return f
    if dev == "hm-cpcu" and m == "heat_meter":
        _STATE["cpcu_w"] = float(f["heat_power_w"])
        f["heat_power_w"], f["flow_m3_per_h"] = 0.0, 0.0
    elif m == "dry_cooler":
        f["heat_rejected_w"] = float(f["heat_rejected_w"]) + _STATE.get("cpcu_w", 4000.0) / 2
    return f


def _meter_reset(dev: str, m: str, f: Fields, dt: float | None) -> Fields | None:
    """The heat meter of the CPCU delivery, the incomer and the water meter restart from 0
    (registers reset by a firmware update) at the fault's start and count on from there."""
    if dt is None and "reset" not in _STATE:
        return f
    _STATE["reset"] = 1
    for name, key in (
        ("hm-cpcu", "heat_energy_wh_total"),
        ("meter-incomer", "energy_wh_total"),
        ("wm-1", "volume_m3_total"),
    ):
        if dev == name and key in f:
            base = _STATE.setdefault(name, float(f[key]))
            f[key] = float(f[key]) - base
    if dev == "hm-cpcu" and m == "heat_meter" and dt is not None:
        f["status"] = 8  # the meter flags the event while it lasts
    return f


_STATE: dict[str, float] = {}


def _frozen_and_silent(dev: str, m: str, f: Fields, dt: float | None) -> Fields | None:
    """srv-R01-01's inlet sensor repeats 21.37 degC; greenhouse zone 1 stops publishing;
    pdu-R01-A stops answering; hm-greenhouse answers without its energy register."""
    if dt is None:
        return f
    if dev == "srv-R01-01" and m == "server":
        f["inlet_temp_c"] = 21.37
    if dev == "hm-greenhouse" and m == "heat_meter":
        f.pop("heat_energy_wh_total")
    if dev in ("gh-zone-1", "pdu-R01-A"):
        return None
    return f


def _greenhouse_heating_lost(dev: str, m: str, f: Fields, dt: float | None) -> Fields | None:
    """Winter night, the greenhouse heat supply fails: zone 2 falls to 3 degC; zone 3's vents
    jam shut on a sunny afternoon (38 degC)."""
    if dt is None:
        return f
    if dev == "gh-zone-2":
        f["air_temp_c"] = 3.0
    if dev == "gh-zone-3":
        f["air_temp_c"] = 38.0
    return f


def _leak_and_overload(dev: str, m: str, f: Fields, dt: float | None) -> Fields | None:
    """A leak draws 3 m3/h; PDU pdu-R01-B's phase carries 14 A of 16 (servers added); rack R01's
    air is humid (dew point 19 degC); the collector's spool fills while the store is down and
    its polls start late."""
    if dev == "wm-1" and m == "water_meter":  # what leaked stays counted after the repair
        if dt is not None:
            _STATE["leaked"] = 3.0 * dt / 3600
        f["volume_m3_total"] = float(f["volume_m3_total"]) + _STATE.get("leaked", 0.0)
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


def _ups_input_disturbed(dev: str, m: str, f: Fields, dt: float | None) -> Fields | None:
    """The utility supply sags to 200 V at 49.2 Hz (generator test) without a transfer."""
    if dt is None or m != "ups_input":
        return f
    f["voltage_v"], f["frequency_hz"] = 200.0, 49.2
    return f


def scenarios() -> list[Scenario]:
    h = 3600.0
    return [
        Scenario(
            "crah-failure",
            1800,
            1800 + 1800,
            2 * h,
            30,
            _crah_failure,
            {
                "CrahNotCooling",
                "CrahSupplyAirHigh",
                "ServerInletAboveRecommended",
                "ServerInletAboveAllowable",
                "RackInletAboveRecommended",
                "RackInletAboveAllowable",
            },
        ),
        Scenario(
            "ups-on-battery",
            1800,
            1800 + 1500,
            2 * h,
            30,
            _ups_on_battery,
            {
                "UpsOnBattery",
                "UpsRuntimeLow",
                "UpsLoadHigh",
                "UpsInputVoltageOutOfTolerance",
                "UpsInputFrequencyOutOfTolerance",
            },
        ),
        Scenario(
            "ups-input-disturbed",
            1800,
            1800 + 900,
            1.5 * h,
            30,
            _ups_input_disturbed,
            {"UpsInputVoltageOutOfTolerance", "UpsInputFrequencyOutOfTolerance"},
        ),
        Scenario(
            "hx-fouling", 2 * h, 18 * h, 24 * h, 300, _hx_fouling, {"HeatExchangerApproachHigh"}
        ),
        Scenario(
            "cpcu-cannot-absorb",
            1800,
            1800 + 3600,
            3 * h,
            60,
            _cpcu_cannot_absorb,
            {
                "CpcuSupplyBelowContract",
                "DryCoolerApproachHigh",
                "HeatExchangerDeltaTCollapse",
                "HeatPumpCopLow",
            },
        ),
        Scenario(
            "cpcu-export-interrupted",
            1800,
            1800 + 3600,
            3 * h,
            60,
            _cpcu_export_interrupted,
            {"CpcuExportInterrupted"},
        ),
        Scenario(
            "meter-reset",
            1800,
            1800 + 600,
            3 * h,
            60,
            _meter_reset,
            {
                "HeatMeterRegisterAnomaly",
                "EnergyMeterRegisterAnomaly",
                "WaterMeterRegisterAnomaly",
                "HeatMeterError",
            },
        ),
        Scenario(
            "frozen-sensor-and-silent-devices",
            1800,
            1800 + 2 * h,
            4 * h,
            60,
            _frozen_and_silent,
            {"SensorFrozen", "HeatMeterEnergyMissing", "DeviceUnreachable"},
        ),
        Scenario(
            "greenhouse",
            1800,
            1800 + 3600,
            2.5 * h,
            60,
            _greenhouse_heating_lost,
            {"GreenhouseFrost", "GreenhouseOverheat"},
        ),
        Scenario(
            "leak-overload-collector",
            1800,
            1800 + 2 * h,
            4 * h,
            60,
            _leak_and_overload,
            {
                "WaterFlowUnexpected",
                "PduPhaseCurrentHigh",
                "RackDewPointHigh",
                "CollectorSpoolFilling",
                "CollectorSpoolFull",
                "CollectorPollsLate",
            },
        ),
    ]
