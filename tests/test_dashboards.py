"""The dashboards: built by dashboards/build.py, checked against grafana-foundation-sdk's
dashboard model, every query checked to read fields of the unit its series is shown in, and
every query of every panel run against a real InfluxDB holding the reference site's data
(Grafana itself is not available here), over 6 h, 7, 30 and 90 days and a year, with Grafana's
macros substituted as Grafana would (``now()``: the time the data ends). Every series (each
alias, its four resolutions together) must have values in each range, save the gaps the
reference site must show (``not_metered``).

The data (dcim.testing.dashdata, written in 114-162 s on the shared 2-core machine at load
average 4-9, hence slow; the whole module 128-182 s): the reference site's device mix at its
10 s interval (4 racks of 3 servers: 47 devices, every kind the twin simulates); raw points
for the last 7 h; rp_1m for the last 2 days; rp_1h and rp_1d for the last 400 days
(devices), written directly as the CQs write them; the collector's dcim_poll/dcim_spool rows
and one rack probe per rack (raw 7 h, rollups 100 days), ups-b down for the last 2 h; kpi
points computed by dcim.kpi.series over that data (hourly for the last 6 h, daily for the
last 10 days and the 1st of each of the 13 months before).
Printed: every panel's query time, series and units per range, slowest first."""

from __future__ import annotations

import importlib.util
import json
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

from dcim.config import SiteConfig
from dcim.testing import dashdata
from dcim.testing.servers import InfluxServer
from dcim.twin.site import paris_chapelle

DASH = Path(__file__).resolve().parent.parent / "dashboards"
# the four ranges, and 30 days: the one that reads rp_1h (90 days is a 2 h interval)
RANGES = {
    "6h": 6 * 3600,
    "7d": 7 * 86400,
    "30d": 30 * 86400,
    "90d": 90 * 86400,
    "1y": 365 * 86400,
}
UNITS = {"kwatt", "kwatth", "celsius", "percent", "percentunit", "humidity", "ppm", "amp", "m",
         "s", "none", "short", "bool_yes_no"}  # fmt: skip
# Grafana's rounding of range / max data points to an interval (kbn.roundInterval, in
# @grafana/data's rangeutil), in ms: (below this, that interval).
_ROUND = [(15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1500, 1000),
          (3500, 2000), (7500, 5000), (12500, 10000), (17500, 15000), (25000, 20000),
          (45000, 30000), (90000, 60000), (210000, 120000), (450000, 300000),
          (750000, 600000), (1050000, 900000), (1500000, 1200000), (2700000, 1800000),
          (5400000, 3600000), (9000000, 7200000), (16200000, 10800000),
          (32400000, 21600000), (86400000, 43200000), (604800000, 86400000),
          (1814400000, 604800000), (3628800000, 2592000000)]  # fmt: skip


def build_module() -> Any:
    spec = importlib.util.spec_from_file_location("dash_build", DASH / "build.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def build() -> dict[str, dict[str, Any]]:
    return build_module().build()  # type: ignore[no-any-return]


def interval_ms(range_s: float, max_points: int, min_s: float) -> int:
    raw = range_s * 1000 / max_points
    got = next((r for lim, r in _ROUND if raw < lim), 31536000000)
    return max(got, int(min_s * 1000))


def _duration_s(text: str) -> int:
    n, u = int(text[:-1]), text[-1]
    return n * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}[u]


def panel_range(p: dict[str, Any], now_s: int, range_s: int, tz: str) -> tuple[int, int]:
    """The panel's time range as Grafana makes it: the dashboard's, or the panel's relative
    time (``now/M``: this month so far) shifted by its time shift (``1M/M``: the whole
    previous month; ``1y``)."""
    frm, shift = p.get("timeFrom"), p.get("timeShift")
    if frm is None:
        return now_s - range_s, now_s
    assert frm == "now/M", frm
    zone = ZoneInfo(tz)
    now = datetime.fromtimestamp(now_s, zone)
    first = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if shift is None:
        return int(first.timestamp()), now_s
    if shift == "1M/M":
        y, m = (first.year, first.month - 1) if first.month > 1 else (first.year - 1, 12)
        prev = first.replace(year=y, month=m)
        return int(prev.timestamp()), int(first.timestamp())
    assert shift == "1y", shift
    return (
        int(first.replace(year=first.year - 1).timestamp()),
        int(now.replace(year=now.year - 1).timestamp()),
    )


