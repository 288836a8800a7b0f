"""What a real ``dcim run`` costs per stored value: CPU of its process tree and memory.

The method of issue #15 (the collector next to collectd and prometheus-snmp-exporter on 50
APC rack PDUs): a real collector process (``python -m dcim.cli run site.yaml``, embedded
store, as installed) polls agents served by the twin (``dcim twin serve``, its own process,
not counted); after a warm-up, the CPU of the collector's process tree (utime + stime of the
process and its children, from /proc) is read over a window (default 100 s), and the values
are counted in what it stored: the embedded store's points with a timestamp in the window
(device measurements; the collector's own ``dcim_poll``/``dcim_spool`` health rows are
counted apart). Memory: VmRSS at the end of the window and VmHWM (the peak), from
/proc/PID/status; and the RSS right after start-up (before the first poll).

Cases (``--cases``):

* ``pdu``: 50 APC rack PDUs every 10 s, SNMPv2c, profile ``apc_rpdu2``: snmpsim serving the
  recorded walk of an AP8641 (``snmpsim-data``'s ``UPS/apc-8641``: 24 metered outlets, 3
  phases; about 81 values a poll, as in the issue) on 50 UDP ports, in its own process;
* ``site``: the reference site's 362 SNMP agents (300 server BMCs, 60 PDUs, 2 UPS) every
  10 s, SNMPv2c.

``--py-spy OUT`` records the collector with py-spy (``OUT.<case>.svg``, flame graph, over the
window; py-spy's own CPU is not in the figure; it samples without pausing the target,
``--nonblocking``): the thread holding the GIL (``--gil``), or with ``--all-threads`` every
thread running (SQLite works without the GIL in the commit and forwarder threads).

    .venv/bin/python benchmarks/profile_collect.py [--cases pdu,site] [--window 100]
        [--warmup 25] [--interval 10] [--py-spy /tmp/prof [--raw] [--all-threads]]
    .venv/bin/python benchmarks/profile_collect.py --poller-rounds 40   # the pollers alone

Prints the load average (``/proc/loadavg``) before and after each run: on a shared machine
the figures are only comparable at similar loads. To compare two versions, run them side by
side (two checkouts, ``PYTHONPATH=CHECKOUT``, started together): both see the same load.
The collector runs in the case's work directory: ``python -m`` puts the working directory
first on ``sys.path``, and started from one checkout both collectors ran that checkout's
code whatever ``PYTHONPATH`` said.

Figures of one side-by-side run (2 shared cores, load average 8-11 from other sessions,
Python 3.11, snmpsim 1.2.2; ``--window 100``), before (main at 3337fa9) -> after:

    case                      µs CPU per stored value   user+system s / 100 s   RSS (peak)
    pdu  (50 AP8641, 405/s)   68.5 -> 50.9              2.58 -> 2.06            73.2 -> 54.3 MB
    site (362 agents, 85/s)   423  -> 406               3.61 -> 3.46            74.4 -> 56.9 MB

    At start (pollers built): 45.6 -> 46.4 MB both (pysnmp was imported at the first poll
    too). What bought it: pysnmp not imported for v1/v2c devices (~19 MB, and part of the
    CPU: its import-time objects and MIB builder); group commit of the spool (one
    transaction per batch of polls that ended during a commit); column OIDs of SNMP tables
    parsed once per process, not per cell; the wire codec's OID check skipped for OIDs
    already seen. The poller itself (decode to readings, no spool), measured apart against
    the same snmpsim: 29-30 -> 25.5-27 µs per value.

    Where the rest goes (py-spy ``--gil`` on the pdu case, share of GIL-holding samples):
    the SNMP poller 29 % (BER decoding 13 %, table rows 12 %, requests and walk 10 %),
    asyncio's loop itself 15-20 %, the forwarder 6 % (the embedded store's write and its
    JSON of each reading's tags, the line protocol decoded back for it), the committer and
    pipeline 8 %, the scheduler 5 %. A GETBULK over a table's columns asks the short
    table's columns (3 phases) as many rows as the long one's (24 outlets): about two
    var-binds are decoded per value stored. On the reference site the values per poll are
    few (2.4): each poll's ``dcim_poll`` health reading (5 values, stored) and the per-poll
    overhead dominate.

    Memory, what is left (RSS of ``python -c "import ..."`` step by step): the interpreter
    10.8 MB, pydantic 6.7 MB, ``dcim.config`` and the protocol plugins' models 13.7 MB
    (pydantic-core's validators and serializers, outside Python's heap), the rest of what
    ``dcim run`` imports about 12 MB: 45-47 MB once the pollers are built, 54-57 MB after
    100 s (SQLite page caches of the spool and the store, the threads' malloc arenas:
    ``MALLOC_ARENA_MAX=2`` saved only 1.6 MB, not kept). Under 40 MB needs fewer pydantic
    models loaded at run time, not done here.

    Issue #15 part 2, side by side against main at 62d4666 (load average 2-7, ``--window
    60``; µs CPU per stored value, before -> after): pdu 46.7 -> 45.2 and 44.8 -> 41.1
    (the walk, store and spool changes, then with the timer and decoder ones too), and with
    every change (``--window 90``, load 1.2 -> 0.7) 45.2 -> 40.3 (user+system 1.65 -> 1.47 s);
    site 424 -> 458, 415 -> 444 and (``--window 90``) 460 -> 400, i.e. unchanged within
    the noise of the reference mix, whose cost is per poll. What bought it (see the
    CHANGELOG): GETBULKs sized per table from the last poll's row counts (185 -> 155
    var-binds a poll of an AP8641), one loop timer for all SNMP requests in flight, var-bind
    headers decoded inline, the embedded store's series found by the tags as they come, and
    the spool's readings handed to the embedded store's forwarder without decoding them
    back. py-spy (``--gil --spy-rate 1000 --raw``, pdu, 3,371 samples, taken after the walk,
    store and spool changes, before the timer and decoder ones): BER decoding 15 %, the
    per-request loop timer (``call_later``) 7 %, asyncio's loop itself 12 %, the committer
    thread's pipeline (screen, encoder, spool append) 10 %, table rows 4 %.
    Memory, a later side-by-side run (load 2.0 -> 1.5; RSS after 100 s, main -> change):
    pdu 54.0 -> 50.2 MB, site 58.0 -> 52.3 MB (at start 46.1 -> 42.8 and 51.8 -> 48.1).
    What bought it: prometheus_client, the KPI package and urllib's HTTP client imported only
    when configured; the site file parsed once with libyaml, its lines composed only for
    errors; the plausibility checks shared by the devices of a profile; alert instances with
    ``__slots__`` and no empty deque each. What is left is in docs/benchmarks.md (the
    pydantic figure above counted the models' first build: ``defer_build`` saves nothing).

    A second side-by-side pdu run while another session's tests ran (load 9-13) lost half
    of both collectors' polls to timeouts (190 and 177 values/s instead of 405): 92.0 ->
    86.3 µs per value, RSS 73.2 -> 54.2 MB; per-value CPU is only comparable when every
    poll is answered.

    Issue #15 part 4, side by side against main at 3d84e30 (load average 8-10, ``--window
    60``; µs CPU per stored value, main -> change): site 362.1 -> 253.1, 344.6 -> 233.6 and
    (every change, load 6.0 -> 8.2) 399.1 -> 266.5; pdu 42.0 -> 37.4, 39.5 -> 34.0 and 43.0
    -> 37.3. ``--threads``, the change, pdu: event loop 0.57-0.63 s, commit thread 0.14-0.15
    s, forwarder 0.11-0.13 s per 60 s (main: 0.59, 0.21, 0.11 s); site: 0.90-1.06, 0.17-0.19,
    0.10-0.11 s. What bought it (see the
    CHANGELOG): the spool's commit waiting up to 0.25 s for more polls (asleep, so that a
    submission does not wake it: that wake-up was 16 % of the loop's samples on the site),
    tag-only table columns (outlet names) walked every ``snmp.tag_refresh_s`` instead of
    every poll, a row's tags built once, ``Walk.feed`` by place in the batch, the screen's
    quick test among the sentinels in range only (39 -> 19 µs per PDU poll). The poller
    alone (50 pollers against ``pdu_agents.py``, a poll every 20 ms, process CPU, main and
    the change at the same time, 3 runs): 1,855-2,121 -> 1,522-1,785 µs per poll of 81
    values. Where the rest goes (py-spy ``--gil --nonblocking --spy-rate 1000 --raw``, pdu,
    every change, 505 samples at load 12, share of GIL-holding samples): the poller 29 %
    (its walk 18 %: ``Walk.feed`` 6 %; table rows 7 %), the loop's UDP receive path 18 %
    (BER decoding 12 %, ``neutral`` 2 %), asyncio's loop itself about 12 % (``_run_once``,
    ``select``, ``Handle._run``), the commit thread 9 % (screen 5 %, pipeline 2 %, spool
    append 2 %), the forwarder 8 % (the embedded store's write 4 %), the alert engine's
    ``observe`` 4 %, ``Committer.submit`` 3 % (7 % before the window was slept).
    Issue #15's memory goal (under 40 MB), side by side against main at 3d84e30 (load
    average 8.3 -> 16 from other sessions; ``--window 100``; main -> change): RSS after 100 s
    pdu 52.0 -> 36.5 MB, site 53.1 -> 37.0 MB (at start 44.7 -> 29.4 and 48.2 -> 29.9); µs
    of CPU per value pdu 48.3 -> 46.6 (both lost a fifth of their polls to the load), site
    366 -> 394 (the noise of this load). What bought it: the site file validated by a child
    process (dcim.runconfig), the collector on plain models (no pydantic: about 14 MB), no
    ssl without a TLS need (4 MB), neither PyYAML nor importlib.metadata (1.2 and 2.5 MB).
    The RSS still grows after the first 100 s, as main's does: the SQLite page caches fill
    (sqlite3_memory_used 1.0 -> 2.6 MB over 4 minutes, then flat), and each device's window
    of 200 start delays (a ring of C doubles now: 0.6 MB for 362 devices once full, after 33
    minutes, where a deque of floats held 2.3); SQLite's heap is held to 1 MiB now (a
    process-wide soft limit: pdu side by side, load 2.6-3.6, 35.7 -> 34.3 MB, 41.1 -> 40.4
    µs per value). Over longer runs (the reference site, main and the change polling one
    twin, VmRSS each minute, load 1-4): main 55.7 MB after 20 minutes (56.5 after 35 in an
    earlier run), the change 36.7 MB from the 5th minute to the 20th.

    Issue #15, requests per poll, side by side against main at fdce1e9 (pdu; µs CPU per
    stored value, main -> change): ``snmp.max_repetitions`` 25 and a short table's columns
    in a GETBULK of their own (4 -> 3 requests an AP8641 poll; ``--window 60``, load 1.6)
    30.8 -> 30.0; with the scalars as non-repeaters of the first GETBULK too (2 requests;
    ``--window 90``, load 3.1 -> 1.0) 34.3 -> 30.9, the event loop's thread 0.80 -> 0.69 s;
    again (``--window 100``, load 0.9 -> 0.5) 32.3 -> 31.1, 0.84 -> 0.75 s, and the site
    239.5 -> 247.5 (its 300 BMCs have no tables: the noise of whichever starts second). The
    poller alone (``--poller-rounds 40``: 50 pollers in one process against this benchmark's
    snmpsim, ``poll()`` in rounds of all 50, process CPU, main and the change at the same
    time): 1,067-1,254 ->
    866-1,006 µs per poll of 81 values. Not kept, no gain side by side: uvloop (32.5 against
    asyncio's 32.1 µs, loop thread 0.51 against 0.52 s); ``gc.freeze`` or a larger
    threshold (``gc.callbacks``: one generation-0 collection per 10 s after start-up, 0.2 %
    of the CPU); var-binds decoded straight into the neutral form. py-spy (``--gil
    --nonblocking --spy-rate 1000 --raw``, pdu, 671 samples, load 0.8-1.1) after: the
    poller 33 % (its walk 21 %: BER decoding 11 %, ``Walk.feed`` 7 %; table rows 9 %), the
    UDP receive path 13 %, asyncio's loop itself about 12 %, the commit thread 12 % (screen
    4 %, spool append 3 %), the forwarder 8 % (the store's write 3 %), ``Collector.emit``
    6 % (alert engine 3 %, ``Committer.submit`` 2 %). Then the spool's commit window 1 s
    (was 0.25 s), against the same code with 0.25 s (pdu, ``--window 90``, load 0.6 ->
    0.4): 31.5 -> 26.1 µs, the commit thread 0.27 -> 0.12 s; main against every change
    (``--window 100``, load 1.5 -> 2.5): 32.3 -> 24.7 µs per value (user+system 1.31 ->
    1.00 s; event loop 0.84 -> 0.68 s, commit thread 0.25 -> 0.13 s, forwarder 0.19 s both).
    py-spy then (as above, 613 samples, 26.3 µs per value, load 0.1-0.4): the event loop's
    thread 63 % (the poller 26 %: its walk 19 %, BER decoding 11 %, ``Walk.feed`` 7 %, table
    rows 7 %; the UDP receive path 12 %; asyncio's loop itself about 12 %;
    ``Collector.emit`` 6 %: alert engine 3 %, ``Committer.submit`` 2 %), the commit thread
    10 % (screen 4 %, spool append 3 %), the forwarder 7 % (the store's write 4 %).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from harness import site_doc, twin, work_dir

from dcim.twin.ports import free_ports

TICK = os.sysconf("SC_CLK_TCK")
HEALTH = ("dcim_poll", "dcim_spool")


def tree_cpu(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of ``pid`` and its living descendants (threads are in
    their process's), waited-for children included."""
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            f = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(d.name)] = f
        children.setdefault(int(f[1]), []).append(int(d.name))
    user = system = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        st = stats.get(p)
        if st is not None:  # utime, stime, cutime, cstime
            user += (int(st[11]) + int(st[13])) / TICK
            system += (int(st[12]) + int(st[14])) / TICK
        todo += children.get(p, [])
    return user, system


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each living thread of ``pid``, by thread id."""
    out: dict[int, float] = {}
    for d in Path(f"/proc/{pid}/task").iterdir():
        try:
            f = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(d.name)] = (int(f[11]) + int(f[12])) / TICK
    return out


def thread_names(pid: int) -> dict[int, str]:
    """Python thread names by thread id (py-spy dump), for :func:`thread_cpu`."""
    try:
        got = subprocess.run(
            [str(Path(sys.executable).with_name("py-spy")), "dump", "--json", "--pid", str(pid)],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return {int(t["os_thread_id"]): str(t["thread_name"]) for t in json.loads(got.stdout)}
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, TypeError):
        return {}


def mem_kib(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(rest.split()[0])
    return out


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def count_values(db: Path, t0_ns: int, t1_ns: int) -> tuple[int, int]:
    """(device values, health values) stored with a timestamp in [t0, t1)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        rows = con.execute(
            "SELECT s.measurement, count(*) FROM point p JOIN series s ON s.id = p.series_id "
            "WHERE p.time_ns >= ? AND p.time_ns < ? GROUP BY s.measurement",
            (t0_ns, t1_ns),
        ).fetchall()
    finally:
        con.close()
    health = sum(n for m, n in rows if m in HEALTH)
    return sum(n for m, n in rows if m not in HEALTH), health


