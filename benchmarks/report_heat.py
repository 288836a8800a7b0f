"""The monthly heat-delivery statement: ``dcim report heat --month 2026-10`` (both delivery
points, PDF, CSV and JSON, rendering included) on the embedded store and on InfluxDB, over a
backfilled October of the reference site's two delivery-point heat meters at 10 s (with the
clock change, a six-hour collector outage and a meter swap: ``dcim/testing/heat_month.py``).
Goal: under 10 s per store. The backfill is the setup, not what is measured; InfluxDB gets
its rollups from the backfill as ``dcim twin backfill`` writes them. Printed per store: the
statement's time per delivery point (best of ``--repeat`` runs of both, halved), the time to
compute the figures alone, the queries, and the billed energy of each point (the two stores
must agree), with the machine's load average (the figures are wall times).

    .venv/bin/python benchmarks/report_heat.py [--repeat 3] [--stores embedded,influxdb]

Needs ``influxd`` (Debian ``influxdb``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from dcim.cli import main as dcim
from dcim.config import InfluxSink
from dcim.dbinit import init_sink
from dcim.reports.heat_statement import compute
from dcim.storage import make_store
from dcim.testing.heat_month import october
from dcim.testing.servers import start_influxdb

GOAL_S = 10.0


def bench(name: str, tmp: Path, sink: dict[str, object], repeat: int) -> dict[str, float]:
    t0 = time.perf_counter()
    month = october(tmp, sink)
    setup = time.perf_counter() - t0
    best = float("inf")
    for i in range(repeat):
        out = tmp / f"out{i}"
        t = time.perf_counter()
        rc = dcim(["report", "heat", str(month.config), "--month", "2026-10", "--out", str(out)])
        best = min(best, time.perf_counter() - t)
        assert rc == 0, f"dcim report heat failed on {name}"
    store = make_store(month.cfg.storage, read_only=True, owns_spool=False)
    try:
        assert month.cfg.reports.heat is not None
        t = time.perf_counter()
        docs = [compute(store, month.cfg, p, "2026-10") for p in month.cfg.reports.heat.points]
        figures = time.perf_counter() - t
    finally:
        store.close()
    energies = {d["point"]["name"]: d["totals"]["energy_mwh"] for d in docs}
    each = best / len(docs)
    verdict = "OK" if each < GOAL_S else "OVER"
    load = os.getloadavg()[0]
    print(f"{name:9s} setup {setup:6.1f} s | a statement, rendered: {each:5.2f} s "
          f"(goal < {GOAL_S:g} s: {verdict}) | figures alone {figures / len(docs):5.2f} s | "
          f"queries {sum(d['queries'] for d in docs)} | MWh {json.dumps(energies)} | "
          f"load average {load:.1f} on {os.cpu_count()} CPUs")  # fmt: skip
    return energies


def run() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--stores", default="embedded,influxdb")
    args = ap.parse_args()
    got: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-report-") as d:
        tmp = Path(d)
        for name in args.stores.split(","):
            where = tmp / name
            where.mkdir()
            if name == "embedded":
                sqlite = {"type": "embedded", "path": str(where / "s.sqlite")}
                got[name] = bench(name, where, sqlite, args.repeat)
                continue
            srv = start_influxdb(where / "influxdb")
            try:
                # raw points kept past October (the default 30 days would drop the backfill)
                sink = {"type": "influxdb", "url": srv.url, "database": "report_bench",
                        "retention_raw": "400d"}  # fmt: skip
                init_sink(InfluxSink.model_validate(sink))
                got[name] = bench(name, where, sink, args.repeat)
            finally:
                srv.stop()
    if len(got) == 2:
        a, b = got.values()
        worst = max(abs(a[k] - b[k]) / a[k] for k in a)
        print(f"stores agree on the billed energy within {worst:.2e} (relative)")
    return 0


if __name__ == "__main__":
    sys.exit(run())
