"""Heat figures: heat delivered per EN 1434 (meter registers, checked against flow and
temperatures), energy reused, ERF (ISO/IEC 30134-6, EN 50600-4-6), ERE (The Green Grid),
the heat-recovery energy balance and the heat pumps' seasonal COPs."""

from __future__ import annotations

from dcim.config import Device, SiteConfig
from dcim.kpi import indicators
from dcim.kpi.energy import Energy, MeterEnergy, sum_energy
from dcim.kpi.figures_power import FacilityEnergy
from dcim.kpi.gather import Inputs
from dcim.kpi.heat import IntegratedHeat, reconcile
from dcim.kpi.report import Figures, kwh, kwh_txt

HEAT_FIGURES = (
    ("heat_export_cpcu", "heat_cpcu_kwh"),
    ("heat_export_greenhouse", "heat_greenhouse_kwh"),
    ("heat_recovered", "heat_recovered_kwh"),
)
REUSE_ROLES = ("heat_export_cpcu", "heat_export_greenhouse")


def heat_delivered(figs: Figures, cfg: SiteConfig, inp: Inputs) -> dict[str, Energy]:
    """``heat_cpcu_kwh``, ``heat_greenhouse_kwh``, ``heat_recovered_kwh``: the increase of the
    EN 1434 heat meters' energy registers per role, each meter followed by its check."""
    heat: dict[str, Energy] = {}
    for role, name in HEAT_FIGURES:
        if inp.role(role):
            heat[role] = h = sum_energy(inp.role(role))
            note = f"heat meters with role {role}" + h.glitch_note()
            figs.add(name, kwh(h.value), "kWh", h.completeness, h.estimated, note)
            for m in inp.role(role):
                got = inp.integrated.get(m.device)
                if got is None:  # no flow and temperatures in its profile
                    continue
                try:
                    heat_check(figs, cfg.device(m.device), m, got, cfg.kpi.heat_reconcile_tolerance)
                except (ValueError, ArithmeticError) as exc:  # one meter's check, not the rest
                    figs.failed(f"heat_check_{m.device}", "", 0.0, f"not computed: {exc}")
    return heat


def heat_check(figs: Figures, dev: Device, m: MeterEnergy, got: IntegratedHeat, tol: float) -> None:
    """``heat_check_<device>``: the meter's register increase against the heat integrated from
    its flow and temperatures (EN 1434: Q = integral of k(theta_f, theta_r) dtheta dV, k from
    IAPWS-IF97 at the flow sensor's pipe), as (register - integrated) / integrated. Windows
    whose temperatures are not liquid water make it n/a, naming them."""
    name, c = f"heat_check_{dev.name}", min(m.completeness, got.completeness)
    if got.invalid:
        bad = "; ".join(i.describe(dev.name, got.window_s) for i in got.invalid)
        note = f"not computed: {bad}; register {kwh_txt(m.value)}"
        figs.failed(name, "", c, note)
        return
    rec = reconcile(dev.name, m.value, got.value_wh, tol)
    note = (
        f"register {kwh_txt(m.value)} vs {kwh_txt(got.value_wh)} from flow and "
        f"temperatures (flow sensor in the {dev.flow_sensor} pipe); tolerance {tol:.1%}"
    )
    if rec.ok is False:
        note += ": CHECK the meter, its sensors or its declared flow-sensor pipe"
    figs.add(name, rec.difference, "", c, m.extrapolated, note, flagged=rec.ok is False)


def energy_reused(figs: Figures, heat: dict[str, Energy], dc: FacilityEnergy) -> Energy | None:
    """``e_reuse_kwh``: heat exported (district heating, greenhouse), less the heat pumps'
    electricity when they are outside E_DC: what crosses the datacenter boundary to be reused
    is the waste heat they take up (ISO/IEC 30134-6, EnEfG)."""
    reuse = [heat[r] for r in REUSE_ROLES if r in heat]
    if not reuse:
        return None
    value = None if any(h.value is None for h in reuse) else sum(h.value or 0 for h in reuse)
    c = min(h.completeness for h in reuse)
    note = "heat exported"
    hp = dc.heat_pumps_outside
    if hp is not None:
        value = None if value is None or hp.value is None else value - hp.value
        c = min(c, hp.completeness)
        note = "heat exported less heat-pump electricity (reuse at the DC boundary)"
    est = any(h.estimated for h in reuse)
    figs.add("e_reuse_kwh", kwh(value), "kWh", min(c, dc.completeness), est, note)
    return Energy(value, c, est)