def case_doc(case: str, work: Path, interval: float) -> dict[str, Any]:
    if case == "pdu":
        doc = site_doc(work, racks=25, interval_s=interval, snmp_only=True)
        doc["devices"] = [d for d in doc["devices"] if d["profile"] == "apc_rpdu2"]
        assert len(doc["devices"]) == 50, len(doc["devices"])
        base = free_ports(50, kind=socket.SOCK_DGRAM)
        for i, dev in enumerate(doc["devices"]):
            dev["port"] = base + i
            dev["snmp"] = {"version": "2c", "community": {"value": "apc-8641"}}
    else:
        doc = site_doc(work, interval_s=interval, snmp_only=True)
    # The collector's own alert rules stay as shipped (they run on live readings).
    return doc


@contextmanager
def snmpsim(doc: dict[str, Any], work: Path) -> Iterator[int]:
    """snmpsim serving the AP8641 recording on every device's port (community apc-8641)."""
    import snmpsim_data

    data = work / "snmpsim" / "data"
    data.mkdir(parents=True)
    (work / "snmpsim" / "cache").mkdir()
    rec = Path(snmpsim_data.__file__).parent / "data" / "UPS" / "apc-8641.snmprec"
    shutil.copy(rec, data / "apc-8641.snmprec")
    for path in [work, *(work / "snmpsim").rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o644)
    cmd = [
        str(Path(sys.executable).with_name("snmpsim-command-responder")),
        f"--data-dir={data}",
        f"--cache-dir={work / 'snmpsim' / 'cache'}",
        "--logging-method=null",
        *(f"--agent-udpv4-endpoint=127.0.0.1:{d['port']}" for d in doc["devices"]),
    ]
    env = dict(os.environ, SNMPSIM_ALLOW_ROOT="true")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        last = doc["devices"][-1]["port"]
        deadline = time.monotonic() + 60
        while subprocess.run(
            [
                "snmpget",
                "-v2c",
                "-c",
                "apc-8641",
                "-t",
                "0.5",
                "-r",
                "0",
                "-On",
                f"127.0.0.1:{last}",
                "1.3.6.1.2.1.1.3.0",
            ],
            capture_output=True,
            env=dict(os.environ, MIBS=""),
            check=False,
        ).returncode:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("snmpsim did not start")
        yield proc.pid
    finally:
        proc.terminate()
        proc.wait(10)


