"""What SNMP collection costs, the whole product against its peers on the same agents and OIDs.

Two cases, each in one run:

- ``reference``: the reference site's SNMP mix (300 server BMCs, 60 rack PDUs, 2 UPS = 362
  agents, few values each) served by the twin (``dcim twin serve``, a process of its own);
- ``pdu``: 50 APC rack PDUs with 24 metered outlets (81 values a poll): a real AP8641 walk
  (PyPI ``snmpsim-data``) served by the twin's agent code (``pdu_agents.py``), an agent (UDP
  port, community) per PDU; ``--pdu-agent snmpsim`` serves it with snmpsim instead (too slow
  on a busy machine: every tool timed out).

The agents run at nice -5 when allowed (root; ``--no-favour``: not), so that a busy shared
machine does not starve them and time every tool out.

In each case, one after the other on the same agents, every ``--interval`` s:

1. the product as users run it: ``dcim run SITE`` with a generated site file (pollers,
   pipeline, durable spool, forwarder, embedded store);
2. collectd 5.12 (Debian ``collectd-core``): its snmp plugin, the csv plugin storing;
3. prometheus-snmp-exporter 0.21 (Debian): a hand-written module per profile and community,
   scraped by a keep-alive scraper in this process (its CPU not counted: favours the exporter).

Each runs a warm-up of ``--warmup`` s, then a measured window of ``--seconds`` s: CPU of the
process tree from /proc (utime + stime, threads and children included), RSS (the tree's
VmRSS at the end, the root's VmHWM), and the values each one *stored* stamped inside the
window (see ``peers.py``). Printed: µs of CPU per stored value, RSS, values, the agent's CPU
meanwhile (collectd walks with GETNEXT: its agent works harder), and the product's ratios to
each peer. Each phase's figures are printed as soon as measured; a phase that fails is
reported and the others still run, the table printed with what was measured.

Goal (issue #15): fewer µs of CPU per stored value than collectd on the PDU case and than the
exporter on both, RSS under 40 MB for the reference site. The exit status is 1 when a goal is
missed (which one is printed), 2 when a phase failed.

    .venv/bin/python benchmarks/collect.py [--cases reference,pdu] [--seconds 100]
        [--warmup 15] [--interval 10] [--tools product,collectd,exporter] [--rounds 3]

``--rounds N``: each tool's phase N times, the order reversed every round (the shared
machine's speed drifts over minutes: a single phase each put 15.6 to 41 µs on collectd's
figure at a load under 1 within an hour); every round's figures and ratios are printed and
the goals judged on each tool's median. ``make bench`` runs 3 rounds of 60 s.
    .venv/bin/python benchmarks/collect.py --path ...     # the polling path against net-snmp
    .venv/bin/python benchmarks/collect.py --redfish ...  # the Redfish case against curl

Figures: see docs/benchmarks.md (with the load average of the run).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from harness import site_doc, twin, work_dir
from peers import (
    COLLECTD,
    EXPORTER,
    Device,
    Scraper,
    apc_walk,
    collectd_config,
    collectd_values,
    devices_of,
    exporter_config,
    favour,
    pdu_twin,
    snmpsim,
    start_exporter,
    stop,
    store_polls,
    store_values,
    tree_cpu,
    tree_rss_mb,
)

NS = 1_000_000_000
TOOLS = ("product", "collectd", "exporter")
LABEL = {
    "product": "dcim run (this product)",
    "collectd": "collectd 5.12 snmp + csv",
    "exporter": "snmp-exporter 0.21 (+ scraper)",
}
GOAL_RSS_MB = 40.0  # the reference site


@dataclass
class Figures:
    case: str
    tool: str
    cpu_s: float
    wall_s: float
    values: int
    rss_mb: float
    hwm_mb: float
    agent_cpu_s: float
    note: str = ""
    round: int = 1

    @property
    def us_per_value(self) -> float:
        return 1e6 * self.cpu_s / self.values if self.values else math.nan


@dataclass
class Case:
    name: str
    title: str
    doc: dict[str, Any]  # the product's site document
    devices: list[Device]
    agent_pid: int
    work: Path
    round: int = 1  # the phase's round (--rounds)


# -- one phase: a process measured over a window -----------------------------------------------


def window(
    pid: int, agent_pid: int, warmup: float, seconds: float
) -> tuple[float, float, float, float, float, float, float]:
    """Waits ``warmup``, then measures ``pid``'s tree over ``seconds``: (t0, t1, CPU s, wall s,
    RSS MB, HWM MB, the agent's CPU s)."""
    time.sleep(warmup)
    cpu0, agent0, t0, m0 = tree_cpu(pid), tree_cpu(agent_pid), time.time(), time.monotonic()
    time.sleep(seconds)
    cpu1, agent1, t1, m1 = tree_cpu(pid), tree_cpu(agent_pid), time.time(), time.monotonic()
    rss, hwm = tree_rss_mb(pid)
    return t0, t1, cpu1 - cpu0, m1 - m0, rss, hwm, agent1 - agent0


