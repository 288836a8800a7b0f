"""The twin's physics: weather, IT load pattern, water properties and the plant balance.

Everything here is a pure, vectorised function of time (UNIX seconds, float64 arrays), so a
value at any instant is reproducible and a whole series is one numpy call. Randomness is
drawn once, from the seed, into parameters (phases, periods, per-unit offsets); nothing is
random per call.

Units: power W, heat W, temperature degC, flow m3/h, time s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timezone
from functools import cached_property
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

from dcim.kpi import water

if TYPE_CHECKING:
    from dcim.twin.model import SiteModel, _Flow

Arr = NDArray[np.float64]

EPOCH = 1_577_836_800.0  # 2020-01-01T00:00Z: phase origin of every sinusoid
DAY = 86_400.0
YEAR = 365.2425 * DAY
KELVIN = 273.15
K_BASIS = 12  # smooth pseudo-random basis functions shared by every server and rack
LOOP_PRESSURE_MPA = 0.3  # water properties of every loop are taken at 3 bar

# -- plant constants (fractions of the nominal IT power ``nom``) ------------------------------
UPS_LOSS = (0.006, 0.018, 0.012)  # loss/rated = a + b x + c x^2, x = load/rated -> eta 0.95-0.965
DIST_LOSS = 0.005  # UPS output -> PDU inputs (cables, busbars)
CRAH_FAN = 0.08  # CRAH fans at nominal load, share of the heat they move; ~ load^1.6
PUMPS = 0.035  # loop pumps at nominal flow
VENT = 0.035  # UPS/electrical room ventilation and air handling, +6 %/K above 15 degC outside
DRY_COOLER_FAN = 0.08  # dry-cooler fans at full speed; ~ speed^2.7
SPRAY_PUMP = 0.004  # adiabatic pre-cooling pumps, above 22 degC outside
AUX_REF_W = 5_000.0  # lighting/offices at the reference site (~160 kW IT), scaled with nom
REF_IT_W = 160_000.0
HP_ETA = 0.45  # heat pump COP = HP_ETA * Carnot(condensing, evaporating)
HP_SUPPLY_C = 65.0  # CPCU loop supply temperature
HP_MIN_LOAD = 0.12  # a heat pump below this share of its capacity stops
HP_STAGE = 0.9  # the next heat pump starts above this share of the running ones' capacity
HP_MAX_SOURCE = 0.92  # heat pumps take at most this share of the recovered heat
HP_CAP = 0.55  # thermal capacity of one heat pump, share of H_ref (H_ref = nom * 4/3)


# -- time ---------------------------------------------------------------------------------------


class Clock:
    """Local civil time of the site (DST aware) for arrays of UNIX seconds."""

    def __init__(self, tz: str) -> None:
        try:
            self.zone: ZoneInfo | timezone = ZoneInfo(tz)
        except (KeyError, ValueError):  # unknown zone: UTC
            self.zone = UTC

    def _off(self, t: float) -> float:
        d = datetime.fromtimestamp(t, self.zone).utcoffset()
        return d.total_seconds() if d is not None else 0.0

    def offsets(self, ts: Arr) -> Arr:
        """UTC offset in seconds at each time (transitions found by bisection)."""
        out = np.empty_like(ts)
        if ts.size == 0:
            return out
        lo, hi = float(ts.min()), float(ts.max())
        a = self._off(lo)
        if hi - lo < 60 * DAY and a == self._off(hi):
            out[:] = a
            return out
        if hi - lo < 1.0:
            out[:] = [self._off(float(x)) for x in ts]
            return out
        mask = ts < (lo + hi) / 2
        out[mask] = self.offsets(ts[mask])
        out[~mask] = self.offsets(ts[~mask])
        return out

    def local(self, ts: Arr) -> tuple[Arr, Arr]:
        """(hour of day 0-24, weekday 0=Monday) in local time."""
        lt = ts + self.offsets(ts)
        days = np.floor(lt / DAY)
        return (lt - days * DAY) / 3600.0, np.mod(days + 3.0, 7.0)


def solar_hour(ts: Arr) -> Arr:
    """Mean solar time in Paris (2.35 deg E: UTC + 9.4 min), hours 0-24."""
    return np.mod(ts + 564.0, DAY) / 3600.0


def bump(h: Arr, centre: float, width: float) -> Arr:
    """A smooth daily bump (0..1) centred at ``centre`` hours, periodic over 24 h."""
    d = np.mod(h - centre + 12.0, 24.0) - 12.0
    return np.asarray(np.exp(-0.5 * (d / width) ** 2))


def office(h: Arr) -> Arr:
    """Office-hours plateau 0..1, ~8:00 to ~19:00 local."""
    return np.asarray(0.5 * (np.tanh((h - 8.0) / 1.2) - np.tanh((h - 19.0) / 1.5)))


def daylight(hs: Arr, ts: Arr) -> Arr:
    """Daylight 0..1 from solar hour and season (long days in June)."""
    season = -np.cos(2 * np.pi * (ts - EPOCH - 172 * DAY) / YEAR)  # +1 at the June solstice
    half = 6.0 + 2.2 * (-season)  # half-length of the day in hours, 3.8..8.2 h
    return np.asarray(np.clip(np.cos(np.pi * (hs - 12.0) / (2.0 * half)), 0.0, None))


# -- seeded smooth variations -------------------------------------------------------------------


def dot(c: Arr, x: Arr) -> Arr:
    """``c @ x`` for x of shape (K, T), summed in a fixed order so that a value does not depend
    on how many times are evaluated together (BLAS would round differently by shape).
    ``c`` is (K,) or (m, K)."""
    if c.ndim == 1:
        acc = c[0] * x[0]
        for k in range(1, c.shape[0]):
            acc = acc + c[k] * x[k]
        return np.asarray(acc)
    acc2 = c[:, 0:1] * x[0]
    for k in range(1, c.shape[1]):
        acc2 = acc2 + c[:, k : k + 1] * x[k]
    return np.asarray(acc2)


def rowsum(x: Arr) -> Arr:
    """Sum over the first axis in a fixed order (see :func:`dot`)."""
    acc = x[0]
    for k in range(1, x.shape[0]):
        acc = acc + x[k]
    return np.asarray(acc)


@dataclass(frozen=True)
class Waves:
    """A sum of sinusoids with seeded periods, phases and amplitudes (deterministic noise)."""

    omega: Arr  # rad/s
    phase: Arr
    amp: Arr

    @classmethod
    def make(
        cls, rng: np.random.Generator, n: int, pmin: float, pmax: float, total: float
    ) -> Waves:
        periods = np.exp(rng.uniform(math.log(pmin), math.log(pmax), n))
        amp = rng.uniform(0.5, 1.0, n)
        return cls(2 * np.pi / periods, rng.uniform(0, 2 * np.pi, n), amp * total / amp.sum())

    def basis(self, ts: Arr) -> Arr:
        """sin(omega (t - EPOCH) + phase), shape (n, T), without the amplitudes."""
        return np.asarray(np.sin(np.outer(self.omega, ts - EPOCH) + self.phase[:, None]))

    def basis_integral(self, ts: Arr, t0: float) -> Arr:
        """Integral of :meth:`basis` from t0 to each t, shape (n, T), in s."""
        a0 = self.omega * (t0 - EPOCH) + self.phase
        a = np.outer(self.omega, ts - EPOCH) + self.phase[:, None]
        return np.asarray((np.cos(a0)[:, None] - np.cos(a)) / self.omega[:, None])

    def __call__(self, ts: Arr) -> Arr:
        return dot(self.amp, self.basis(ts))


# -- water (EN 1434 heat coefficient) -------------------------------------------------------------


def enthalpy(t: Arr) -> Arr:
    """Specific enthalpy of the loop water, J/kg."""
    return water.enthalpy(t, LOOP_PRESSURE_MPA)


def density(t: Arr) -> Arr:
    """Density of the loop water, kg/m3."""
    return water.density(t, LOOP_PRESSURE_MPA)


def flow_for_heat(q_w: Arr, t_supply: Arr, t_return: Arr) -> Arr:
    """Volume flow (m3/h, measured in the return pipe) that carries ``q_w`` between the two
    temperatures: EN 1434, q = rho(t_return) * V * (h(t_supply) - h(t_return))."""
    dh = enthalpy(t_supply) - enthalpy(t_return)
    return np.asarray(q_w / (density(t_return) * np.maximum(dh, 1.0)) * 3600.0)


# -- weather and load -----------------------------------------------------------------------------


def outdoor_temp(ts: Arr, weather: Waves) -> Arr:
    """Paris dry-bulb temperature, degC: 12.5 mean, Jan ~5, Jul ~20 (daily means), a daily
    swing of 3-5 K peaking mid-afternoon, and multi-day weather (seeded)."""
    season = -np.cos(2 * np.pi * (ts - EPOCH - 17 * DAY) / YEAR)  # -1 mid-January
    hs = solar_hour(ts)
    swing = 4.0 + 1.2 * season
    daily = np.cos(2 * np.pi * (hs - 15.0) / 24.0) + 0.25 * np.cos(4 * np.pi * (hs - 13.0) / 24.0)
    return np.asarray(12.5 + 7.5 * season + swing * daily + weather(ts))


def it_utilisation(hour: Arr, weekday: Arr, ts: Arr, drift: Waves) -> Arr:
    """Site-wide IT utilisation 0..1 (~0.25 at night, ~0.6 on weekday afternoons): office
    hours (weaker at weekends), the nightly backup window and a slow seeded drift."""
    work = np.where(weekday < 5.0, 1.0, 0.35)
    return np.asarray(0.28 + 0.28 * office(hour) * work + 0.08 * bump(hour, 2.5, 1.2) + drift(ts))


def supply_air(t_out: Arr) -> Arr:
    """CRAH supply-air temperature, degC: 21, warmer when the loop is warm in a heat wave."""
    return np.asarray(21.0 + 0.4 * np.maximum(0.0, effective_air(t_out) + 5.0 - 25.5))


def effective_air(t_out: Arr) -> Arr:
    """Air temperature seen by the dry-cooler coils (adiabatic pre-cooling above 22 degC)."""
    return np.asarray(np.where(t_out > 22.0, 22.0 + 0.35 * (t_out - 22.0), t_out))


# -- the plant ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plant:
    """Sizes of the site's plant, W unless stated."""

    nom: float  # nominal IT power (UPS output)
    ups_rated: float  # each UPS
    crah_nom: Arr  # nominal heat load of each CRAH
    hp_evap_dt: Arr  # evaporator temperature drop of each heat pump, K

    @property
    def h_ref(self) -> float:
        """Heat-pump output if all nominal IT heat were upgraded at COP 4."""
        return self.nom * 4.0 / 3.0