def run_case(case: str, args: argparse.Namespace) -> dict[str, Any]:
    work = work_dir(f"dcim-profile-{case}-")
    doc = case_doc(case, work, args.interval)
    if args.coalesce is not None:
        doc.setdefault("defaults", {})["coalesce_s"] = args.coalesce
    site = work / "collector.yaml"
    site.write_text(yaml.safe_dump(doc))
    db = Path(doc["storage"]["sink"]["path"])
    load_before = loadavg()
    with snmpsim(doc, work) if case == "pdu" else twin(doc, work):
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        t_start = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "dcim.cli", "run", str(site)],
            env=env,
            cwd=work,  # not the caller's: PYTHONPATH, else the installed package, decides
            stdout=subprocess.DEVNULL,
            stderr=open(work / "collector.log", "w"),  # noqa: SIM115 - closed with the process
        )
        spy: subprocess.Popen[bytes] | None = None
        try:
            # RSS at start: once the pollers are built (the first poll is within a second).
            rss_start = 0
            while time.monotonic() - t_start < 60:
                time.sleep(0.2)
                if proc.poll() is not None:
                    raise RuntimeError(f"dcim run exited {proc.returncode}: see {work}")
                if (work / "spool").exists() and db.exists():
                    rss_start = mem_kib(proc.pid)["VmRSS"]
                    break
            time.sleep(max(0.0, args.warmup - (time.monotonic() - t_start)))
            if args.py_spy:
                spy = subprocess.Popen(
                    [
                        str(Path(sys.executable).with_name("py-spy")),
                        "record",
                        "--pid",
                        str(proc.pid),
                        "--duration",
                        str(int(args.window)),
                        "--rate",
                        str(args.spy_rate),
                        *(() if args.all_threads else ("--gil",)),
                        "--nonblocking",
                        "--format",
                        "raw" if args.raw else "flamegraph",
                        "--output",
                        f"{args.py_spy}.{case}." + ("txt" if args.raw else "svg"),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            t0_ns, c0, th0 = time.time_ns(), tree_cpu(proc.pid), thread_cpu(proc.pid)
            time.sleep(args.window)
            t1_ns, c1, th1 = time.time_ns(), tree_cpu(proc.pid), thread_cpu(proc.pid)
            names = thread_names(proc.pid) if args.threads else {}
            mem = mem_kib(proc.pid)
            # the window's last points reach the store after the forwarder's next flush
            time.sleep(args.flush_wait)
            values, health = count_values(db, t0_ns, t1_ns)
        finally:
            if spy is not None:
                spy.wait(args.window + 30)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
    user, system = c1[0] - c0[0], c1[1] - c0[1]
    cpu = user + system
    seconds = (t1_ns - t0_ns) / 1e9
    out = {
        "case": case,
        "devices": len(doc["devices"]),
        "window_s": round(seconds, 1),
        "cpu_s": round(cpu, 2),
        "user_s": round(user, 2),
        "system_s": round(system, 2),
        "core_pct": round(100 * cpu / seconds, 2),
        "values": values,
        "values_per_s": round(values / seconds, 1),
        "health_values": health,
        "us_per_value": round(1e6 * cpu / values, 1) if values else None,
        "us_per_value_all": round(1e6 * cpu / (values + health), 1) if values else None,
        "rss_start_mb": round(rss_start / 1024, 1),
        "rss_mb": round(mem["VmRSS"] / 1024, 1),
        "hwm_mb": round(mem["VmHWM"] / 1024, 1),
        "threads_cpu_s": {
            f"{names.get(tid, '?')} ({tid})": round(cpu - th0.get(tid, 0.0), 2)
            for tid, cpu in sorted(th1.items(), key=lambda kv: -(kv[1] - th0.get(kv[0], 0.0)))
            if cpu - th0.get(tid, 0.0) > 0
        },
        "load_before": load_before,
        "load_after": loadavg(),
    }
    shutil.rmtree(work, ignore_errors=True)
    return out


def poller_only(rounds: int, interval: float) -> str:
    """The SNMP pollers alone: the pdu case's 50 pollers in this process against its snmpsim,
    ``poll()`` of all 50 at once, ``rounds`` times after 3 rounds of warm-up (table sizes
    learnt); process CPU per poll (snmpsim, its own process, not counted)."""
    import asyncio

    from collectors.snmp.poller import SnmpPoller
    from dcim.config import SiteConfig

    async def polls(cfg: SiteConfig) -> tuple[int, int, int, float]:
        pollers = [SnmpPoller(cfg, d) for d in cfg.devices]
        for _ in range(3):
            await asyncio.gather(*(p.poll() for p in pollers), return_exceptions=True)
        n = values = failed = 0
        t0 = time.process_time()
        for _ in range(rounds):
            for got in await asyncio.gather(*(p.poll() for p in pollers), return_exceptions=True):
                if isinstance(got, BaseException):  # a time-out: snmpsim too slow
                    failed += 1
                    continue
                n += 1
                values += sum(len(r.fields) for r in got)
        return n, values, failed, time.process_time() - t0

    work = work_dir("dcim-profile-poller-")
    doc = case_doc("pdu", work, interval)
    load_before = loadavg()
    with snmpsim(doc, work):
        n, values, failed, cpu = asyncio.run(polls(SiteConfig.model_validate(doc)))
    shutil.rmtree(work, ignore_errors=True)
    return (
        f"pollers alone: {n} polls, {values / max(1, n):.1f} values a poll, "
        f"{1e6 * cpu / max(1, n):.0f} µs CPU per poll ({1e6 * cpu / max(1, values):.2f} per "
        f"value); {failed} polls failed (not comparable unless 0); load {load_before} -> "
        f"{loadavg()}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default="pdu,site")
    ap.add_argument("--window", type=float, default=100.0, help="measured seconds")
    ap.add_argument("--warmup", type=float, default=25.0, help="seconds after start")
    ap.add_argument("--interval", type=float, default=10.0, help="poll interval, seconds")
    ap.add_argument(
        "--coalesce", type=float, help="the site's defaults.coalesce_s (default: as shipped)"
    )
    ap.add_argument("--flush-wait", type=float, default=5.0, help="seconds for the last flush")
    ap.add_argument("--py-spy", help="record a flame graph per case: PREFIX.<case>.svg")
    ap.add_argument("--spy-rate", type=int, default=200, help="py-spy: samples per second")
    ap.add_argument("--json", action="store_true", help="one JSON object per case")
    ap.add_argument("--raw", action="store_true", help="py-spy: collapsed stacks (.txt)")
    ap.add_argument(
        "--threads", action="store_true", help="CPU per thread over the window (py-spy names)"
    )
    ap.add_argument(
        "--all-threads",
        action="store_true",
        help="py-spy: every running thread, not only the one holding the GIL (SQLite's own "
        "work in the commit and forwarder threads runs without it)",
    )
    ap.add_argument(
        "--poller-rounds",
        type=int,
        default=0,
        help="instead of the cases: the pdu case's 50 SNMP pollers alone, this many rounds",
    )
    args = ap.parse_args(argv)
    if args.poller_rounds:
        print(poller_only(args.poller_rounds, args.interval), flush=True)
        return 0
    for case in args.cases.split(","):
        r = run_case(case, args)
        if args.json:
            print(json.dumps(r), flush=True)
            continue
        print(
            f"{r['case']:5} {r['devices']} devices, {r['values_per_s']} values/s stored: "
            f"{r['us_per_value']} µs CPU per value ({r['us_per_value_all']} counting the "
            f"{r['health_values']} health values), {r['core_pct']} % of a core (user "
            f"{r['user_s']} s, system {r['system_s']} s); RSS "
            f"{r['rss_start_mb']} MB at start, {r['rss_mb']} MB after {r['window_s']:.0f} s "
            f"(peak {r['hwm_mb']} MB); load {r['load_before']} -> {r['load_after']}",
            flush=True,
        )
        if args.threads:
            for name, cpu in r["threads_cpu_s"].items():
                print(f"      {cpu:6.2f} s  {name}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
