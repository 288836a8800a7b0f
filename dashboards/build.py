"""Builds the Grafana dashboards (JSON, InfluxQL data source) from the panel lists below.

    python dashboards/build.py      # rewrites dashboards/*.json (one file per dashboard)

The JSON files are committed and provisioned (dashboards/provisioning/); tests run every
panel's query against a real InfluxDB over 6 h, 7, 30 and 90 days and a year.

Plain dicts, not grafana-foundation-sdk: the SDK (10.4.0) has no InfluxDB query type, and the
heart of these dashboards is their InfluxQL (one target per resolution, below); the tests
check the JSON against the SDK's dashboard model instead (tests/test_dashboards.py).

Long ranges. Grafana's InfluxQL data source cannot switch retention policy itself, so every
time-series query is written four times, each target gated by Grafana's ``$__interval_ms``
(the range over the panel's 1,000 points, rounded; a constant comparison InfluxQL folds: the
false targets read nothing):

- ``$__interval_ms < 60000`` (ranges up to ~12 h): the raw points (the default policy);
- 60000 to 600000 (up to ~8 days): ``rp_1m``, read as ``mean("mean_f")``, ``max("max_f")``...
- above, up to 3600000 (up to ~62 days: an hour per point at most): ``rp_1h``;
- above (longer ranges: 90 days is a 2 h interval, a year 6 h): ``rp_1d``, UTC days: where hourly points are more than the
  panel's 1,000 can show, a year reads 365 points per series instead of 8,760 (a
  device-by-device panel of the reference site: 387 x 365 values, not 387 x 8,760). The
  current day is there once it has closed (``cq_1d`` runs at midnight UTC).

The four targets carry the same legend, so a user zooming from 6 h to a year sees one series
that never goes blank (raw points are kept 30 days, the rollups 400 days and forever) and never
reads millions of raw points. Query templates below write ``@fn(field)`` for an aggregate and
``@from(measurement)`` for the source; ``@energy(field)`` is the energy in Wh of a power field
over each group (raw: ``integral``; rollups: the sum of the window means times their length in
hours).
From ``rp_1h`` and ``rp_1d``, where a window holds one point of a series at most, the panels
by device read the points as stored and those across devices aggregate them in a subquery
(:func:`per`): the same figures for a third to a quarter of influxd's work.
KPI panels read the ``kpi`` points (one per hour or day) from ``rp_1h`` (``last_<figure>``),
where every point lands (by the CQ, or the store's rollup of late hours) and is kept forever.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DS = {"type": "influxdb", "uid": "${datasource}"}
SITE = "site =~ /^$site$/"
ROOM = "room =~ /^$room$/"
RACK = "rack =~ /^$rack$/"
DEVICE = "device =~ /^$device$/"
MAX_POINTS = 1000  # Grafana's $__interval is the range over this, rounded

# (policy prefix, gate, rollup window in minutes or None for raw)
LEVELS: list[tuple[str, str, int | None]] = [
    ("", "$__interval_ms < 60000", None),
    ('"rp_1m".', "$__interval_ms >= 60000 AND $__interval_ms <= 600000", 1),
    ('"rp_1h".', "$__interval_ms > 600000 AND $__interval_ms <= 3600000", 60),
    ('"rp_1d".', "$__interval_ms > 3600000", 1440),
]
_ROLLED = {"mean": "mean", "max": "max", "min": "min", "last": "last", "first": "first",
           "sum": "sum", "count": "sum"}  # fmt: skip
_TOKEN = re.compile(r"@(\w+)\(([\w ]+)\)")

# ASHRAE TC 9.9 class A1 inlet air: recommended 18-27 degC, allowable 15-32 degC.
A1_STEPS = [("red", None), ("orange", 15), ("green", 18), ("orange", 27), ("red", 32)]
# Heat delivery contracts, supply at least / return at most (degC): dashboard variables (text
# boxes on the heat-recovery and greenhouse dashboards), drawn as dashed lines beside the
# measured temperatures. Variables, not thresholds: Grafana's thresholds take no variables, and
# an engineer checks "what if the contract said 62" on the chart without rebuilding; the
# default set here is what the dashboards open with (set your site's contract and rebuild).
# CPCU supply 60 degC: the contract's minimum, as the CpcuSupplyBelowContract alert
# (docs/alerts.md; newer CPCU loops run at about 65 degC, docs/twin.md); return 50 degC: the
# highest the network takes back; greenhouses: the farm's heating loop, supply at least 35 and
# return at most 45 degC (the twin's loop returns 22-32 K under a 60-65 degC supply).
CONTRACT = {
    "cpcu": (("cpcu_supply_min_c", 60.0), ("cpcu_return_max_c", 50.0)),
    "greenhouse": (("greenhouse_supply_min_c", 35.0), ("greenhouse_return_max_c", 45.0)),
}
CONTRACT_LABELS = {
    "cpcu_supply_min_c": "CPCU contract: supply at least (degC)",
    "cpcu_return_max_c": "CPCU contract: return at most (degC)",
    "greenhouse_supply_min_c": "Greenhouse contract: supply at least (degC)",
    "greenhouse_return_max_c": "Greenhouse contract: return at most (degC)",
}


def level_query(template: str, level: int) -> str:
    """``template`` for one resolution (0 raw, 1 rp_1m, 2 rp_1h, 3 rp_1d)."""
    rp, gate, window = LEVELS[level]

    def sub(m: re.Match[str]) -> str:
        fn, arg = m[1], m[2]
        if fn == "from":
            return f'{rp}"{arg}"'
        if fn == "energy":
            if window is None:
                return f'integral("{arg}", 1h)'
            # a mean in W over ``window`` minutes is window / 60 Wh
            scale = ""
            if window < 60:
                scale = f" / {60 // window}"
            elif window > 60:
                scale = f" * {window // 60}"
            return f'sum("mean_{arg}")' + scale
        if window is None:
            return f'{fn}("{arg}")'
        return f'{_ROLLED[fn]}("{fn}_{arg}")'

    return _TOKEN.sub(sub, template).replace("$gate", gate)


def targets(
    series: list[tuple[str, str | tuple[str, ...]]], fmt: str = "time_series"
) -> list[dict[str, Any]]:
    """One target per series, or one per resolution (``LEVELS``) for templates using
    ``$gate`` (or given as a tuple of templates, one per resolution)."""
    out: list[dict[str, Any]] = []
    for alias, tmpl in series:
        if isinstance(tmpl, tuple):
            qs = [level_query(t, i) for i, t in enumerate(tmpl)]
        else:
            qs = [level_query(tmpl, i) for i in range(len(LEVELS))] if "$gate" in tmpl else [tmpl]
        for q in qs:
            out.append(
                {
                    "refId": _ref(len(out)),
                    "datasource": DS,
                    "alias": alias,
                    "query": q,
                    "rawQuery": True,
                    "resultFormat": fmt,
                }
            )
    return out


def _ref(i: int) -> str:
    return chr(65 + i) if i < 26 else "A" + chr(65 + i - 26)


def steps(spec: Sequence[tuple[str, float | None]]) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in spec]}


def panel(
    kind: str,
    title: str,
    unit: str,
    series: list[tuple[str, Any]],
    *,
    decimals: int = 1,
    thresholds: Sequence[tuple[str, float | None]] | None = None,
    w: int = 12,
    h: int = 8,
    desc: str = "",
    fmt: str = "time_series",
    links: list[tuple[str, str]] | None = None,
    minv: float | None = None,
    maxv: float | None = None,
    options: dict[str, Any] | None = None,
    overrides: list[dict[str, Any]] | None = None,
    transformations: list[dict[str, Any]] | None = None,
    time_from: str | None = None,
    time_shift: str | None = None,
) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "unit": unit,
        "decimals": decimals,
        "thresholds": steps(thresholds or [("green", None)]),
        "color": {
            "mode": "thresholds" if thresholds and kind != "timeseries" else "palette-classic"
        },
    }
    if minv is not None:
        defaults["min"] = minv
    if maxv is not None:
        defaults["max"] = maxv
    if kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 0,
            "spanNulls": False,
            "showPoints": "never",
            "thresholdsStyle": {"mode": "line+area" if thresholds else "off"},
        }
    p: dict[str, Any] = {
        "type": kind,
        "title": title,
        "description": desc,
        "datasource": DS,
        "maxDataPoints": MAX_POINTS,
        "interval": "10s",
        "gridPos": {"h": h, "w": w, "x": 0, "y": 0},
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": options or _default_options(kind),
        "targets": targets(series, fmt),
    }
    if links:
        p["links"] = [
            {"title": t, "url": f"/d/{uid}?${{__url_time_range}}&${{site:queryparam}}"}
            for t, uid in links
        ]
    if transformations:
        p["transformations"] = transformations
    if time_from:
        p["timeFrom"] = time_from
    if time_shift:
        p["timeShift"] = time_shift
    return p


def _default_options(kind: str) -> dict[str, Any]:
    reduce = {"values": False, "calcs": ["lastNotNull"], "fields": ""}
    if kind == "stat":
        return {"reduceOptions": reduce, "colorMode": "value", "graphMode": "area",
                "textMode": "value_and_name", "justifyMode": "auto", "orientation": "auto"}  # fmt: skip
    if kind == "bargauge":
        return {"reduceOptions": reduce, "orientation": "horizontal", "displayMode": "gradient",
                "showUnfilled": True}  # fmt: skip
    if kind == "table":
        return {"showHeader": True, "cellHeight": "sm"}
    if kind == "status-history":
        return {"showValue": "never", "rowHeight": 0.9, "colWidth": 0.9}
    return {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "max"]},
            "tooltip": {"mode": "multi", "sort": "desc"}}  # fmt: skip


def right_axis(name: str, unit: str, decimals: int = 1) -> dict[str, Any]:
    """A field override: series ``name`` on the right axis in ``unit``."""
    return {
        "matcher": {"id": "byRegexp", "options": name},
        "properties": [
            {"id": "unit", "value": unit},
            {"id": "decimals", "value": decimals},
            {"id": "custom.axisPlacement", "value": "right"},
        ],
    }


# -- query templates ----------------------------------------------------------------------------

T = "$timeFilter AND $gate"
BY = "GROUP BY time($__interval)"


def role_sum(fn: str, meas: str, field: str, role: str, scale: str = " / 1000") -> str:
    """Sum over the devices of a role of each device's ``fn(field)`` per interval."""
    return (
        f"SELECT sum(v){scale} FROM (SELECT @{fn}({field}) AS v FROM @from({meas}) WHERE {SITE} "
        f"AND role = '{role}' AND {T} {BY}, device) {BY} fill(none)"
    )