def erf(figs: Figures, reuse: Energy, dc: FacilityEnergy) -> None:
    """``erf``: energy reuse factor ERF = E_reuse / E_DC (ISO/IEC 30134-6); above 1 the reused
    energy includes energy from outside E_DC (flagged)."""
    value = indicators.erf(reuse.value, dc.value)
    above = value is not None and value > 1.0
    figs.add(
        "erf",
        value,
        "",
        min(reuse.completeness, dc.completeness),
        reuse.estimated or dc.estimated,
        "E_reuse / E_DC"
        + ("; above 1: E_reuse includes energy from outside E_DC" if above else ""),
        flagged=above,
    )


def ere(figs: Figures, reuse: Energy, dc: FacilityEnergy, e_it: Energy, it_note: str) -> None:
    """``ere``: energy reuse effectiveness ERE = (E_DC - E_reuse) / E_IT = (1 - ERF) * PUE
    (The Green Grid)."""
    figs.add(
        "ere",
        indicators.ere(dc.value, reuse.value, e_it.value),
        "",
        min(reuse.completeness, dc.completeness, e_it.completeness),
        reuse.estimated or dc.estimated or e_it.estimated,
        f"(E_DC - E_reuse) / E_IT, {it_note}",
    )


def heat_recovery(
    figs: Figures, inp: Inputs, rec: Energy, e_it: Energy, it_note: str, tolerance: float
) -> None:
    """``heat_recovery_ratio`` = heat recovered / E_IT, and ``energy_balance``: the same ratio
    judged against 1 +- ``kpi.balance_tolerance`` (nearly all IT electricity ends as heat;
    far off, a heat meter or an IT meter is broken or mis-scaled: flagged)."""
    c, est = min(rec.completeness, e_it.completeness), rec.estimated or e_it.estimated
    ratio_note = f"heat recovered / E_IT, {it_note}"
    figs.add("heat_recovery_ratio", indicators.heat_recovery_ratio(rec.value, e_it.value), "",
             c, est, ratio_note)  # fmt: skip
    ratio, off = indicators.energy_balance(rec.value, e_it.value, tolerance)
    tol = f"1 \u00b1 {tolerance:g}"
    if ratio is None:
        note = "heat recovered / E_IT undefined"
    elif off:
        meters = ", ".join(m.device for m in inp.role("heat_recovered"))
        note = (
            f"heat recovered / E_IT = {ratio:.3f}, outside {tol}: possibly a broken or "
            f"mis-scaled sensor; check heat meter(s) {meters} and the IT meters"
        )
    else:
        note = f"heat recovered / E_IT = {ratio:.3f}, within {tol}"
    figs.add("energy_balance", ratio, "", c, est, note, flagged=off)


def seasonal_cops(figs: Figures, hps: list[Device], inp: Inputs) -> None:
    """``seasonal_cop_<heat pump>`` and ``seasonal_cop``: heat out / electricity in over the
    period, from the heat pumps' own energy counters: a measured seasonal performance factor,
    not EN 14825's calculated SCOP."""
    elec_by = {m.device: m for m in inp.hp_elec}
    heat_by = {m.device: m for m in inp.hp_heat}
    pairs = [(d.name, elec_by[d.name], heat_by[d.name]) for d in hps if d.name in elec_by]
    for name, el, he in pairs:
        figs.add(
            f"seasonal_cop_{name}",
            indicators.seasonal_cop(he.value, el.value),
            "",
            min(el.completeness, he.completeness),
            el.extrapolated or he.extrapolated,
            f"heat out / electricity in of {name} over the period (its energy counters)",
        )
    if pairs:
        el_sum, he_sum = sum_energy([p[1] for p in pairs]), sum_energy([p[2] for p in pairs])
        figs.add(
            "seasonal_cop",
            indicators.seasonal_cop(he_sum.value, el_sum.value),
            "",
            min(el_sum.completeness, he_sum.completeness),
            el_sum.estimated or he_sum.estimated,
            f"all heat pumps ({len(pairs)}): heat out / electricity in over the period",
        )
