"""Energy indicators (ISO/IEC 30134, EN 50600-4). Pure functions of energies in Wh.

Each returns None when it is undefined (zero or missing denominator, missing numerator)
rather than a number that looks exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def _ok(*xs: float | None) -> bool:
    return all(x is not None and math.isfinite(x) for x in xs)


def pue(e_dc_wh: float | None, e_it_wh: float | None) -> float | None:
    """PUE = E_DC / E_IT (ISO/IEC 30134-2), energy based."""
    if not _ok(e_dc_wh, e_it_wh) or not e_it_wh or e_it_wh <= 0:
        return None
    assert e_dc_wh is not None
    return e_dc_wh / e_it_wh


def partial_pue(e_subsystem_wh: float | None, e_it_wh: float | None) -> float | None:
    """pPUE of a subsystem = (E_IT + E_subsystem) / E_IT."""
    if not _ok(e_subsystem_wh, e_it_wh) or not e_it_wh or e_it_wh <= 0:
        return None
    assert e_subsystem_wh is not None
    return (e_it_wh + e_subsystem_wh) / e_it_wh


def erf(e_reuse_wh: float | None, e_dc_wh: float | None) -> float | None:
    """ERF = E_reuse / E_DC (ISO/IEC 30134-6)."""
    if not _ok(e_reuse_wh, e_dc_wh) or not e_dc_wh or e_dc_wh <= 0:
        return None
    assert e_reuse_wh is not None
    return e_reuse_wh / e_dc_wh


def ere(e_dc_wh: float | None, e_reuse_wh: float | None, e_it_wh: float | None) -> float | None:
    """ERE = (E_DC - E_reuse) / E_IT (The Green Grid) = (1 - ERF) * PUE."""
    if not _ok(e_dc_wh, e_reuse_wh, e_it_wh) or not e_it_wh or e_it_wh <= 0:
        return None
    assert e_dc_wh is not None and e_reuse_wh is not None
    return (e_dc_wh - e_reuse_wh) / e_it_wh


def ref(e_renewable_wh: float | None, e_dc_wh: float | None) -> float | None:
    """REF = E_renewable / E_DC (ISO/IEC 30134-3), at most 1: renewable energy beyond the
    datacenter's own consumption (surplus certificates, export) does not count."""
    if not _ok(e_renewable_wh, e_dc_wh) or not e_dc_wh or e_dc_wh <= 0:
        return None
    assert e_renewable_wh is not None
    if e_renewable_wh < 0:
        return None
    return min(1.0, e_renewable_wh / e_dc_wh)


def carbon_kg(
    e_dc_wh: float | None, e_renewable_wh: float | None, grid_kg_per_kwh: float | None
) -> float | None:
    """Emissions (kgCO2eq) of the datacenter's energy, market based: the electricity not
    covered by renewable energy (E_DC - E_renewable, never below 0) times the grid factor."""
    if not _ok(e_dc_wh, e_renewable_wh, grid_kg_per_kwh):
        return None
    assert e_dc_wh is not None and e_renewable_wh is not None and grid_kg_per_kwh is not None
    if e_dc_wh < 0 or e_renewable_wh < 0 or grid_kg_per_kwh < 0:
        return None
    return max(0.0, e_dc_wh - e_renewable_wh) / 1000.0 * grid_kg_per_kwh


def cue(
    e_dc_wh: float | None,
    e_renewable_wh: float | None,
    e_it_wh: float | None,
    grid_kg_per_kwh: float | None,
) -> float | None:
    """CUE = kgCO2eq / E_IT (ISO/IEC 30134-8), in kgCO2eq per kWh of IT energy, with the
    carbon of :func:`carbon_kg`."""
    kg = carbon_kg(e_dc_wh, e_renewable_wh, grid_kg_per_kwh)
    if kg is None or not _ok(e_it_wh) or not e_it_wh or e_it_wh <= 0:
        return None
    return kg / (e_it_wh / 1000.0)