def role_energy(meas: str, field: str, roles: str) -> str:
    """Energy (kWh) of the devices whose role matches ``roles`` over the whole range."""
    return (
        f"SELECT sum(e) / 1000 FROM (SELECT @energy({field}) AS e FROM @from({meas}) WHERE {SITE} "
        f"AND role =~ /^({roles})$/ AND {T} GROUP BY device)"
    )


def role_now(meas: str, field: str, roles: str) -> str:
    return (
        f"SELECT sum(v) / 1000 FROM (SELECT last({field}) AS v FROM {meas} WHERE {SITE} "
        f"AND role =~ /^({roles})$/ AND time > now() - 5m GROUP BY device)"
    )


def per(
    fn: str, meas: str, field: str, by: str, where: str = "", scale: str = ""
) -> tuple[str, ...]:
    """``fn(field)`` per interval and ``by`` tag, one template per resolution (``LEVELS``).

    ``rp_1h`` and ``rp_1d`` hold one point per series and hour or day, and their gates open
    where the interval is at least that long (``rp_1h``: 10 min to 1 h; ``rp_1d``: above
    1 h), so each window holds one stored point of a series at most. InfluxDB's per-series
    windows then cost much and do nothing (a year of 300 servers from ``rp_1d``: 700 ms of
    influxd's CPU grouped, 170-480 ms as stored; benchmarks/dashboards.py):
    - by device (one series per device: every tag of these measurements is the device's),
      the points are read as stored: the same values at the same times as the windows'
      (tests/test_dashboards.py checks it). A device whose tags changed within the range
      (moved to another rack or room) has two series: on the day it moved it shows both
      points at the same time, where the windows would show their aggregate;
    - across devices (by room, rack, protocol), the points are read in a subquery and
      aggregated once per window: the same values, about a third less CPU over a month and a
      year than the aggregate pushed down to each series. Raw and ``rp_1m`` points, several
      to a window, keep the pushed-down aggregate: there it is the cheaper."""
    cond = f"{SITE} AND {where} AND {T}" if where else f"{SITE} AND {T}"
    grouped = f"SELECT @{fn}({field}){scale} FROM @from({meas}) WHERE {cond} {BY}, {by} fill(none)"
    col = f'"{fn}_{field}"'
    if by == "device":
        rolled = f"SELECT {col}{scale} FROM @from({meas}) WHERE {cond} GROUP BY device"
    else:
        rolled = (
            f"SELECT {_ROLLED[fn]}(v){scale} FROM (SELECT {col} AS v FROM @from({meas}) "
            f"WHERE {cond}) {BY}, {by} fill(none)"
        )
    return (grouped, grouped, rolled, rolled)


