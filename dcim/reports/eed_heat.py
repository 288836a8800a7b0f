"""Average waste heat temperature (TWH) of a period, from the heat meters.

The waste heat is taken where it leaves the data centre: the heat meters with role
``heat_recovered`` (the heat exchanger, before the heat pumps, which are outside the
boundary as E_reuse is); without one, the heat export meters. Their flow (supply)
temperature is averaged **weighted by the heat they carried**: hour by hour, the mean supply
temperature times the mean heat power, over the sum of the heat power, as a heat accountant
weights a delivery temperature (an hour without flow weighs nothing). Completeness: the
share of the period's hours with both a temperature and a power on every meter.

Hourly means are the store's own aggregates (``GROUP BY time(1h)``), 8,760 rows per field and
meter for a year: nothing raw is pulled into Python.
"""

from __future__ import annotations

from dataclasses import dataclass

from dcim.config import Device, SiteConfig
from dcim.storage.base import Store

HOUR_S = 3600
TEMP_FIELD, POWER_FIELD = "supply_temp_c", "heat_power_w"
BOUNDARY_ROLES = (("heat_recovered",), ("heat_export_cpcu", "heat_export_greenhouse"))


@dataclass(frozen=True)
class WasteHeatTemperature:
    value_c: float | None
    completeness: float  # 0..1
    meters: tuple[str, ...]
    note: str


def boundary_meters(cfg: SiteConfig) -> list[Device]:
    """The heat meters at the data centre's boundary that measure supply temperature and
    heat power: role heat_recovered, else the export meters."""
    profiles = cfg.profiles()
    for roles in BOUNDARY_ROLES:
        devs = [
            d
            for r in roles
            for d in cfg.devices_with_role(r)
            if {TEMP_FIELD, POWER_FIELD} <= profiles[d.profile].field_names
        ]
        if devs:
            return devs
    return []


def _hourly(store: Store, cfg: SiteConfig, dev: Device, fld: str, start_ns: int, end_ns: int
            ) -> dict[int, float]:  # fmt: skip
    rows = store.aggregate(
        measurement=cfg.profiles()[dev.profile].measurement,
        field=fld,
        start_ns=start_ns,
        end_ns=end_ns,
        fn="mean",
        every_s=HOUR_S,
        where={"site": cfg.site.name, "device": dev.name},
    )
    return {r.time_ns: r.value for r in rows if r.value is not None}


def waste_heat_temperature(
    store: Store, cfg: SiteConfig, start_ns: int, end_ns: int, min_completeness: float
) -> WasteHeatTemperature:
    """TWH over [start, end): see the module's docstring. Withheld (None) below
    ``min_completeness``, as the KPI report withholds its figures."""
    devs = boundary_meters(cfg)
    if not devs:
        return WasteHeatTemperature(
            None, 0.0, (), "not measured: no heat meter with supply temperature and heat power "
            "at the boundary (role heat_recovered or heat_export_*)",
        )  # fmt: skip
    hours = max(1, -(-(end_ns - start_ns) // (HOUR_S * 1_000_000_000)))
    num = den = 0.0
    covered: set[int] | None = None
    for d in devs:
        temp = _hourly(store, cfg, d, TEMP_FIELD, start_ns, end_ns)
        power = _hourly(store, cfg, d, POWER_FIELD, start_ns, end_ns)
        both = set(temp) & set(power)
        covered = both if covered is None else covered & both
        for t in both:
            p = max(0.0, power[t])
            num += p * temp[t]
            den += p
    c = min(1.0, len(covered or ()) / hours)
    names = tuple(d.name for d in devs)
    how = (
        f"supply temperature of {', '.join(names)}, weighted by heat power hour by hour "
        f"({len(covered or ())} of {hours} hours)"
    )
    if den <= 0:
        return WasteHeatTemperature(None, c, names, f"not measured: no heat flowed; {how}")
    if c < min_completeness:
        pct = int(c * 100)
        note = f"insufficient data: {pct} % of the hours (minimum {min_completeness:.0%}); {how}"
        return WasteHeatTemperature(None, c, names, note)
    return WasteHeatTemperature(num / den, c, names, how)
