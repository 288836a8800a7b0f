"""``collect.py --path``: the collector's polling path alone against net-snmp's C tools
(the engine-level analysis; ``collect.py`` without it runs the whole product against its
peers).

For the reference site (30 racks: 300 server BMCs, 60 rack PDUs, 2 UPS = 362 SNMP agents)
and ten times it (300 racks, 3,602 agents), served by the twin in its own process:

1. The collector's polling path (``dcim.scheduler.Scheduler`` + ``collectors.snmp.poller`` pollers
   + ``dcim.pipeline.Pipeline``) runs for ``--seconds`` after a warm-up of one interval,
   once per v1/v2c transport (``--transports wire,pysnmp``). The pipeline writes into a
   null spool that only counts: the question is what *collecting* costs; the spool and the
   forwarder have their own benchmark (``benchmarks/ingest.py``) and their disk writes would
   blur this one. Printed: values/s, CPU s per 1,000 values and % of one core from this
   process's rusage (the twin's CPU is not in it), and the poll-start jitter p50/p99 from
   the scheduler's own ``late_s`` (poll start minus its slot on the grid).
2. net-snmp's C tools replay, on the same agents, exactly the requests one poll of each
   device sent (recorded from the pollers: a GET of the scalars, a GETBULK of the table
   columns), for ``--sample`` agents spread over the site in its own mix of profiles. Their
   CPU is the children's rusage, measured three ways: one process per request
   (``snmpget``/``snmpbulkget``, start-up included, as a shell script polls); ``snmptest``
   sending the same poll ``--steady-polls`` times back to back from one process; and
   ``snmptest`` processes fed the polls at the collector's own rate (agents / interval per
   second, for ``--paced-seconds``), start-up taken out of both (paced: the processes' own
   run time from ``/proc/PID/schedstat`` after a first poll). The paced figure is the
   like-for-like reference for the collector (a poll now and then, with sleeps in between
   costs more per value than a tight loop, in C too), and the target ratio is taken
   against it; the back-to-back figure is the reference for the engines run back to back.
   The collector runs once per ``--coalesce`` window (``defaults.coalesce_s``; default
   ``0,0.05``) and net-snmp is paced on each one's schedule (the polls of one window handed
   over together): each ratio is taken against net-snmp on the same schedule ("x paced"),
   and also against net-snmp with no window ("x even").
3. At the reference size only, the engines alone on the same polls, without the scheduler:
   pysnmp's and the wire codec's pollers (``--rounds`` rounds of every device at once),
   ezsnmp (C bindings to net-snmp; synchronous, so 32 threads) if it is installed, and the
   wire pollers paced on the same grid by plain asyncio timers (no scheduler, no
   health readings, no pipeline): what the scheduler and the pipeline cost is the
   difference between that and the collector's figure.

4. ``--redfish`` runs the Redfish case instead (see ``benchmarks/collect_redfish.py``): the
   reference site's 300 BMCs over HTTPS at 30 s, the collector's CPU per value next to curl
   fetching the same resources in the same run.

Targets: the reference site costs at most 20 % of one core; CPU per value at most 3 times
net-snmp's; p99 poll-start jitter at ten times the size under 250 ms.

    .venv/bin/python benchmarks/collect.py --path [--seconds 40] [--scales 1,10]
        [--transports wire,pysnmp] [--rounds 5] [--sample 8] [--steady-polls 200]
        [--coalesce 0,0.05] [--profile PREFIX]

``--profile PREFIX`` also runs cProfile, on the process CPU clock, over each collector run's
measured window and dumps the stats in ``PREFIX.<scale>x.<transport>`` (read them with
``python -m pstats``); the profiler roughly triples the CPU per value of that run.

Figures of one run (2 shared cores, Python 3.11, pysnmp 7.1.30, net-snmp 5.9.3,
ezsnmp 2.5.0; ``--seconds 40``), CPU per value in microseconds:

                         1x: 362 agents, 85 values/s    10x: 3,602 agents, 786 values/s
    collector, wire      300-491 µs, 2.6-4.2 % core,     266 µs, 20.9 % core,
                         start p99 2-17 ms               start p99 30 ms
    collector, pysnmp    1,150-1,690 µs, 9-15 % core     not run (would need ~1 core)
    net-snmp, paced      97-127 µs                       76 µs
    net-snmp, b2b        54-58 µs                        46 µs
    net-snmp, a process  3,040-3,160 µs                  2,710 µs
    engines alone, 1x:   pysnmp pollers 735-932, wire pollers 96-110 (1.8-1.9 x b2b),
                         ezsnmp 32 threads 173-203 (3.0-3.7 x b2b),
                         wire pollers paced by plain timers 149-255 (1.2-2.6 x paced)

    Ratios of the collector path over net-snmp paced: wire 3.1-5.1 (FAIL against 3),
    pysnmp 10-17. The engine is no longer the cost: the wire pollers alone are within
    1.2-2.6 x of net-snmp at the same pace; APScheduler's job machinery (since replaced by
    the scheduler's own timer), the dcim_poll
    health reading and the pipeline add about 150-250 µs per value (350-600 µs per poll
    of 2.4 values) on top. The reference site takes 3-4 % of one core (target 20 %: PASS);
    10x had start jitter p99 30 ms (target 250 ms: PASS) when the machine was otherwise
    quiet. On a loaded machine (load average 4 on 2 cores, other benchmarks running) the
    twin could not answer 3,602 agents in time (most polls timed out): the run prints a
    warning and those figures mean nothing; rerun on a quiet machine.

Coalescing (``defaults.coalesce_s``), 1x, wire, ``--coalesce 0,0.05,0.1`` and
``0.1,0.05,0`` twice each (load average 0.5-1.6 on the 2 shared cores, another session's
ingest benchmark running during three of the four runs); net-snmp paced as measured from the
processes' own run time (the last two runs; the first two, start-up subtracted, gave
64-155 µs):

    window   wake-ups/s  collector µs/value  % core   start p99  net-snmp paced  x paced
    0 (off)     36.2     388-440             3.3-3.8  2-4 ms     140-143 µs      2.72-2.94
    0.05 s      20.0     261-349             2.2-3.0  50-51 ms   121-124 µs      2.16-2.34
    0.1 s       10.0     221-259             1.9-2.2  100 ms     116-117 µs      1.91-2.01

    Fewer wake-ups save net-snmp some CPU as well (its processes woken together), but the
    collector more: 0.05 s (the default) takes about 30 % off its CPU per value and 0.5 off
    the ratio on the same schedule, for a start delay of at most the window.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import cProfile
import logging
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import REFERENCE_RACKS, cpu_children, cpu_of, cpu_self, pct, site_doc, twin, work_dir

import collectors.snmp.poller as snmp
from collectors.snmp import wire as snmp_wire
from collectors.snmp.options import SnmpOptions
from collectors.snmp.poller import SnmpPoller
from dcim.config import SiteConfig
from dcim.pipeline import Pipeline
from dcim.protocols import PollError
from dcim.reading import Reading
from dcim.scheduler import Scheduler

TARGET_CORE_PCT = 20.0  # the reference site, % of one core
TARGET_RATIO = 3.0  # our CPU per value / net-snmp's
TARGET_P99_S = 0.250  # poll-start jitter at ten times the size

Request = tuple[str, list[tuple[int, ...]], int, int]  # kind, OIDs, non-repeaters, max-reps


class NullSpool:
    """The pipeline's sink here: counts what it is given, keeps nothing."""

    def __init__(self) -> None:
        self.readings = 0

    def append(self, readings: list[Reading]) -> None:
        self.readings += len(readings)