def kpi(fields: str, resolution: str) -> str:
    """``kpi`` points of one resolution from rp_1h (``last_<figure>``); daily ones from two
    days before the range on (a day's point is at its start and written once it has closed:
    a range of a few hours still shows the last closed day)."""
    sel = ", ".join(f'"last_{f}" AS "{f}"' for f in fields.split(","))
    span = (
        "$timeFilter"
        if resolution == "hourly"
        else "time >= ${__from}ms - 2d AND time <= ${__to}ms"
    )
    return (
        f'SELECT {sel} FROM "rp_1h"."kpi" WHERE {SITE} AND resolution = \'{resolution}\' AND {span}'
    )


def kpi_ratio(num: str, den: str, resolution: str = "daily") -> str:
    """An energy ratio over the range from the periods' energies (sum / sum)."""
    return (
        f'SELECT sum("last_{num}") / sum("last_{den}") FROM "rp_1h"."kpi" WHERE {SITE} '
        f"AND resolution = '{resolution}' AND $timeFilter"
    )


DOWN_NOW = (
    "SELECT sum(d) FROM (SELECT last(devices_down) AS d FROM dcim_collector WHERE "
    f"{SITE} AND time > now() - 10m GROUP BY site)"
)
# Devices down: the collector's own count (``dcim_collector.devices_down``: devices whose last
# poll failed), one series per site; the most down at once in each interval, so a device down
# for ten minutes still shows on a year's chart.
DOWN = (
    "SELECT sum(d) FROM (SELECT @max(devices_down) AS d FROM @from(dcim_collector) WHERE "
    f"{SITE} AND {T} {BY}, site fill(none)) {BY} fill(none)"
)
PUE_CATS = [("cat. 3 (IT input)", "3"), ("cat. 2 (PDU output)", "2"), ("cat. 1 (UPS output)", "1")]
FLOW_NOW = [
    ("grid (E_DC scope)", role_now("energy_meter", "power_w", "grid_incomer")),
    ("IT (UPS output)", role_now("energy_meter", "power_w", "ups_output")),
    ("cooling", role_now("energy_meter", "power_w", "cooling_board")),
    ("heat pumps", role_now("energy_meter", "power_w", "heat_pump_board")),
    (
        "losses and other (grid - IT - cooling)",
        "SELECT sum(g) / 1000 - sum(i) / 1000 - sum(c) / 1000 FROM "
        + ", ".join(
            f"(SELECT last(power_w) AS {a} FROM energy_meter WHERE {SITE} AND role = '{r}' "
            "AND time > now() - 5m GROUP BY device)"
            for a, r in (("g", "grid_incomer"), ("i", "ups_output"), ("c", "cooling_board"))
        ),
    ),
]
HEAT_NOW = [
    ("recovered", role_now("heat_meter", "heat_power_w", "heat_recovered")),
    ("to CPCU", role_now("heat_meter", "heat_power_w", "heat_export_cpcu")),
    ("to greenhouses", role_now("heat_meter", "heat_power_w", "heat_export_greenhouse")),
    (
        "dumped (dry coolers)",
        "SELECT sum(v) / 1000 FROM (SELECT last(heat_rejected_w) AS v FROM dry_cooler "
        f"WHERE {SITE} AND time > now() - 5m GROUP BY device)",
    ),
]
ENERGY = [
    ("grid (E_DC scope)", role_energy("energy_meter", "power_w", "grid_incomer")),
    ("IT (UPS output)", role_energy("energy_meter", "power_w", "ups_output")),
    ("cooling", role_energy("energy_meter", "power_w", "cooling_board")),
    ("heat pumps", role_energy("energy_meter", "power_w", "heat_pump_board")),
    ("heat recovered", role_energy("heat_meter", "heat_power_w", "heat_recovered")),
    ("heat to CPCU", role_energy("heat_meter", "heat_power_w", "heat_export_cpcu")),
    ("heat to greenhouses", role_energy("heat_meter", "heat_power_w", "heat_export_greenhouse")),
    (
        "heat dumped (dry coolers)",
        f"SELECT sum(e) / 1000 FROM (SELECT @energy(heat_rejected_w) AS e FROM @from(dry_cooler) "
        f"WHERE {SITE} AND {T} GROUP BY device)",
    ),
]
POWER_FLOW = [
    ("grid (E_DC scope)", role_sum("mean", "energy_meter", "power_w", "grid_incomer")),
    ("IT (UPS output)", role_sum("mean", "energy_meter", "power_w", "ups_output")),
    ("cooling", role_sum("mean", "energy_meter", "power_w", "cooling_board")),
    ("heat pumps", role_sum("mean", "energy_meter", "power_w", "heat_pump_board")),
]
HEAT_FLOW = [
    ("recovered", role_sum("mean", "heat_meter", "heat_power_w", "heat_recovered")),
    ("to CPCU", role_sum("mean", "heat_meter", "heat_power_w", "heat_export_cpcu")),
    ("to greenhouses", role_sum("mean", "heat_meter", "heat_power_w", "heat_export_greenhouse")),
    (
        "dumped (dry coolers)",
        f"SELECT sum(v) / 1000 FROM (SELECT @mean(heat_rejected_w) AS v FROM @from(dry_cooler) "
        f"WHERE {SITE} AND {T} {BY}, device) {BY} fill(none)",
    ),
]
PUE_NOW = [
    (
        f"PUE {name}, power based",
        "SELECT (sum(g) - sum(h)) / sum(i) FROM "
        + ", ".join(
            f"(SELECT @mean(power_w) AS {a} FROM @from({m}) WHERE {SITE} AND role = '{r}' AND {T} "
            f"{BY}, device)"
            for a, m, r in (
                ("g", "energy_meter", "grid_incomer"),
                ("h", "energy_meter", "heat_pump_board"),
                ("i", m_it, role),
            )
        )
        + f" {BY} fill(none)",
    )
    # Category 1 only: InfluxQL joins an expression's operands per measurement, so the PDUs'
    # power (measurement pdu) never meets the meters' (energy_meter) in one expression, and a
    # category-2 line was always blank. The energy-based PUE of every category is on the
    # Energy KPIs dashboard.
    for name, m_it, role in (("cat. 1 (UPS output)", "energy_meter", "ups_output"),)
]

