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
from functools import cache, cached_property
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

from dcim.kpi import water
from dcim.twin.site import CPCU, HeatNetwork

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
# heat pumps: COP = eta * T_cond / (T_cond - T_evap) (Carnot fraction, temperatures in K)
HP_ETA = 0.5  # Carnot fraction of a water-to-water heat pump at this lift (0.45-0.55)
HP_COP_LIMITS = (2.0, 6.0)  # COP clipped to what a real machine reaches
HP_PINCH = 3.0  # K: condensing above the water it heats, evaporating below the water it cools
HP_MIN_LOAD = 0.12  # a heat pump below this share of its capacity stops
HP_STAGE = 0.9  # the next heat pump starts above this share of the running ones' capacity
HP_MAX_SOURCE = 0.92  # heat pumps take at most this share of the recovered heat
HP_CAP = 0.55  # thermal capacity of one heat pump, share of H_ref (H_ref = nom * 4/3)
# air and water set points, approaches
SUPPLY_AIR_C = 22.0  # CRAH supply-air set point (ASHRAE recommended inlet 18-27 degC)
AIR_DT = 12.0  # K: return (hot aisle) minus supply air at nominal CRAH load, ~ sqrt(load)
COIL_APPROACH = 3.0  # K: supply air above the coil's entering water (design cold end)
HX_APPROACH = 2.0  # K: plate heat exchanger, both ends (balanced flows, counterflow)
DC_NTU = 1.6  # dry coolers at full fan speed (effectiveness 1 - exp(-NTU) = 0.80)
SPRAY_MIN_C = 12.0  # adiabatic pre-cooling only above this outdoor temperature (frost)
SPRAY_EFF = 0.7  # adiabatic pre-cooling: share of the wet-bulb depression taken
CH_ETA = 0.45  # trim chiller EER = CH_ETA * Carnot(evaporating, condensing)
CH_COND_DT = 12.0  # K: air-cooled condenser above the outdoor air
H_FG = 2.45e6  # J/kg, latent heat of the sprayed water


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


@cache
def _table() -> tuple[Arr, Arr, Arr]:
    """The IF97 table of :mod:`dcim.kpi.water` at the loop pressure, as arrays (converted
    once: ``water.enthalpy`` converts its tuples on every call)."""
    tab = water.table(LOOP_PRESSURE_MPA)
    return tuple(np.asarray(c, dtype=np.float64) for c in tab)  # type: ignore[return-value]


def enthalpy(t: Arr) -> Arr:
    """Specific enthalpy of the loop water, J/kg (``water.enthalpy``'s interpolation)."""
    tab = _table()
    return np.asarray(np.interp(t, tab[0], tab[2]))


def density(t: Arr) -> Arr:
    """Density of the loop water, kg/m3 (``water.density``'s interpolation)."""
    tab = _table()
    return np.asarray(np.interp(t, tab[0], tab[1]))


def temperature(h: Arr) -> Arr:
    """Loop water temperature, degC, at specific enthalpy ``h`` (J/kg): the exact inverse of
    :func:`enthalpy` (both interpolate the same monotone IF97 table linearly)."""
    tab = _table()
    return np.asarray(np.interp(h, tab[2], tab[0]))


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


def outdoor_mean(ts: Arr, weather: Waves) -> Arr:
    """Outdoor daily-mean temperature, degC (:func:`outdoor_temp` without its daily swing):
    what a heat network's weather compensation follows."""
    season = -np.cos(2 * np.pi * (ts - EPOCH - 17 * DAY) / YEAR)
    return np.asarray(12.5 + 7.5 * season + weather(ts))


def wet_bulb(t_out: Arr, ts: Arr) -> Arr:
    """Paris wet-bulb temperature, degC: the dew point follows the season (about 2 degC in
    January, 13 degC in July, never above the air), and the wet-bulb depression is a third of
    the dew-point depression (the usual rule of thumb, within ~1 K at 20-35 degC)."""
    season = -np.cos(2 * np.pi * (ts - EPOCH - 17 * DAY) / YEAR)
    dew = np.minimum(7.5 + 5.5 * season, t_out)
    return np.asarray(t_out - (t_out - dew) / 3.0)


