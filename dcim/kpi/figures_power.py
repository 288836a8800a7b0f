"""Energy and power-usage figures: E_DC with the heat-pump boundary, E_IT per measurement
category, PUE and partial PUEs (ISO/IEC 30134-2, EN 50600-4-2; EnEfG for the boundary)."""

from __future__ import annotations

from dataclasses import dataclass

from dcim.config import SiteConfig
from dcim.kpi import indicators
from dcim.kpi.energy import Energy, MeterEnergy, sum_energy
from dcim.kpi.gather import Inputs, heat_pumps
from dcim.kpi.report import Figures, kwh, kwh_txt

IT_ROLE_BY_CATEGORY = {1: "ups_output", 2: "pdu_output", 3: "it_input"}
BOUNDARY_TXT = "; E_DC may include heat-pump electricity (see e_dc_kwh)"


@dataclass(frozen=True)
class FacilityEnergy:
    """E_DC, Wh, and what the figures built on it need to say about it."""

    value: float | None
    completeness: float
    estimated: bool
    flagged: bool  # heat-pump electricity may be inside (EnEfG boundary)
    heat_pumps_outside: Energy | None  # heat-pump boards taken out of E_DC, if any


def _boards(cfg: SiteConfig, inp: Inputs) -> tuple[list[MeterEnergy], list[MeterEnergy]]:
    """Heat-pump boards downstream of a grid incomer, and those not known to be."""
    incomers = {d.name for d in cfg.devices_with_role("grid_incomer")}
    boards = inp.role("heat_pump_board")
    inside = [m for m in boards if cfg.device(m.device).upstream in incomers]
    return inside, [m for m in boards if m not in inside]


def _boundary_check(
    cfg: SiteConfig, inp: Inputs, e_dc: float | None, unsure: list[MeterEnergy]
) -> tuple[str | None, bool]:
    """Note and flag of the heat-pump boundary check on E_DC (EnEfG), if it applies."""
    if unsure:
        why = ", ".join(
            f"{m.device}: "
            + (
                "no upstream meter"
                if cfg.device(m.device).upstream is None
                else f"upstream {cfg.device(m.device).upstream} is not a grid incomer"
            )
            for m in unsure
        )
        chk = indicators.check_boundary(e_dc, sum_energy(unsure).value, None)
        return f"{chk.note} ({why})", chk.flagged
    if heat_pumps(cfg) and not cfg.devices_with_role("heat_pump_board"):
        chk = indicators.check_boundary(e_dc, sum_energy(inp.hp_elec).value, None)
        return f"{chk.note} (heat pumps without a heat_pump_board meter)", chk.flagged
    return None, False


def facility_energy(figs: Figures, cfg: SiteConfig, inp: Inputs) -> FacilityEnergy:
    """``e_dc_kwh``: E_DC, the grid incomer less the heat-pump boards downstream of it. The
    electricity that only upgrades waste heat is outside the datacenter boundary (EnEfG,
    ISO/IEC 30134-6); heat-pump electricity possibly inside E_DC is a boundary error, flagged."""
    incomer = sum_energy(inp.role("grid_incomer"))
    inside, unsure = _boards(cfg, inp)
    hp = sum_energy(inside)
    if incomer.value is None or (inside and hp.value is None):
        e_dc = None
    else:
        e_dc = incomer.value - (hp.value or 0.0)
    c_dc = min(incomer.completeness, hp.completeness) if inside else incomer.completeness
    est = incomer.estimated or hp.estimated
    notes = [
        "grid incomer less heat-pump boards downstream of it (EnEfG)"
        if cfg.devices_with_role("grid_incomer")
        else "no grid_incomer meter"
    ]
    check, flagged = _boundary_check(cfg, inp, e_dc, unsure)
    notes += [check] if check else []
    glitches = incomer.glitch_note() + hp.glitch_note()
    figs.add("e_dc_kwh", kwh(e_dc), "kWh", c_dc, est, "; ".join(notes) + glitches, flagged=flagged)
    return FacilityEnergy(e_dc, c_dc, est, flagged, hp if inside else None)


