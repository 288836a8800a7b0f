"""Energy indicators (ISO/IEC 30134, EN 50600-4). Pure functions of energies in Wh.

Each returns None when it is undefined (zero or missing denominator, missing numerator)
rather than a number that looks exact.
"""

from __future__ import annotations

import math


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


def instantaneous_pue(facility_power_w: float | None, it_power_w: float | None) -> float | None:
    """Power-based PUE at one instant: for dashboards only, never for reporting."""
    return pue(facility_power_w, it_power_w)
