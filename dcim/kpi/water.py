"""Water properties (IAPWS-IF97) and the EN 1434 heat coefficient. Pure Python, no numpy.

A heat meter integrates ``Q = integral of k(theta_f, theta_r) * (theta_f - theta_r) dV``
(EN 1434-1), where the heat coefficient is

    k = rho(theta at the flow sensor) * (h(theta_f) - h(theta_r)) / (theta_f - theta_r)

in J/(m3 K): the volume is measured where the flow sensor sits (supply or return pipe), so
the density is taken at that pipe's temperature. The HVAC shortcut k = 1.163 kWh/(m3 K) is
about 0.65 % off at 40/30 degC, which billing cannot accept.

Properties come from IAPWS-IF97 region 1 (:mod:`dcim.kpi.if97`), tabulated once per
pressure on a 0.1 K grid from 0.5 degC up to 130 degC or the last grid point where water is
still liquid at that pressure (99.9 degC at 1 atm), and interpolated linearly: k is within
1e-6 of the direct computation for differences of 3 K and more (checked by the tests). The
interpolation is the same arithmetic as ``numpy.interp`` on the same table, so the figures are
the same as when this module used numpy and ``iapws`` (to ~1e-13, the difference between two
codings of the same IF97 equation). Temperatures in degC, pressure in MPa.

Why by hand: the production path (``dcim kpi``) must not need numpy; one table lookup is a
``bisect`` and three float operations. ``density`` and ``enthalpy`` still take arrays (the
digital twin's vectorised physics): only that use imports numpy, lazily.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING, Any, Literal, overload

from dcim.kpi.if97 import region1

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, NDArray

KELVIN = 273.15
T_MIN_C, T_MAX_C, STEP_K = 0.5, 130.0, 0.1
P_MAX_MPA = 100.0  # upper pressure of IAPWS-IF97 region 1
# Loop pressure for the properties: PN 16 by default. Between 0.3 and 1.6 MPa it moves k by
# less than 0.03 % (tests/kpi/test_water.py), well inside a class 2 meter's error.
DEFAULT_PRESSURE_MPA = 1.6
# The grid's floats are numpy.arange's (99.89999999999998 for 99.9): a temperature this close
# to an end is at that end.
_EDGE_K = 1e-9
SensorPosition = Literal["supply", "return"]
Table = tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]


def properties(t_c: float, p_mpa: float = DEFAULT_PRESSURE_MPA) -> tuple[float, float]:
    """(density kg/m3, specific enthalpy J/kg) of liquid water at t_c, computed directly."""
    return region1(t_c + KELVIN, p_mpa)


def _grid() -> list[float]:
    """0.5, 0.6, ... 130.0 degC, the same floats as ``numpy.arange(0.5, 130.05, 0.1)``."""
    n = math.ceil((T_MAX_C + STEP_K / 2 - T_MIN_C) / STEP_K)
    delta = (T_MIN_C + STEP_K) - T_MIN_C
    return [T_MIN_C, T_MIN_C + STEP_K] + [T_MIN_C + i * delta for i in range(2, n)]


@cache
def table(p_mpa: float) -> Table:
    """(temperatures degC, density kg/m3, enthalpy J/kg) on the 0.1 K grid, as far as water
    is liquid at ``p_mpa``."""
    if not 0.0 < p_mpa <= P_MAX_MPA:
        raise ValueError(f"pressure {p_mpa} MPa outside IAPWS-IF97 region 1 (up to 100 MPa)")
    temps: list[float] = []
    rho: list[float] = []
    h: list[float] = []
    for t in _grid():
        try:
            r, e = properties(t, p_mpa)
        except ValueError:
            break  # boiling from here on up at this pressure
        temps.append(t)
        rho.append(r)
        h.append(e)
    if len(temps) < 2:
        raise ValueError(
            f"no liquid water at {p_mpa} MPa between {T_MIN_C:g} and {T_MAX_C:g} degC "
            "(IAPWS-IF97 region 1)"
        )
    return tuple(temps), tuple(rho), tuple(h)


@cache
def _slopes(p_mpa: float, column: int) -> tuple[float, ...]:
    xs, ys = table(p_mpa)[0], table(p_mpa)[column]
    return tuple((ys[j + 1] - ys[j]) / (xs[j + 1] - xs[j]) for j in range(len(xs) - 1))


def liquid_range(p_mpa: float = DEFAULT_PRESSURE_MPA) -> tuple[float, float]:
    """The temperatures (degC) the properties are tabulated for at ``p_mpa``."""
    temps = table(p_mpa)[0]
    return temps[0], temps[-1]


def _range_error(bad: float, p_mpa: float) -> ValueError:
    lo, hi = liquid_range(p_mpa)
    return ValueError(
        f"water temperature {bad:.2f} degC outside {lo:g}-{hi:g} degC, where water is liquid "
        f"at {p_mpa:g} MPa (IAPWS-IF97 region 1 table)"
    )


def _lookup(t: float, p_mpa: float, column: int) -> float:
    """Linear interpolation in the table, ``numpy.interp``'s arithmetic."""
    xs = table(p_mpa)[0]
    if not xs[0] - _EDGE_K <= t <= xs[-1] + _EDGE_K:  # also catches NaN
        raise _range_error(t, p_mpa)
    ys = table(p_mpa)[column]
    j = max(0, bisect_right(xs, t) - 1)
    if j == len(xs) - 1 or xs[j] >= t:  # at or beyond an end: its value, as numpy.interp
        return ys[j]
    return _slopes(p_mpa, column)[j] * (t - xs[j]) + ys[j]