def fixed_values(doc: dict[str, Any]) -> dict[str, str]:
    """The values a dashboard opens with of its text box and custom variables (the contract
    temperatures, the PDU rating)."""
    return {
        v["name"]: str(v["current"]["value"])
        for v in doc["templating"]["list"]
        if v["type"] in ("textbox", "custom", "constant")
    }


def substitute(
    q: str,
    start_s: int,
    end_s: int,
    ivl_ms: int,
    fixed: dict[str, str] | None = None,
    now_s: int | None = None,
) -> str:
    """Grafana's macros and this test's variable values (site; All for the query variables;
    the defaults of the others, ``fixed``); ``now()`` is the data's now (``now_s``, default
    ``end_s``): the dashboard looked at when the data ends, however long it took to write."""
    ivl = f"{ivl_ms // 1000}s" if ivl_ms % 1000 == 0 else f"{ivl_ms}ms"
    q = q.replace("now()", f"{end_s if now_s is None else now_s}s")
    for name in sorted(fixed or {}, key=len, reverse=True):
        q = q.replace(f"${name}", (fixed or {})[name])
    return (
        q.replace("$timeFilter", f"time >= {start_s}s AND time <= {end_s}s")
        .replace("${__from}", str(start_s * 1000))
        .replace("${__to}", str(end_s * 1000))
        .replace("$__interval_ms", str(ivl_ms))
        .replace("$__interval", ivl)
        .replace("$site", "paris-chapelle")
        .replace("$room", ".*")
        .replace("$rack", ".*")
        .replace("$device", ".*")
        .replace("$zone", ".*")
    )


def test_committed_dashboards_are_built_from_build_py() -> None:
    built = build()
    assert sorted(built) == sorted(p.name for p in DASH.glob("*.json"))
    for name, doc in built.items():
        assert json.loads((DASH / name).read_text()) == doc, (
            f"run: python dashboards/build.py ({name})"
        )


def _paths(x: Any, prefix: str = "") -> set[str]:
    if isinstance(x, dict):
        out = set()
        for k, v in x.items():
            out.add(f"{prefix}.{k}")
            if k not in ("options", "custom", "targets", "transformations", "current", "links"):
                out |= _paths(v, f"{prefix}.{k}")
        return out
    if isinstance(x, list):
        return set().union(*(_paths(v, prefix + "[]") for v in x)) if x else set()
    return set()


def test_dashboards_fit_the_sdk_schema_ids_unique_datasource_a_variable() -> None:
    uids: set[str] = set()
    for name, doc in build().items():
        assert doc["uid"] not in uids, name
        uids.add(doc["uid"])
        model = Dashboard.from_json(doc)
        back = json.loads(json.dumps(model, cls=JSONEncoder))
        # allValue: Grafana's (".*" for All, so devices without a room tag match too); the
        # SDK's 10.4 variable model does not carry it
        lost = sorted(_paths(doc) - _paths(back) - {".templating.list[].allValue"})
        assert not lost, f"{name}: keys the schema does not know: {lost}"
        ids = [p["id"] for p in doc["panels"]]
        assert len(ids) == len(set(ids)), name
        names = [v["name"] for v in doc["templating"]["list"]]
        assert names[:2] == ["datasource", "site"], name
        for v in doc["templating"]["list"]:
            if v["type"] == "query":
                assert v["datasource"] == {"type": "influxdb", "uid": "${datasource}"}
        for p in doc["panels"]:
            refs = [t["refId"] for t in p.get("targets", [])]
            assert len(refs) == len(set(refs)), (name, p["title"])
            if p["type"] == "alertlist":
                continue
            assert p["datasource"] == {"type": "influxdb", "uid": "${datasource}"}
            assert all(t["datasource"] == p["datasource"] for t in p["targets"])
            d = p["fieldConfig"]["defaults"]
            assert d["unit"] in UNITS and isinstance(d["decimals"], int), (name, p["title"])
            for t in p["targets"]:
                for var in re.findall(r"\$(\w+)", t["query"]):
                    assert var in names or var in ("timeFilter", "__interval", "__interval_ms")
                for var in re.findall(r"\$\{(\w+)\}", t["query"]):
                    assert var in names or var in ("__from", "__to"), var
                    assert var not in ("tag_device",)  # tags go in aliases, not queries
    assert len(uids) == 7
    overview = build()["site-overview.json"]
    linked = {
        lk["url"].split("?")[0].removeprefix("/d/")
        for p in overview["panels"]
        for lk in p.get("links", [])
    }
    assert linked == uids - {"dcim-site-overview"}  # every detail dashboard is one click away


