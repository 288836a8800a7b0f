"""The first and second laws, checked on one or many steps of the twin's plant state.

:func:`violations` takes the dict :func:`dcim.twin.physics.plant_state` returns (arrays over
the steps, per unit where the plant has several) and returns every breach, recomputing each
balance from the temperatures and mass flows (water enthalpy, IAPWS-IF97) rather than trusting
the heat figures it is given:

- first law: heat and mass balance of every exchanger (air and water side of each CRAH, the
  plate heat exchanger, each heat pump's evaporator and its heat = source + electricity, the
  dry coolers, the trim chiller) and of every junction (the CRAH returns mixing into the
  primary loop, the evaporators and their bypass splitting the secondary flow and mixing
  again, the CPCU and greenhouse returns mixing into the heat pumps' condensers); the IT
  heat reaching the water; the secondary loop's heat taken out as it came in.
- second law: a positive approach at both ends of every exchanger (hot side in above cold
  side out, hot side out above cold side in, counterflow), heat flowing from hot to cold
  (every exchanger's heat >= 0, water warmer where it leaves a heat source), the adiabatic
  pre-cooling not below the wet bulb, and no heat pump or chiller beating Carnot between the
  water temperatures it works across.

Pure: numpy in, a list out. Tolerances cover float rounding only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from dcim.twin.physics import KELVIN, Arr, density, enthalpy

REL = 1e-9  # relative tolerance of a balance (float rounding of the enthalpy arithmetic)
TOL_K = 1e-9  # K: a temperature difference that must be positive is above this


@dataclass(frozen=True)
class Violation:
    law: str  # "first" or "second"
    check: str  # what was checked, e.g. "crah hot end: return air > leaving water"
    step: int  # index of the step in the arrays
    unit: int | None  # unit index (CRAH, heat pump) where the plant has several
    margin: float  # how far off: imbalance (W or kg/s) or the negative difference (K, COP)

    def __str__(self) -> str:
        unit = "" if self.unit is None else f" [unit {self.unit}]"
        return f"{self.law} law, step {self.step}{unit}: {self.check} (off by {self.margin:.6g})"


class _Checks:
    def __init__(self, steps: int) -> None:
        self.out: list[Violation] = []
        self.steps = steps

    def _add(self, law: str, check: str, bad: ArrayLike, margin: NDArray[Any]) -> None:
        bad = np.broadcast_to(np.asarray(bad, dtype=bool), margin.shape)
        for idx in np.argwhere(bad):
            if margin.ndim == 2:
                unit, step = int(idx[0]), int(idx[1])
            else:
                unit, step = None, int(idx[0])
            self.out.append(Violation(law, check, step, unit, float(margin[tuple(idx)])))

    def balance(
        self, check: str, lhs: Arr, rhs: Arr, scale: Arr | float, law: str = "first"
    ) -> None:
        """lhs == rhs within REL of ``scale`` (and of the sides themselves)."""
        lhs, rhs = np.asarray(lhs, dtype=np.float64), np.asarray(rhs, dtype=np.float64)
        diff = np.broadcast_to(lhs - rhs, np.broadcast(lhs, rhs).shape)
        tol = REL * (np.abs(scale) + np.abs(lhs) + np.abs(rhs)) + 1e-12
        self._add(law, check, (np.abs(diff) > tol) | ~np.isfinite(diff), diff)

    def above(self, check: str, hot: ArrayLike, cold: ArrayLike, where: ArrayLike = True) -> None:
        """hot > cold (second law) wherever ``where``."""
        d = np.asarray(hot, dtype=np.float64) - np.asarray(cold, dtype=np.float64)
        d = np.broadcast_to(d, np.broadcast(d, np.asarray(where)).shape)
        self._add("second", check, np.asarray(where) & ~(d > TOL_K), d)

    def at_least(self, check: str, x: Arr, floor: Arr | float, scale: Arr | float) -> None:
        """x >= floor within rounding (a heat or a flow that cannot be negative)."""
        d = np.asarray(x, dtype=np.float64) - floor
        self._add("second", check, ~(d >= -REL * (np.abs(scale) + 1.0)), d)


def violations(s: Mapping[str, Arr]) -> list[Violation]:
    """Every breach of the first and second laws in the plant state ``s`` (see module doc)."""
    h = enthalpy
    c = _Checks(int(np.asarray(s["q_loop"]).size))
    q = np.asarray(s["q_loop"])
    big = float(np.max(np.abs(q))) + 1.0  # W: the scale of every heat figure
    m_big = float(np.max(np.abs(s["m_s"]))) + 1e-6  # kg/s
    on_crah = s["crah_cool"] > 0
    # -- CRAHs: room heat (the IT's) + fan heat, to the water, counterflow coils --------------
    c.balance("room heat = IT heat (UPS output)", s["crah_load"].sum(0), s["ups_out"].sum(0), big)
    c.balance(
        "crah: cooling = room heat + fan heat", s["crah_cool"], s["crah_load"] + s["crah_fan"], big
    )
    c.balance(
        "crah: air-side heat = water-side heat",
        s["crah_cool"],
        s["m_crah"] * (h(s["t_wo"]) - h(s["t_pr"])[None, :]),
        big,
    )
    c.above("crah hot end: return air > leaving water", s["t_ra"], s["t_wo"], on_crah)
    c.above("crah cold end: supply air > entering water", s["t_sa"], s["t_pr"][None, :], on_crah)
    c.above("crah: air cooled (return > supply)", s["t_ra"], s["t_sa"], on_crah)
    c.at_least("crah: water flow >= 0", s["m_crah"], 0.0, m_big)
    # -- primary junction (CRAH returns mix) and the heat meter on the primary loop -----------
    c.balance("primary mix: mass", s["m_crah"].sum(0), s["m_p"], m_big)
    c.balance(
        "primary mix: energy",
        (s["m_crah"] * h(s["t_wo"])).sum(0),
        s["m_p"] * h(s["t_ps"]),
        big * 10,
    )
    c.balance(
        "primary loop: heat = flow x enthalpy rise",
        q,
        s["m_p"] * (h(s["t_ps"]) - h(s["t_pr"])),
        big,
    )
    c.balance(
        "primary loop: metered volume flow",
        s["v_loop"] * density(s["t_pr"]) / 3600.0,
        s["m_p"],
        m_big,
    )
    # -- plate heat exchanger (counterflow) --------------------------------------------------
    c.balance("hx: primary heat = secondary heat", q, s["m_s"] * (h(s["t_ss"]) - h(s["t_sr"])), big)
    c.above("hx hot end: primary in > secondary out", s["t_ps"], s["t_ss"], q > 0)
    c.above("hx cold end: primary out > secondary in", s["t_pr"], s["t_sr"], q > 0)
    # -- secondary loop: evaporators in parallel with a bypass, then dry coolers, then trim --
    m_ev, run = s["m_ev"], s["running"] > 0
    c.at_least("evaporator flow >= 0", m_ev, 0.0, m_big)
    c.at_least("evaporator bypass flow >= 0", s["m_byp"], 0.0, m_big)
    c.balance(
        "evaporator split: mass (evaporators + bypass = loop)",
        m_ev.sum(0) + s["m_byp"],
        s["m_s"],
        m_big,
    )
    c.balance(
        "evaporator mix: energy",
        (m_ev * h(s["t_eo"])).sum(0) + s["m_byp"] * h(s["t_ss"]),
        s["m_s"] * h(s["t_mid"]),
        big * 10,
    )
    c.balance(
        "heat pump: source = evaporator flow x enthalpy drop",
        s["hp_src"],
        m_ev * (h(s["t_ss"])[None, :] - h(s["t_eo"])),
        big,
    )
    c.balance(
        "heat pump: heat = source + electricity", s["hp_heat"], s["hp_src"] + s["hp_elec"], big
    )
    c.at_least("heat pump: source heat >= 0", s["hp_src"], 0.0, big)
    c.at_least("heat pump: electricity >= 0", s["hp_elec"], 0.0, big)
    c.above("evaporator: leaving water > evaporating", s["t_eo"], s["t_ev"], run)
    c.above(
        "evaporator: entering water > leaving water",
        s["t_ss"][None, :],
        s["t_eo"],
        run & (s["hp_src"] > 0),
    )
    c.above(
        "condenser: condensing > supply water", s["t_cond"][None, :], s["t_supply"][None, :], run
    )
    c.above(
        "condenser: condensing > return water", s["t_cond"][None, :], s["t_hp_ret"][None, :], run
    )
    t_sup_k, t_eo_k = s["t_supply"][None, :] + KELVIN, s["t_eo"] + KELVIN
    carnot_water = t_sup_k / np.maximum(t_sup_k - t_eo_k, 1e-9)
    c.above("heat pump: COP < Carnot between its waters", carnot_water, s["cop"], run)
    c.above("heat pump: COP > 1", s["cop"], 1.0, run)
    c.balance("heat pump: electricity = heat / COP", s["hp_elec"] * s["cop"], s["hp_heat"], big)
    # dry coolers (cross-flow, air in at t_air after any adiabatic pre-cooling)
    rej = s["q_rej"] > REL * big
    c.at_least("dry coolers: heat rejected >= 0", s["q_rej"], 0.0, big)
    c.balance(
        "dry coolers: heat = loop flow x enthalpy drop",
        s["q_rej"],
        s["m_s"] * (h(s["t_mid"]) - h(s["t_dco"])),
        big,
    )
    c.above("dry coolers: leaving water > entering air", s["t_dco"], s["t_air"], rej)
    c.above("dry coolers: entering water > entering air", s["t_mid"], s["t_air"], rej)
    c.at_least("adiabatic pre-cooling: air not warmed", s["t_out"], s["t_air"], 1.0)
    c.at_least("adiabatic pre-cooling: air not below its wet bulb", s["t_air"], s["t_wb"], 1.0)
    # trim chiller
    trim = s["q_trim"] > REL * big
    c.at_least("trim chiller: heat >= 0", s["q_trim"], 0.0, big)
    c.balance(
        "trim chiller: heat = loop flow x enthalpy drop",
        s["q_trim"],
        s["m_s"] * (h(s["t_dco"]) - h(s["t_sr"])),
        big,
    )
    c.above("trim chiller: leaving water > evaporating", s["t_sr"], s["ch_ev"], trim)
    c.above("trim chiller: condensing > outdoor air", s["ch_cd"], s["t_out"], trim)
    ev_k, cd_k = s["ch_ev"] + KELVIN, s["ch_cd"] + KELVIN
    c.above("trim chiller: EER < Carnot", ev_k / np.maximum(cd_k - ev_k, 1e-9), s["eer"], trim)
    c.balance(
        "trim chiller: electricity = heat / EER",
        s["ch_elec"] * np.where(trim, s["eer"], 0.0),
        np.where(trim, s["q_trim"], 0.0),
        big,
    )
    # the secondary loop gives away what it takes in
    c.balance(
        "secondary loop: heat in = heat pumps + dry coolers + trim",
        q,
        s["hp_src"].sum(0) + s["q_rej"] + s["q_trim"],
        big,
    )
    # -- hot side: heat-pump condensers -> CPCU and greenhouses, returns mix ---------------
    hp_heat = s["hp_heat"].sum(0)
    h_sup = h(s["t_supply"])
    c.balance("heat delivered = heat pumps' heat", hp_heat, s["heat_cpcu"] + s["heat_gh"], big)
    c.balance(
        "cpcu: heat = flow x enthalpy drop",
        s["heat_cpcu"],
        s["m_cpcu"] * (h_sup - h(s["t_rc"])),
        big,
    )
    c.balance(
        "greenhouse: heat = flow x enthalpy drop",
        s["heat_gh"],
        s["m_gh"] * (h_sup - h(s["t_rg"])),
        big,
    )
    m_hot = s["m_cpcu"] + s["m_gh"]
    c.balance(
        "condenser return mix: energy",
        m_hot * h(s["t_hp_ret"]),
        s["m_cpcu"] * h(s["t_rc"]) + s["m_gh"] * h(s["t_rg"]),
        big * 10,
    )
    c.balance(
        "condensers: heat = flow x enthalpy rise", hp_heat, m_hot * (h_sup - h(s["t_hp_ret"])), big
    )
    c.above("cpcu: supply > return", s["t_supply"], s["t_rc"], s["heat_cpcu"] > 0)
    c.above("greenhouse: supply > return", s["t_supply"], s["t_rg"], s["heat_gh"] > 0)
    return c.out
