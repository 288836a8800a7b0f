"""Water properties (IAPWS-IF97) and the EN 1434 heat coefficient. Pure, vectorised functions.

A heat meter integrates ``Q = integral of k(theta_f, theta_r) * (theta_f - theta_r) dV``
(EN 1434-1), where the heat coefficient is

    k = rho(theta at the flow sensor) * (h(theta_f) - h(theta_r)) / (theta_f - theta_r)

in J/(m3 K): the volume is measured where the flow sensor sits (supply or return pipe), so
the density is taken at that pipe's temperature. The HVAC shortcut k = 1.163 kWh/(m3 K) is
about 0.65 % off at 40/30 degC, which billing cannot accept.

Properties come from the ``iapws`` package (IAPWS-IF97, region 1), tabulated once per
pressure on a 0.1 K grid (0.5-130 degC) and interpolated linearly: k is within 1e-6 of the
direct computation for differences of 3 K and more (checked by the tests), so a month of
10 s samples is a few numpy calls. Temperatures in degC, pressure in MPa.
"""

from __future__ import annotations

from functools import cache
from typing import Literal

import numpy as np
from iapws import IAPWS97
from numpy.typing import ArrayLike, NDArray

Arr = NDArray[np.float64]
KELVIN = 273.15
T_MIN_C, T_MAX_C, STEP_K = 0.5, 130.0, 0.1
# Loop pressure for the properties: PN 16 by default. Between 0.3 and 1.6 MPa it moves k by
# less than 0.03 % (tests/kpi/test_water.py), well inside a class 2 meter's error.
DEFAULT_PRESSURE_MPA = 1.6
SensorPosition = Literal["supply", "return"]


def properties(t_c: float, p_mpa: float = DEFAULT_PRESSURE_MPA) -> tuple[float, float]:
    """(density kg/m3, specific enthalpy J/kg) of liquid water at t_c, computed directly."""
    state = IAPWS97(T=t_c + KELVIN, P=p_mpa)
    if state.region != 1:
        raise ValueError(f"{t_c} degC at {p_mpa} MPa is not liquid water (IF97 region 1)")
    return float(state.rho), float(state.h) * 1000.0


@cache
def _table(p_mpa: float) -> tuple[Arr, Arr, Arr]:
    temps = np.arange(T_MIN_C, T_MAX_C + STEP_K / 2, STEP_K)
    rho, h = np.array([properties(float(t), p_mpa) for t in temps]).T
    return temps, np.ascontiguousarray(rho), np.ascontiguousarray(h)


def _lookup(t_c: ArrayLike, p_mpa: float, column: int) -> Arr:
    t = np.asarray(t_c, dtype=np.float64)
    if t.size and (np.nanmin(t) < T_MIN_C or np.nanmax(t) > T_MAX_C):
        raise ValueError(
            f"water temperature outside {T_MIN_C}-{T_MAX_C} degC: "
            f"{float(np.nanmin(t)):.2f} .. {float(np.nanmax(t)):.2f}"
        )
    table = _table(float(p_mpa))
    return np.asarray(np.interp(t, table[0], table[column]))


def density(t_c: ArrayLike, p_mpa: float = DEFAULT_PRESSURE_MPA) -> Arr:
    """Density of liquid water, kg/m3."""
    return _lookup(t_c, p_mpa, 1)


def enthalpy(t_c: ArrayLike, p_mpa: float = DEFAULT_PRESSURE_MPA) -> Arr:
    """Specific enthalpy of liquid water, J/kg (IF97 reference state)."""
    return _lookup(t_c, p_mpa, 2)


def heat_coefficient(
    t_flow_c: ArrayLike,
    t_return_c: ArrayLike,
    *,
    sensor: SensorPosition,
    p_mpa: float = DEFAULT_PRESSURE_MPA,
) -> Arr:
    """EN 1434 heat coefficient k, J/(m3 K), for the volume measured in the ``sensor`` pipe.

    With equal temperatures k is the limit rho * cp (the enthalpy slope at that temperature).
    """
    tf = np.asarray(t_flow_c, dtype=np.float64)
    tr = np.asarray(t_return_c, dtype=np.float64)
    rho = density(tf if sensor == "supply" else tr, p_mpa)
    dt = tf - tr
    small = np.abs(dt) < 1e-3
    # d h / d theta by a centred difference where the difference is too small to divide by
    h_f = enthalpy(np.where(small, tf + 0.05, tf), p_mpa)
    h_r = enthalpy(np.where(small, tf - 0.05, tr), p_mpa)
    return np.asarray(rho * (h_f - h_r) / np.where(small, 0.1, dt))


def heat_power_w(
    flow_m3_per_h: ArrayLike,
    t_flow_c: ArrayLike,
    t_return_c: ArrayLike,
    *,
    sensor: SensorPosition,
    p_mpa: float = DEFAULT_PRESSURE_MPA,
) -> Arr:
    """Thermal power, W: k * (theta_f - theta_r) * volume flow."""
    tf = np.asarray(t_flow_c, dtype=np.float64)
    tr = np.asarray(t_return_c, dtype=np.float64)
    k = heat_coefficient(tf, tr, sensor=sensor, p_mpa=p_mpa)
    return np.asarray(k * (tf - tr) * np.asarray(flow_m3_per_h, dtype=np.float64) / 3600.0)


def heat_energy_wh(
    times_s: ArrayLike,
    flow_m3_per_h: ArrayLike,
    t_flow_c: ArrayLike,
    t_return_c: ArrayLike,
    *,
    sensor: SensorPosition,
    p_mpa: float = DEFAULT_PRESSURE_MPA,
) -> float:
    """Heat energy, Wh, integrated (trapezoid rule) from sampled flow and temperatures."""
    t = np.asarray(times_s, dtype=np.float64)
    if t.size < 2:
        return 0.0
    p = heat_power_w(flow_m3_per_h, t_flow_c, t_return_c, sensor=sensor, p_mpa=p_mpa)
    return float(np.sum((p[1:] + p[:-1]) * 0.5 * np.diff(t)) / 3600.0)
