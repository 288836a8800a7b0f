"""Stop: how long ``dcim run`` takes to exit on SIGTERM with a large backlog in its spool,
against its bound (``storage.stop_timeout_s``, default 8 s, inside the 10 s ``docker stop``
waits before SIGKILL), and where the readings are then: forwarded to InfluxDB or left in the
spool, none lost.

A spool holding ``--backlog`` readings (default 300,000; shaped like the reference site's
PDUs, 10 float fields each, the last hours of 60 PDUs every 10 s: every hour late for the
continuous queries, so its rollups are due too) and a real InfluxDB 1.6.7 set up by
``dcim db init``; ``dcim run`` is started on it (a site without devices: only the backlog
moves), SIGTERM is sent once InfluxDB has its first points, and the time from the signal to
the process's exit is printed next to the bound. Then the readings are counted: in InfluxDB
(``COUNT`` of a field every reading has) and left in the spool; they must add up to the
backlog.

    .venv/bin/python benchmarks/stop.py [--backlog 300000] [--bound 8]

Needs ``influxd`` (Debian ``influxdb``); InfluxDB is started with the launcher in
``dcim.testing.servers``, the tests' own.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from ingest import influx_query, ten_field_readings  # noqa: E402  (benchmarks/ingest.py)

from dcim.config import InfluxSink
from dcim.dbinit import init_sink
from dcim.spool import Spool
from dcim.testing.servers import InfluxServer, start_influxdb  # noqa: E402

DB = "stop_bench"


def count_in_influx(srv: InfluxServer) -> int:
    s = influx_query(srv, 'SELECT COUNT("f0_w") FROM "pdu"', DB)
    return int(s[0]["values"][0][1]) if s else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backlog", type=int, default=300_000)
    ap.add_argument("--bound", type=float, default=8.0, help="storage.stop_timeout_s")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dcim-stop-"))
    srv = start_influxdb(work / "influxdb")
    try:
        sink = {"type": "influxdb", "url": srv.url, "database": DB}
        init_sink(InfluxSink.model_validate(sink))
        spool_dir = work / "spool"
        readings = ten_field_readings(args.backlog)
        t = time.perf_counter()
        with Spool(spool_dir) as sp:
            for i in range(0, len(readings), 600):  # a 10 s cycle of the 60 PDUs at a time
                sp.append(readings[i : i + 600])
            assert sp.pending() == args.backlog
        age_h = (time.time_ns() - readings[0].time_ns) / 3600e9
        print(
            f"backlog: {args.backlog:,} readings (10 fields each, the last {age_h:.1f} h) "
            f"spooled in {time.perf_counter() - t:.1f} s"
        )
        site = {
            "site": {"name": "stop-bench"},
            "storage": {"spool_dir": str(spool_dir), "sink": sink,
                        "stop_timeout_s": args.bound},
            "devices": [],
        }  # fmt: skip
        cfg = work / "site.yaml"
        cfg.write_text(yaml.safe_dump(site))
        dcim = Path(sys.executable).with_name("dcim")
        log = (work / "dcim.log").open("wb")
        proc = subprocess.Popen([str(dcim), "run", str(cfg)], stdout=log, stderr=subprocess.STDOUT)
        started = time.monotonic()
        while count_in_influx(srv) == 0:  # forwarding has begun
            if proc.poll() is not None or time.monotonic() - started > 60:
                print((work / "dcim.log").read_text())
                raise SystemExit("dcim run did not start forwarding")
            time.sleep(0.05)
        time.sleep(0.5)  # in the thick of the backlog
        t_sig = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)
        code = proc.wait(60)
        took = time.monotonic() - t_sig
        log.close()
        forwarded = count_in_influx(srv)
        with Spool(spool_dir) as sp:
            left = sp.pending()
            health = sum(1 for r in sp.peek(10**7).readings if r.measurement != "pdu")
        verdict = "within" if took <= args.bound else "OVER"
        print(
            f"SIGTERM -> exit (code {code}): {took:.2f} s, {verdict} the bound of "
            f"{args.bound:g} s (docker stop waits 10 s)"
        )
        print(
            f"readings: {forwarded:,} forwarded to InfluxDB, {left - health:,} left in the "
            f"spool (and {health} dcim_spool health readings): "
            f"{forwarded + left - health:,} of {args.backlog:,}"
            + (" - none lost" if forwarded + left - health == args.backlog else " - MISMATCH")
        )
        due = spool_dir / "influxdb-rollups-due.json"
        if due.exists():
            print(f"hours due for rollup kept for the next start: {due.read_text()[:200]}")
        tail = (work / "dcim.log").read_text().strip().splitlines()[-6:]
        print("dcim run's last log lines:\n  " + "\n  ".join(tail))
        return 0 if took <= args.bound and forwarded + left - health == args.backlog else 1
    finally:
        srv.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