def supply_air(t_out: Arr) -> Arr:
    """CRAH supply-air temperature, degC: its set point, held all year (the trim chiller
    takes what free cooling cannot)."""
    return np.full_like(np.asarray(t_out, dtype=np.float64), SUPPLY_AIR_C)


# -- the plant ------------------------------------------------------------------------------------
#
# Loops (docs/twin.md): CRAH coils -> primary loop -> plate heat exchanger -> secondary loop ->
# heat-pump evaporators (in parallel, with a bypass) -> dry coolers -> trim chiller -> back to the
# exchanger. The heat pumps' condensers feed one hot header at the network's supply temperature;
# the CPCU delivery and the greenhouse loop draw from it and their returns mix back.


@dataclass(frozen=True)
class Plant:
    """Sizes of the site's plant, W unless stated."""

    nom: float  # nominal IT power (UPS output)
    ups_rated: float  # each UPS
    crah_nom: Arr  # nominal heat load of each CRAH
    crah_sa_off: Arr  # each CRAH's supply air off its set point (control and sensor), K
    hp_eta: Arr  # Carnot fraction of each heat pump
    network: HeatNetwork = CPCU  # the district-heating network the heat pumps deliver to

    @property
    def h_ref(self) -> float:
        """Heat-pump output if all nominal IT heat were upgraded at COP 4."""
        return self.nom * 4.0 / 3.0


def network_temps(net: HeatNetwork, t_mean: Arr) -> tuple[Arr, Arr]:
    """(supply, return) of the heat network, degC, at each outdoor daily mean
    (:meth:`HeatNetwork.supply_c`, vectorised)."""
    x = np.clip((t_mean - net.winter_below_c) / (net.summer_above_c - net.winter_below_c), 0.0, 1.0)
    sup = net.supply_winter_c + (net.supply_summer_c - net.supply_winter_c) * x
    ret = net.return_winter_c + (net.return_summer_c - net.return_winter_c) * x
    return np.asarray(sup), np.asarray(ret)


def hp_cop(eta: Arr, t_cond: Arr, t_evap: Arr) -> Arr:
    """Heating COP of a heat pump condensing at ``t_cond`` and evaporating at ``t_evap``
    (degC): a Carnot fraction, within :data:`HP_COP_LIMITS`."""
    th = t_cond + KELVIN
    carnot = th / np.maximum(th - (t_evap + KELVIN), 1.0)
    return np.asarray(np.clip(eta * carnot, *HP_COP_LIMITS))


