"""KPIs over a period, read from a store (embedded or InfluxDB) through its aggregate queries.

Meter energies come from :mod:`dcim.kpi.energy`, heat from :mod:`dcim.kpi.heat`, the
formulas from :mod:`dcim.kpi.indicators`; this module assembles the report.

Every figure carries the completeness of its data; below ``kpi.min_completeness`` its value
is withheld (None, "insufficient data: ...") rather than shown as a number that looks exact.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from dcim.config import Device, SiteConfig
from dcim.kpi import indicators
from dcim.kpi.energy import (
    PARALLEL_QUERIES,
    Energy,
    MeterEnergy,
    counter_energies,
    meter_energies,
    sum_energy,
)
from dcim.kpi.heat import FIELDS as HEAT_FIELDS
from dcim.kpi.heat import IntegratedHeat, integrated_heat, reconcile
from dcim.storage.base import Store

NS = 1_000_000_000
YEAR_NS = 365 * 86400 * NS
_MEAN_YEAR_DAYS = 365.2425
IT_ROLE_BY_CATEGORY = {1: "ups_output", 2: "pdu_output", 3: "it_input"}
HEAT_ROLES = ("heat_export_cpcu", "heat_export_greenhouse", "heat_recovered")
HEAT_PUMP_MEASUREMENT = "heat_pump"


@dataclass(frozen=True)
class Figure:
    name: str
    value: float | None
    unit: str
    completeness: float  # share of expected samples present, 0..1
    estimated: bool = False  # some part was interpolated/extrapolated across a gap
    note: str = ""
    flagged: bool = False  # a check failed (boundary error, energy balance): read the note


@dataclass
class KpiReport:
    start_ns: int
    end_ns: int
    figures: list[Figure] = field(default_factory=list)
    meters: list[MeterEnergy] = field(default_factory=list)
    pue_category: int | None = None
    interim: bool = True
    warnings: list[str] = field(default_factory=list)  # configuration problems for the figures
    settings: dict[str, Any] = field(default_factory=dict)  # the ``kpi:`` settings used

    def figure(self, name: str) -> Figure:
        for f in self.figures:
            if f.name == name:
                return f
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def heat_pumps(cfg: SiteConfig) -> list[Device]:
    """Enabled devices whose profile measures a heat pump (measurement ``heat_pump``)."""
    profiles = cfg.profiles()
    return [
        d
        for d in cfg.devices
        if d.enabled
        and d.profile in profiles
        and profiles[d.profile].measurement == HEAT_PUMP_MEASUREMENT
    ]


def boundary_warnings(cfg: SiteConfig) -> list[str]:
    """Topology gaps that may put heat-pump electricity inside E_DC (EnEfG boundary)."""
    incomers = {d.name for d in cfg.devices_with_role("grid_incomer")}
    out: list[str] = []
    boards = cfg.devices_with_role("heat_pump_board")
    for d in boards:
        if d.upstream is None:
            out.append(
                f"heat-pump board {d.name} has no 'upstream': name the grid incomer that feeds "
                "it, otherwise its electricity is not taken out of E_DC and may be inside it "
                "(EnEfG boundary)"
            )
        elif d.upstream not in incomers:
            out.append(
                f"heat-pump board {d.name}: upstream {d.upstream!r} is not a grid incomer, so "
                "its electricity is not taken out of E_DC and may be inside it (EnEfG boundary)"
            )
    hps = heat_pumps(cfg)
    if hps and not boards:
        out.append(
            f"heat pumps {', '.join(d.name for d in hps)} have no heat_pump_board meter: "
            "their electricity may be inside E_DC (EnEfG boundary)"
        )
    return out


def year_fraction(start_ns: int, end_ns: int) -> tuple[float, bool]:
    """The period in years, and whether it is a whole number of years (a calendar year of
    365 or 366 days counts as exactly 1); otherwise days / 365.2425."""
    days = (end_ns - start_ns) / NS / 86400
    n = round(days / _MEAN_YEAR_DAYS)
    if n >= 1 and abs(days - n * _MEAN_YEAR_DAYS) <= 1.0:
        return float(n), True
    return days / _MEAN_YEAR_DAYS, False


class _Figures:
    """Appends figures to a report, withholding values whose data is too incomplete."""

    def __init__(self, rep: KpiReport, min_completeness: float) -> None:
        self.rep = rep
        self.min = min_completeness

    def add(
        self,
        name: str,
        value: float | None,
        unit: str,
        completeness: float,
        estimated: bool = False,
        note: str = "",
        *,
        flagged: bool = False,
        metered: bool = True,
    ) -> None:
        """``metered=False``: the figure is not available for want of a meter (its note says
        so), not for want of data: no completeness judgement."""
        if metered and completeness < self.min:
            pct = math.floor(completeness * 100 + 1e-9)
            head = f"insufficient data: {pct} % of expected samples (minimum {self.min * 100:g} %)"
            value, note = None, f"{head}; {note}" if note else head
        self.rep.figures.append(Figure(name, value, unit, completeness, estimated, note, flagged))


def _kwh_txt(wh: float | None) -> str:
    return "n/a" if wh is None else f"{wh / 1000:,.0f} kWh"


def _heat_checks(
    figs: _Figures,
    cfg: SiteConfig,
    meters: Sequence[MeterEnergy],
    integrated: dict[str, IntegratedHeat],
) -> None:
    """``heat_check_<device>``: each heat meter's register increase against the heat integrated
    from its flow and temperatures (EN 1434 k), as (register - integrated) / integrated."""
    tol = cfg.kpi.heat_reconcile_tolerance
    for m in meters:
        dev = cfg.device(m.device)
        got = integrated.get(dev.name)
        if got is None:  # no flow and temperatures in its profile
            continue
        rec = reconcile(dev.name, m.value, got.value_wh, tol)
        note = (
            f"register {_kwh_txt(m.value)} vs {_kwh_txt(got.value_wh)} from flow and "
            f"temperatures (flow sensor in the {dev.flow_sensor} pipe); tolerance {tol:.1%}"
        )
        if rec.ok is False:
            note += ": CHECK the meter, its sensors or its declared flow-sensor pipe"
        figs.add(
            f"heat_check_{dev.name}",
            rec.difference,
            "",
            min(m.completeness, got.completeness),
            m.extrapolated,
            note,
            flagged=rec.ok is False,
        )


def compute_kpis(
    store: Store, cfg: SiteConfig, start_ns: int, end_ns: int, *, category: int | None = None
) -> KpiReport:
    """Energy-based PUE (with its category), heat delivered and reused, partial PUEs, REF,
    CUE, WUE, heat-pump seasonal COPs, the energy balance and the energies behind them."""
    ks = cfg.kpi
    rep = KpiReport(
        start_ns,
        end_ns,
        interim=(end_ns - start_ns) < YEAR_NS,
        warnings=boundary_warnings(cfg),
        settings=ks.model_dump(mode="json"),
    )
    figs = _Figures(rep, ks.min_completeness)
    roles = {d.role for d in cfg.devices if d.role}
    hps = heat_pumps(cfg)
    ups_in_devs = [cfg.device(n) for n in ks.ups_input_meters if cfg.device(n).enabled]
    profiles = cfg.profiles()
    heat_devs = [
        d
        for r in HEAT_ROLES
        for d in cfg.devices_with_role(r)
        if set(HEAT_FIELDS) <= profiles[d.profile].field_names
    ]
    # Every series is read side by side (the database answers in parallel).
    with ThreadPoolExecutor(max_workers=PARALLEL_QUERIES) as pool:
        role_f = {
            r: pool.submit(meter_energies, store, cfg, r, start_ns, end_ns) for r in sorted(roles)
        }
        hp_elec_f = pool.submit(counter_energies, store, cfg, hps, "electrical_energy_wh_total",
                                start_ns, end_ns, label="heat_pump")  # fmt: skip
        hp_heat_f = pool.submit(counter_energies, store, cfg, hps, "heat_energy_wh_total",
                                start_ns, end_ns, label="heat_pump")  # fmt: skip
        ups_in_f = pool.submit(counter_energies, store, cfg, ups_in_devs, "energy_wh_total",
                               start_ns, end_ns, label="ups_input")  # fmt: skip
        heat_f = {
            d.name: pool.submit(
                integrated_heat,
                store,
                cfg,
                d,
                start_ns,
                end_ns,
                measurement=profiles[d.profile].measurement,
            )  # fmt: skip
            for d in heat_devs
        }
    by_role: dict[str, list[MeterEnergy]] = {r: f.result() for r, f in role_f.items()}
    hp_elec, hp_heat, ups_in_meters = hp_elec_f.result(), hp_heat_f.result(), ups_in_f.result()
    integrated = {n: f.result() for n, f in heat_f.items()}
    rep.meters = [m for ms in by_role.values() for m in ms] + ups_in_meters + hp_elec + hp_heat

    # -- E_DC, and the heat-pump boundary (EnEfG) ---------------------------------------------
    incomer = sum_energy(by_role.get("grid_incomer", []))
    incomer_names = {d.name for d in cfg.devices_with_role("grid_incomer")}
    boards = by_role.get("heat_pump_board", [])
    hp_in = [m for m in boards if cfg.device(m.device).upstream in incomer_names]
    hp_unsure = [m for m in boards if cfg.device(m.device).upstream not in incomer_names]
    hp = sum_energy(hp_in)
    e_dc = (
        None
        if incomer.value is None or (hp_in and hp.value is None)
        else incomer.value - (hp.value or 0.0)
    )
    c_dc = min(incomer.completeness, hp.completeness) if hp_in else incomer.completeness
    est_dc = incomer.estimated or hp.estimated
    dc_notes = (
        ["grid incomer less heat-pump boards downstream of it (EnEfG)"]
        if incomer_names
        else ["no grid_incomer meter"]
    )
    boundary_flag = False
    if hp_unsure:
        why = ", ".join(
            f"{m.device}: "
            + (
                "no upstream meter"
                if cfg.device(m.device).upstream is None
                else f"upstream {cfg.device(m.device).upstream} is not a grid incomer"
            )
            for m in hp_unsure
        )
        chk = indicators.check_boundary(e_dc, sum_energy(hp_unsure).value, None)
        dc_notes.append(f"{chk.note} ({why})")
        boundary_flag = chk.flagged
    elif hps and not cfg.devices_with_role("heat_pump_board"):
        chk = indicators.check_boundary(e_dc, sum_energy(hp_elec).value, None)
        dc_notes.append(f"{chk.note} (heat pumps without a heat_pump_board meter)")
        boundary_flag = chk.flagged
    figs.add(
        "e_dc_kwh",
        _kwh(e_dc),
        "kWh",
        c_dc,
        est_dc,
        "; ".join(dc_notes),
        flagged=boundary_flag,
    )
    if boards:
        all_hp = sum_energy(boards)
        figs.add(
            "e_heat_pump_kwh",
            _kwh(all_hp.value),
            "kWh",
            all_hp.completeness,
            all_hp.estimated,
            "heat-pump boards: electricity to upgrade waste heat, outside E_DC (EnEfG)"
            + (
                f"; {_kwh_txt(sum_energy(hp_unsure).value)} of it possibly inside"
                if hp_unsure
                else ""
            ),
            flagged=boundary_flag,
        )

    # -- IT energy and PUE ------------------------------------------------------------------------
    it: dict[int, Energy] = {}
    for cat, role in IT_ROLE_BY_CATEGORY.items():
        if by_role.get(role):
            it[cat] = sum_energy(by_role[role])
            figs.add(
                f"e_it_cat{cat}_kwh",
                _kwh(it[cat].value),
                "kWh",
                it[cat].completeness,
                it[cat].estimated,
                f"IT energy at {role.replace('_', ' ')}",
            )
    usable = [c for c in it if it[c].value is not None]
    chosen = category if category is not None else (max(usable) if usable else None)
    rep.pue_category = chosen
    boundary_txt = "; E_DC may include heat-pump electricity (see e_dc_kwh)"
    label = "interim (period shorter than a year)" if rep.interim else "annual"
    for cat in sorted(it):
        figs.add(
            f"pue_cat{cat}",
            indicators.pue(e_dc, it[cat].value),
            "",
            min(c_dc, it[cat].completeness),
            it[cat].estimated or est_dc,
            f"PUE category {cat}, {label}" + (boundary_txt if boundary_flag else ""),
            flagged=boundary_flag,
        )
    e_it = it[chosen] if chosen is not None and chosen in it else None
    if e_it is not None:
        figs.add(
            "pue",
            indicators.pue(e_dc, e_it.value),
            "",
            min(c_dc, e_it.completeness),
            e_it.estimated or est_dc,
            f"category {chosen}" + (boundary_txt if boundary_flag else ""),
            flagged=boundary_flag,
        )
    it_note = f"category {chosen}"

    # -- heat --------------------------------------------------------------------------------------
    heat: dict[str, Energy] = {}
    for role, name in (
        ("heat_export_cpcu", "heat_cpcu_kwh"),
        ("heat_export_greenhouse", "heat_greenhouse_kwh"),
        ("heat_recovered", "heat_recovered_kwh"),
    ):
        if by_role.get(role):
            heat[role] = h = sum_energy(by_role[role])
            figs.add(
                name,
                _kwh(h.value),
                "kWh",
                h.completeness,
                h.estimated,
                f"heat meters with role {role}",
            )
            _heat_checks(figs, cfg, by_role[role], integrated)
    reuse = [heat[r] for r in ("heat_export_cpcu", "heat_export_greenhouse") if r in heat]
    if reuse:
        e_reuse = None if any(h.value is None for h in reuse) else sum(h.value or 0 for h in reuse)
        c_reuse = min(h.completeness for h in reuse)
        est_reuse = any(h.estimated for h in reuse)
        reuse_note = "heat exported"
        if hp_in:
            # The heat pumps are outside the datacenter boundary (their electricity is not in
            # E_DC): what crosses the boundary to be reused is the heat exported less that
            # electricity, the waste heat the heat pumps take up (ISO/IEC 30134-6, EnEfG).
            e_reuse = None if e_reuse is None or hp.value is None else e_reuse - hp.value
            c_reuse = min(c_reuse, hp.completeness)
            reuse_note = "heat exported less heat-pump electricity (reuse at the DC boundary)"
        figs.add("e_reuse_kwh", _kwh(e_reuse), "kWh", min(c_reuse, c_dc), est_reuse, reuse_note)
        erf = indicators.erf(e_reuse, e_dc)
        above = erf is not None and erf > 1.0
        figs.add(
            "erf",
            erf,
            "",
            min(c_reuse, c_dc),
            est_reuse or est_dc,
            "E_reuse / E_DC"
            + ("; above 1: E_reuse includes energy from outside E_DC" if above else ""),
            flagged=above,
        )
        if e_it is not None:
            figs.add(
                "ere",
                indicators.ere(e_dc, e_reuse, e_it.value),
                "",
                min(c_reuse, c_dc, e_it.completeness),
                est_reuse or est_dc or e_it.estimated,
                f"(E_DC - E_reuse) / E_IT, {it_note}",
            )

    # -- partial PUEs ------------------------------------------------------------------------------
    if e_it is not None:
        if by_role.get("cooling_board"):
            cool = sum_energy(by_role["cooling_board"])
            figs.add(
                "ppue_cooling",
                indicators.partial_pue(cool.value, e_it.value),
                "",
                min(cool.completeness, e_it.completeness),
                cool.estimated or e_it.estimated,
                f"(E_IT + cooling boards) / E_IT, {it_note}",
            )
        else:
            figs.add(
                "ppue_cooling",
                None,
                "",
                0.0,
                note="not computed: no cooling_board meter",
                metered=False,
            )
        if ups_in_meters:
            ups_in = sum_energy(ups_in_meters)
            losses = (
                None if ups_in.value is None or e_it.value is None else ups_in.value - e_it.value
            )
            ppue_d = indicators.partial_pue(losses, e_it.value)
            below = ppue_d is not None and ppue_d < 1.0
            figs.add(
                "ppue_distribution",
                ppue_d,
                "",
                min(ups_in.completeness, e_it.completeness),
                ups_in.estimated or e_it.estimated,
                f"UPS input / E_IT, {it_note}"
                + ("; UPS input below E_IT: check the meters" if below else ""),
                flagged=below,
            )
        else:
            figs.add(
                "ppue_distribution",
                None,
                "",
                0.0,
                note="not computed: UPS input not metered (list its energy meters in "
                "kpi.ups_input_meters)",
                metered=False,
            )

    # -- renewable energy, carbon ------------------------------------------------------------------
    years, whole = year_fraction(start_ns, end_ns)
    ren: float | None = 0.0
    c_ren, est_ren = 1.0, False
    parts: list[str] = []
    for decl in ks.renewable:
        v: float | None
        if decl.kwh_per_year is not None:
            v = decl.kwh_per_year * 1000.0 * years
            est_ren = est_ren or not whole
            parts.append(
                f"{decl.kind} {_kwh_txt(v)}"
                + ("" if whole else f" ({decl.kwh_per_year:,.0f} kWh/year pro rata)")
            )
        else:
            assert decl.share is not None
            v = None if e_dc is None else decl.share * e_dc
            c_ren = min(c_ren, c_dc)
            parts.append(f"{decl.kind} {decl.share:.1%} of E_DC")
        ren = None if ren is None or v is None else ren + v
    if by_role.get("renewable_onsite"):
        onsite = sum_energy(by_role["renewable_onsite"])
        ren = None if ren is None or onsite.value is None else ren + onsite.value
        c_ren, est_ren = min(c_ren, onsite.completeness), est_ren or onsite.estimated
        parts.append(f"onsite metered {_kwh_txt(onsite.value)}")
    ren_note = ", ".join(parts) or "none declared (kpi.renewable) or metered (renewable_onsite)"
    figs.add("e_renewable_kwh", _kwh(ren), "kWh", c_ren, est_ren, ren_note)
    capped = ren is not None and e_dc is not None and ren > e_dc
    figs.add(
        "ref",
        indicators.ref(ren, e_dc),
        "",
        min(c_ren, c_dc),
        est_ren or est_dc,
        "E_renewable / E_DC" + ("; renewable above E_DC: capped at 1" if capped else ""),
    )
    factor = ks.grid_carbon_kg_per_kwh
    carbon_note = (
        f"market based: (E_DC - E_renewable) x {factor:g} kgCO2eq/kWh (kpi.grid_carbon_kg_per_kwh)"
    )
    figs.add(
        "co2_kg",
        indicators.carbon_kg(e_dc, ren, factor),
        "kgCO2eq",
        min(c_ren, c_dc),
        est_ren or est_dc,
        carbon_note,
    )
    if e_it is not None:
        figs.add(
            "cue",
            indicators.cue(e_dc, ren, e_it.value, factor),
            "kgCO2eq/kWh",
            min(c_ren, c_dc, e_it.completeness),
            est_ren or est_dc or e_it.estimated,
            f"kgCO2eq / E_IT, {it_note}; {carbon_note}",
        )

    # -- water -------------------------------------------------------------------------------------
    water = sum_energy(by_role["water"]) if by_role.get("water") else None
    if water is not None:
        figs.add(
            "water_m3",
            water.value,
            "m3",
            water.completeness,
            water.estimated,
            "water meters with role water",
        )
    if e_it is not None:
        if water is not None:
            figs.add(
                "wue",
                indicators.wue(None if water.value is None else water.value * 1000.0, e_it.value),
                "L/kWh",
                min(water.completeness, e_it.completeness),
                water.estimated or e_it.estimated,
                f"litres of water / E_IT, {it_note}",
            )
        else:
            figs.add("wue", None, "L/kWh", 0.0, note="not computed: no water meter", metered=False)

    # -- heat recovery and the energy balance ------------------------------------------------------
    rec = heat.get("heat_recovered")
    if rec is not None and e_it is not None:
        c_bal = min(rec.completeness, e_it.completeness)
        est_bal = rec.estimated or e_it.estimated
        figs.add(
            "heat_recovery_ratio",
            indicators.heat_recovery_ratio(rec.value, e_it.value),
            "",
            c_bal,
            est_bal,
            f"heat recovered / E_IT, {it_note}",
        )
        ratio, off = indicators.energy_balance(rec.value, e_it.value, ks.balance_tolerance)
        tol = f"1 \u00b1 {ks.balance_tolerance:g}"
        if ratio is None:
            bal_note = "heat recovered / E_IT undefined"
        elif off:
            meters = ", ".join(m.device for m in by_role["heat_recovered"])
            bal_note = (
                f"heat recovered / E_IT = {ratio:.3f}, outside {tol}: possibly a broken or "
                f"mis-scaled sensor; check heat meter(s) {meters} and the IT meters"
            )
        else:
            bal_note = f"heat recovered / E_IT = {ratio:.3f}, within {tol}"
        figs.add("energy_balance", ratio, "", c_bal, est_bal, bal_note, flagged=off)

    # -- heat pumps: seasonal COP ------------------------------------------------------------------
    elec_by = {m.device: m for m in hp_elec}
    heat_by = {m.device: m for m in hp_heat}
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
    return rep


def instantaneous(store: Store, cfg: SiteConfig, at_ns: int) -> dict[str, float | None]:
    """Latest power per topology role (W) and the power-based PUE (dashboards only)."""
    profiles = cfg.profiles()
    look = int(3 * cfg.defaults.interval_s * NS)
    power: dict[str, float | None] = {}
    power_field = {"heat_pump": "electrical_power_w", "heat_meter": "heat_power_w"}
    for role in sorted({d.role for d in cfg.devices if d.role}):
        devs = cfg.devices_with_role(role)
        total: float | None = 0.0
        for measurement in {profiles[d.profile].measurement for d in devs}:
            rows = store.aggregate(
                measurement=measurement,
                field=power_field.get(measurement, "power_w"),
                start_ns=at_ns - look,
                end_ns=at_ns + 1,
                fn="last",
                where={"site": cfg.site.name, "role": role},
                group_by=("device",),
            )
            n_devs = sum(1 for d in devs if profiles[d.profile].measurement == measurement)
            if len(rows) < n_devs or total is None:
                total = None
            else:
                total += sum(r.value or 0.0 for r in rows)
        power[role] = total
    incomer_names = {d.name for d in cfg.devices_with_role("grid_incomer")}
    hp_inside = any(d.upstream in incomer_names for d in cfg.devices_with_role("heat_pump_board"))
    fac = power.get("grid_incomer")
    if fac is not None and hp_inside:
        hp = power.get("heat_pump_board")
        fac = None if hp is None else fac - hp
    it = power.get("ups_output") if power.get("ups_output") is not None else power.get("pdu_output")
    power["facility_w"] = fac
    power["it_w"] = it
    power["pue_instantaneous"] = indicators.instantaneous_pue(fac, it)
    return power


def _kwh(wh: float | None) -> float | None:
    return None if wh is None else wh / 1000.0