def wue(water_l: float | None, e_it_wh: float | None) -> float | None:
    """WUE = site water use / E_IT (ISO/IEC 30134-9), in litres per kWh of IT energy."""
    if not _ok(water_l, e_it_wh) or not e_it_wh or e_it_wh <= 0:
        return None
    assert water_l is not None
    if water_l < 0:
        return None
    return water_l / (e_it_wh / 1000.0)


def heat_recovery_ratio(heat_recovered_wh: float | None, e_it_wh: float | None) -> float | None:
    """Heat recovered (at the heat exchanger) / E_IT: the share of the IT energy taken out as
    usable heat. About 1 when all IT heat goes through the recovery loop."""
    if not _ok(heat_recovered_wh, e_it_wh) or not e_it_wh or e_it_wh <= 0:
        return None
    assert heat_recovered_wh is not None
    if heat_recovered_wh < 0:
        return None
    return heat_recovered_wh / e_it_wh


def seasonal_cop(heat_out_wh: float | None, electricity_in_wh: float | None) -> float | None:
    """Seasonal (period) COP of a heat pump: heat delivered / electricity used over the
    period, from the two energy counters (not the mean of instantaneous COPs)."""
    if not _ok(heat_out_wh, electricity_in_wh) or not electricity_in_wh or electricity_in_wh <= 0:
        return None
    assert heat_out_wh is not None
    if heat_out_wh < 0:
        return None
    return heat_out_wh / electricity_in_wh


def energy_balance(
    heat_removed_wh: float | None, e_it_wh: float | None, tolerance: float
) -> tuple[float | None, bool]:
    """First-law check: the heat taken out of the IT rooms (recovered, or removed by the
    cooling loops) should match the IT energy. Returns (heat / E_IT, out of balance): out of
    balance when ``|ratio - 1| > tolerance``, which points at a broken or mis-scaled meter."""
    ratio = heat_recovery_ratio(heat_removed_wh, e_it_wh)
    return ratio, ratio is not None and abs(ratio - 1.0) > tolerance


@dataclass(frozen=True)
class BoundaryCheck:
    """Outcome of :func:`check_boundary`."""

    e_dc_wh: float | None  # E_DC with the heat-pump electricity taken out where known inside
    flagged: bool  # the E_DC given contains, or may contain, heat-pump electricity
    note: str


def check_boundary(
    e_dc_wh: float | None, e_heat_pump_wh: float | None, hp_inside: bool | None
) -> BoundaryCheck:
    """EnEfG boundary rule: electricity used only to upgrade waste heat (heat pumps) is not
    part of E_DC. ``e_dc_wh`` is an E_DC as reported (a meter or another tool's figure);
    ``hp_inside``: the heat-pump electricity is counted inside it (True), outside (False),
    or unknown (None: the heat-pump supply's place in the topology is not known).

    Inside: flagged, and the corrected E_DC is returned (None if the heat-pump electricity is
    not metered). Unknown: flagged as a possible boundary error, E_DC returned as given.
    """
    if hp_inside is False:
        return BoundaryCheck(e_dc_wh, False, "")
    hp_txt = "n/a" if e_heat_pump_wh is None else f"{e_heat_pump_wh / 1000:,.0f} kWh"
    if hp_inside is None:
        return BoundaryCheck(
            e_dc_wh,
            True,
            f"heat-pump electricity ({hp_txt}) may be inside E_DC: boundary error (EnEfG)",
        )
    if not _ok(e_dc_wh, e_heat_pump_wh):
        return BoundaryCheck(
            None,
            True,
            f"heat-pump electricity ({hp_txt}) is inside E_DC and cannot be taken out: "
            "boundary error (EnEfG)",
        )
    assert e_dc_wh is not None and e_heat_pump_wh is not None
    return BoundaryCheck(
        e_dc_wh - e_heat_pump_wh,
        True,
        f"heat-pump electricity ({hp_txt}) was counted inside E_DC: boundary error (EnEfG), "
        "taken out",
    )


def instantaneous_pue(facility_power_w: float | None, it_power_w: float | None) -> float | None:
    """Power-based PUE at one instant: for dashboards only, never for reporting."""
    return pue(facility_power_w, it_power_w)