def _vectorised(t_c: ArrayLike, p_mpa: float, column: int) -> NDArray[Any]:
    import numpy as np  # only for array callers (the twin); the KPI path passes floats

    t = np.asarray(t_c, dtype=np.float64)
    lo, hi = liquid_range(p_mpa)
    if t.size and (np.nanmin(t) < lo - _EDGE_K or np.nanmax(t) > hi + _EDGE_K):
        bad = float(np.nanmin(t)) if np.nanmin(t) < lo - _EDGE_K else float(np.nanmax(t))
        raise _range_error(bad, p_mpa)
    tab = table(p_mpa)
    return np.asarray(np.interp(t, tab[0], tab[column]))


@overload
def density(t_c: float, p_mpa: float = DEFAULT_PRESSURE_MPA) -> float: ...
@overload
def density(t_c: ArrayLike, p_mpa: float = DEFAULT_PRESSURE_MPA) -> NDArray[Any]: ...
def density(t_c: Any, p_mpa: float = DEFAULT_PRESSURE_MPA) -> Any:
    """Density of liquid water, kg/m3 (an array for an array)."""
    if isinstance(t_c, int | float):
        return _lookup(float(t_c), p_mpa, 1)
    return _vectorised(t_c, p_mpa, 1)


@overload
def enthalpy(t_c: float, p_mpa: float = DEFAULT_PRESSURE_MPA) -> float: ...
@overload
def enthalpy(t_c: ArrayLike, p_mpa: float = DEFAULT_PRESSURE_MPA) -> NDArray[Any]: ...
def enthalpy(t_c: Any, p_mpa: float = DEFAULT_PRESSURE_MPA) -> Any:
    """Specific enthalpy of liquid water, J/kg (IF97 reference state; an array for an array)."""
    if isinstance(t_c, int | float):
        return _lookup(float(t_c), p_mpa, 2)
    return _vectorised(t_c, p_mpa, 2)


def heat_coefficient(
    t_flow_c: float,
    t_return_c: float,
    *,
    sensor: SensorPosition,
    p_mpa: float = DEFAULT_PRESSURE_MPA,
) -> float:
    """EN 1434 heat coefficient k, J/(m3 K), for the volume measured in the ``sensor`` pipe.

    With equal temperatures k is the limit rho * cp (the enthalpy slope at that temperature).
    """
    rho = _lookup(t_flow_c if sensor == "supply" else t_return_c, p_mpa, 1)
    dt = t_flow_c - t_return_c
    if abs(dt) < 1e-3:  # d h / d theta by a centred difference: too small to divide by
        return rho * (_lookup(t_flow_c + 0.05, p_mpa, 2) - _lookup(t_flow_c - 0.05, p_mpa, 2)) / 0.1
    return rho * (_lookup(t_flow_c, p_mpa, 2) - _lookup(t_return_c, p_mpa, 2)) / dt