def alive(proc: subprocess.Popen[Any], what: str, log: Path) -> None:
    if proc.poll() is not None:
        tail = log.read_text()[-1500:] if log.exists() else ""
        raise RuntimeError(f"{what} exited ({proc.returncode}) during the run: {tail}")


def run_product(case: Case, args: argparse.Namespace) -> Figures:
    work = case.work / f"product-{case.round}"
    work.mkdir()
    storage = {
        **case.doc["storage"],
        "spool_dir": str(work / "spool"),
        "sink": {"type": "embedded", "path": str(work / "store.sqlite")},
    }
    doc = {**case.doc, "storage": storage}
    site = work / "site.yaml"
    site.write_text(yaml.safe_dump(doc))
    log = work / "dcim.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dcim.cli", "run", str(site)], stdout=out, stderr=out
        )
    try:
        t0, t1, cpu, wall, rss, hwm, agent = window(
            proc.pid, case.agent_pid, args.warmup, args.seconds
        )
        alive(proc, "dcim run", log)
    finally:
        stop(proc, signal.SIGINT, 60)  # the final flush: the window's readings into the store
    values = store_values(work / "store.sqlite", int(t0 * NS), int(t1 * NS))
    polls, failed = store_polls(work / "store.sqlite", int(t0 * NS), int(t1 * NS))
    note = f"{failed} of {polls} polls failed" if failed else ""
    return Figures(case.name, "product", cpu, wall, values, rss, hwm, agent, note)