def plant_state(
    p: Plant, ts: Arr, t_out: Arr, hour: Arr, ups_out: Arr, crah_load: Arr
) -> dict[str, Arr]:
    """The whole plant at each time. ``ups_out`` (n_ups, T) W, ``crah_load`` (n_crah, T) W of
    room heat each CRAH removes. Returns arrays keyed by quantity (see the code).

    First law, exactly: q_loop = sum(crah_cool) = sum(hp_source) + q_rej;
    sum(hp_heat) = heat_cpcu + heat_gh; hp_heat = hp_source + hp_elec (per unit)."""
    nom = p.nom
    x = ups_out / p.ups_rated
    a, b, c = UPS_LOSS
    ups_in = ups_out + p.ups_rated * (a + b * x + c * x * x)
    lf = crah_load / p.crah_nom[:, None]
    crah_fan = CRAH_FAN * p.crah_nom[:, None] * np.maximum(lf, 0.0) ** 1.6
    crah_cool = crah_load + crah_fan
    q_loop = rowsum(crah_cool)
    # water loop temperatures: secondary return held at 25.5 (higher in a heat wave), 2 K approach
    t_eff = effective_air(t_out)
    t_sr = np.maximum(25.5, t_eff + 5.0)
    t_pr = t_sr + 2.0
    t_ps = t_pr + 8.5 * np.sqrt(np.maximum(q_loop, 0.0) / nom)
    t_ss = t_ps - 2.0
    # heat pumps
    t_h = HP_SUPPLY_C + 3.0 + KELVIN
    t_c = t_ss[None, :] - p.hp_evap_dt[:, None] - 3.0 + KELVIN
    cop_units = HP_ETA * t_h / (t_h - t_c)  # (n_hp, T)
    hs = solar_hour(ts)
    h_ref = p.h_ref
    d_cpcu = (
        h_ref
        * np.clip(0.3 + 0.045 * (15.0 - t_out), 0.22, 1.05)
        * (
            1.0
            + 0.12 * bump(hour, 7.5, 1.5)
            + 0.08 * bump(hour, 19.0, 1.5)
            - 0.08 * bump(hour, 3.0, 2.0)
        )
    )
    d_gh = (
        h_ref * 0.22 * np.clip((17.0 - t_out) / 14.0, 0.03, 1.3) * (1.25 - 0.5 * daylight(hs, ts))
    )
    n_hp = p.hp_evap_dt.size
    cap = HP_CAP * h_ref
    src_share = (1.0 - 1.0 / cop_units).max(axis=0)
    h = np.minimum(np.minimum(d_cpcu + d_gh, n_hp * cap), HP_MAX_SOURCE * q_loop / src_share)
    n_run = np.clip(np.ceil(h / (HP_STAGE * cap)), 1.0, n_hp)
    n_run = np.where(h < HP_MIN_LOAD * cap, 0.0, n_run)
    h = np.where(n_run > 0, h, 0.0)
    running = (np.arange(n_hp)[:, None] < n_run[None, :]).astype(np.float64)
    hp_heat = running * (h / np.maximum(n_run, 1.0))[None, :]
    hp_elec = hp_heat / cop_units
    hp_src = hp_heat - hp_elec
    heat_cpcu = h * d_cpcu / (d_cpcu + d_gh)
    heat_gh = h - heat_cpcu
    q_rej = q_loop - rowsum(hp_src)
    # dry coolers, pumps, ventilation, aux
    speed = np.clip(q_rej / (nom / 10.0 * np.maximum(t_ss - t_eff, 3.0)), 0.0, 1.0)
    spray = (t_out > 22.0).astype(np.float64)
    dc_power = DRY_COOLER_FAN * nom * speed**2.7 + SPRAY_PUMP * nom * spray
    pumps = PUMPS * nom * (0.35 + 0.65 * (np.maximum(q_loop, 0.0) / nom) ** 1.5)
    vent = VENT * nom * (1.0 + 0.06 * np.maximum(0.0, t_out - 15.0))
    cooling = rowsum(crah_fan) + pumps + dc_power + vent
    aux = AUX_REF_W * nom / REF_IT_W * (1.0 + 0.25 * office(hour) + 0.1 * (1.0 - daylight(hs, ts)))
    # delivery temperatures (return lower when the consumer draws more)
    t_rc = HP_SUPPLY_C - 15.0 - 10.0 * np.clip(heat_cpcu / (0.6 * h_ref), 0.0, 1.2)
    t_rg = HP_SUPPLY_C - 22.0 - 8.0 * np.clip(heat_gh / (0.2 * h_ref), 0.0, 1.3)
    t_supply = np.full_like(ts, HP_SUPPLY_C)
    v_cpcu = flow_for_heat(heat_cpcu, t_supply, t_rc)
    v_gh = flow_for_heat(heat_gh, t_supply, t_rg)
    mc, mg = v_cpcu * density(t_rc), v_gh * density(t_rg)
    t_hp_ret = np.where(mc + mg > 0, (mc * t_rc + mg * t_rg) / np.maximum(mc + mg, 1e-9), t_rc)
    water = 0.015 * nom / REF_IT_W + q_rej / 1000.0 * np.maximum(0.0, t_out - 22.0) / 8.0 * 1.5e-3
    return {
        "ups_in": ups_in,
        "crah_fan": crah_fan,
        "crah_cool": crah_cool,
        "crah_lf": lf,
        "q_loop": q_loop,
        "v_loop": flow_for_heat(q_loop, t_ps, t_pr),
        "t_ps": t_ps,
        "t_pr": t_pr,
        "t_ss": t_ss,
        "t_sr": t_sr,
        "t_eff": t_eff,
        "cop": cop_units,
        "running": running,
        "hp_heat": hp_heat,
        "hp_elec": hp_elec,
        "hp_src": hp_src,
        "heat_cpcu": heat_cpcu,
        "heat_gh": heat_gh,
        "q_rej": q_rej,
        "dc_speed": speed,
        "dc_power": dc_power,
        "cooling": cooling,
        "aux": aux,
        "t_supply": t_supply,
        "t_rc": t_rc,
        "t_rg": t_rg,
        "t_hp_ret": t_hp_ret,
        "v_cpcu": v_cpcu,
        "v_gh": v_gh,
        "water": water,
        "d_cpcu": d_cpcu,
        "d_gh": d_gh,
    }


