"""The yearly EU data-centre report (Energy Efficiency Directive (EU) 2023/1791 Art. 12,
Delegated Regulation (EU) 2024/1364 Annexes I-III) of one site and calendar year.

Every metered figure is the KPI report's of the same year (:func:`dcim.kpi.period.
compute_kpis`, one computation, taken as it is: value, completeness, estimate and note); what
no meter can know comes from the site file's ``reports.eed`` section. An item neither
metered nor declared is "not measured" / "not declared" with the reason and what to set,
never a number.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from dcim.config import SiteConfig
from dcim.kpi.period import compute_kpis, year_fraction
from dcim.kpi.report import Figure, KpiReport
from dcim.reports.eed_annex import SECTIONS, Item
from dcim.reports.eed_heat import WasteHeatTemperature, waste_heat_temperature
from dcim.storage.base import Store
from dcim.timeutil import parse_period

REGULATION = "Commission Delegated Regulation (EU) 2024/1364, Annexes I-III"
KINDS = {
    "guarantees_of_origin": "guarantees of origin",
    "ppa": "power purchase agreements",
    "onsite": "on-site renewables",
}
# Why a metered item can be missing: the meter (role) it needs.
NO_METER = {
    "e_dc_kwh": "no grid incomer meter (role grid_incomer)",
    "e_it": "no IT energy meter (role ups_output, pdu_output or it_input)",
    "water_m3": "no water meter (role water) in the site file",
    "e_reuse_kwh": "no heat export meter (role heat_export_cpcu or heat_export_greenhouse)",
    "pue": "E_DC or E_IT not metered",
    "wue": "no water meter (role water) or no IT energy meter",
    "erf": "no heat export meter (role heat_export_cpcu or heat_export_greenhouse)",
    "ref": "E_DC not metered",
    "e_renewable_kwh": "E_DC not metered",
}


class Make(Protocol):
    """Builds one item's :class:`Entry` (its annex fields filled in)."""

    def __call__(
        self,
        value: float | str | None,
        status: str,
        c: float | None,
        note: str,
        est: bool = False,
        flagged: bool = False,
    ) -> Entry: ...


class NoDataError(Exception):
    """The store has no reading of the site's meters in the year: there is nothing to report."""


@dataclass
class Entry:
    section: str
    key: str
    indicator: str
    symbol: str
    unit: str
    value: float | str | None
    status: str  # measured | declared | derived | not measured | not declared | insufficient data
    completeness: float | None  # 0..1 for what the meters give; None for what is declared
    estimated: bool
    flagged: bool
    source: str
    note: str


@dataclass
class EedReport:
    site: str
    description: str
    year: int
    timezone: str
    start_ns: int
    end_ns: int
    generated_ns: int
    pue_category: int | None
    regulation: str = REGULATION
    entries: list[Entry] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def entry(self, key: str) -> Entry:
        for e in self.entries:
            if e.key == key:
                return e
        raise KeyError(key)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["sections"] = [
            {
                "section": s.ref,
                "title": s.title,
                "indicators": [asdict(e) for e in self.entries if e.section == s.ref],
            }
            for s in SECTIONS
        ]
        del d["entries"]
        return d


def year_span(year: int, tz: str) -> tuple[int, int]:
    """[1 January, 1 January next year) in the site's time zone, UNIX ns."""
    return parse_period(f"{year:04d}", tz)


def compute_eed(store: Store, cfg: SiteConfig, year: int) -> EedReport:
    """The report of ``year``; :class:`NoDataError` if no meter has a reading in it."""
    tz = cfg.site.timezone
    start_ns, end_ns = year_span(year, tz)
    rep = compute_kpis(store, cfg, start_ns, end_ns)
    if not rep.meters or all(m.samples == 0 for m in rep.meters):
        raise NoDataError(
            f"no readings of site {cfg.site.name}'s meters in {year} in the store: "
            "nothing to report (was the collector running, or the year backfilled?)"
        )
    twh = waste_heat_temperature(store, cfg, start_ns, end_ns, cfg.kpi.min_completeness)
    return build(cfg, year, rep, twh)


def build(cfg: SiteConfig, year: int, rep: KpiReport, twh: WasteHeatTemperature) -> EedReport:
    """The annexes' items from the KPI report ``rep`` of the year, the TWH and the site file."""
    out = EedReport(
        cfg.site.name,
        cfg.site.description,
        year,
        cfg.site.timezone,
        rep.start_ns,
        rep.end_ns,
        time.time_ns(),
        rep.pue_category,
    )
    if rep.end_ns > out.generated_ns:
        out.warnings.append(f"{year} is not over: the figures are interim, up to now")
    out.warnings += rep.warnings
    for s in SECTIONS:
        for item in s.items:
            out.entries.append(_entry(cfg, rep, twh, s.ref, item))
    return out