@pytest.fixture(scope="module")
def dash_db(influxdb: InfluxServer) -> tuple[InfluxServer, SiteConfig, int]:
    now_s = int(time.time())
    doc = paris_chapelle(
        racks=4,
        servers_per_rack=3,
        spool_dir="/nonexistent/spool",
        sink={"type": "influxdb", "url": influxdb.url, "database": "dashboards"},
    )
    cfg = SiteConfig.model_validate(doc)
    held = dashdata.write(influxdb.url, cfg, dashdata.Plan(now_s=now_s))
    print(f"\ntest data: {held.describe()}")
    return influxdb, cfg, now_s


# What a query must read for the unit its series is shown in: a field of that unit (by the
# canonical names' suffixes), kW and kWh from watts divided by 1000.
UNIT_FIELDS = {
    "celsius": r"_c\b",
    "kwatt": r"_w\b",
    "kwatth": r"_kwh\b|_w\b",
    "percent": r"_pct\b|current_a\b",
    "humidity": r"humidity_pct\b",
    "ppm": r"_ppm\b",
    "amp": r"_a\b",
    "m": r"_min\b",
    "s": r"_s\b",
    "percentunit": r"_completeness\b",
    "bool_yes_no": r"on_battery\b",
    "short": r"pending\b|quarantined\b|_total\b",
}


# Series that are gaps at the reference site, as they must be: no meter at the IT equipment
# input (PUE category 3), and PDU registers too coarse for an hour's energy (category 2
# hourly; the KPI refuses it, its daily figure is there).
def not_metered(title: str, alias: str) -> bool:
    return bool(
        re.match(r"(PUE|ERE) cat\. 3\b", alias)
        or (alias == "PUE cat. 2" and title.endswith("hourly"))
    )


def target_unit(p: dict[str, Any], alias: str) -> str:
    """The unit a target's series is shown in: its override's (by alias), else the panel's."""
    unit = str(p["fieldConfig"]["defaults"]["unit"])
    for o in p["fieldConfig"]["overrides"]:
        if o["matcher"]["id"] == "byRegexp" and re.fullmatch(o["matcher"]["options"], alias):
            unit = next((str(x["value"]) for x in o["properties"] if x["id"] == "unit"), unit)
    return unit


def test_every_query_reads_fields_of_its_unit() -> None:
    for name, doc in build().items():
        for p in doc["panels"]:
            for t in p.get("targets", []):
                unit = target_unit(p, t["alias"])
                want = UNIT_FIELDS.get(unit)
                if want is None:  # ratios (none): PUE, COP, devices down
                    assert unit == "none", (name, p["title"], unit)
                    continue
                q = t["query"]
                assert re.search(want, q), (name, p["title"], t["alias"], unit)
                if unit == "kwatt" or (unit == "kwatth" and "_kwh" not in q):
                    assert "/ 1000" in q, (name, p["title"], t["alias"])  # W, Wh -> kW, kWh
                if unit == "percent" and "_pct" not in q:
                    assert "* 100" in q, (name, p["title"], t["alias"])  # of the PDU rating