def plant_state(
    p: Plant,
    ts: Arr,
    t_out: Arr,
    hour: Arr,
    ups_out: Arr,
    crah_load: Arr,
    t_mean: Arr | None = None,
) -> dict[str, Arr]:
    """The whole plant at each time. ``ups_out`` (n_ups, T) W, ``crah_load`` (n_crah, T) W of
    room heat each CRAH removes, ``t_mean`` the outdoor daily mean (default ``t_out``).
    Returns arrays keyed by quantity (see the code; mass flows in kg/s, volume flows m3/h).

    Both laws hold by construction and :func:`dcim.twin.laws.violations` checks them:
    q_loop = sum(crah_cool) = sum(hp_src) + q_rej + q_trim; hp_heat = hp_src + hp_elec (per
    unit); sum(hp_heat) = heat_cpcu + heat_gh; every exchanger has a positive approach."""
    nom = p.nom
    if t_mean is None:
        t_mean = t_out
    x = ups_out / p.ups_rated
    a, b, c = UPS_LOSS
    ups_in = ups_out + p.ups_rated * (a + b * x + c * x * x)
    # CRAHs, air side: room heat plus fan heat; supply air at its set point, return air up
    lf = np.maximum(crah_load / p.crah_nom[:, None], 0.0)
    crah_fan = CRAH_FAN * p.crah_nom[:, None] * lf**1.6
    crah_cool = crah_load + crah_fan
    q_loop = rowsum(crah_cool)
    t_sa = SUPPLY_AIR_C + p.crah_sa_off[:, None] + 0.0 * lf
    t_ra = t_sa + AIR_DT * np.sqrt(lf)
    # CRAHs, water side (counterflow coils): entering water below the supply-air set point,
    # each valve holds its leaving water below its own return air; the leaving waters mix
    t_pr = np.full_like(ts, SUPPLY_AIR_C - COIL_APPROACH)
    t_wo = t_ra - (1.0 + 2.0 * lf)
    h_pr = enthalpy(t_pr)
    m_crah = crah_cool / (enthalpy(t_wo) - h_pr[None, :])
    m_p = rowsum(m_crah)
    h_ps = h_pr + q_loop / m_p
    t_ps = temperature(h_ps)
    # plate heat exchanger, counterflow with balanced flows: the same approach at both ends
    t_ss, t_sr = t_ps - HX_APPROACH, t_pr - HX_APPROACH
    h_ss, h_sr = enthalpy(t_ss), enthalpy(t_sr)
    m_s = q_loop / (h_ss - h_sr)
    # heat pumps: demand from the network and the greenhouses; COP from the lift between the
    # network supply (condensing) and the evaporator's leaving water (evaporating)
    t_sup, t_rc = network_temps(p.network, t_mean)
    t_cond = t_sup + HP_PINCH
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
    n_hp = p.hp_eta.size
    cap = HP_CAP * h_ref
    eta = p.hp_eta[:, None]
    t_eo = np.broadcast_to(t_ss - 0.6 * (t_ss - t_sr), (n_hp, ts.size))
    for _ in range(3):  # COP <-> evaporator leaving water: a fixed point, converged in 3
        t_ev = t_eo - HP_PINCH
        cop = hp_cop(eta, t_cond[None, :], t_ev)
        src_share = (1.0 - 1.0 / cop).max(axis=0)
        h = np.minimum(np.minimum(d_cpcu + d_gh, n_hp * cap), HP_MAX_SOURCE * q_loop / src_share)
        n_run = np.clip(np.ceil(h / (HP_STAGE * cap)), 1.0, n_hp)
        n_run = np.where(h < HP_MIN_LOAD * cap, 0.0, n_run)
        h = np.where(n_run > 0, h, 0.0)
        running = (np.arange(n_hp)[:, None] < n_run[None, :]).astype(np.float64)
        hp_heat = running * (h / np.maximum(n_run, 1.0))[None, :]
        # the running evaporators share the whole secondary flow (bypass closed)
        m_ev = running * (m_s / np.maximum(n_run, 1.0))[None, :]
        src = hp_heat * (1.0 - 1.0 / cop)
        t_eo = np.where(running > 0, temperature(h_ss - src / np.maximum(m_ev, 1e-9)), t_ss)
    hp_elec = hp_heat / cop
    hp_src = hp_heat - hp_elec
    t_eo = np.where(running > 0, temperature(h_ss - hp_src / np.maximum(m_ev, 1e-9)), t_ss)
    m_byp = m_s - rowsum(m_ev)
    h_mid = h_ss - rowsum(hp_src) / m_s
    t_mid = temperature(h_mid)
    heat_cpcu = np.where(h > 0, h * d_cpcu / (d_cpcu + d_gh), 0.0)
    heat_gh = h - heat_cpcu
    # dry coolers: free cooling down to the set point if they can; adiabatic pre-cooling when
    # dry air cannot hold it; what they still cannot reach, the trim chiller takes
    eps_max = 1.0 - math.exp(-DC_NTU)
    dry_min = t_mid - eps_max * np.maximum(t_mid - t_out, 0.0)
    spray = ((dry_min > t_sr) & (t_out > SPRAY_MIN_C)).astype(np.float64)
    t_wb = wet_bulb(t_out, ts)
    t_air = t_out - spray * SPRAY_EFF * (t_out - t_wb)
    itd = t_mid - t_air  # entering temperature difference
    dc_min = t_mid - eps_max * np.maximum(itd, 0.0)
    t_dco = np.minimum(np.maximum(t_sr, dc_min), t_mid)
    h_dco = enthalpy(t_dco)
    q_rej = m_s * (h_mid - h_dco)
    eps = np.where(itd > 1e-6, (t_mid - t_dco) / np.maximum(itd, 1e-6), 0.0)
    ntu = -np.log(1.0 - np.minimum(eps, eps_max))
    speed = np.clip(ntu / DC_NTU, 0.0, 1.0) ** (1.0 / 0.6)  # air-side NTU ~ airflow^0.6
    # trim chiller (air-cooled), in series after the dry coolers, down to the set point
    q_trim = m_s * (h_dco - h_sr)
    ch_on = q_trim > 0.0
    ch_ev = t_sr - HP_PINCH
    ch_cd = np.maximum(t_out + CH_COND_DT, ch_ev + 10.0)
    eer = np.minimum(CH_ETA * (ch_ev + KELVIN) / (ch_cd - ch_ev), 8.0)
    ch_elec = np.where(ch_on, q_trim / eer, 0.0)
    # fans, pumps, ventilation, aux
    dc_power = DRY_COOLER_FAN * nom * speed**2.7 + SPRAY_PUMP * nom * spray
    pumps = PUMPS * nom * (0.35 + 0.65 * (np.maximum(q_loop, 0.0) / nom) ** 1.5)
    vent = VENT * nom * (1.0 + 0.06 * np.maximum(0.0, t_out - 15.0))
    cooling = rowsum(crah_fan) + pumps + dc_power + vent + ch_elec
    aux = AUX_REF_W * nom / REF_IT_W * (1.0 + 0.25 * office(hour) + 0.1 * (1.0 - daylight(hs, ts)))
    # delivery: the CPCU returns at its network's return, the greenhouses lower when they draw
    t_rg = t_sup - 22.0 - 8.0 * np.clip(heat_gh / (0.2 * h_ref), 0.0, 1.3)
    h_sup, h_rc, h_rg = enthalpy(t_sup), enthalpy(t_rc), enthalpy(t_rg)
    v_cpcu = flow_for_heat(heat_cpcu, t_sup, t_rc)
    v_gh = flow_for_heat(heat_gh, t_sup, t_rg)
    mc, mg = heat_cpcu / (h_sup - h_rc), heat_gh / (h_sup - h_rg)
    h_hp_ret = np.where(mc + mg > 0, (mc * h_rc + mg * h_rg) / np.maximum(mc + mg, 1e-12), h_rc)
    t_hp_ret = temperature(h_hp_ret)
    # water: offices, and the adiabatic pre-cooling's evaporation (the air's sensible cooling)
    evap = spray * q_rej * (t_out - t_air) / np.maximum(itd, 1.0) / H_FG * 3.6
    water_use = 0.015 * nom / REF_IT_W + evap
    return {
        "ups_out": ups_out,
        "ups_in": ups_in,
        "crah_load": crah_load,
        "crah_fan": crah_fan,
        "crah_cool": crah_cool,
        "crah_lf": lf,
        "t_sa": t_sa,
        "t_ra": t_ra,
        "t_wo": t_wo,
        "m_crah": m_crah,
        "q_loop": q_loop,
        "m_p": m_p,
        "v_loop": flow_for_heat(q_loop, t_ps, t_pr),
        "t_ps": t_ps,
        "t_pr": t_pr,
        "t_ss": t_ss,
        "t_sr": t_sr,
        "m_s": m_s,
        "t_cond": t_cond,
        "t_ev": t_ev,
        "t_eo": t_eo,
        "m_ev": m_ev,
        "m_byp": m_byp,
        "t_mid": t_mid,
        "cop": cop,
        "running": running,
        "hp_heat": hp_heat,
        "hp_elec": hp_elec,
        "hp_src": hp_src,
        "heat_cpcu": heat_cpcu,
        "heat_gh": heat_gh,
        "t_out": t_out,
        "t_wb": t_wb,
        "t_air": t_air,
        "spray": spray,
        "t_dco": t_dco,
        "q_rej": q_rej,
        "dc_speed": speed,
        "dc_power": dc_power,
        "q_trim": q_trim,
        "ch_ev": ch_ev,
        "ch_cd": ch_cd,
        "eer": eer,
        "ch_elec": ch_elec,
        "cooling": cooling,
        "aux": aux,
        "t_supply": t_sup,
        "t_rc": t_rc,
        "t_rg": t_rg,
        "t_hp_ret": t_hp_ret,
        "m_cpcu": mc,
        "m_gh": mg,
        "v_cpcu": v_cpcu,
        "v_gh": v_gh,
        "water": water_use,
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
            outdoor_mean(self.ts, self.m.weather),
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