DETAIL = [
    ("Power chain", "dcim-power-chain"),
    ("Thermal", "dcim-thermal"),
    ("Heat recovery", "dcim-heat-recovery"),
    ("Energy KPIs", "dcim-energy-kpis"),
    ("Greenhouses", "dcim-greenhouses"),
    ("Collector health", "dcim-collector-health"),
]


def _link(*names: str) -> list[tuple[str, str]]:
    return [(t, u) for t, u in DETAIL if t in names]


def site_overview() -> list[dict[str, Any]]:
    kw: dict[str, Any] = {"decimals": 0}
    bar: dict[str, Any] = {"w": 8, "h": 8}
    return [
        panel("bargauge", "Where the power goes now", "kwatt", FLOW_NOW, **kw, **bar,
              links=_link("Power chain", "Thermal", "Energy KPIs"), minv=0,
              desc="Last reading of each meter (5 min). Losses: UPS, distribution and "
              "whatever the sub-meters do not see."),
        panel("bargauge", "Where the heat goes now", "kwatt", HEAT_NOW, **kw, **bar, minv=0,
              links=_link("Heat recovery", "Greenhouses")),
        panel("stat", "Devices down / alerts", "none", [("devices down", DOWN_NOW)], decimals=0,
              w=8, h=8, thresholds=[("green", None), ("red", 1)],
              links=_link("Collector health"),
              desc="Devices whose last poll (10 min) failed. Alerts firing: the alert list below "
              "(Grafana alerting with the Alertmanager of the stack)."),
        panel("bargauge", "Energy over the range", "kwatth", ENERGY, w=12, h=9, decimals=0,
              minv=0, desc="From the raw points, rp_1m, rp_1h or rp_1d depending on the range."),
        panel("stat", "PUE and ERF over the range (energy based)", "none",
              [(f"PUE {n}", kpi_ratio("e_dc_kwh", f"e_it_cat{c}_kwh", "hourly"))
               for n, c in PUE_CATS]
              + [("ERF", kpi_ratio("e_reuse_kwh", "e_dc_kwh", "hourly"))],
              decimals=2, w=12, h=9, thresholds=[("green", None), ("orange", 1.5), ("red", 2.0)],
              links=_link("Energy KPIs"),
              desc="Sums of the hourly kpi points written by the collector: energy-based PUE "
              "at each category the meters support (the highest is the one to report), ERF."),
        panel("timeseries", "Power flow", "kwatt", POWER_FLOW, decimals=0, minv=0,
              links=_link("Power chain")),
        panel("timeseries", "Heat flow", "kwatt", HEAT_FLOW, decimals=0, minv=0,
              links=_link("Heat recovery")),
        panel("timeseries", "PUE, power based (dashboards only)", "none", PUE_NOW, decimals=2,
              minv=1, thresholds=[("green", None), ("orange", 1.5), ("red", 2.0)],
              desc="Instantaneous; the reportable PUE is energy based (Energy KPIs)."),
        panel("timeseries", "Devices down", "none", [("devices down", DOWN)], decimals=0, minv=0,
              thresholds=[("green", None), ("red", 1)], links=_link("Collector health"),
              desc="Devices whose last poll failed, as the collector counts them (dcim_collector.devices_down), the most at once in each interval: not failed polls."),
        {"type": "alertlist", "title": "Alerts firing", "gridPos": {"h": 8, "w": 24, "x": 0, "y": 0},
         "options": {"viewMode": "list", "groupMode": "default", "maxItems": 20,
                     "sortOrder": 1, "stateFilter": {"firing": True, "pending": True},
                     "alertInstanceLabelFilter": "", "dashboardAlerts": False}},
    ]  # fmt: skip