@pytest.mark.slow
def test_every_panel_query_returns_data_over_6h_7d_90d_1y(
    dash_db: tuple[InfluxServer, SiteConfig, int],
) -> None:
    """Every series of every panel (each alias: the three resolutions' targets together) has
    values over each range; printed per panel and range: time, series, units."""
    influxdb, cfg, now_s = dash_db
    tz = cfg.site.timezone
    rows: list[tuple[float, str, str, str, int, str]] = []
    problems: list[str] = []
    for name, doc in build().items():
        fixed = fixed_values(doc)
        for p in doc["panels"]:
            if p["type"] == "alertlist":  # no query: Grafana's own alert list
                continue
            units = ",".join(sorted({target_unit(p, t["alias"]) for t in p["targets"]}))
            for rng, secs in RANGES.items():
                start, end = panel_range(p, now_s, secs, tz)
                ivl = interval_ms(end - start, p["maxDataPoints"], _duration_s(p["interval"]))
                series, t_panel = 0, 0.0
                by_alias: dict[str, int] = {}
                for t in p["targets"]:
                    q = substitute(t["query"], start, end, ivl, fixed, now_s)
                    t0 = time.perf_counter()
                    res = influxdb.query(q, db="dashboards")["results"][0]
                    t_panel += time.perf_counter() - t0
                    if "error" in res:
                        problems.append(f"{name} / {p['title']} [{rng}]: {res['error']}: {q}")
                        continue
                    n = sum(
                        1
                        for s in res.get("series", [])
                        for row in s["values"]
                        for v in row[1:]
                        if v is not None
                    )
                    series += len(res.get("series", []))
                    by_alias[t["alias"]] = by_alias.get(t["alias"], 0) + n
                empty = [
                    a or "(table)"
                    for a, n in by_alias.items()
                    if n == 0 and not not_metered(p["title"], a)
                ]
                if empty:
                    problems.append(f"{name} / {p['title']} [{rng}]: no data for {empty}")
                rows.append((t_panel * 1000, name, p["title"], rng, series, units))
    print(f"\n{'ms':>8}  {'range':<5} {'series':>6}  {'unit':<22} dashboard / panel")
    for ms, name, title, rng, series, units in sorted(rows, reverse=True):
        print(f"{ms:8.1f}  {rng:<5} {series:>6}  {units:<22} {name} / {title}")
    assert not problems, "\n".join(problems)


def _policy(q: str) -> str:
    return next((rp for rp in ("rp_1m", "rp_1h", "rp_1d") if f'"{rp}"' in q), "raw")


def test_resolution_gates_pick_one_policy_per_range() -> None:
    """Exactly one of a query's four targets can read: raw under 1 min, rp_1m up to 10 min,
    rp_1h up to 1 h, rp_1d above; the ranges of the test fall on raw (6 h: 20 s), rp_1m (7 d:
    10 min), rp_1h (30 d: 30 min), rp_1d (90 d: 2 h; a year: 6 h). Every interval Grafana
    can pick (its rounding's steps, 10 s to a month) opens one gate."""
    doc = build()["site-overview.json"]
    p = next(p for p in doc["panels"] if p["title"] == "Power flow")
    gated = [t for t in p["targets"] if "$__interval_ms" in t["query"]]
    assert [_policy(t["query"]) for t in gated[:4]] == ["raw", "rp_1m", "rp_1h", "rp_1d"]

    def live(ivl: int) -> list[str]:
        out = []
        for t in gated[:4]:
            gate = re.findall(r"\$__interval_ms ([<>=]+) (\d+)", t["query"])
            ok = all(
                {"<": ivl < int(v), "<=": ivl <= int(v), ">=": ivl >= int(v), ">": ivl > int(v)}[op]
                for op, v in gate
            )
            if ok:
                out.append(t["query"])
        return out

    for _, ivl in _ROUND:
        if ivl >= 10000:
            assert len(live(ivl)) == 1, ivl
    seen = []
    for secs in RANGES.values():
        ivl = interval_ms(secs, p["maxDataPoints"], 10)
        got = live(ivl)
        assert len(got) == 1, (secs, ivl)
        seen.append(_policy(got[0]))
    assert seen == ["raw", "rp_1m", "rp_1h", "rp_1d", "rp_1d"]
    # a year: 365 daily points per series, where hourly ones would be 8,760 for 1,000 pixels
    assert interval_ms(RANGES["1y"], p["maxDataPoints"], 10) > 3600 * 1000


