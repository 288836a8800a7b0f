"""Dashboards: every panel's queries over one year on InfluxDB, as Grafana sends them (the
resolution gates pick rp_1h), the slowest panel against the 300 ms goal, next to the same
panel read from the raw points (its raw target with the gate lifted) over the raw points the
database holds, and that time scaled to a year.

The data (dcim.testing.dashdata): the reference site (``--racks``, ``--servers-per-rack``;
every device kind the twin simulates), raw points every 10 s for the last ``--raw-hours``,
rp_1m for the last 2 days, rp_1h for the last 400 days, written directly as the continuous
queries write them (the setup is not what is measured).

    .venv/bin/python benchmarks/dashboards.py [--racks 30] [--servers-per-rack 10]
        [--raw-hours 24] [--keep DIR]

Needs ``influxd`` (Debian ``influxdb``) and the twin extra (numpy).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from dcim.config import SiteConfig
from dcim.testing import dashdata
from dcim.testing.servers import InfluxServer, start_influxdb
from dcim.twin.site import paris_chapelle

ROOT = Path(__file__).resolve().parent.parent
GOAL_MS = 300.0
YEAR_S = 365 * 86400


def _load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# Grafana's interval rounding, panel time ranges and macro substitution, as the tests do them
# (loaded by path: tests/ on sys.path would shadow the collectors package)
_T = _load("dash_test", ROOT / "tests" / "test_dashboards.py")
interval_ms, panel_range, substitute = _T.interval_ms, _T.panel_range, _T.substitute


def build() -> dict[str, dict[str, Any]]:
    return _load("dash_build", ROOT / "dashboards" / "build.py").build()  # type: ignore[no-any-return]


def run(influx: InfluxServer, db: str, queries: list[str], repeat: int = 3) -> tuple[float, int]:
    """Best wall time (ms) of running ``queries`` one after the other, and the values read."""
    best, values = math.inf, 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        values = 0
        for q in queries:
            res = influx.query(q, db=db)["results"][0]
            assert "error" not in res, (res["error"], q)
            values += sum(1 for s in res.get("series", []) for row in s["values"] for v in row[1:])
        best = min(best, (time.perf_counter() - t0) * 1000)
    return best, values


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--racks", type=int, default=30)
    ap.add_argument("--servers-per-rack", type=int, default=10)
    ap.add_argument("--raw-hours", type=int, default=24)
    ap.add_argument("--keep", type=Path, help="keep the InfluxDB data directory here")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="dcim-bench-dash-"))
    influx = start_influxdb(work / "influxdb")
    try:
        now_s = int(time.time())
        doc = paris_chapelle(
            racks=args.racks,
            servers_per_rack=args.servers_per_rack,
            spool_dir=str(work / "spool"),
            sink={"type": "influxdb", "url": influx.url, "database": "bench", "timeout_s": 600},
        )
        cfg = SiteConfig.model_validate(doc)
        plan = dashdata.Plan(
            now_s=now_s, raw_hours=args.raw_hours, kpi_hours=2, kpi_days=2, extra_days=400
        )
        held = dashdata.write(influx.url, cfg, plan)
        print(f"site: {len(cfg.devices)} devices; setup: {held.describe()}")
        tz = cfg.site.timezone
        rows = []
        for name, dash in build().items():
            for p in dash["panels"]:
                if p["type"] == "alertlist":
                    continue
                start, end = panel_range(p, now_s, YEAR_S, tz)
                ivl = interval_ms(end - start, p["maxDataPoints"], 10)
                qs = [substitute(t["query"], start, end, ivl) for t in p["targets"]]
                ms, n = run(influx, "bench", qs)
                rows.append((ms, n, name, p))
        rows.sort(key=lambda r: r[0], reverse=True)
        print("\none year, every panel as Grafana sends it (best of 3); slowest first:")
        print(f"{'ms':>8} {'values':>8}  dashboard / panel")
        for ms, n, name, p in rows[:10]:
            print(f"{ms:8.1f} {n:8d}  {name} / {p['title']}")
        ms, n, name, p = rows[0]
        # the same panel from the raw points: its raw target (the first of each series' three),
        # gate lifted, over the raw points held
        raw_qs = []
        start = now_s - args.raw_hours * 3600
        ivl = interval_ms(YEAR_S, p["maxDataPoints"], 10)
        for t in p["targets"]:
            q = t["query"]
            if "$__interval_ms < 60000" in q:
                q = q.replace("$__interval_ms < 60000", "1 = 1")
            elif "$__interval_ms" in q:
                continue
            raw_qs.append(substitute(q, start, now_s, ivl))
        raw_ms, raw_n = run(influx, "bench", raw_qs)
        scale = YEAR_S / (args.raw_hours * 3600)
        verdict = "met" if ms < GOAL_MS else "NOT met"
        print(f"\nslowest panel over one year: {name} / {p['title']}")
        print(
            f"  from the rollups (rp_1h):     {ms:8.1f} ms, {n} values "
            f"(goal < {GOAL_MS:.0f} ms: {verdict})"
        )
        print(f"  from the raw points, {args.raw_hours} h:   {raw_ms:8.1f} ms, {raw_n} values")
        print(f"  raw points scaled to a year: {raw_ms * scale:8.0f} ms "
              f"(x{scale:.0f}; raw is kept 30 days)")  # fmt: skip
        gated = sum(1 for t in p["targets"] if re.search(r"\$__interval_ms", t["query"]))
        print(f"  targets: {len(p['targets'])} ({gated} gated by resolution)")
    finally:
        influx.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