def power_chain() -> list[dict[str, Any]]:
    pdu_pct = "/ $pdu_rating_a * 100"
    return [
        panel("timeseries", "UPS load", "percent", [("$tag_device", per("mean", "ups", "output_load_pct", "device", DEVICE))],
              thresholds=[("green", None), ("orange", 80), ("red", 90)], minv=0, maxv=100,
              desc="Above 80 % a 2N pair cannot take its partner's load."),
        panel("timeseries", "UPS battery runtime", "m", [("$tag_device", per("min", "ups", "battery_runtime_min", "device", DEVICE))],
              thresholds=[("red", None), ("orange", 5), ("green", 10)], minv=0, decimals=0),
        panel("timeseries", "UPS on battery", "bool_yes_no", [("$tag_device", per("max", "ups", "on_battery", "device", DEVICE))],
              thresholds=[("green", None), ("red", 1)], minv=0, maxv=1, decimals=0),
        panel("timeseries", "UPS battery charge", "percent", [("$tag_device", per("min", "ups", "battery_charge_pct", "device", DEVICE))],
              thresholds=[("red", None), ("orange", 80), ("green", 95)], minv=0, maxv=100, decimals=0),
        panel("timeseries", "UPS input and output power", "kwatt",
              [("in $tag_device", per("mean", "ups", "input_power_w", "device", DEVICE, " / 1000")),
               ("out $tag_device", per("mean", "ups", "output_power_w", "device", DEVICE, " / 1000"))],
              minv=0),
        panel("timeseries", "UPS output per phase (meters, role ups_output)", "amp",
              [(f"L{k} $tag_device", per("mean", "energy_meter", f"current_l{k}_a", "device", "role = 'ups_output'"))
               for k in (1, 2, 3)], minv=0),
        panel("timeseries", "UPS input per phase (meters not on a role: UPS input, auxiliaries)", "amp",
              [(f"L{k} $tag_device", per("mean", "energy_meter", f"current_l{k}_a", "device", "role = ''"))
               for k in (1, 2, 3)], minv=0),
        panel("bargauge", "PDU current now, % of rating ($pdu_rating_a A)", "percent",
              [("$tag_rack $tag_device", f"SELECT last(current_a) {pdu_pct} FROM pdu WHERE {SITE} AND {ROOM} AND {RACK} AND time > now() - 5m GROUP BY rack, device")],
              thresholds=[("green", None), ("orange", 80), ("red", 100)], minv=0, maxv=120, decimals=0,
              desc="Each PDU (one per rack feed A/B: the feed is the phase it is wired to) against "
              "its rating (variable pdu_rating_a); 80 % is the continuous-load limit.", h=12),
        panel("timeseries", "PDU current per rack and feed, % of rating", "percent",
              [("$tag_rack $tag_device", per("max", "pdu", "current_a", "rack, device", f"{ROOM} AND {RACK}", f" {pdu_pct}"))],
              thresholds=[("green", None), ("orange", 80), ("red", 100)], minv=0, decimals=0, h=12),
        panel("bargauge", "Top racks by power over the range", "kwatt",
              [("$tag_rack", f"SELECT sum(p) / 1000 FROM (SELECT @mean(power_w) AS p FROM @from(pdu) WHERE {SITE} AND {ROOM} AND {RACK} AND {T} GROUP BY rack, device) GROUP BY rack")],
              minv=0, w=24, h=10,
              transformations=[{"id": "reduce", "options": {"reducers": ["mean"]}},
                               {"id": "sortBy", "options": {"sort": [{"field": "Mean", "desc": True}]}},
                               {"id": "limit", "options": {"limitField": 10}}]),
    ]  # fmt: skip


def _dew_point(t: str, rh: str) -> str:
    """Magnus formula (b 17.62, c 243.12 degC) in InfluxQL over fields ``t`` and ``rh``."""
    g = f"(ln({rh} / 100) + 17.62 * {t} / (243.12 + {t}))"
    return f"243.12 * {g} / (17.62 - {g})"


def thermal() -> list[dict[str, Any]]:
    srv = f"{ROOM} AND {RACK}"
    return [
        panel("table", "Rack inlet now, per room and rack (ASHRAE A1)", "celsius",
              [("", f"SELECT max(inlet_temp_c) AS \"hottest server\", mean(inlet_temp_c) AS \"mean\" FROM server WHERE {SITE} AND {srv} AND time > now() - 5m GROUP BY room, rack")],
              fmt="table", thresholds=A1_STEPS, w=8, h=14,
              overrides=[{"matcher": {"id": "byType", "options": "number"},
                          "properties": [{"id": "custom.cellOptions", "value": {"type": "color-background"}}]}],
              transformations=[{"id": "organize", "options": {"excludeByName": {"Time": True}}}],
              desc="Recommended 18-27 degC (green), allowable 15-32 degC (orange), outside (red)."),
        panel("status-history", "Hottest server inlet per rack", "celsius",
              [("$tag_rack", per("max", "server", "inlet_temp_c", "rack", srv))],
              thresholds=A1_STEPS, w=16, h=14, minv=15, maxv=32),
        panel("timeseries", "Rack inlet per room (row): hottest and mean", "celsius",
              [("max $tag_room", per("max", "server", "inlet_temp_c", "room", srv)),
               ("mean $tag_room", per("mean", "server", "inlet_temp_c", "room", srv))],
              thresholds=A1_STEPS),
        panel("timeseries", "Server inlet by device", "celsius",
              [("$tag_device", per("max", "server", "inlet_temp_c", "device", f"{srv} AND {DEVICE}"))],
              thresholds=A1_STEPS),
        panel("timeseries", "CRAH supply and return air", "celsius",
              [("supply $tag_device", per("mean", "crah", "supply_air_temp_c", "device")),
               ("return $tag_device", per("mean", "crah", "return_air_temp_c", "device"))],
              thresholds=A1_STEPS),
        panel("timeseries", "CRAH cooling and fans", "kwatt",
              [("cooling $tag_device", per("mean", "crah", "cooling_power_w", "device", "", " / 1000")),
               ("fans $tag_device", per("mean", "crah", "fan_power_w", "device", "", " / 1000"))],
              minv=0),
        panel("timeseries", "Room humidity (rack probes)", "humidity",
              [("$tag_rack $tag_probe_name", per("mean", "rack_env", "humidity_pct", "rack, probe_name", srv))],
              thresholds=[("red", None), ("orange", 8), ("green", 20), ("orange", 70), ("red", 80)],
              minv=0, maxv=100, decimals=0,
              desc="ASHRAE A1: allowable 8-80 % RH; recommended up to 60 %."),
        panel("timeseries", "Dew point (rack probes)", "celsius",
              [("$tag_rack $tag_probe_name",
                f"SELECT {_dew_point('t', 'rh')} FROM (SELECT @mean(temp_c) AS t, @mean(humidity_pct) AS rh FROM @from(rack_env) WHERE {SITE} AND {srv} AND {T} {BY}, rack, probe_name fill(none)) GROUP BY rack, probe_name")],
              thresholds=[("red", None), ("orange", -12), ("green", -9), ("orange", 15), ("red", 17)],
              desc="ASHRAE A1: recommended -9 to 15 degC dew point, allowable -12 to 17 degC."),
    ]  # fmt: skip