@pytest.mark.slow
def test_energy_over_a_day_the_same_from_each_rollup(
    dash_db: tuple[InfluxServer, SiteConfig, int],
) -> None:
    """The energy of the IT (UPS output) meters over yesterday (UTC) read as the Energy
    panels read it from rp_1m, rp_1h and rp_1d (each target's gate lifted): the same kWh, each
    window's mean power times its length (the twin sampled every 10 s for rp_1m, 10 min for
    the others: within 1 %)."""
    influxdb, _, now_s = dash_db
    mod = build_module()
    tmpl = mod.role_energy("energy_meter", "power_w", "ups_output")
    day = now_s // 86400 * 86400 - 86400
    got = {}
    for level in (1, 2, 3):
        q = mod.level_query(tmpl, level).replace(mod.LEVELS[level][1], "1 = 1")
        q = substitute(q, day, day + 86399, 60000)
        res = influxdb.query(q, db="dashboards")["results"][0]
        got[mod.LEVELS[level][0]] = res["series"][0]["values"][0][1]
    kwh = list(got.values())
    assert kwh[0] > 0 and kwh[1] == pytest.approx(kwh[0], rel=0.01), got
    assert kwh[2] == pytest.approx(kwh[1], rel=1e-9), got  # the same samples, by day


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        ("max", "server", "inlet_temp_c", "device"),  # read as stored
        ("mean", "server", "inlet_temp_c", "room"),  # aggregated in a subquery
        ("max", "server", "inlet_temp_c", "rack"),
        ("max", "dcim_poll", "late_s", "protocol"),
        ("mean", "ups", "output_power_w", "device", "", " / 1000"),
    ],
)
def test_rollup_reads_the_same_as_grouped_windows(
    dash_db: tuple[InfluxServer, SiteConfig, int], args: tuple[str, ...]
) -> None:
    """From rp_1h and rp_1d the per-series panels read the rollup points as stored (by device)
    or aggregate them in a subquery (across devices), not through InfluxDB's per-series
    windows (benchmarks/dashboards.py: 3-4 times less CPU by device over a year at the
    reference size): the same series, times and values as ``fn`` per window would give, over
    the range and interval each policy serves (7 d at 10 min and 90 d at 1 h for rp_1h, a year
    at 6 h for rp_1d)."""
    influxdb, _, now_s = dash_db
    mod = build_module()
    tmpls = mod.per(*args)
    grouped, rolled = tmpls[0], tmpls[2]
    assert grouped != rolled
    for level, days, ivl in ((2, 7, 600000), (2, 90, 3600000), (3, 365, 21600000)):
        out = []
        for tmpl in (grouped, rolled):
            q = mod.level_query(tmpl, level).replace(mod.LEVELS[level][1], "1 = 1")
            res = influxdb.query(substitute(q, now_s - days * 86400, now_s, ivl), "dashboards")
            assert "error" not in res["results"][0], (res, q)
            out.append(
                {
                    json.dumps(s.get("tags"), sort_keys=True): [
                        [r[0], round(r[1], 9)] for r in s["values"]
                    ]
                    for s in res["results"][0].get("series", [])
                }
            )
        assert out[0] and all(out[0].values()), (args, level, days)
        assert out[1] == out[0], (args, level, days)
