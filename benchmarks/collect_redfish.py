"""The Redfish case of ``benchmarks/collect.py``: the collector's Redfish path against curl.

The reference site's 300 server BMCs are served over HTTPS by the twin's Redfish BMCs
(``python -m dcim.twin.serve_redfish``) in a child process, so its CPU is not counted.

1. The collector's path (``dcim.scheduler.Scheduler`` + ``collectors.redfish`` pollers +
   ``dcim.pipeline.Pipeline`` into a null spool, as the SNMP case) polls every BMC every
   ``--interval`` (30 s) for ``--seconds`` after a warm-up of one interval (the first polls
   log in and discover the URLs: a one-off). Printed: values/s, CPU µs per value, % of one
   core (this process's rusage), the poll-start p99 (``late_s``).
2. curl fetches, on the same BMCs, the resources one steady poll of the collector GETs
   (recorded from a poller), at the collector's pace (BMCs / interval processes a second,
   for ``--curl-seconds``): one ``curl`` process per BMC and poll, its URLs on one
   kept-alive connection, basic auth, ``--cacert`` the twin's CA; and ``curl --parallel``,
   one process per cycle fetching every BMC's URLs. Its CPU is the children's rusage,
   divided by the values the collector reads from the same resources (curl only fetches:
   parsing the JSON and building readings is extra work the collector does and curl not).

    .venv/bin/python benchmarks/collect.py --redfish [--redfish-seconds 90]
        [--redfish-interval 30] [--curl-seconds 60] [--curl-cycles 3]

Figures of two runs (2 shared cores, load average 3.4 from other work, Python 3.11,
aiohttp 3.14, curl 7.88 / OpenSSL 3.0; 300 BMCs at 30 s, 90 s measured): one poll is 6
GETs (EnvironmentMetrics, Fans, PowerSupplies and Sensors expanded, 2 PSU Metrics) and 28
values. Collector 120-127 µs per value, 3.4-3.6 % of a core, poll-start p99 5-35 ms, 0
failed polls (the twin 4 % of a core); curl, a process per BMC and poll, 374-396 µs per
value (the collector 0.32 x); curl --parallel, a process per cycle, 185-213 µs per value
(the collector 0.57-0.69 x). At 10 s (40 s measured, load average 3.1): collector 111 µs
per value, 9.4 % of a core, poll-start p99 52 ms, 0 failed; curl 395 and 208 µs. curl pays a TLS
handshake per BMC and poll (per process, and per host within one --parallel run), which the
collector's kept-alive connections and session do not; the collector also parses the JSON
and builds readings, which curl does not.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from harness import REFERENCE_RACKS, cpu_children, cpu_of, cpu_self, pct

from collectors.redfish.options import RedfishOptions
from collectors.redfish.poller import RedfishPoller
from dcim.config import Device, SiteConfig
from dcim.pipeline import Pipeline
from dcim.reading import Reading
from dcim.scheduler import Scheduler


class NullSpool:
    def __init__(self) -> None:
        self.readings = 0

    def append(self, readings: list[Reading]) -> None:
        self.readings += len(readings)


@dataclass
class Bmcs:
    ports: dict[str, int]
    ca: str
    username: str
    password: str
    pid: int


@contextmanager
def redfish_twin(racks: int) -> Iterator[Bmcs]:
    cmd = [sys.executable, "-m", "dcim.twin.serve_redfish", "--racks", str(racks)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("{"):
            raise RuntimeError(f"the Redfish twin did not start (exit {proc.poll()})")
        info = json.loads(line)
        yield Bmcs(info["ports"], info["ca"], info["username"], info["password"], proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def site(bmcs: Bmcs, interval_s: float) -> tuple[SiteConfig, list[Device], RedfishOptions]:
    cfg = SiteConfig.model_validate(
        {
            "site": {"name": "bench"},
            "defaults": {"interval_s": interval_s, "timeout_s": 10.0, "retries": 0},
        }
    )
    section = {"username": bmcs.username, "password": {"value": bmcs.password}, "tls_ca": bmcs.ca}
    devices = [
        Device.model_validate(
            {
                "name": name,
                "protocol": "redfish",
                "profile": "redfish_dmtf",
                "host": "127.0.0.1",
                "port": port,
                "redfish": section,
            }
        )
        for name, port in bmcs.ports.items()
    ]
    return cfg, devices, RedfishOptions.model_validate(section)


@dataclass
class Figures:
    wall_s: float = 0.0
    cpu_s: float = 0.0
    values: int = 0
    polls: int = 0
    failed: int = 0
    lates: list[float] = field(default_factory=list)
    twin_cpu_s: float = math.nan

    @property
    def us_per_value(self) -> float:
        return 1e6 * self.cpu_s / self.values if self.values else math.nan


async def run_collector(
    cfg: SiteConfig, devices: list[Device], opts: RedfishOptions, seconds: float, twin_pid: int
) -> tuple[Figures, list[str], float]:
    """Figures of the measured window; the URLs of one steady poll; values per poll."""
    pollers = [RedfishPoller(cfg, d, opts=opts) for d in devices]
    pipeline = Pipeline(NullSpool())
    fig = Figures()
    counting = False

    def emit(readings: list[Reading]) -> None:
        pipeline.accept(readings)
        if not counting:
            return
        for r in readings:
            if r.measurement == "dcim_poll" and r.fields["error"] != "missed":
                fig.polls += 1
                fig.values += int(r.fields["values_read"])
                fig.failed += 0 if r.fields["up"] else 1
                fig.lates.append(float(r.fields["late_s"]))

    sched = Scheduler(cfg, pollers, emit)
    await sched.start()
    await asyncio.sleep(cfg.defaults.interval_s + 2)  # every BMC logged in and discovered
    counting = True
    cpu0, twin0, t0 = cpu_self(), cpu_of(twin_pid), time.monotonic()
    await asyncio.sleep(seconds)
    fig.cpu_s, fig.wall_s = cpu_self() - cpu0, time.monotonic() - t0
    fig.twin_cpu_s = cpu_of(twin_pid) - twin0
    counting = False
    await sched.stop()
    # the GETs of one steady poll, recorded from a poller
    p = pollers[0]
    urls: list[str] = []
    inner = p.client.get

    async def spy(path: str) -> Any:
        urls.append(path)
        return await inner(path)

    p.client.get = spy  # type: ignore[method-assign]
    values = sum(len(r.fields) for r in await p.poll())
    p.client.get = inner  # type: ignore[method-assign]
    for q in pollers:
        await q.close()
    return fig, urls, values


def _curl_cmd(bmcs: Bmcs, name: str, urls: list[str]) -> list[str]:
    base = f"https://127.0.0.1:{bmcs.ports[name]}"
    cmd = ["curl", "-s", "--cacert", bmcs.ca, "-u", f"{bmcs.username}:{bmcs.password}"]
    for u in urls:
        cmd += ["-o", "/dev/null", "-w", "%{http_code}\\n", "-g", base + u]
    return cmd


def curl_paced(
    bmcs: Bmcs, urls: list[str], interval_s: float, seconds: float
) -> tuple[float, int, int]:
    """One curl process per BMC and poll at the collector's pace: (CPU s, polls, HTTP 200s)."""
    names = list(bmcs.ports)
    rate = len(names) / interval_s
    n = int(seconds * rate)
    procs: list[subprocess.Popen[str]] = []
    cpu0 = cpu_children()
    t0 = time.monotonic()
    ok = 0
    for i in range(n):
        due = t0 + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        cmd = _curl_cmd(bmcs, names[i % len(names)], urls)
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
        running = []
        for p in procs:  # collect the finished ones (their CPU counts once waited for)
            if p.poll() is None:
                running.append(p)
            else:
                ok += p.communicate()[0].split().count("200")
        procs = running
    for p in procs:
        ok += p.communicate()[0].split().count("200")
    return cpu_children() - cpu0, n, ok


