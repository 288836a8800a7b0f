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
import sys
import time
from typing import Any

from harness import cpu_self, pct, site_doc, twin, work_dir

from dcim.config import SiteConfig
from dcim.reading import Reading
from dcim.runtime import Collector

NS = 1_000_000_000


async def _collect(
    cfg: SiteConfig, seconds: float, polls: list[Reading]
) -> tuple[float, float, int, int]:
    """Runs the collector; returns CPU s, wall s, and the UNIX ns its scheduler started and
    was stopped at."""
    col = Collector(cfg)
    accept = col.pipeline.accept

    def tap(readings: list[Reading], **kw: Any) -> int:
        # the same keywords as the pipeline's own (the MQTT path passes hold=True)
        polls.extend(r for r in readings if r.measurement == "dcim_poll")
        return accept(readings, **kw)

    # Polled readings reach the pipeline through the committer's thread (which took the
    # pipeline's bound method when the collector was built), pushed ones (MQTT) straight
    # through pipeline.accept(hold=True): both are tapped.
    col.pipeline.accept = tap  # type: ignore[method-assign]
    col.committer._commit = tap  # noqa: SLF001 - no public hook for this
    cpu0, t0 = cpu_self(), time.monotonic()
    await col.start()
    started = time.time_ns()
    await asyncio.sleep(seconds)
    stopped = time.time_ns()
    await col.stop()
    return cpu_self() - cpu0, time.monotonic() - t0, started, stopped


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--interval", type=float, default=10)
    ap.add_argument("--racks", type=int, default=30)
    a = ap.parse_args()
    work = work_dir("dcim-bench-")
    doc = site_doc(work, racks=a.racks, interval_s=a.interval)
    cfg = SiteConfig.model_validate(doc)
    polls: list[Reading] = []
    with twin(doc, work, embedded_broker=True):
        cpu, wall, start_ns, stop_ns = asyncio.run(_collect(cfg, a.seconds, polls))

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

    print(
        f"site: {len(cfg.devices)} devices ({len(polled)} polled) "
        f"at {a.interval:g} s, {wall:.0f} s run"
    )
    print(
        f"poll cycles run / due:   {done:.0f} / {due:.0f}  ratio {done / due:.3f}  (target >= 0.99)"
    )
    print(
        f"poll-start delay:        p50 {pct(lates, 0.5) * 1000:.1f} ms  "
        f"p99 {pct(lates, 0.99) * 1000:.1f} ms  "
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