@dataclass
class RunFigures:
    transport: str
    devices: int
    wall_s: float
    cpu_s: float
    values: int
    polls: int
    due: float
    failed: int
    missed: int
    lates: list[float] = field(default_factory=list)
    twin_cpu_s: float = math.nan
    coalesce_s: float = 0.0
    wakeups: int = 0  # the scheduler's timer firings in the measured window

    @property
    def us_per_value(self) -> float:
        return 1e6 * self.cpu_s / self.values if self.values else math.nan

    @property
    def core_pct(self) -> float:
        return 100 * self.cpu_s / self.wall_s


# -- 1. the collector's polling path -------------------------------------------------------------


async def run_collector(
    cfg: SiteConfig,
    transport: str,
    warmup_s: float,
    seconds: float,
    twin_pid: int,
    profile: str | None = None,
) -> RunFigures:
    """The collector's polling path for ``seconds`` after ``warmup_s``; with ``profile``, the
    measured window is also profiled (cProfile on the process CPU clock, so that time spent
    waiting for the twin or preempted by it is not counted) and the stats dumped there."""
    snmp.V1_V2C_TRANSPORT = transport
    pollers = [SnmpPoller(cfg, d) for d in cfg.devices if d.protocol == "snmp"]
    pipeline = Pipeline(NullSpool())
    counting = False
    fig = RunFigures(transport, len(pollers), 0, 0, 0, 0, 0, 0, 0)

    def emit(readings: list[Reading]) -> None:
        pipeline.accept(readings)
        if not counting:
            return
        for r in readings:
            if r.measurement != "dcim_poll":
                continue
            if r.fields["error"] == "missed":
                fig.missed += 1
                continue
            fig.polls += 1
            fig.values += int(r.fields["values_read"])
            fig.failed += 0 if r.fields["up"] else 1
            fig.lates.append(float(r.fields["late_s"]))

    sched = Scheduler(cfg, pollers, emit)
    fig.coalesce_s = cfg.defaults.coalesce_s
    await sched.start()
    await asyncio.sleep(warmup_s)  # every device polled (and its target set up) once
    counting = True
    wakeups0 = sched.wakeups
    prof = cProfile.Profile(time.process_time) if profile else None
    if prof is not None:
        prof.enable()
    cpu0, twin0, t0 = cpu_self(), cpu_of(twin_pid), time.monotonic()
    await asyncio.sleep(seconds)
    fig.cpu_s, fig.wall_s = cpu_self() - cpu0, time.monotonic() - t0
    fig.wakeups = sched.wakeups - wakeups0
    if prof is not None and profile is not None:
        prof.disable()
        prof.dump_stats(profile)
        print(f"  profile of the measured window (CPU clock) in {profile}", flush=True)
    fig.twin_cpu_s = cpu_of(twin_pid) - twin0
    counting = False
    await sched.stop()
    # Anything else still on the loop (the pollers' own tasks) ends before they are closed.
    others = asyncio.all_tasks() - {asyncio.current_task()}
    if others:
        await asyncio.wait(others, timeout=5)
    for p in pollers:
        await p.close()
    snmp.close_shared_engine()
    snmp_wire.close_shared_client()
    fig.due = len(pollers) * fig.wall_s / cfg.defaults.interval_s
    return fig


