"""Does the collector keep up with the full reference site at 10 s intervals?

Starts the twin of the whole Porte de la Chapelle site (``dcim twin serve``, a separate
process, as real devices are) and the collector (in this process, as ``dcim demo`` runs it)
on the embedded store, for --seconds, then prints from the stored health readings:
poll cycles run against cycles due (the reference: one per device per interval), poll-start
delay p50/p99/max, polls over their deadline, and the collector's CPU share of one core.

    python benchmarks/demo_cadence.py [--seconds 120] [--interval 10] [--racks 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from dcim.config import SiteConfig
from dcim.reading import Reading
from dcim.runtime import Collector
from dcim.twin.ports import free_port, free_ports
from dcim.twin.site import paris_chapelle

NS = 1_000_000_000


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def _collect(
    cfg: SiteConfig, seconds: float, polls: list[Reading]
) -> tuple[float, float, int, int]:
    """Runs the collector; returns CPU s, wall s, and the UNIX ns its scheduler started and
    was stopped at."""
    col = Collector(cfg)
    accept = col.pipeline.accept

    def tap(readings: list[Reading]) -> int:
        polls.extend(r for r in readings if r.measurement == "dcim_poll")
        return accept(readings)

    col.pipeline.accept = tap  # type: ignore[method-assign]
    cpu0, t0 = _cpu(), time.monotonic()
    await col.start()
    started = time.time_ns()
    await asyncio.sleep(seconds)
    stopped = time.time_ns()
    await col.stop()
    return _cpu() - cpu0, time.monotonic() - t0, started, stopped


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--interval", type=float, default=10)
    ap.add_argument("--racks", type=int, default=30)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dcim-bench-"))
    doc = paris_chapelle(
        racks=a.racks,
        interval_s=a.interval,
        snmp_base_port=free_ports(2 + 12 * a.racks, kind=socket.SOCK_DGRAM),
        modbus_base_port=free_ports(20),
        mqtt_port=free_port(),
        spool_dir=str(work / "spool"),
        sink={"type": "embedded", "path": str(work / "bench.sqlite")},
    )
    path = work / "site.yaml"
    path.write_text(yaml.safe_dump(doc))
    cfg = SiteConfig.model_validate(doc)
    twin = subprocess.Popen(
        [sys.executable, "-m", "dcim.cli", "twin", "serve", str(path), "--embedded-broker"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert twin.stdout is not None
        line = twin.stdout.readline()
        if "twin serving" not in line:
            print("the twin did not start (see above)", file=sys.stderr)
            return 1
        polls: list[Reading] = []
        cpu, wall, start_ns, stop_ns = asyncio.run(_collect(cfg, a.seconds, polls))
    finally:
        twin.terminate()
        twin.wait(10)

    # A whole number of intervals, from two intervals after the start (the first polls are
    # spread over one) to one before the stop: each device is due exactly once per interval.
    step = int(a.interval * NS)
    w0 = start_ns + 2 * step
    w1 = w0 + (stop_ns - step - w0) // step * step
    polled = [d for d in cfg.devices if d.protocol != "mqtt"]
    names = {d.name for d in polled}  # MQTT devices have dcim_poll rows too (per interval)
    window = [r for r in polls if w0 <= r.time_ns < w1 and r.tags["device"] in names]
    done = sum(1 for r in window if r.fields.get("error") != "missed")
    due = len(polled) * (w1 - w0) / step
    lates = sorted(float(r.fields.get("late_s", 0.0)) for r in window)
    errors = sum(1 for r in window if not r.fields.get("up"))

    def pct(p: float) -> float:
        return lates[min(len(lates) - 1, int(p * len(lates)))] if lates else float("nan")

    print(
        f"site: {len(cfg.devices)} devices ({len(polled)} polled) "
        f"at {a.interval:g} s, {wall:.0f} s run"
    )
    print(
        f"poll cycles run / due:   {done:.0f} / {due:.0f}  ratio {done / due:.3f}  (target >= 0.99)"
    )
    print(
        f"poll-start delay:        p50 {pct(0.5) * 1000:.1f} ms  p99 {pct(0.99) * 1000:.1f} ms  "
        f"max {lates[-1] * 1000 if lates else float('nan'):.1f} ms  "
        f"(interval {a.interval * 1000:.0f} ms)"
    )
    print(f"failed polls:            {errors}")
    print(
        f"collector CPU:           {cpu:.1f} s over {wall:.0f} s "
        f"= {100 * cpu / wall:.1f} % of one core"
    )
    return 0 if done / due >= 0.99 else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