def contract_panel(title: str, kind: str, role: str, **kw: Any) -> dict[str, Any]:
    """Supply and return of the heat meters of ``role`` per device, and the contract's two
    limits (dashboard variables) as dashed red lines over the same intervals."""
    (sup_var, _), (ret_var, _) = CONTRACT[kind]
    where = f"role = '{role}'"
    limit = (
        "SELECT @mean(supply_temp_c) * 0 + ${var} FROM @from(heat_meter) WHERE "
        f"{SITE} AND {where} AND {T} {BY} fill(none)"
    )
    series: list[tuple[str, Any]] = [
        (f"{n} $tag_device", per("mean", "heat_meter", f, "device", where))
        for n, f in (("supply", "supply_temp_c"), ("return", "return_temp_c"))
    ]
    series += [
        (f"contract: supply at least ${sup_var}", limit.replace("{var}", sup_var)),
        (f"contract: return at most ${ret_var}", limit.replace("{var}", ret_var)),
    ]
    dashed = {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}}
    red = {"id": "color", "value": {"mode": "fixed", "fixedColor": "red"}}
    return panel("timeseries", title, "celsius", series,
                 overrides=[{"matcher": {"id": "byRegexp", "options": "contract.*"},
                             "properties": [dashed, red]}],
                 desc=f"Hourly to 10 s means of the delivery meters against the contract: supply "
                 f"at least ${sup_var} degC, return at most ${ret_var} degC (dashboard "
                 "variables; dashboards/build.py CONTRACT has the defaults and their source).",
                 **kw)  # fmt: skip