# -- the requests of one poll, recorded from the pollers -----------------------------------------


@dataclass
class RecordedPoll:
    requests: list[Request]
    answered: int  # var-binds in the answers
    values: int  # values read (fields)


async def record_polls(cfg: SiteConfig, names: Sequence[str]) -> dict[str, RecordedPoll]:
    """Per device: the requests its second poll sent (the first one learns the tables'
    sizes), the var-binds answered and the values read."""
    snmp.V1_V2C_TRANSPORT = "wire"
    out: dict[str, RecordedPoll] = {}
    for name in names:
        poller = SnmpPoller(cfg, cfg.device(name))
        rec = RecordedPoll([], 0, 0)
        poller._request = _spy(poller._request, rec)  # type: ignore[method-assign]
        for _ in range(3):  # a busy twin may drop a request: ask again
            try:
                await poller.poll()
                rec.requests.clear()
                rec.answered = 0
                readings = await poller.poll()
            except PollError:
                continue
            rec.values = sum(len(r.fields) for r in readings)
            out[name] = rec
            break
    snmp_wire.close_shared_client()
    return out


def _spy(inner: Any, rec: RecordedPoll) -> Any:
    async def spy(engine: Any, kind: str, oids: Sequence[tuple[int, ...]], *a: int) -> Any:
        nr, mr = [*a, 0, 0][:2]
        rec.requests.append((kind, list(oids), nr, mr))
        answer = await inner(engine, kind, oids, *a)
        rec.answered += len(answer[3])
        return answer

    return spy


