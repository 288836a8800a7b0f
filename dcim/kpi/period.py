"""KPIs over a period, read from a store (embedded or InfluxDB) through its aggregate queries.

The database aggregates (last value per window, counts); Python only chains the per-window
indexes of each meter, so a year is a few thousand rows per meter, not millions of points.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from dcim.config import ROLE_FIELD, Device, SiteConfig
from dcim.kpi import indicators
from dcim.kpi.counters import Sample, counter_increase
from dcim.storage.base import Store

NS = 1_000_000_000
YEAR_NS = 365 * 86400 * NS
IT_ROLE_BY_CATEGORY = {1: "ups_output", 2: "pdu_output", 3: "it_input"}
# Window for the per-window indexes: about 500 windows over the period, at least 10 s.
_WINDOWS = (10, 60, 300, 900, 3600, 6 * 3600, 86400)


@dataclass(frozen=True)
class MeterEnergy:
    device: str
    role: str
    field: str
    value: float | None  # increase over the period, in the counter's unit (Wh, m3)
    samples: int
    expected: int
    completeness: float
    interpolated: bool
    extrapolated: bool
    resets: int


@dataclass(frozen=True)
class Figure:
    name: str
    value: float | None
    unit: str
    completeness: float  # share of expected samples present, 0..1
    estimated: bool = False  # some part was interpolated/extrapolated across a gap
    note: str = ""


@dataclass
class KpiReport:
    start_ns: int
    end_ns: int
    figures: list[Figure] = field(default_factory=list)
    meters: list[MeterEnergy] = field(default_factory=list)
    pue_category: int | None = None
    interim: bool = True

    def figure(self, name: str) -> Figure:
        for f in self.figures:
            if f.name == name:
                return f
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _window_s(period_ns: int, interval_s: float) -> int:
    target = period_ns / NS / 500
    for w in _WINDOWS:
        if w >= max(target, interval_s):
            return w
    return _WINDOWS[-1]


def meter_energies(
    store: Store, cfg: SiteConfig, role: str, start_ns: int, end_ns: int
) -> list[MeterEnergy]:
    """Counter increase of every enabled device with ``role`` over [start, end)."""
    devices = cfg.devices_with_role(role)
    if not devices:
        return []
    fld = ROLE_FIELD[role]
    profiles = cfg.profiles()
    by_measurement: dict[str, list[Device]] = defaultdict(list)
    for d in devices:
        by_measurement[profiles[d.profile].measurement].append(d)
    out: list[MeterEnergy] = []
    for measurement, devs in by_measurement.items():
        interval = max(cfg.interval_of(d) for d in devs)
        look = int(3 * interval * NS)
        window = _window_s(end_ns - start_ns, interval)
        where = {"site": cfg.site.name, "role": role}

        def q(
            fn: str,
            a: int,
            b: int,
            every: int | None = None,
            measurement: str = measurement,
            where: dict[str, str] = where,
        ) -> dict[str, list[Sample]]:
            rows = store.aggregate(
                measurement=measurement,
                field=fld,
                start_ns=a,
                end_ns=b,
                fn=fn,  # type: ignore[arg-type]
                every_s=every,
                where=where,
                group_by=("device",),
            )
            res: dict[str, list[Sample]] = defaultdict(list)
            for r in rows:
                if r.value is not None:
                    res[r.tags.get("device", "")].append(Sample(r.time_ns, float(r.value)))
            return res

        before_start = q("last", start_ns - look, start_ns)
        after_start = q("first", start_ns, min(end_ns, start_ns + look))
        windows = q("last", start_ns, end_ns, window)
        before_end = q("last", max(start_ns, end_ns - look), end_ns)
        after_end = q("first", end_ns, end_ns + look)
        counts = q("count", start_ns, end_ns)
        for d in devs:
            n = d.name
            first_in = after_start.get(n, [])
            last_in = before_end.get(n, [])
            # Interior indexes: per-window last values, ordered, placed strictly between the
            # first and last real samples inside the period (only their order matters).
            interior: list[Sample] = []
            if first_in and last_in:
                t0 = first_in[0].time_ns
                interior = [Sample(t0 + i + 1, s.value) for i, s in enumerate(windows.get(n, []))]
            samples = before_start.get(n, []) + first_in + interior + last_in + after_end.get(n, [])
            inc = counter_increase(samples, start_ns, end_ns, max_extrapolation_ns=look)
            got = int(counts[n][0].value) if counts.get(n) else 0
            expected = max(1, round((end_ns - start_ns) / NS / cfg.interval_of(d)))
            out.append(
                MeterEnergy(
                    device=n,
                    role=role,
                    field=fld,
                    value=inc.value,
                    samples=got,
                    expected=expected,
                    completeness=min(1.0, got / expected),
                    interpolated=inc.interpolated,
                    extrapolated=inc.extrapolated,
                    resets=inc.resets,
                )
            )
    return out


def _sum(meters: list[MeterEnergy]) -> tuple[float | None, float, bool]:
    """Sum over meters; None if any meter has no value. Returns (sum, completeness, estimated)."""
    if not meters:
        return None, 0.0, False
    vals = [m.value for m in meters]
    total = None if any(v is None for v in vals) else sum(v for v in vals if v is not None)
    completeness = sum(m.completeness for m in meters) / len(meters)
    return total, completeness, any(m.extrapolated for m in meters)


def compute_kpis(
    store: Store, cfg: SiteConfig, start_ns: int, end_ns: int, *, category: int | None = None
) -> KpiReport:
    """Energy-based PUE (with its category), heat delivered and the energies behind them."""
    rep = KpiReport(start_ns, end_ns, interim=(end_ns - start_ns) < YEAR_NS)
    roles = {d.role for d in cfg.devices if d.role}
    by_role: dict[str, list[MeterEnergy]] = {
        r: meter_energies(store, cfg, r, start_ns, end_ns) for r in sorted(roles)
    }
    rep.meters = [m for ms in by_role.values() for m in ms]

    incomer, c_in, est_in = _sum(by_role.get("grid_incomer", []))
    incomer_names = {d.name for d in cfg.devices_with_role("grid_incomer")}
    hp_inside = [
        m
        for m in by_role.get("heat_pump_board", [])
        if cfg.device(m.device).upstream in incomer_names
    ]
    hp, c_hp, est_hp = _sum(hp_inside)
    e_dc = None if incomer is None else incomer - (hp or 0.0)
    c_dc = min(c_in, c_hp) if hp_inside else c_in
    rep.figures.append(
        Figure(
            "e_dc_kwh",
            _kwh(e_dc),
            "kWh",
            c_dc,
            est_in or est_hp,
            "grid incomer less heat-pump boards downstream of it (EnEfG)",
        )
    )

    it: dict[int, tuple[float | None, float, bool]] = {}
    for cat, role in IT_ROLE_BY_CATEGORY.items():
        if by_role.get(role):
            it[cat] = _sum(by_role[role])
            rep.figures.append(
                Figure(
                    f"e_it_cat{cat}_kwh",
                    _kwh(it[cat][0]),
                    "kWh",
                    it[cat][1],
                    it[cat][2],
                    f"IT energy at {role.replace('_', ' ')}",
                )
            )
    usable = [c for c in it if it[c][0] is not None]
    chosen = category if category is not None else (max(usable) if usable else None)
    rep.pue_category = chosen
    for cat in sorted(it):
        e_it, c_it, est_it = it[cat]
        label = "interim (period shorter than a year)" if rep.interim else "annual"
        rep.figures.append(
            Figure(
                f"pue_cat{cat}",
                indicators.pue(e_dc, e_it),
                "",
                min(c_dc, c_it),
                est_it or est_in,
                f"PUE category {cat}, {label}",
            )
        )
    if chosen is not None and chosen in it:
        rep.figures.append(
            Figure(
                "pue",
                rep.figure(f"pue_cat{chosen}").value,
                "",
                rep.figure(f"pue_cat{chosen}").completeness,
                rep.figure(f"pue_cat{chosen}").estimated,
                f"category {chosen}",
            )
        )

    for role, name in (
        ("heat_export_cpcu", "heat_cpcu_kwh"),
        ("heat_export_greenhouse", "heat_greenhouse_kwh"),
        ("heat_recovered", "heat_recovered_kwh"),
    ):
        if by_role.get(role):
            v, c, est = _sum(by_role[role])
            rep.figures.append(
                Figure(name, _kwh(v), "kWh", c, est, f"heat meters with role {role}")
            )
    reuse = [
        rep.figure(n)
        for n in ("heat_cpcu_kwh", "heat_greenhouse_kwh")
        if any(f.name == n for f in rep.figures)
    ]
    if reuse and chosen is not None:
        e_reuse = None if any(f.value is None for f in reuse) else sum(f.value or 0 for f in reuse)
        c_reuse = min(f.completeness for f in reuse)
        e_dc_kwh = _kwh(e_dc)
        rep.figures.append(
            Figure(
                "erf",
                indicators.erf(e_reuse, e_dc_kwh),
                "",
                min(c_reuse, c_dc),
                note="heat exported / E_DC",
            )
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
