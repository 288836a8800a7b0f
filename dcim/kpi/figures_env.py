"""Renewable energy, carbon and water figures: REF (ISO/IEC 30134-3), CUE (ISO/IEC 30134-8),
WUE (ISO/IEC 30134-9), each over E_DC or E_IT of the same period."""

from __future__ import annotations

from dcim.config import KpiSettings
from dcim.kpi import indicators
from dcim.kpi.energy import Energy, sum_energy
from dcim.kpi.figures_power import FacilityEnergy
from dcim.kpi.gather import Inputs
from dcim.kpi.report import Figures, kwh, kwh_txt


def renewable_energy(
    figs: Figures, ks: KpiSettings, inp: Inputs, dc: FacilityEnergy, years: float, whole: bool
) -> Energy:
    """``e_renewable_kwh``: declared renewable energy (``kpi.renewable``: a yearly amount, pro
    rata over a period that is not whole years, or a share of E_DC) plus metered on-site
    generation (role ``renewable_onsite``)."""
    ren: float | None = 0.0
    c, est = 1.0, False
    parts: list[str] = []
    for decl in ks.renewable:
        v: float | None
        if decl.kwh_per_year is not None:
            v = decl.kwh_per_year * 1000.0 * years
            est = est or not whole
            pro_rata = "" if whole else f" ({decl.kwh_per_year:,.0f} kWh/year pro rata)"
            parts.append(f"{decl.kind} {kwh_txt(v)}{pro_rata}")
        else:
            assert decl.share is not None
            v = None if dc.value is None else decl.share * dc.value
            c = min(c, dc.completeness)
            parts.append(f"{decl.kind} {decl.share:.1%} of E_DC")
        ren = None if ren is None or v is None else ren + v
    if inp.role("renewable_onsite"):
        onsite = sum_energy(inp.role("renewable_onsite"))
        ren = None if ren is None or onsite.value is None else ren + onsite.value
        c, est = min(c, onsite.completeness), est or onsite.estimated
        parts.append(f"onsite metered {kwh_txt(onsite.value)}")
    note = ", ".join(parts) or "none declared (kpi.renewable) or metered (renewable_onsite)"
    figs.add("e_renewable_kwh", kwh(ren), "kWh", c, est, note)
    return Energy(ren, c, est)


def ref(figs: Figures, ren: Energy, dc: FacilityEnergy) -> None:
    """``ref``: renewable energy factor REF = E_renewable / E_DC (ISO/IEC 30134-3), at most 1."""
    capped = ren.value is not None and dc.value is not None and ren.value > dc.value
    figs.add(
        "ref",
        indicators.ref(ren.value, dc.value),
        "",
        min(ren.completeness, dc.completeness),
        ren.estimated or dc.estimated,
        "E_renewable / E_DC" + ("; renewable above E_DC: capped at 1" if capped else ""),
    )


def _carbon_note(ks: KpiSettings) -> str:
    factor = ks.grid_carbon_kg_per_kwh
    return (
        f"market based: (E_DC - E_renewable) x {factor:g} kgCO2eq/kWh (kpi.grid_carbon_kg_per_kwh)"
    )


def co2(figs: Figures, ks: KpiSettings, ren: Energy, dc: FacilityEnergy) -> None:
    """``co2_kg``: market-based emissions, (E_DC - E_renewable) x the grid's carbon factor."""
    figs.add(
        "co2_kg",
        indicators.carbon_kg(dc.value, ren.value, ks.grid_carbon_kg_per_kwh),
        "kgCO2eq",
        min(ren.completeness, dc.completeness),
        ren.estimated or dc.estimated,
        _carbon_note(ks),
    )


def cue(
    figs: Figures, ks: KpiSettings, ren: Energy, dc: FacilityEnergy, e_it: Energy, it_note: str
) -> None:
    """``cue``: carbon usage effectiveness CUE = kgCO2eq / E_IT (ISO/IEC 30134-8)."""
    figs.add(
        "cue",
        indicators.cue(dc.value, ren.value, e_it.value, ks.grid_carbon_kg_per_kwh),
        "kgCO2eq/kWh",
        min(ren.completeness, dc.completeness, e_it.completeness),
        ren.estimated or dc.estimated or e_it.estimated,
        f"kgCO2eq / E_IT, {it_note}; {_carbon_note(ks)}",
    )


def water_use(figs: Figures, inp: Inputs) -> Energy | None:
    """``water_m3``: the increase of the water meters' volume registers (role ``water``)."""
    if not inp.role("water"):
        return None
    water = sum_energy(inp.role("water"))
    note = "water meters with role water" + water.glitch_note()
    figs.add("water_m3", water.value, "m3", water.completeness, water.estimated, note)
    return water


def wue(figs: Figures, water: Energy | None, e_it: Energy, it_note: str) -> None:
    """``wue``: water usage effectiveness WUE = litres / E_IT, L/kWh (ISO/IEC 30134-9)."""
    if water is None:
        figs.add("wue", None, "L/kWh", 0.0, note="not computed: no water meter", metered=False)
        return
    litres = None if water.value is None else water.value * 1000.0
    figs.add(
        "wue",
        indicators.wue(litres, e_it.value),
        "L/kWh",
        min(water.completeness, e_it.completeness),
        water.estimated or e_it.estimated,
        f"litres of water / E_IT, {it_note}",
    )