def sample_devices(cfg: SiteConfig, n: int) -> list[str]:
    """About ``n`` devices spread over the site in its own mix of profiles: every k-th, k
    prime to the 12 devices of a rack so that every position in a rack comes up."""
    names = [d.name for d in cfg.devices if d.protocol == "snmp"]
    k = max(1, len(names) // n)
    while math.gcd(k, 12) != 1:
        k += 1
    return names[::k]


# -- 2. net-snmp ---------------------------------------------------------------------------------


def _dotted(oid: Sequence[int]) -> str:
    return ".".join(map(str, oid))


def netsnmp_env(work: Path) -> dict[str, str]:
    state = work / "net-snmp"
    state.mkdir(exist_ok=True)
    # No MIB files parsed, no system configuration read, no state written outside ``work``.
    return dict(os.environ, MIBS="", SNMP_PERSISTENT_DIR=str(state), SNMPCONFPATH=str(state))


def _agent(cfg: SiteConfig, name: str) -> list[str]:
    d = cfg.device(name)
    opts = d.options_as(SnmpOptions)
    assert opts.community is not None
    version = "1" if opts.version == "1" else "2c"
    t, r = cfg.timeout_of(d), cfg.retries_of(d)
    comm = opts.community.resolve()
    return ["-v", version, "-c", comm, "-On", "-t", f"{t:g}", "-r", str(r), f"{d.host}:{d.port}"]


def _answers(out: str) -> int:
    return sum(1 for line in out.splitlines() if line.startswith(".1."))


@dataclass
class NetSnmp:
    """net-snmp's CPU for the sampled devices' polls, each as (CPU s, polls, var-binds
    answered)."""

    process: tuple[float, int, int] = (0.0, 0, 0)
    steady: tuple[float, int, int] = (0.0, 0, 0)
    # paced at the collector's rate, per coalescing window (0: each poll on its own)
    paced: dict[float, tuple[float, int, int]] = field(default_factory=dict)
    values_per_poll: float = math.nan
    answered_per_poll: float = math.nan

    def _fig(self, which: str | float) -> tuple[float, int, int]:
        if isinstance(which, str):
            fig: tuple[float, int, int] = getattr(self, which)
            return fig
        return self.paced.get(which, (0.0, 0, 0))

    def us_per_value(self, which: str | float) -> float:
        """``which``: "process", "steady", or a coalescing window for the paced figure."""
        cpu, polls, _ = self._fig(which)
        return 1e6 * cpu / (polls * self.values_per_poll) if polls else math.nan

    def answered_ok(self, which: str | float) -> str:
        _, polls, answered = self._fig(which)
        return f"{answered}/{round(polls * self.answered_per_poll)}"


def per_invocation(
    cfg: SiteConfig, polls: dict[str, RecordedPoll], env: dict[str, str]
) -> tuple[float, int, int]:
    """One process per request of each poll (snmpget, snmpbulkget), start-up included."""
    cpu0, answered = cpu_children(), 0
    for name, rec in polls.items():
        for kind, oids, nr, mr in rec.requests:
            tool = {"get": ["snmpget"], "next": ["snmpgetnext"]}.get(kind) or [
                "snmpbulkget",
                f"-Cn{nr}",
                f"-Cr{mr}",
            ]
            res = subprocess.run(
                [*tool, *_agent(cfg, name), *map(_dotted, oids)],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            answered += _answers(res.stdout)
    return cpu_children() - cpu0, len(polls), answered


def _snmptest_script(requests: list[Request], repeat: int) -> str:
    lines: list[str] = []
    for _ in range(repeat):
        for kind, oids, nr, mr in requests:
            if kind == "bulk":
                rep = [*map(_dotted, oids[nr:])]
                lines += ["$B", *map(_dotted, oids[:nr]), "", *rep, "", str(mr)]
            else:
                lines += ["$N" if kind == "next" else "$G", *map(_dotted, oids), ""]
    return "".join(line + "\n" for line in lines)


def _snmptest(cfg: SiteConfig, name: str, env: dict[str, str], out: Any) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        ["snmptest", *_agent(cfg, name)],
        stdin=subprocess.PIPE,
        stdout=out,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    assert proc.stdin is not None
    proc.stdin.write("$QP\n")  # quick printing: the least output work
    return proc


def startup_cost(cfg: SiteConfig, polls: dict[str, RecordedPoll], env: dict[str, str]) -> float:
    """CPU s of starting and stopping one snmptest per device (with no request)."""
    cpu0 = cpu_children()
    for name in polls:
        proc = _snmptest(cfg, name, env, subprocess.DEVNULL)
        proc.communicate("$Q\n")
    return cpu_children() - cpu0


def back_to_back(
    cfg: SiteConfig, polls: dict[str, RecordedPoll], env: dict[str, str], repeat: int, start: float
) -> tuple[float, int, int]:
    """Each device's poll ``repeat`` times from one snmptest, as fast as it is answered."""
    cpu0, answered = cpu_children(), 0
    for name, rec in polls.items():
        proc = _snmptest(cfg, name, env, subprocess.PIPE)
        stdout, _ = proc.communicate(_snmptest_script(rec.requests, repeat) + "$Q\n")
        answered += _answers(stdout)
    return max(0.0, cpu_children() - cpu0 - start), repeat * len(polls), answered


def paced(
    cfg: SiteConfig,
    polls: dict[str, RecordedPoll],
    env: dict[str, str],
    rate: float,
    seconds: float,
    work: Path,
    coalesce: float = 0.0,
) -> tuple[float, int, int]:
    """One snmptest per sampled device, all running; polls sent at ``rate`` per second in
    all, round robin, for ``seconds``: the collector's own pace (a poll now and then, the
    processes asleep in between), not a tight loop. With ``coalesce``, on the scheduler's
    schedule with that window: each poll waits for the first tick of a grid ``coalesce``
    apart not before its own time, and the polls of one tick are handed over together.

    The CPU is the processes' own scheduler run time (``/proc/PID/schedstat``, nanoseconds)
    from after each has answered a first poll to after the last answers: start-up and exit
    are not in it (subtracting a separately measured start-up, as for the back-to-back
    figure, made this small total noisy by tens of percent)."""
    names = list(polls)
    scripts = {n: _snmptest_script(polls[n].requests, 1) for n in names}
    paths = {n: work / f"paced-{n}.out" for n in names}
    files = {n: open(paths[n], "w") for n in names}  # noqa: SIM115
    procs = {n: _snmptest(cfg, n, env, files[n]) for n in names}
    for n in names:  # a first poll each: set up, then measured from there
        stdin = procs[n].stdin
        assert stdin is not None
        stdin.write(scripts[n])
        stdin.flush()
    end = time.monotonic() + 10
    while time.monotonic() < end and not all(_answers(paths[n].read_text()) for n in names):
        time.sleep(0.1)
    time.sleep(0.5)
    warm = sum(_answers(paths[n].read_text()) for n in names)
    cpu0 = sum(_run_time(p.pid) for p in procs.values())

    def due(i: int) -> float:
        at = i / rate
        return math.ceil(at / coalesce - 1e-9) * coalesce if coalesce else at

    sent = 0
    t0 = time.monotonic()
    while (tick := due(sent)) < seconds:
        time.sleep(max(0.0, t0 + tick - time.monotonic()))
        while due(sent) <= tick:  # every poll of this tick, in one wake-up
            name = names[sent % len(names)]
            stdin = procs[name].stdin
            assert stdin is not None
            stdin.write(scripts[name])
            stdin.flush()
            sent += 1
    time.sleep(1.0)  # the last answers
    cpu = sum(_run_time(p.pid) for p in procs.values()) - cpu0
    for proc in procs.values():
        proc.communicate("$Q\n")
    answered = -warm
    for n, f in files.items():
        f.close()
        answered += _answers(paths[n].read_text())
    return cpu, sent, answered


def _run_time(pid: int) -> float:
    """Seconds a (single-threaded) process has run on a CPU, to the nanosecond."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9


def measure_netsnmp(
    args: argparse.Namespace, cfg: SiteConfig, polls: dict[str, RecordedPoll], work: Path
) -> NetSnmp:
    env = netsnmp_env(work)
    res = NetSnmp()
    res.values_per_poll = statistics.fmean(r.values for r in polls.values())
    res.answered_per_poll = statistics.fmean(r.answered for r in polls.values())
    res.process = per_invocation(cfg, polls, env)
    start = startup_cost(cfg, polls, env)
    res.steady = back_to_back(cfg, polls, env, args.steady_polls, start)
    n = sum(1 for d in cfg.devices if d.protocol == "snmp")
    for c in args.coalesce:
        res.paced[c] = paced(cfg, polls, env, n / args.interval, args.paced_seconds, work, c)
    return res


# -- 3. the alternatives -------------------------------------------------------------------------


async def rounds_of_pollers(cfg: SiteConfig, transport: str, rounds: int) -> list[float]:
    """µs CPU per value of each round: every device polled at once, ``rounds`` times."""
    snmp.V1_V2C_TRANSPORT = transport
    pollers = [SnmpPoller(cfg, d) for d in cfg.devices if d.protocol == "snmp"]
    await asyncio.gather(*(p.poll() for p in pollers))  # set up, tables sized
    out = []
    for _ in range(rounds):
        cpu0 = cpu_self()
        results = await asyncio.gather(*(p.poll() for p in pollers), return_exceptions=True)
        cpu = cpu_self() - cpu0
        values = sum(sum(len(r.fields) for r in res) for res in results if isinstance(res, list))
        out.append(1e6 * cpu / values)
    snmp.close_shared_engine()
    snmp_wire.close_shared_client()
    return out


async def paced_pollers(cfg: SiteConfig, transport: str, warmup_s: float, seconds: float) -> float:
    """µs CPU per value of the pollers at the collector's pace, started by plain asyncio
    timers on the same grid (no scheduler, no health readings, no pipeline): what the
    scheduler and the pipeline add is the difference to the collector's figure."""
    snmp.V1_V2C_TRANSPORT = transport
    pollers = [SnmpPoller(cfg, d) for d in cfg.devices if d.protocol == "snmp"]
    loop = asyncio.get_running_loop()
    interval = cfg.defaults.interval_s
    t0 = loop.time() + 0.05
    values = [0]
    counting = False

    async def run(i: int, p: SnmpPoller) -> None:
        k = 0
        while True:
            await asyncio.sleep(max(0.0, t0 + interval * (k + i / len(pollers)) - loop.time()))
            k += 1
            try:
                got = await p.poll()
            except Exception:  # noqa: BLE001 - a failed poll reads nothing
                continue
            if counting:
                values[0] += sum(len(r.fields) for r in got)

    tasks = [asyncio.create_task(run(i, p)) for i, p in enumerate(pollers)]
    await asyncio.sleep(warmup_s)
    counting = True
    cpu0 = cpu_self()
    await asyncio.sleep(seconds)
    cpu = cpu_self() - cpu0
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    snmp.close_shared_engine()
    snmp_wire.close_shared_client()
    return 1e6 * cpu / values[0] if values[0] else math.nan


def rounds_of_ezsnmp(
    cfg: SiteConfig, polls: dict[str, RecordedPoll], rounds: int
) -> list[float] | str:
    """The same requests through ezsnmp sessions (GETBULK with its session's max-repeaters),
    32 threads; integer values converted to int."""
    try:
        from ezsnmp import Session
    except ImportError:
        return "not installed (pip install ezsnmp)"
    os.environ.setdefault("MIBS", "")
    sessions = {}
    for name, rec in polls.items():
        d = cfg.device(name)
        opts = d.options_as(SnmpOptions)
        assert opts.community is not None
        reps = max([mr for kind, _, _, mr in rec.requests if kind == "bulk"] or [10])
        sessions[name] = Session(
            hostname=f"{d.host}:{d.port}",
            version=1 if opts.version == "1" else 2,
            community=opts.community.resolve(),
            timeout=int(math.ceil(cfg.timeout_of(d))),
            retries=cfg.retries_of(d),
            print_oids_numerically=True,
            set_max_repeaters_to_num=reps,
        )
    ints = ("INTEGER", "Gauge32", "Counter32", "Counter64", "Timeticks")

    def poll(name: str) -> None:
        s = sessions[name]
        for kind, oids, _nr, _mr in polls[name].requests:
            dotted = [_dotted(o) for o in oids]
            for r in s.get(dotted) if kind == "get" else s.bulk_get(dotted):
                if r.type in ints:
                    int(r.converted_value)

    out = []
    values = sum(r.values for r in polls.values())
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        list(pool.map(poll, polls))
        for _ in range(rounds):
            cpu0 = cpu_self()
            list(pool.map(poll, polls))
            out.append(1e6 * (cpu_self() - cpu0) / values)
    return out


# -- the report ----------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


@dataclass
class ScaleResult:
    scale: int
    agents: int
    runs: list[RunFigures]
    netsnmp: NetSnmp
    sampled: int
    engines: dict[str, list[float] | str]


def measure_scale(args: argparse.Namespace, scale: int) -> ScaleResult:
    work = work_dir(f"dcim-collect-{scale}x-")
    doc = site_doc(work, racks=REFERENCE_RACKS * scale, interval_s=args.interval, snmp_only=True)
    cfg = SiteConfig.model_validate(doc)
    cfgs = {  # the same site, each coalescing window
        c: SiteConfig.model_validate({**doc, "defaults": {**doc["defaults"], "coalesce_s": c}})
        for c in args.coalesce
    }
    names = [d.name for d in cfg.devices if d.protocol == "snmp"]
    print(f"\n== {scale}x: {len(names)} SNMP agents, every {args.interval:g} s ==", flush=True)
    runs = []
    engines: dict[str, list[float] | str] = {}
    warmup = args.interval + 2
    with twin(doc, work) as twin_pid:
        for transport in args.transports:
            if transport == "pysnmp" and scale >= 10 and not args.pysnmp_at_10x:
                print(
                    "collector, pysnmp transport: not run at 10x (at its 1x CPU per value it "
                    "needs about a whole core there, on a machine the twin shares; "
                    "--pysnmp-at-10x runs it)",
                    flush=True,
                )
                continue
            for c, ccfg in cfgs.items():
                print(
                    f"collector, {transport} transport, coalesce {c:g} s: {args.seconds:g} s ...",
                    flush=True,
                )
                profile = f"{args.profile}.{scale}x.{transport}.c{c:g}" if args.profile else None
                fig = asyncio.run(
                    run_collector(ccfg, transport, warmup, args.seconds, twin_pid, profile)
                )
                runs.append(fig)
                print(
                    f"  {fig.values / fig.wall_s:.0f} values/s, {fig.us_per_value:.0f} µs/value, "
                    f"{fig.core_pct:.1f} % of a core, "
                    f"p99 start {1000 * pct(fig.lates, 0.99):.0f} ms, "
                    f"{fig.wakeups / fig.wall_s:.1f} wake-ups/s "
                    f"(the twin: {100 * fig.twin_cpu_s / fig.wall_s:.0f} % of a core)",
                    flush=True,
                )
        sample = sample_devices(cfg, args.sample)
        polls = asyncio.run(record_polls(cfg, sample))
        print(
            f"net-snmp, {len(sample)} agents: a process per request, snmptest back to back, "
            f"snmptest at the collector's pace ({args.paced_seconds:g} s per coalescing "
            f"window: {', '.join(f'{c:g}' for c in args.coalesce)} s) ...",
            flush=True,
        )
        netsnmp = measure_netsnmp(args, cfg, polls, work)
        if scale == 1 and args.rounds:
            print(f"alternatives: {args.rounds} rounds of every device ...", flush=True)
            for transport in ("pysnmp", "wire"):
                engines[f"{transport} pollers"] = asyncio.run(
                    rounds_of_pollers(cfg, transport, args.rounds)
                )
            all_polls = asyncio.run(record_polls(cfg, names))
            engines["ezsnmp, 32 threads"] = rounds_of_ezsnmp(cfg, all_polls, args.rounds)
            engines["wire pollers, paced"] = [
                asyncio.run(paced_pollers(cfg, "wire", warmup, args.seconds / 2))
            ]
    return ScaleResult(scale, len(names), runs, netsnmp, len(sample), engines)


def report(results: list[ScaleResult]) -> bool:
    ok = True
    print("\nnet-snmp 5.9 C tools: the same polls of the same agents, CPU per value")
    for res in results:
        ns = res.netsnmp
        print(
            f"{res.scale:>3}x ({res.sampled} agents)  a process per request "
            f"{ns.us_per_value('process'):6.0f} µs   snmptest back to back "
            f"{ns.us_per_value('steady'):4.0f} µs   (var-binds answered "
            f"{ns.answered_ok('process')}, {ns.answered_ok('steady')})"
        )
        for c in ns.paced:
            print(
                f"{'':>4} snmptest at the collector's pace, coalesce {c:g} s: "
                f"{ns.us_per_value(c):4.0f} µs   (var-binds answered {ns.answered_ok(c)})"
            )
    print("\nCollector polling path (scheduler + pollers + pipeline into a null spool)")
    print(
        f"{'size':>4} {'transport':9} {'agents':>6} {'values/s':>8} {'CPU s/1k val':>12} "
        f"{'% core':>6} {'start p50':>9} {'p99':>7} {'polls/due':>9} {'failed':>6} "
        f"{'µs/val':>6} {'coalesce':>8} {'wakes/s':>7} {'x paced':>7} {'x even':>6} {'x b2b':>6}"
    )
    for res in results:
        even_us = res.netsnmp.us_per_value(0.0)
        b2b_us = res.netsnmp.us_per_value("steady")
        for f in res.runs:
            paced_us = res.netsnmp.us_per_value(f.coalesce_s)
            print(
                f"{res.scale:>3}x {f.transport:9} {f.devices:>6} {f.values / f.wall_s:>8.0f} "
                f"{f.cpu_s / f.values * 1000:>12.3f} {f.core_pct:>6.1f} "
                f"{1000 * pct(f.lates, 0.5):>7.1f}ms {1000 * pct(f.lates, 0.99):>5.0f}ms "
                f"{f.polls / f.due:>9.3f} {f.failed:>6} {f.us_per_value:>6.0f} "
                f"{f.coalesce_s:>7g}s {f.wakeups / f.wall_s:>7.1f} "
                f"{f.us_per_value / paced_us:>7.2f} {f.us_per_value / even_us:>6.2f} "
                f"{f.us_per_value / b2b_us:>6.2f}"
            )
    print(
        "  x paced: over net-snmp at the collector's pace on the same schedule (the polls of a"
        " coalescing window handed over together); x even: over net-snmp paced with no window"
        " (each poll on its own); x b2b: over net-snmp back to back"
    )
    for res in results:
        for f in res.runs:
            if f.failed > 0.01 * max(1, f.polls):
                print(
                    f"  WARNING {res.scale}x {f.transport}: {f.failed} of {f.polls} polls failed "
                    "(the twin or this process starved of CPU?): its figures are not valid"
                )
    for res in results:
        if not res.engines:
            continue
        b2b_us = res.netsnmp.us_per_value("steady")
        paced_us = res.netsnmp.us_per_value(0.0)
        print(f"\nThe engines alone at {res.scale}x (µs CPU per value; median, range of rounds)")
        for name, figs in res.engines.items():
            if isinstance(figs, str):
                print(f"  {name:22} {figs}")
                continue
            med = statistics.median(figs)
            ref, what = (paced_us, "paced") if "paced" in name else (b2b_us, "back to back")
            print(
                f"  {name:22} {med:6.0f}  ({min(figs):.0f}-{max(figs):.0f})  "
                f"x{med / ref:.2f} net-snmp {what}"
            )
    print("\nTargets (the chosen transport, wire, decides the exit status)")
    for res in results:
        for f in res.runs:
            ratio = f.us_per_value / res.netsnmp.us_per_value(f.coalesce_s)
            checks = [
                (
                    f"CPU per value {ratio:.2f} x net-snmp's (<= {TARGET_RATIO:g})",
                    ratio <= TARGET_RATIO,
                )
            ]
            if res.scale == 1:
                core = f"{f.core_pct:.1f} % of one core (<= {TARGET_CORE_PCT:g} %)"
                checks.append((core, f.core_pct <= TARGET_CORE_PCT))
            if res.scale == 10:
                p99 = pct(f.lates, 0.99)
                jit = f"p99 poll-start jitter {1000 * p99:.0f} ms (< {1000 * TARGET_P99_S:.0f} ms)"
                checks.append((jit, p99 < TARGET_P99_S))
            for text, good in checks:
                ok &= good or f.transport != "wire"
                tr = f"{f.transport}, c {f.coalesce_s:g}"
                print(f"  {res.scale:>2}x {tr:14} {text:48} {verdict(good)}")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--seconds", type=float, default=40, help="measured run per transport")
    ap.add_argument("--interval", type=float, default=10)
    ap.add_argument("--scales", default="1,10", help="multiples of the reference site")
    ap.add_argument("--transports", default="wire,pysnmp", help="v1/v2c transports to run")
    ap.add_argument("--pysnmp-at-10x", action="store_true", help="also run pysnmp at 10x")
    ap.add_argument("--rounds", type=int, default=5, help="alternatives: rounds (0: skip)")
    ap.add_argument("--sample", type=int, default=36, help="net-snmp: agents sampled")
    ap.add_argument("--steady-polls", type=int, default=200, help="net-snmp: back-to-back polls")
    ap.add_argument("--paced-seconds", type=float, default=20, help="net-snmp: paced run")
    ap.add_argument(
        "--coalesce",
        default="0,0.05",
        help="defaults.coalesce_s windows to run the collector and pace net-snmp with (0: off)",
    )
    ap.add_argument(
        "--profile",
        metavar="PREFIX",
        help="cProfile (CPU clock) the measured window into PREFIX.<scale>x.<transport>",
    )
    ap.add_argument("--redfish", action="store_true", help="run the Redfish case (only)")
    ap.add_argument("--redfish-seconds", type=float, default=90, help="Redfish: measured run")
    ap.add_argument("--redfish-interval", type=float, default=30, help="Redfish: poll interval")
    ap.add_argument("--curl-seconds", type=float, default=60, help="Redfish: curl paced run")
    ap.add_argument("--curl-cycles", type=int, default=3, help="Redfish: curl --parallel runs")
    args = ap.parse_args()
    if args.redfish:
        import collect_redfish

        logging.basicConfig(level=logging.ERROR)
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
        return collect_redfish.run(args)
    args.transports = [t.strip() for t in args.transports.split(",") if t.strip()]
    # in the order given (0, no coalescing: the reference, always measured)
    args.coalesce = list(dict.fromkeys(float(c) for c in args.coalesce.split(",") if c.strip()))
    args.coalesce += [] if 0.0 in args.coalesce else [0.0]
    for binary in ("snmpget", "snmpbulkget", "snmptest"):
        if shutil.which(binary) is None:
            print(f"{binary} not found: install the Debian package 'snmp'", file=sys.stderr)
            return 2
    logging.basicConfig(level=logging.ERROR)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    results = [measure_scale(args, int(s)) for s in args.scales.split(",")]
    return 0 if report(results) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