class At:
    """The site at an array of times, each quantity computed once, on demand."""

    def __init__(self, model: SiteModel, ts: Arr, integ: Arr | None = None) -> None:
        self.m, self.ts = model, ts
        if integ is not None:
            self.__dict__["integrals"] = integ

    @cached_property
    def local(self) -> tuple[Arr, Arr]:
        return self.m.clock.local(self.ts)

    @cached_property
    def u(self) -> Arr:
        hour, weekday = self.local
        return it_utilisation(hour, weekday, self.ts, self.m.drift)

    @cached_property
    def S(self) -> Arr:
        return self.m.basis.basis(self.ts)

    @cached_property
    def t_out(self) -> Arr:
        return outdoor_temp(self.ts, self.m.weather)

    def lin(self, rows: tuple[Arr, Arr, Arr]) -> Arr:
        a, b, c = rows
        return np.asarray(a[:, None] + b[:, None] * self.u[None, :] + dot(c, self.S))

    @cached_property
    def ups_out(self) -> Arr:
        return self.lin(self.m.ups_rows)

    @cached_property
    def plant(self) -> dict[str, Arr]:
        return plant_state(
            self.m.plant,
            self.ts,
            self.t_out,
            self.local[0],
            self.ups_out,
            self.lin(self.m.crah_rows),
        )

    @cached_property
    def series(self) -> Arr:
        p = self.plant
        return np.vstack(
            [
                self.u[None, :],
                p["ups_in"],
                p["cooling"][None, :],
                p["aux"][None, :],
                p["hp_elec"],
                p["hp_heat"],
                *(
                    p[k][None, :]
                    for k in ("q_loop", "v_loop", "heat_cpcu", "v_cpcu", "heat_gh", "v_gh", "water")
                ),
            ]
        )

    @cached_property
    def integrals(self) -> Arr:
        return self.m.integrals(self.ts)

    def rate(self, fl: _Flow) -> Arr:
        base = fl.a + dot(fl.c, self.S)
        if not fl.num[1:].any():
            return np.asarray(base + fl.num[0] * self.u)
        for k in np.flatnonzero(fl.num).tolist():
            base = base + fl.num[k] * self.series[k]
        return np.asarray(base)

    def counter(self, fl: _Flow) -> Arr:
        return self.m.counter(fl, self.ts, self.integrals)