def _entry(
    cfg: SiteConfig, rep: KpiReport, twh: WasteHeatTemperature, section: str, item: Item
) -> Entry:
    kind, _, name = item.source.partition(":")

    def make(value: float | str | None, status: str, c: float | None, note: str,
             est: bool = False, flagged: bool = False) -> Entry:  # fmt: skip
        return Entry(section, item.key, item.indicator, item.symbol, item.unit, value, status,
                     c, est, flagged, item.source, note)  # fmt: skip

    if kind == "declared":
        v = getattr(cfg.reports.eed, name)
        if v is None:
            return make(None, "not declared", None, f"no meter gives it: declare "
                        f"reports.eed.{name} in the site file")  # fmt: skip
        value = ", ".join(v) if isinstance(v, list) else v
        return make(value, "declared", None, f"declared in the site file (reports.eed.{name})")
    if kind == "kpi":
        return _from_kpi(rep, name, make)
    if kind == "twh":
        status = "measured" if twh.value_c is not None else _status_of(twh.note)
        return make(twh.value_c, status, twh.completeness, twh.note)
    if kind == "potable":
        return _potable(cfg, rep, make)
    assert kind == "renewable"
    return _renewable(cfg, rep, name, make)


def _status_of(note: str) -> str:
    return "insufficient data" if note.startswith("insufficient data") else "not measured"


def _figure(rep: KpiReport, name: str) -> Figure | None:
    if name == "e_it":
        cats = [rep.pue_category] if rep.pue_category is not None else [3, 2, 1]
        names = {f.name for f in rep.figures}
        # no category chosen (none resolved the period): the highest metered one, as it is
        name = next((f"e_it_cat{c}_kwh" for c in cats if f"e_it_cat{c}_kwh" in names), "")
    try:
        return rep.figure(name)
    except KeyError:
        return None


def _from_kpi(rep: KpiReport, name: str, make: Make) -> Entry:
    f = _figure(rep, name)
    it = _figure(rep, "e_it")
    if f is None and name in ("pue", "wue") and it is not None and it.value is None:
        # no E_IT to divide by (the KPI report leaves the ratio out): why, from E_IT
        return make(None, _status_of(it.note), it.completeness, f"E_IT: {it.note}")
    if f is None:
        return make(None, "not measured", 0.0, f"not measured: {NO_METER.get(name, name)}")
    note = f.note
    if name == "e_it" and rep.pue_category is not None:
        note = f"measurement category {rep.pue_category}: {note}"
    if f.value is None:
        return make(None, _status_of(f.note), f.completeness, note, f.estimated, f.flagged)
    status = "measured"
    if name == "e_renewable_kwh" and "onsite metered" not in f.note:
        status = "declared"  # declarations only (kpi.renewable), or none: 0
    return make(f.value, status, f.completeness, note, f.estimated, f.flagged)


def _potable(cfg: SiteConfig, rep: KpiReport, make: Make) -> Entry:
    """WIN-POT: the metered water input times the declared potable share."""
    win, share = _figure(rep, "water_m3"), cfg.reports.eed.potable_water_share
    if win is None:
        return make(None, "not measured", 0.0, f"not measured: {NO_METER['water_m3']}")
    if share is None:
        why = "the potable share of the water input is not declared: set "
        return make(None, "not declared", win.completeness,
                    why + "reports.eed.potable_water_share (0..1)")  # fmt: skip
    if win.value is None:
        return make(None, _status_of(win.note), win.completeness, win.note)
    note = f"total water input x declared potable share {share:g} (reports.eed)"
    return make(win.value * share, "derived", win.completeness, note, win.estimated)


def _renewable(cfg: SiteConfig, rep: KpiReport, kind: str, make: Make) -> Entry:
    """ERES-GOO / -PPA / -OS: the part of the KPI report's E_renewable (declarations in
    ``kpi.renewable``, metered ``renewable_onsite``) of that kind, by the same rule (a yearly
    amount, or a share of E_DC)."""
    years, _ = year_fraction(rep.start_ns, rep.end_ns)
    dc = _figure(rep, "e_dc_kwh")
    total: float | None = 0.0
    c, parts = 1.0, []
    for decl in cfg.kpi.renewable:
        if decl.kind != kind:
            continue
        if decl.kwh_per_year is not None:
            v: float | None = decl.kwh_per_year * years
            parts.append(f"declared {decl.kwh_per_year:,.0f} kWh/year")
        else:
            assert decl.share is not None
            v = None if dc is None or dc.value is None else decl.share * dc.value
            c = min(c, dc.completeness if dc is not None else 0.0)
            parts.append(f"declared {decl.share:.1%} of EDC")
        total = None if total is None or v is None else total + v
    if kind == "onsite":
        onsite = [m for m in rep.meters if m.role == "renewable_onsite"]
        for m in onsite:
            total = None if total is None or m.value is None else total + m.value / 1000.0
            c = min(c, m.completeness)
        if onsite:
            parts.append(f"metered ({', '.join(m.device for m in onsite)})")
    if not parts:
        return make(0.0, "declared", None, f"no {KINDS[kind]} declared (kpi.renewable)")
    status = "measured" if kind == "onsite" and "metered" in parts[-1] else "declared"
    return make(total, status, c, "; ".join(parts) + " (part of ERES-TOT)")
