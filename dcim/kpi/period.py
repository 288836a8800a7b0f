"""KPIs over a period, read from a store (embedded or InfluxDB) through its aggregate queries.

One data-gathering step (:mod:`dcim.kpi.gather`: meter energies from :mod:`dcim.kpi.energy`,
heat from :mod:`dcim.kpi.heat`, all read side by side), then one small function per figure,
each named after the standard's definition it implements: :mod:`dcim.kpi.figures_power`
(E_DC, E_IT, PUE, partial PUEs), :mod:`dcim.kpi.figures_heat` (heat delivered and its check,
E_reuse, ERF, ERE, energy balance, seasonal COPs), :mod:`dcim.kpi.figures_env` (REF, CO2,
CUE, WUE). The formulas themselves are in :mod:`dcim.kpi.indicators`.

Every figure carries the completeness of its data; below ``kpi.min_completeness`` its value
is withheld (None, "insufficient data: ...") rather than shown as a number that looks exact.
Every figure is computed on its own: one whose inputs are bad (a sensor's fault value, an
impossible register) is n/a with a note saying which device, field, time range and why, and
the others are still reported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from dcim.config import SiteConfig
from dcim.kpi import figures_env as fe
from dcim.kpi import figures_heat as fh
from dcim.kpi import figures_power as fp
from dcim.kpi import indicators
from dcim.kpi.energy import Energy
from dcim.kpi.gather import HEAT_PUMP_MEASUREMENT, HEAT_ROLES, gather, heat_pumps
from dcim.kpi.report import Figure, Figures, KpiReport
from dcim.storage.base import Store

__all__ = [
    "HEAT_PUMP_MEASUREMENT",
    "HEAT_ROLES",
    "IT_ROLE_BY_CATEGORY",
    "Figure",
    "KpiReport",
    "boundary_warnings",
    "compute_kpis",
    "heat_pumps",
    "instantaneous",
    "year_fraction",
]

NS = 1_000_000_000
YEAR_NS = 365 * 86400 * NS
_MEAN_YEAR_DAYS = 365.2425
IT_ROLE_BY_CATEGORY = fp.IT_ROLE_BY_CATEGORY
T = TypeVar("T")


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


def _isolated(figs: Figures, name: str, compute: Callable[[], T]) -> T | None:
    """Run one figure's function; if its inputs break it (a ValueError or an arithmetic
    error from bad data), ``name`` is n/a with the reason and the report goes on."""
    try:
        return compute()
    except (ValueError, ArithmeticError) as exc:
        figs.failed(name, "", 0.0, f"not computed: {type(exc).__name__}: {exc}")
        return None


def compute_kpis(
    store: Store, cfg: SiteConfig, start_ns: int, end_ns: int, *, category: int | None = None
) -> KpiReport:
    """Energy-based PUE (with its category), heat delivered and reused, partial PUEs, REF,
    CUE, WUE, heat-pump seasonal COPs, the energy balance and the energies behind them."""
    ks = cfg.kpi
    inp = gather(store, cfg, start_ns, end_ns)
    rep = KpiReport(
        start_ns,
        end_ns,
        meters=inp.meters(),
        interim=(end_ns - start_ns) < YEAR_NS,
        warnings=boundary_warnings(cfg) + inp.failed,
        settings=ks.model_dump(mode="json"),
    )
    figs = Figures(rep, ks.min_completeness)

    def one(name: str, compute: Callable[[], T]) -> T | None:
        return _isolated(figs, name, compute)

    no_dc = fp.FacilityEnergy(None, 0.0, False, False, None)
    dc = one("e_dc_kwh", lambda: fp.facility_energy(figs, cfg, inp)) or no_dc
    one("e_heat_pump_kwh", lambda: fp.heat_pump_electricity(figs, cfg, inp, dc))
    it = one("e_it_kwh", lambda: fp.it_energies(figs, inp)) or {}
    usable = [c for c in it if it[c].value is not None]
    chosen = category if category is not None else (max(usable) if usable else None)
    rep.pue_category = chosen
    one("pue", lambda: fp.pue(figs, dc, it, chosen, rep.interim))
    e_it = it.get(chosen) if chosen is not None else None
    it_note = f"category {chosen}"

    heat = one("heat_delivered", lambda: fh.heat_delivered(figs, cfg, inp)) or {}
    reuse = one("e_reuse_kwh", lambda: fh.energy_reused(figs, heat, dc))
    if reuse is not None:
        one("erf", lambda: fh.erf(figs, reuse, dc))
        if e_it is not None:
            one("ere", lambda: fh.ere(figs, reuse, dc, e_it, it_note))
    if e_it is not None:
        one("ppue_cooling", lambda: fp.ppue_cooling(figs, inp, e_it, it_note))
        one("ppue_distribution", lambda: fp.ppue_distribution(figs, inp, e_it, it_note))

    years, whole = year_fraction(start_ns, end_ns)
    no_ren = Energy(None, 0.0, False)
    ren = one("e_renewable_kwh", lambda: fe.renewable_energy(figs, ks, inp, dc, years, whole))
    ren = ren or no_ren
    one("ref", lambda: fe.ref(figs, ren, dc))
    one("co2_kg", lambda: fe.co2(figs, ks, ren, dc))
    if e_it is not None:
        one("cue", lambda: fe.cue(figs, ks, ren, dc, e_it, it_note))
    water = one("water_m3", lambda: fe.water_use(figs, inp))
    if e_it is not None:
        one("wue", lambda: fe.wue(figs, water, e_it, it_note))

    rec = heat.get("heat_recovered")
    if rec is not None and e_it is not None:
        tol = ks.balance_tolerance
        one("energy_balance", lambda: fh.heat_recovery(figs, inp, rec, e_it, it_note, tol))
    one("seasonal_cop", lambda: fh.seasonal_cops(figs, heat_pumps(cfg), inp))
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
