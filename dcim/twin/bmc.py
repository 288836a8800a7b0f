"""What a simulated server's BMC reports: every sensor, fan and power supply, derived from the
site model's two server values (``power_w``, ``inlet_temp_c``).

The SNMP agents serve those two values (Dell IDRAC-MIB: W and tenths of a degree); a Redfish
BMC serves them with the same resolution, so both protocols give equal values at the same
instant, plus the rest of the chassis, derived here deterministically (ground truth for the
tests): temperatures by the CPUs and at the exhaust, fan speeds that follow the load and the
inlet, two power supplies sharing the load (and a third, empty bay), an absent fan header
and an absent sensor (a null reading: Redfish's "no reading", never a zero), and a "CPU1 DTS"
sensor giving the margin below the CPU's throttle point (negative), as some BMCs list among
their temperatures.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

PSU_EFFICIENCY = 0.94
TJ_MAX_C = 100.0


@dataclass(frozen=True)
class Temp:
    name: str
    context: str  # Redfish PhysicalContext
    celsius: float | None  # None: absent


@dataclass(frozen=True)
class Fan:
    name: str
    rpm: int | None
    pct: float | None


@dataclass(frozen=True)
class Psu:
    name: str
    input_w: float | None
    output_w: float | None


@dataclass(frozen=True)
class BmcState:
    power_w: float
    inlet_temp_c: float
    temps: tuple[Temp, ...]
    margins: tuple[Temp, ...]  # DTS: degrees below the CPU's throttle point, not temperatures
    fans: tuple[Fan, ...]
    psus: tuple[Psu, ...]

    def truth(self, *, old_only: bool = False) -> dict[tuple[str, str], dict[str, float]]:
        """(measurement, row tag value or "") -> canonical fields, as the redfish_dmtf
        profile reads them (health OK = 0 everywhere). ``old_only``: as read from the older
        Thermal resource, whose fans give RPM only (no percent)."""
        out: dict[tuple[str, str], dict[str, float]] = {
            ("server", ""): {"power_w": self.power_w, "inlet_temp_c": self.inlet_temp_c}
        }
        for t in self.temps:
            if t.celsius is not None:
                out[("server_temperature", t.name)] = {"temp_c": t.celsius, "health": 0}
        for f in self.fans:
            if f.rpm is not None and f.pct is not None:
                fan: dict[str, float] = {"speed_rpm": f.rpm, "health": 0}
                if not old_only:
                    fan["speed_pct"] = f.pct
                out[("server_fan", f.name)] = fan
        for p in self.psus:
            if p.input_w is not None and p.output_w is not None:
                out[("server_psu", p.name)] = {
                    "input_power_w": p.input_w,
                    "output_power_w": p.output_w,
                    "health": 0,
                }
        return out


def _tenths(x: float) -> float:
    """As the SNMP agent encodes and the collector decodes a 0.1 scale: ``round(x / 0.1)/10``."""
    return round(x / 0.1) / 10


def bmc_state(values: Mapping[str, float | int | str]) -> BmcState:
    """The BMC's view of a server whose model values are ``values`` (power_w, inlet_temp_c)."""
    power = float(round(float(values["power_w"])))  # the SNMP agent's Integer32 W
    inlet = _tenths(float(values["inlet_temp_c"]))
    load = max(0.0, power - 180.0)
    cpu1 = _tenths(inlet + 22.0 + 0.045 * load)
    temps = (
        Temp("Inlet Temp", "Intake", inlet),
        Temp("CPU1 Temp", "CPU", cpu1),
        Temp("CPU2 Temp", "CPU", _tenths(inlet + 20.5 + 0.043 * load)),
        Temp("Exhaust Temp", "Exhaust", _tenths(inlet + 4.0 + 0.025 * load)),
        Temp("GPU Temp", "GPU", None),  # no GPU fitted: State Absent, Reading null
    )
    base = 4200.0 + 9.0 * load + 150.0 * max(0.0, inlet - 20.0)
    fans = tuple(
        Fan(f"Fan{i}", round(base + 41 * i), _tenths(100.0 * (base + 41 * i) / 16000.0))
        for i in range(1, 5)
    ) + (Fan("Fan5", None, None),)  # an empty fan header
    # PSUs report whole watts; the two inputs add up to the chassis power exactly
    share = float(round(power / 2.0))
    psus = (
        Psu("PSU1", share, float(round(share * PSU_EFFICIENCY))),
        Psu("PSU2", power - share, float(round((power - share) * PSU_EFFICIENCY))),
        Psu("PSU3", None, None),  # an empty bay
    )
    margins = (Temp("CPU1 DTS", "CPU", _tenths(cpu1 - TJ_MAX_C)),)
    return BmcState(power, inlet, temps, margins, fans, psus)