def heat_pump_electricity(figs: Figures, cfg: SiteConfig, inp: Inputs, dc: FacilityEnergy) -> None:
    """``e_heat_pump_kwh``: electricity of the heat-pump boards, outside E_DC (EnEfG)."""
    boards = inp.role("heat_pump_board")
    if not boards:
        return
    unsure = _boards(cfg, inp)[1]
    all_hp = sum_energy(boards)
    figs.add(
        "e_heat_pump_kwh",
        kwh(all_hp.value),
        "kWh",
        all_hp.completeness,
        all_hp.estimated,
        "heat-pump boards: electricity to upgrade waste heat, outside E_DC (EnEfG)"
        + (f"; {kwh_txt(sum_energy(unsure).value)} of it possibly inside" if unsure else "")
        + all_hp.glitch_note(),
        flagged=dc.flagged,
    )


def it_energies(figs: Figures, inp: Inputs) -> dict[int, Energy]:
    """``e_it_cat<n>_kwh``: E_IT at each metered measurement category (ISO/IEC 30134-2:
    1 = UPS output, 2 = PDU outputs, 3 = IT equipment input)."""
    it: dict[int, Energy] = {}
    for cat, role in IT_ROLE_BY_CATEGORY.items():
        if inp.role(role):
            it[cat] = e = sum_energy(inp.role(role))
            note = f"IT energy at {role.replace('_', ' ')}" + e.glitch_note()
            figs.add(f"e_it_cat{cat}_kwh", kwh(e.value), "kWh", e.completeness, e.estimated, note)
    return it


def pue(
    figs: Figures,
    dc: FacilityEnergy,
    it: dict[int, Energy],
    chosen: int | None,
    interim: bool,
) -> None:
    """``pue_cat<n>`` and ``pue``: PUE = E_DC / E_IT over the period, energy based, with its
    measurement category (ISO/IEC 30134-2, EN 50600-4-2); ``pue`` is the chosen category's."""
    boundary = BOUNDARY_TXT if dc.flagged else ""
    label = "interim (period shorter than a year)" if interim else "annual"
    for cat in sorted(it):
        figs.add(
            f"pue_cat{cat}",
            indicators.pue(dc.value, it[cat].value),
            "",
            min(dc.completeness, it[cat].completeness),
            it[cat].estimated or dc.estimated,
            f"PUE category {cat}, {label}" + boundary,
            flagged=dc.flagged,
        )
    if chosen is not None and chosen in it:
        e_it = it[chosen]
        figs.add(
            "pue",
            indicators.pue(dc.value, e_it.value),
            "",
            min(dc.completeness, e_it.completeness),
            e_it.estimated or dc.estimated,
            f"category {chosen}" + boundary,
            flagged=dc.flagged,
        )


def ppue_cooling(figs: Figures, inp: Inputs, e_it: Energy, it_note: str) -> None:
    """``ppue_cooling``: partial PUE of the cooling subsystem, (E_IT + E_cooling) / E_IT
    (ISO/IEC 30134-2 partial PUE); not computed without a cooling_board meter."""
    if not inp.role("cooling_board"):
        figs.add("ppue_cooling", None, "", 0.0, note="not computed: no cooling_board meter",
                 metered=False)  # fmt: skip
        return
    cool = sum_energy(inp.role("cooling_board"))
    figs.add(
        "ppue_cooling",
        indicators.partial_pue(cool.value, e_it.value),
        "",
        min(cool.completeness, e_it.completeness),
        cool.estimated or e_it.estimated,
        f"(E_IT + cooling boards) / E_IT, {it_note}" + cool.glitch_note(),
    )


def ppue_distribution(figs: Figures, inp: Inputs, e_it: Energy, it_note: str) -> None:
    """``ppue_distribution``: partial PUE of the power distribution, UPS input / E_IT; below 1
    the meters disagree (flagged)."""
    if not inp.ups_in:
        figs.add(
            "ppue_distribution",
            None,
            "",
            0.0,
            note="not computed: UPS input not metered (list its energy meters in "
            "kpi.ups_input_meters)",
            metered=False,
        )
        return
    ups_in = sum_energy(inp.ups_in)
    losses = None if ups_in.value is None or e_it.value is None else ups_in.value - e_it.value
    value = indicators.partial_pue(losses, e_it.value)
    below = value is not None and value < 1.0
    figs.add(
        "ppue_distribution",
        value,
        "",
        min(ups_in.completeness, e_it.completeness),
        ups_in.estimated or e_it.estimated,
        f"UPS input / E_IT, {it_note}"
        + ("; UPS input below E_IT: check the meters" if below else "")
        + ups_in.glitch_note(),
        flagged=below,
    )