def heat_recovery() -> list[dict[str, Any]]:
    hx = f"SELECT @mean({{f}}) FROM @from(heat_exchanger) WHERE {SITE} AND {T} {BY}, device fill(none)"
    return [
        panel("timeseries", "Heat exchanger temperatures", "celsius",
              [(f"{n} $tag_device", hx.format(f=f)) for n, f in
               (("primary supply", "primary_supply_temp_c"), ("primary return", "primary_return_temp_c"),
                ("secondary supply", "secondary_supply_temp_c"), ("secondary return", "secondary_return_temp_c"))]),
        panel("timeseries", "Heat exchanger approach (primary supply - secondary supply)", "celsius",
              [("approach $tag_device", f"SELECT @mean(primary_supply_temp_c) - @mean(secondary_supply_temp_c) FROM @from(heat_exchanger) WHERE {SITE} AND {T} {BY}, device fill(none)")],
              thresholds=[("green", None), ("orange", 3), ("red", 5)], minv=0,
              desc="A growing approach at the same load: fouling."),
        panel("timeseries", "Heat pumps: COP and lift", "none",
              [("COP $tag_device", f"SELECT @mean(heat_output_w) / @mean(electrical_power_w) FROM @from(heat_pump) WHERE {SITE} AND {T} {BY}, device fill(none)"),
               ("lift $tag_device", f"SELECT @mean(supply_temp_c) - @mean(source_outlet_temp_c) FROM @from(heat_pump) WHERE {SITE} AND {T} {BY}, device fill(none)")],
              decimals=2, overrides=[right_axis("lift.*", "celsius")],
              desc="COP = heat out / electricity in over each interval; lift = condenser supply "
              "- evaporator outlet. A lower COP at the same lift: a fault."),
        panel("timeseries", "Heat pumps: power", "kwatt",
              [("electrical $tag_device", per("mean", "heat_pump", "electrical_power_w", "device", "", " / 1000")),
               ("heat out $tag_device", per("mean", "heat_pump", "heat_output_w", "device", "", " / 1000"))],
              minv=0),
        panel("timeseries", "Heat delivered per hour", "kwatth",
              [(n, kpi(f, "hourly")) for n, f in (("to CPCU", "heat_cpcu_kwh"), ("to greenhouses", "heat_greenhouse_kwh"))],
              minv=0, decimals=0, options={"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["sum", "max"]}, "tooltip": {"mode": "multi", "sort": "none"}},
              desc="The collector's hourly kpi points (heat meter registers)."),
        panel("timeseries", "Heat delivered per day", "kwatth",
              [(n, kpi(f, "daily")) for n, f in (("to CPCU", "heat_cpcu_kwh"), ("to greenhouses", "heat_greenhouse_kwh"))]
              + [("completeness CPCU", kpi("heat_cpcu_kwh_completeness", "daily"))],
              minv=0, decimals=0, overrides=[right_axis("completeness.*", "percentunit", 2)]),
        contract_panel("CPCU: supply and return against the contract", "cpcu", "heat_export_cpcu"),
        contract_panel("Greenhouses: supply and return against the contract", "greenhouse",
                       "heat_export_greenhouse"),
        panel("timeseries", "Heat dumped to the dry coolers", "kwatt",
              [("$tag_device", per("mean", "dry_cooler", "heat_rejected_w", "device", "", " / 1000")),
               ("outdoor $tag_device", per("mean", "dry_cooler", "outdoor_temp_c", "device"))],
              minv=0, overrides=[right_axis("outdoor.*", "celsius")]),
        panel("stat", "Heat over the range", "kwatth", ENERGY[4:], decimals=0, w=12,
              options={**_default_options("stat"), "reduceOptions": {"values": False, "calcs": ["sum"], "fields": ""}}),
    ]  # fmt: skip


KPIS = [
    ("PUE", "pue"),
    ("ERF", "erf"),
    ("ERE", "ere"),
    ("WUE (L/kWh)", "wue"),
    ("CUE (kg/kWh)", "cue"),
]


def energy_kpis() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for res in ("daily", "hourly"):
        for name, f in KPIS:
            out.append(panel(
                "timeseries", f"{name}, {res}", "none",
                [(name, kpi(f, res)), ("completeness", kpi(f"{f}_completeness", res))]
                + ([(f"PUE cat. {c}", kpi(f"pue_cat{c}", res)) for c in "321"] if f == "pue" else []),
                decimals=2, w=8, minv=0 if f != "pue" else 1,
                overrides=[right_axis("completeness", "percentunit", 2)],
                desc="Energy based, one kpi point per period written by the collector; a period "
                "below kpi.min_completeness has no value (a gap), its completeness still shows."))  # fmt: skip
        out.append(panel(
            "timeseries", f"Heat delivered, {res}", "kwatth",
            [(n, kpi(f, res)) for n, f in (("CPCU", "heat_cpcu_kwh"), ("greenhouses", "heat_greenhouse_kwh"), ("recovered", "heat_recovered_kwh"))]
            + [("completeness", kpi("heat_recovered_kwh_completeness", res))],
            decimals=0, w=8, minv=0, overrides=[right_axis("completeness", "percentunit", 2)]))  # fmt: skip
    periods = [("this month", "now/M", None), ("last month", "now/M", "1M/M"),
               ("same month last year", "now/M", "1y")]  # fmt: skip
    for label, frm, shift in periods:
        out.append(panel(
            "stat", f"Month: {label}", "none",
            [(f"PUE {n}", kpi_ratio("e_dc_kwh", f"e_it_cat{c}_kwh")) for n, c in PUE_CATS]
            + [("ERF", kpi_ratio("e_reuse_kwh", "e_dc_kwh")),
               *[(f"ERE {n}", f'SELECT (sum("last_e_dc_kwh") - sum("last_e_reuse_kwh")) / sum("last_e_it_cat{c}_kwh") FROM "rp_1h"."kpi" WHERE {SITE} AND resolution = \'daily\' AND $timeFilter') for n, c in PUE_CATS],
               ("heat delivered (MWh)", f'SELECT (sum("last_heat_cpcu_kwh") + sum("last_heat_greenhouse_kwh")) / 1000 FROM "rp_1h"."kpi" WHERE {SITE} AND resolution = \'daily\' AND $timeFilter'),
               ("completeness (PUE, mean of days)", f'SELECT mean("last_pue_completeness") FROM "rp_1h"."kpi" WHERE {SITE} AND resolution = \'daily\' AND $timeFilter')],
            decimals=2, w=8, time_from=frm, time_shift=shift,
            desc="From the daily kpi points: ratios of the summed energies (energy based)."))  # fmt: skip
    return out


def greenhouses() -> list[dict[str, Any]]:
    zone = "zone =~ /^$zone$/"
    return [
        panel("timeseries", "Air temperature", "celsius", [("$tag_zone", per("mean", "greenhouse", "air_temp_c", "zone", zone))],
              thresholds=[("blue", None), ("green", 16), ("orange", 28), ("red", 32)]),
        panel("timeseries", "Humidity", "humidity", [("$tag_zone", per("mean", "greenhouse", "humidity_pct", "zone", zone))],
              minv=0, maxv=100, decimals=0, thresholds=[("orange", None), ("green", 60), ("orange", 85), ("red", 95)]),
        panel("timeseries", "CO2", "ppm", [("$tag_zone", per("mean", "greenhouse", "co2_ppm", "zone", zone))],
              decimals=0, minv=0, thresholds=[("green", None), ("orange", 1200), ("red", 1500)]),
        panel("timeseries", "Heat received", "kwatt",
              [("$tag_device", per("mean", "heat_meter", "heat_power_w", "device", "role = 'heat_export_greenhouse'", " / 1000"))], minv=0),
        panel("timeseries", "Heat received per day", "kwatth",
              [("heat", kpi("heat_greenhouse_kwh", "daily")), ("completeness", kpi("heat_greenhouse_kwh_completeness", "daily"))],
              decimals=0, minv=0, overrides=[right_axis("completeness", "percentunit", 2)]),
        contract_panel("Supply and return against the contract", "greenhouse",
                       "heat_export_greenhouse"),
    ]  # fmt: skip


def collector_health() -> list[dict[str, Any]]:
    return [
        panel("stat", "Devices down now", "none", [("devices down", DOWN_NOW)], decimals=0, w=6,
              thresholds=[("green", None), ("red", 1)], desc="Devices whose last poll (10 min) failed."),
        panel("table", "Devices down: last error", "none",
              [("", f"SELECT last(up) AS up, last(error) AS error, last(protocol) AS p FROM (SELECT up, error, protocol FROM dcim_poll WHERE {SITE} AND {DEVICE} AND time > now() - 10m) GROUP BY device")],
              fmt="table", decimals=0, w=18,
              transformations=[{"id": "filterByValue", "options": {"type": "include", "match": "any", "filters": [{"fieldName": "up", "config": {"id": "equal", "options": {"value": 0}}}]}},
                               {"id": "organize", "options": {"excludeByName": {"Time": True, "p": True}}}]),
        panel("timeseries", "Devices down", "none", [("devices down", DOWN)], decimals=0, minv=0,
              thresholds=[("green", None), ("red", 1)]),
        panel("timeseries", "Poll lateness (worst per protocol)", "s",
              [("$tag_protocol", per("max", "dcim_poll", "late_s", "protocol", DEVICE))],
              decimals=2, minv=0, thresholds=[("green", None), ("orange", 1), ("red", 5)]),
        panel("timeseries", "Poll duration (worst per protocol)", "s",
              [("$tag_protocol", per("max", "dcim_poll", "duration_s", "protocol", DEVICE))],
              decimals=2, minv=0),
        panel("timeseries", "Spool use", "percent", [("used", per("max", "dcim_spool", "used_pct", "site"))],
              minv=0, maxv=100, thresholds=[("green", None), ("orange", 80), ("red", 95)]),
        panel("timeseries", "Forwarder lag", "s",
              [("lag (oldest reading not yet in the database)", per("max", "dcim_spool", "forward_lag_s", "site")),
               ("readings waiting", per("max", "dcim_spool", "pending", "site"))],
              decimals=0, minv=0, thresholds=[("green", None), ("orange", 60), ("red", 600)],
              overrides=[right_axis("readings waiting", "short", 0)],
              desc="Age of the oldest reading the forwarder is delivering (0: the spool is "
              "drained; it grows through a database outage) and the readings waiting in the "
              "spool, worst per interval."),
        panel("timeseries", "Quarantine and refused readings", "short",
              [("quarantined", per("max", "dcim_spool", "quarantined", "site")),
               ("refused (spool full)", per("max", "dcim_spool", "refused_total", "site")),
               ("dropped (spool full)", per("max", "dcim_spool", "dropped_total", "site"))],
              decimals=0, minv=0, thresholds=[("green", None), ("red", 1)],
              desc="Quarantined: readings the database refused for good (dcim quarantine)."),
    ]  # fmt: skip


# -- dashboards -----------------------------------------------------------------------------------


def _var_query(name: str, q: str, *, multi: bool = True, label: str = "") -> dict[str, Any]:
    return {
        "name": name,
        "label": label or name,
        "type": "query",
        "datasource": DS,
        "query": q,
        "refresh": 2,
        "sort": 1,
        "multi": multi,
        "includeAll": multi,
        "allValue": ".*" if multi else None,
        "current": {"text": "All", "value": "$__all"} if multi else {},
        "options": [],
        "hide": 0,
    }


def variables(extra: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {
            "name": "datasource",
            "label": "InfluxDB",
            "type": "datasource",
            "query": "influxdb",
            "current": {},
            "hide": 0,
            "options": [],
            "refresh": 1,
        },  # fmt: skip
        _var_query("site", 'SHOW TAG VALUES FROM "dcim_poll" WITH KEY = "site"', multi=False),
    ]
    q = {
        "room": f'SHOW TAG VALUES WITH KEY = "room" WHERE {SITE}',
        "rack": f'SHOW TAG VALUES WITH KEY = "rack" WHERE {SITE} AND {ROOM}',
        "device": f'SHOW TAG VALUES WITH KEY = "device" WHERE {SITE} AND {ROOM} AND {RACK}',
        "zone": f'SHOW TAG VALUES FROM "greenhouse" WITH KEY = "zone" WHERE {SITE}',
    }
    for name in extra:
        if name in CONTRACT_LABELS:
            value = next(str(v) for pair in CONTRACT.values() for n, v in pair if n == name)
            out.append({"name": name, "label": CONTRACT_LABELS[name], "type": "textbox",
                        "query": value, "current": {"text": value, "value": value},
                        "options": [], "hide": 0})  # fmt: skip
        elif name == "pdu_rating_a":
            out.append({"name": name, "label": "PDU rating (A)", "type": "custom",
                        "query": "16,32,63", "current": {"text": "16", "value": "16"},
                        "options": [], "hide": 0, "multi": False, "includeAll": False})  # fmt: skip
        else:
            out.append(_var_query(name, q[name]))
    return out


def layout(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ids 1.. and positions: left to right, rows as tall as their tallest panel."""
    x = y = row_h = 0
    for i, p in enumerate(panels):
        gp = p["gridPos"]
        if x + gp["w"] > 24:
            x, y, row_h = 0, y + row_h, 0
        gp["x"], gp["y"] = x, y
        x += gp["w"]
        row_h = max(row_h, gp["h"])
        p["id"] = i + 1
    return panels


def dashboard(
    title: str, uid: str, panels: list[dict[str, Any]], extra_vars: list[str], time_from: str
) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": f"dcim-heat: {title} (built by dashboards/build.py)",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "graphTooltip": 1,
        "timezone": "browser",
        "time": {"from": time_from, "to": "now"},
        "refresh": "1m",
        "tags": ["dcim"],
        "links": [
            {
                "title": "DCIM",
                "type": "dashboards",
                "tags": ["dcim"],
                "asDropdown": True,
                "includeVars": True,
                "keepTime": True,
                "icon": "external link",
                "targetBlank": False,
            },
        ],  # fmt: skip
        "annotations": {"list": []},
        "templating": {"list": variables(extra_vars)},
        "panels": layout(panels),
    }


DASHBOARDS: list[tuple[str, str, str, Callable[[], list[dict[str, Any]]], list[str], str]] = [
    ("site-overview.json", "DCIM site overview", "dcim-site-overview", site_overview, [], "now-24h"),
    ("power-chain.json", "DCIM power chain", "dcim-power-chain", power_chain,
     ["room", "rack", "device", "pdu_rating_a"], "now-24h"),
    ("thermal.json", "DCIM thermal", "dcim-thermal", thermal, ["room", "rack", "device"], "now-24h"),
    ("heat-recovery.json", "DCIM heat recovery", "dcim-heat-recovery", heat_recovery,
     ["cpcu_supply_min_c", "cpcu_return_max_c", "greenhouse_supply_min_c",
      "greenhouse_return_max_c"], "now-7d"),
    ("energy-kpis.json", "DCIM energy KPIs", "dcim-energy-kpis", energy_kpis, [], "now-90d"),
    ("greenhouses.json", "DCIM greenhouses", "dcim-greenhouses", greenhouses,
     ["zone", "greenhouse_supply_min_c", "greenhouse_return_max_c"], "now-7d"),
    ("collector-health.json", "DCIM collector health", "dcim-collector-health", collector_health,
     ["device"], "now-24h"),
]  # fmt: skip


def build() -> dict[str, dict[str, Any]]:
    return {
        name: dashboard(title, uid, make(), extra, frm)
        for name, title, uid, make, extra, frm in DASHBOARDS
    }


if __name__ == "__main__":
    for name, doc in build().items():
        (HERE / name).write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote dashboards/{name} ({len(doc['panels'])} panels)")