def run_collectd(case: Case, args: argparse.Namespace) -> Figures:
    work = case.work / f"collectd-{case.round}"
    work.mkdir()
    conf = collectd_config(work, case.devices, args.interval)
    log = work / "collectd.log"
    proc = subprocess.Popen(
        [COLLECTD, "-f", "-C", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        t0, t1, cpu, wall, rss, hwm, agent = window(
            proc.pid, case.agent_pid, args.warmup, args.seconds
        )
        alive(proc, "collectd", log)
    finally:
        stop(proc)
    values = collectd_values(work / "csv", t0, t1)
    return Figures(case.name, "collectd", cpu, wall, values, rss, hwm, agent)


def run_exporter(case: Case, args: argparse.Namespace) -> Figures:
    work = case.work / f"exporter-{case.round}"
    work.mkdir()
    proc, port = start_exporter(work, exporter_config(work, case.devices))
    scraper = Scraper(port, case.devices, args.interval)
    start = time.time() + args.warmup
    scraper.window = (start, start + args.seconds)
    scraper.start()
    try:
        t0, t1, cpu, wall, rss, hwm, agent = window(
            proc.pid, case.agent_pid, max(0.0, start - time.time()), args.seconds
        )
        alive(proc, "prometheus-snmp-exporter", work / "exporter.log")
        time.sleep(3)  # the window's last scrapes answered
    finally:
        scraper.stop()
        stop(proc)
    note = f"{scraper.failed} of {scraper.scrapes} scrapes failed" if scraper.failed else ""
    return Figures(case.name, "exporter", cpu, wall, scraper.values, rss, hwm, agent, note)


RUNNERS: dict[str, Callable[[Case, argparse.Namespace], Figures]] = {
    "product": run_product,
    "collectd": run_collectd,
    "exporter": run_exporter,
}


# -- the cases ------------------------------------------------------------------------------


@contextlib.contextmanager
def reference_case(args: argparse.Namespace) -> Iterator[Case]:
    work = work_dir("dcim-collect-ref-")
    for attempt in range(1, 4):
        # ports picked free, then bound by the twin: another program on this shared host may
        # take one in between, and the twin exits; then again on other ports
        doc = site_doc(work, interval_s=args.interval, snmp_only=True)
        stack = contextlib.ExitStack()
        try:
            pid = stack.enter_context(twin(doc, work))
        except RuntimeError:
            stack.close()
            if attempt == 3:
                raise
            continue
        with stack:
            title = f"reference site: {len(devices_of(doc))} SNMP agents (the twin)"
            yield Case("reference", title, doc, devices_of(doc), pid, work)
        return


@contextlib.contextmanager
def pdu_case(args: argparse.Namespace) -> Iterator[Case]:
    work = work_dir("dcim-collect-pdu-")
    names = [f"pdu-{i:02d}" for i in range(1, args.pdus + 1)]

    def doc_for(base: int) -> dict[str, Any]:
        doc = site_doc(work, racks=1, interval_s=args.interval, snmp_only=True)
        doc["devices"] = [
            {
                "name": n,
                "protocol": "snmp",
                "profile": "apc_rpdu2",
                "host": "127.0.0.1",
                "port": base + i,
                "snmp": {"version": "2c", "community": {"value": n}},
                "rack": "R01",
                # the peers have no deadline: the product's poll may take most of the interval
                # too (snmpsim is slow)
                **({"deadline_s": 0.9 * args.interval} if args.pdu_agent == "snmpsim" else {}),
            }
            for i, n in enumerate(names)
        ]
        return doc

    title = f"{len(names)} APC AP8641 rack PDUs, 24 outlets each, a real walk served by "
    if args.pdu_agent == "snmpsim":
        with snmpsim(work, names, apc_walk()) as (pid, base):
            doc = doc_for(base)
            yield Case("pdu", title + "snmpsim", doc, devices_of(doc), pid, work)
    else:
        with pdu_twin(work, doc_for, len(names)) as (pid, doc):
            yield Case("pdu", title + "the twin's agents", doc, devices_of(doc), pid, work)


CASES = {"reference": reference_case, "pdu": pdu_case}


# -- the report -----------------------------------------------------------------------------


def line(f: Figures) -> str:
    return (
        f"  {LABEL[f.tool]:31} {f.values:>8,} {f.values / f.wall_s:>8.1f} "
        f"{f.us_per_value:>8.1f} {100 * f.cpu_s / f.wall_s:>6.2f} {f.rss_mb:>7.1f} "
        f"{f.hwm_mb:>7.1f} {100 * f.agent_cpu_s / f.wall_s:>7.1f}"
    ) + (f"  {f.note}" if f.note else "")


HEADER = (
    f"  {'':31} {'values':>8} {'values/s':>8} {'µs/value':>8} {'% core':>6} {'RSS MB':>7} "
    f"{'HWM MB':>7} {'agent %':>7}"
)


def median_of(figs: list[Figures]) -> Figures | None:
    """The phase with the median CPU per value (the lower of the middle two)."""
    done = sorted((f for f in figs if f.values), key=lambda f: f.us_per_value)
    return done[(len(done) - 1) // 2] if done else (figs[0] if figs else None)


def report(results: list[Figures], errors: list[str], args: argparse.Namespace) -> list[str]:
    """Prints the tables; returns the goals missed."""
    missed: list[str] = []
    print(f"\n== CPU per stored value, same agents and OIDs, {args.seconds:g} s windows ==")
    print(f"   load average now {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for case in args.cases:
        every = [f for f in results if f.case == case]
        rows = {t: median_of([f for f in every if f.tool == t]) for t in TOOLS}
        rows = {t: f for t, f in rows.items() if f is not None}
        if not rows:
            continue
        print(f"\n[{case}]\n{HEADER}")
        for tool in TOOLS:
            if tool in rows:
                print(line(rows[tool]))
        if args.rounds > 1:
            print(f"  (each tool's median of {args.rounds} rounds; every round:)")
            for r in range(1, args.rounds + 1):
                by = {f.tool: f for f in every if f.round == r}
                ratios = [
                    f"product / {p} x{by['product'].us_per_value / by[p].us_per_value:.2f}"
                    for p in ("collectd", "exporter")
                    if "product" in by and p in by and by[p].values
                ]
                figs = ", ".join(f"{t} {f.us_per_value:.1f}" for t, f in by.items())
                print(
                    f"    round {r}: µs/value {figs}" + (f"; {', '.join(ratios)}" if ratios else "")
                )
        most = max(f.values for f in rows.values())
        for f in rows.values():
            if f.values < 0.8 * most:
                print(
                    f"  WARNING {f.tool}: {f.values:,} values stored, under 80 % of the most "
                    f"({most:,}): its polls were not all answered (agents starved on a busy "
                    "machine?); its figures are not comparable"
                )
        prod = rows.get("product")
        if prod is None:
            continue
        for peer in ("collectd", "exporter"):
            if peer in rows:
                r = prod.us_per_value / rows[peer].us_per_value
                m = prod.rss_mb / rows[peer].rss_mb if rows[peer].rss_mb else math.nan
                print(f"  product / {peer:9} CPU per value x{r:.2f}   RSS x{m:.1f}")
        goals = [("exporter", rows.get("exporter"))]
        if case == "pdu":
            goals.append(("collectd", rows.get("collectd")))
        for peer, fig in goals:
            if fig is None or not fig.values or not prod.values:
                print(f"  goal against {peer}: not judged (a phase stored nothing)")
                missed.append(f"{case}: against {peer} not judged")
                continue
            ok = prod.us_per_value < fig.us_per_value
            print(
                f"  goal: fewer µs per value than {peer}: {prod.us_per_value:.1f} vs "
                f"{fig.us_per_value:.1f} " + ("PASS" if ok else "FAIL")
            )
            if not ok:
                missed.append(f"{case}: CPU per value {prod.us_per_value:.1f} µs >= {peer}'s")
        if case == "reference":
            ok = prod.rss_mb < GOAL_RSS_MB
            print(
                f"  goal: RSS under {GOAL_RSS_MB:g} MB: {prod.rss_mb:.1f} MB "
                + ("PASS" if ok else "FAIL")
            )
            if not ok:
                missed.append(f"reference: RSS {prod.rss_mb:.1f} MB >= {GOAL_RSS_MB:g} MB")
    print(
        "  values: stored and stamped inside the window (the product: its embedded store, no "
        "health rows; collectd: its csv files; the exporter: samples its scraper got). "
        "agent %: the agent's CPU meanwhile. The scraper's CPU is not in the exporter's."
    )
    for e in errors:
        print(f"  PHASE FAILED: {e}")
    return missed


def main() -> int:
    if "--path" in sys.argv or "--redfish" in sys.argv:
        import collect_path

        if "--path" in sys.argv:
            sys.argv.remove("--path")
        return collect_path.main()
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--cases", default="reference,pdu", help="reference, pdu")
    ap.add_argument("--tools", default=",".join(TOOLS), help="product, collectd, exporter")
    ap.add_argument("--seconds", type=float, default=100, help="measured window per phase")
    ap.add_argument("--warmup", type=float, default=15, help="before each window")
    ap.add_argument("--interval", type=float, default=10)
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="phases of each tool, one after the other, the order reversed every round; "
        "the goals are judged on each tool's median",
    )
    ap.add_argument("--pdus", type=int, default=50)
    ap.add_argument(
        "--pdu-agent", choices=("twin", "snmpsim"), default="twin", help="the PDU case's agents"
    )
    ap.add_argument(
        "--no-favour", action="store_true", help="leave the agents at the tools' priority"
    )
    ap.add_argument("--path", action="store_true", help="the polling path against net-snmp")
    ap.add_argument("--redfish", action="store_true", help="the Redfish case against curl")
    args = ap.parse_args()
    args.cases = [c for c in args.cases.split(",") if c]
    tools = [t for t in args.tools.split(",") if t]
    for t in [*args.cases, *tools]:
        if t not in CASES and t not in TOOLS:
            ap.error(f"unknown case or tool {t!r}")
    for binary, pkg in ((COLLECTD, "collectd-core"), (EXPORTER, "prometheus-snmp-exporter")):
        if shutil.which(binary) is None:
            print(f"{binary} not found: install the Debian package {pkg} (make bench does)")
            return 2
    print(
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} on "
        f"{os.cpu_count()} cores; every {args.interval:g} s, warm-up {args.warmup:g} s, "
        f"window {args.seconds:g} s",
        flush=True,
    )
    results: list[Figures] = []
    errors: list[str] = []
    for name in args.cases:
        try:
            with CASES[name](args) as case:
                print(f"\n[{name}] {case.title}", flush=True)
                if not args.no_favour and favour(case.agent_pid):
                    print("  (the agents run at nice -5, ahead of the tools measured)")
                print(HEADER, flush=True)
                for r in range(1, args.rounds + 1):
                    case.round = r
                    # each round in the other order: a machine getting faster or slower
                    # during the run favours no tool
                    for tool in tools if r % 2 else tools[::-1]:
                        try:
                            fig = RUNNERS[tool](case, args)
                        except Exception as exc:  # noqa: BLE001 - kept, reported, next phase
                            traceback.print_exc()
                            errors.append(f"{name}/{tool} round {r}: {exc}")
                            continue
                        fig.round = r
                        results.append(fig)
                        print(line(fig), flush=True)
        except Exception as exc:  # noqa: BLE001 - the agents did not start: next case
            traceback.print_exc()
            errors.append(f"{name}: {exc}")
    missed = report(results, errors, args)
    if missed:
        print("GOAL MISSED: " + "; ".join(missed))
    return 2 if errors else (1 if missed else 0)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
