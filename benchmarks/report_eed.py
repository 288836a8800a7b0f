"""The yearly EU data-centre report (``dcim report eed``): a year of the reference site's
meters, backfilled by the twin (``dcim twin backfill``, the production write path), then the
whole command timed (KPI computation, TWH, JSON, CSV and the PDF) on the embedded store and on
a real InfluxDB 1.6.7. Goal: under 30 s per report.

Printed per store: the backfill's time and readings (setup, not measured against the goal),
then the report's wall time next to the goal, twice (the second run has warm caches, as a
second report on the same machine would).

    .venv/bin/python benchmarks/report_eed.py [--interval 900] [--racks 30] [--data DIR]
                                              [--stores embedded,influxdb]

``--interval``: the meters' poll interval in the backfill (900 s by default: a year at 10 s
takes an hour to generate here; the report's queries are per meter and per hour or per
period, so the interval changes the store's size, which the ``--interval 60`` figure shows).
``--data DIR`` keeps the stores and reuses them. Needs ``influxd`` (Debian ``influxdb``) and
the ``reports`` extra.

Figures on the 2-core development machine shared with six other sessions (2026-12-04), the
30-rack site's topology meters, 2025 at 900 s (backfill 647 s embedded, 997 s InfluxDB, not
part of the goal): the report on the embedded store 16.7 s and 13.9 s, on InfluxDB 8.9 s and
13.8 s, goal < 30 s; the two stores' figures identical.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from dcim.cli import main as dcim
from dcim.testing.servers import start_influxdb
from dcim.twin.site import paris_chapelle

GOAL_S = 30.0
YEAR = 2025


def site_file(folder: Path, sink: dict[str, Any], racks: int, interval: float) -> Path:
    doc = paris_chapelle(racks=racks, interval_s=interval, spool_dir=str(folder / "spool"),
                         sink=sink)  # fmt: skip
    path = folder / "site.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def quiet(argv: list[str]) -> tuple[int, float]:
    t = time.monotonic()
    with contextlib.redirect_stdout(io.StringIO()):
        rc = dcim(argv)
    return rc, time.monotonic() - t


def run(name: str, folder: Path, sink: dict[str, Any], args: argparse.Namespace) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    site = site_file(folder, sink, args.racks, args.interval)
    done = folder / "backfilled"
    if not done.exists():
        if sink["type"] == "influxdb":
            assert quiet(["db", "init", str(site)])[0] == 0
        rc, took = quiet(["twin", "backfill", str(site), "--from", f"{YEAR - 1}-12-31T21:00",
                          "--to", f"{YEAR + 1}-01-01T03:00"])  # fmt: skip
        assert rc == 0, f"backfill into {name} failed"
        done.write_text(f"{took:.1f}")
        print(f"{name}: backfilled {YEAR} every {args.interval:g} s in {took:.1f} s")
    else:
        print(f"{name}: reusing the year backfilled in {done.read_text()} s ({folder})")
    out = folder / "out"
    out.mkdir(exist_ok=True)
    for attempt in ("first", "second"):
        rc, took = quiet(["report", "eed", str(site), "--year", str(YEAR), "--out", str(out)])
        assert rc == 0, f"report on {name} failed"
        verdict = "OK" if took < GOAL_S else "OVER"
        print(f"{name}: dcim report eed --year {YEAR} ({attempt} run): {took:.1f} s "
              f"(goal < {GOAL_S:g} s: {verdict})")  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--interval", type=float, default=900.0)
    ap.add_argument("--racks", type=int, default=30)
    ap.add_argument("--stores", default="embedded,influxdb")
    ap.add_argument("--data", help="keep the stores here and reuse them")
    args = ap.parse_args()
    with contextlib.ExitStack() as stack:
        base = (
            Path(args.data)
            if args.data
            else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="eed-bench-")))
        )
        for name in args.stores.split(","):
            folder = base / name
            if name == "embedded":
                run(name, folder, {"type": "embedded", "path": str(folder / "y.sqlite")}, args)
            elif name == "influxdb":
                srv = start_influxdb(base / "influxd")
                stack.callback(srv.stop)
                # raw points and 1-minute rollups kept (the defaults, 30 and 400 days, refuse
                # a past year's backfill); the backfill writes the rollups as it would
                sink = {"type": "influxdb", "url": srv.url, "database": "eed",
                        "retention_raw": "INF", "retention_1m": "INF"}  # fmt: skip
                run(name, folder, sink, args)
            else:
                print(f"unknown store {name!r}", file=sys.stderr)
                return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