def curl_parallel(bmcs: Bmcs, urls: list[str], cycles: int) -> tuple[float, int, int]:
    """``curl --parallel``: one process per cycle fetching every BMC's URLs."""
    cpu0 = cpu_children()
    ok = 0
    for _ in range(cycles):
        cmd = ["curl", "-s", "--parallel", "--parallel-max", "64", "--cacert", bmcs.ca]
        cmd += ["-u", f"{bmcs.username}:{bmcs.password}"]
        for name in bmcs.ports:
            base = f"https://127.0.0.1:{bmcs.ports[name]}"
            for u in urls:
                cmd += ["-o", "/dev/null", "-w", "%{http_code}\\n", "-g", base + u]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False).stdout
        ok += out.split().count("200")
    return cpu_children() - cpu0, cycles * len(bmcs.ports), ok


def run(args: argparse.Namespace) -> int:
    racks = REFERENCE_RACKS
    with redfish_twin(racks) as bmcs:
        cfg, devices, opts = site(bmcs, args.redfish_interval)
        print(
            f"\n== Redfish: {len(devices)} BMCs (HTTPS, session auth), every "
            f"{args.redfish_interval:g} s; collector {args.redfish_seconds:g} s after a "
            f"{args.redfish_interval + 2:g} s warm-up ==",
            flush=True,
        )
        fig, urls, per_poll = asyncio.run(
            run_collector(cfg, devices, opts, args.redfish_seconds, bmcs.pid)
        )
        print(
            f"collector: {fig.polls} polls ({fig.failed} failed), {fig.values} values, "
            f"{fig.values / fig.wall_s:.0f} values/s, {fig.us_per_value:.0f} µs/value, "
            f"{100 * fig.cpu_s / fig.wall_s:.1f} % of a core, p99 start "
            f"{1000 * pct(fig.lates, 0.99):.0f} ms (the twin: "
            f"{100 * fig.twin_cpu_s / fig.wall_s:.0f} % of a core)",
            flush=True,
        )
        print(f"one poll: {len(urls)} GETs, {per_poll} values: {' '.join(urls)}", flush=True)
        cpu, polls, ok = curl_paced(bmcs, urls, args.redfish_interval, args.curl_seconds)
        curl_us = 1e6 * cpu / (polls * per_poll)
        print(
            f"curl, a process per BMC and poll, paced: {polls} polls, {ok}/{polls * len(urls)} "
            f"HTTP 200, {curl_us:.0f} µs/value",
            flush=True,
        )
        pcpu, ppolls, pok = curl_parallel(bmcs, urls, args.curl_cycles)
        par_us = 1e6 * pcpu / (ppolls * per_poll)
        print(
            f"curl --parallel, a process per cycle: {ppolls} polls, {pok}/{ppolls * len(urls)} "
            f"HTTP 200, {par_us:.0f} µs/value",
            flush=True,
        )
    print(
        "\nRedfish, CPU per value: collector "
        f"{fig.us_per_value:.0f} µs; curl per process {curl_us:.0f} µs "
        f"(collector {fig.us_per_value / curl_us:.2f} x); curl --parallel {par_us:.0f} µs "
        f"(collector {fig.us_per_value / par_us:.2f} x)"
    )
    return 0 if fig.failed == 0 and ok == polls * len(urls) else 1