def heat_power_w(
    flow_m3_per_h: float,
    t_flow_c: float,
    t_return_c: float,
    *,
    sensor: SensorPosition,
    p_mpa: float = DEFAULT_PRESSURE_MPA,
) -> float:
    """Thermal power, W: k * (theta_f - theta_r) * volume flow."""
    k = heat_coefficient(t_flow_c, t_return_c, sensor=sensor, p_mpa=p_mpa)
    return k * (t_flow_c - t_return_c) * flow_m3_per_h / 3600.0


def window_powers(
    flow_m3_per_h: Sequence[float],
    t_flow_c: Sequence[float],
    t_return_c: Sequence[float],
    *,
    sensor: SensorPosition,
    p_mpa: float = DEFAULT_PRESSURE_MPA,
) -> list[float | None]:
    """:func:`heat_power_w` of each (flow, t_flow, t_return), the same floats bit for bit;
    None where it raises (a temperature that is not liquid water).

    Why: a month is 45,000 windows per meter; this does the table lookups inline (one
    ``bisect`` per temperature, density and enthalpy from the same index) in one loop instead
    of five calls per window. The rare cases (a temperature at or beyond the table's ends,
    a difference under 1 mK) go through :func:`heat_power_w` itself."""
    xs, rho, h = table(p_mpa)
    rho_sl, h_sl = _slopes(p_mpa, 1), _slopes(p_mpa, 2)
    x0, xn = xs[0], xs[-1]
    supply = sensor == "supply"
    out: list[float | None] = []
    append = out.append
    for q, a, b in zip(flow_m3_per_h, t_flow_c, t_return_c, strict=True):
        dt = a - b
        if not (x0 < a < xn and x0 < b < xn and (dt >= 1e-3 or dt <= -1e-3)):  # also NaN
            try:
                append(heat_power_w(q, a, b, sensor=sensor, p_mpa=p_mpa))
            except ValueError:
                append(None)
            continue
        ja = bisect_right(xs, a) - 1
        jb = bisect_right(xs, b) - 1
        xa, xb = xs[ja], xs[jb]
        # _lookup's arithmetic: a grid point's own value, else the slope from it
        ha = h[ja] if xa >= a else h_sl[ja] * (a - xa) + h[ja]
        hb = h[jb] if xb >= b else h_sl[jb] * (b - xb) + h[jb]
        if supply:
            r = rho[ja] if xa >= a else rho_sl[ja] * (a - xa) + rho[ja]
        else:
            r = rho[jb] if xb >= b else rho_sl[jb] * (b - xb) + rho[jb]
        k = r * (ha - hb) / dt
        append(k * (a - b) * q / 3600.0)
    return out


def heat_energy_wh(
    times_s: Sequence[float],
    flow_m3_per_h: Sequence[float],
    t_flow_c: Sequence[float],
    t_return_c: Sequence[float],
    *,
    sensor: SensorPosition,
    p_mpa: float = DEFAULT_PRESSURE_MPA,
) -> float:
    """Heat energy, Wh, integrated (trapezoid rule) from sampled flow and temperatures."""
    if len(times_s) < 2:
        return 0.0
    p = [
        heat_power_w(float(q), float(a), float(b), sensor=sensor, p_mpa=p_mpa)
        for q, a, b in zip(flow_m3_per_h, t_flow_c, t_return_c, strict=True)
    ]
    t = [float(x) for x in times_s]
    return (
        math.fsum((p[i + 1] + p[i]) * 0.5 * (t[i + 1] - t[i]) for i in range(len(t) - 1)) / 3600.0
    )
