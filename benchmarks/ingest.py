"""Ingest: how fast readings go through the durable spool and into InfluxDB, and in how much
memory an outage backlog is held and forwarded.

(a) spool: append + peek + ack of N readings (10 fields each, then the reference site's own
    mix), in points/s (one point = one field value) and lines/s; target >= 200,000 points/s.
    Peeked as the forwarder does for InfluxDB (the rows' line protocol, nothing decoded) and
    as for the embedded store (the readings decoded from the rows' line protocol).
(b) the collector's pipeline -> spool -> forwarder -> a private InfluxDB 1.x, sustained,
    against the ceiling measured in the same run: the same bytes posted straight to
    ``/write`` in batches of the same size (the same line protocol, gzip-compressed as the
    collector's sink compresses it), encoded beforehand, one after another on one
    keep-alive connection as fast as InfluxDB answers; target >= 70 % of the ceiling. Two
    paths: fed flat out while the forwarder runs (all of it in one process, as in the
    collector), and the forwarder alone draining the same readings already spooled (an outage
    backlog). The ceiling and both paths are measured ``ROUNDS`` times in turns, each phase
    on an InfluxDB of its own started empty (so that none finds the server holding or
    compacting the points of the one before), the best time of each compared; every round's
    figures are printed. With the CPU per line of influxd and of this process in each phase
    (and of its threads: the one feeding the pipeline, the forwarder's and its helper's): fed
    flat out, the collector's own work per reading (validation, encoding, the durable commit)
    shares the machine's cores with influxd and one interpreter lock with the forwarder.
(c) memory: a collector process (the real ``Collector`` object: pollers, pipeline, spool,
    forwarder, InfluxDB store) while one hour of the reference site's readings (data plus
    ``dcim_poll`` rows, 387 devices every 10 s) pile up in the spool with InfluxDB down,
    then drain once it is up; its peak RSS against 150 MB. The hour is replayed as fast as
    the spool takes it, one accept per 10 s cycle, instead of being polled live.

    .venv/bin/python benchmarks/ingest.py [--readings 200000] [--hours 1] [--no-gzip]

``--no-gzip``: the collector's InfluxDB sink posts plain line protocol in (b) (the sink's
``gzip: false``), and so does the ceiling's client; by default both compress, as the product
does (the ceiling's bodies compressed beforehand, outside its timing: the collector
compresses its own within its time).

Needs ``influxd`` (Debian ``influxdb``); uses ``dcim/testing/servers.py`` to start
InfluxDB on a free port in a temporary directory.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from dcim.config import InfluxSink, SiteConfig
from dcim.forwarder import Forwarder
from dcim.pipeline import Pipeline
from dcim.reading import Reading
from dcim.spool import Spool
from dcim.storage.influx import InfluxStore, write_body
from dcim.storage.lineprotocol import encode_many
from dcim.testing.servers import InfluxServer, start_influxdb
from dcim.twin.backfill import backfill
from dcim.twin.model import SiteModel
from dcim.twin.site import paris_chapelle

NS = 1_000_000_000
INTERVAL_S = 10.0  # the reference site's poll interval
BATCH = 5000  # the forwarder's default batch size (storage.batch_size)
SPOOL_TARGET = 200_000  # points/s
RATIO_TARGET = 0.70
RSS_TARGET_MB = 150.0
MISSED: list[str] = []  # each target missed, said at the end (and in the exit status)


# -- data -------------------------------------------------------------------------------------


def ten_field_readings(n: int) -> list[Reading]:
    """Readings shaped like the reference site's (its tags, a PDU-like measurement), 10 float
    fields each, one per device and 10 s tick."""
    rnd = random.Random(1)
    devices = [(f"R{r:02d}", f"pdu-R{r:02d}-{s}") for r in range(1, 31) for s in "AB"]
    t0 = (time.time_ns() // (10 * NS) - n // len(devices) - 1) * 10 * NS
    out = []
    for i in range(n):
        rack, dev = devices[i % len(devices)]
        tags = {
            "site": "paris-chapelle",
            "room": "salle-a" if rack <= "R15" else "salle-b",
            "rack": rack,
            "device": dev,
            "role": "pdu_output",
        }
        fields: dict[str, float | int | bool | str] = {
            f"f{k}_w": rnd.uniform(0, 5000) for k in range(10)
        }
        out.append(Reading("pdu", tags, fields, t0 + (i // len(devices)) * 10 * NS + i))
    return out


def reference_cycles(cfg: SiteConfig, hours: float) -> list[list[Reading]]:
    """``hours`` of the reference site up to now, as the collector would emit them: for each
    10 s cycle, every device's data reading and its ``dcim_poll`` row (1 ms earlier: the poll
    started before the answer came)."""
    end = time.time() // INTERVAL_S * INTERVAL_S
    start = end - hours * 3600
    model = SiteModel(cfg, t0=start - 60, seed=1)
    protocol = {d.name: d.protocol for d in cfg.devices}
    step = int(INTERVAL_S * NS)
    cycles: dict[int, list[Reading]] = {}
    for batch in backfill(cfg, model, start, end - 1, interval_s=INTERVAL_S):
        for r in batch:
            dev = r.tags["device"]
            health = Reading(
                "dcim_poll",
                {"site": cfg.site.name, "device": dev, "protocol": protocol[dev]},
                {
                    "up": 1,
                    "duration_s": 0.012,
                    "values_read": len(r.fields),
                    "error": "",
                    "late_s": 0.0,
                },
                r.time_ns - 1_000_000,
            )
            cycles.setdefault(r.time_ns // step, []).extend((r, health))
    return [cycles[k] for k in sorted(cycles)]


def points(readings: list[Reading]) -> int:
    return sum(len(r.fields) for r in readings)


# -- (a) spool ----------------------------------------------------------------------------------


def bench_spool(
    readings: list[Reading], append_batch: int = 1000, *, lines: bool = True
) -> dict[str, float]:
    """Append in batches, then drain: ``lines``, as the forwarder does for InfluxDB (the line
    protocol blocks, nothing decoded); otherwise as for the embedded store (readings decoded
    from the rows' JSON)."""
    with tempfile.TemporaryDirectory() as d, Spool(d) as spool:
        t0 = time.perf_counter()
        for i in range(0, len(readings), append_batch):
            spool.append(readings[i : i + append_batch])
        t1 = time.perf_counter()
        peek = spool.peek_lines if lines else spool.peek
        n = 0
        while True:
            batch = peek(BATCH)
            if not batch.count:
                break
            n += batch.count
            spool.ack(batch)
        t2 = time.perf_counter()
        assert n == len(readings) and spool.pending() == 0, (n, spool.pending())
    return {"append_s": t1 - t0, "drain_s": t2 - t1, "total_s": t2 - t0}


def bench_small_appends(cycle: list[Reading], seconds: float = 3.0) -> float:
    """Appends per second of one poll each (data + dcim_poll: one transaction, one fsync)."""
    polls = [cycle[i : i + 2] for i in range(0, len(cycle), 2)]
    with tempfile.TemporaryDirectory() as d, Spool(d) as spool:
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            spool.append(polls[n % len(polls)])
            n += 1
        return n / (time.perf_counter() - t0)


def report_spool(args: argparse.Namespace, cycles: list[list[Reading]]) -> None:
    print(f"(a) spool: append (batches of 1,000) + peek/ack (batches of {BATCH:,})")
    ref = [r for c in cycles for r in c][: args.readings]
    for label, readings in (
        ("10 fields/reading", ten_field_readings(args.readings)),
        (f"reference mix, {points(ref) / len(ref):.2f} fields/reading", ref),
    ):
        n, p = len(readings), points(readings)
        print(f"    {label}: {n:,} readings, {p:,} points:")
        for lines, how in ((True, "line protocol (InfluxDB)"), (False, "decoded (embedded)")):
            t = bench_spool(readings, lines=lines)
            verdict = "OK" if p / t["total_s"] >= SPOOL_TARGET else "BELOW TARGET"
            if verdict != "OK":
                MISSED.append(f"(a) spool, {label}, peek {how}: {p / t['total_s']:,.0f} points/s")
            print(
                f"      peek {how}: append {n / t['append_s']:,.0f} lines/s, "
                f"peek+ack {n / t['drain_s']:,.0f} lines/s; append+peek+ack "
                f"{n / t['total_s']:,.0f} lines/s = {p / t['total_s']:,.0f} points/s "
                f"(target >= {SPOOL_TARGET:,}: {verdict})"
            )
    rate = bench_small_appends(cycles[0])
    need = sum(1 for r in cycles[0] if r.measurement == "dcim_poll") / INTERVAL_S
    print(
        f"    one poll per append (data + dcim_poll, one fsync each): {rate:,.0f} appends/s "
        f"(the reference site makes {need:.1f} polls/s)"
    )


# -- (b) into InfluxDB --------------------------------------------------------------------------


def influx_query(srv: InfluxServer, q: str, db: str = "") -> list[dict[str, Any]]:
    data = urllib.parse.urlencode({"q": q, "db": db, "epoch": "ns"}).encode()
    with urllib.request.urlopen(f"{srv.url}/query", data=data, timeout=300) as r:
        doc = json.loads(r.read())
    series: list[dict[str, Any]] = []
    for res in doc.get("results", []):
        if "error" in res:
            raise RuntimeError(f"{q}: {res['error']}")
        series.extend(res.get("series", []))
    return series


def polls_in(srv: InfluxServer, db: str) -> int:
    s = influx_query(srv, 'SELECT count("up") FROM "dcim_poll"', db)
    return int(s[0]["values"][0][1]) if s else 0


class CpuMeter:
    """CPU seconds used over a phase by influxd (from /proc) and by this process, whose
    threads are the collector's (or the ceiling's client), with its children; ``threads``:
    named threads of this process (native ids), their CPU over the phase too."""

    def __init__(self, srv: InfluxServer):
        assert srv.proc is not None
        self.stat = Path(f"/proc/{srv.proc.pid}/stat")
        self.influxd = self.collector = 0.0
        self.threads: dict[str, int] = {}
        self.thread_cpu: dict[str, float] = {}

    def _now(self) -> tuple[float, float, dict[str, float]]:
        influxd = _proc_cpu(self.stat)
        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        threads = {
            name: _proc_cpu(Path(f"/proc/self/task/{tid}/stat"))
            for name, tid in self.threads.items()
        }
        return influxd, own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime, threads

    def start(self) -> None:
        self._start = self._now()

    def stop(self) -> None:
        end = self._now()
        self.influxd, self.collector = end[0] - self._start[0], end[1] - self._start[1]
        self.thread_cpu = {k: v - self._start[2].get(k, 0.0) for k, v in end[2].items()}

    def __enter__(self) -> CpuMeter:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def per_line(self, n: int, who: str) -> str:
        split = "".join(f"; {name} {cpu / n * 1e6:.1f} us" for name, cpu in self.thread_cpu.items())
        return (
            f"CPU per line: influxd {self.influxd / n * 1e6:.1f} us, "
            f"{who} {self.collector / n * 1e6:.1f} us{split}"
        )


def _proc_cpu(stat: Path) -> float:
    """utime + stime of a process or thread, s (0 once it is gone)."""
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ceiling(
    srv: InfluxServer,
    readings: list[Reading],
    db: str,
    work: Path,
    meter: CpuMeter,
    *,
    gzip: bool,
) -> float:
    """Seconds to post ``readings`` as line protocol in batches of ``BATCH``, the bytes encoded
    beforehand, one after another on one keep-alive connection, each as soon as InfluxDB has
    answered the one before: what InfluxDB takes at most from one writer (``meter``: the CPU
    used meanwhile). ``gzip``: the bodies compressed beforehand as the collector's sink
    compresses them (:func:`dcim.storage.influx.write_body`), so that InfluxDB is sent the
    same bytes by both. ``work`` is unused (kept for the phases' common signature).

    By hand with ``http.client`` (standard library) rather than curl: one curl process per
    batch measured a process start and a TCP connection per batch, not InfluxDB."""
    del work
    influx_query(srv, f'CREATE DATABASE "{db}"')
    bodies = [
        write_body(encode_many(readings[i : i + BATCH]), gzip=gzip)
        for i in range(0, len(readings), BATCH)
    ]
    url = urllib.parse.urlsplit(srv.url)
    path = f"/write?db={db}&precision=ns"
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=300)
    try:
        with meter:
            t0 = time.perf_counter()
            for body, headers in bodies:
                conn.request("POST", path, body, headers)
                resp = conn.getresponse()
                answer = resp.read()
                if resp.status != 204:
                    raise RuntimeError(f"ceiling: /write answered {resp.status}: {answer[:200]!r}")
            elapsed = time.perf_counter() - t0
    finally:
        conn.close()
    return elapsed


def through_collector(
    srv: InfluxServer,
    cycles: list[list[Reading]],
    db: str,
    work: Path,
    meter: CpuMeter,
    *,
    concurrent: bool,
    gzip: bool,
) -> tuple[float, float]:
    """The collector's path into InfluxDB, one accept per 10 s cycle, as fast as the pipeline
    takes them. ``concurrent``: the forwarder runs while the cycles are fed, and the result
    is (seconds from the first accept until the spool is empty, seconds the feeding took);
    otherwise the cycles are spooled first and the result is (seconds the forwarder took to
    drain them, seconds the spooling took). ``meter``: the CPU used over the first figure,
    also by this (the feeding) thread and by the forwarder's. ``gzip``: the sink's switch."""
    sink = InfluxSink(type="influxdb", url=srv.url, database=db, timeout_s=60.0, gzip=gzip)
    store = InfluxStore(sink)
    store.ensure_database()
    spool = Spool(work / f"spool-{db}")
    fwd = Forwarder(spool, store, batch_size=BATCH, flush_interval_s=1.0)
    pipe = Pipeline(spool)
    meter.threads = {"feeding thread": threading.get_native_id()} if concurrent else {}
    try:
        if concurrent:
            fwd.start()
            meter.threads["forwarder thread"] = fwd.thread_id() or 0
            meter.start()
        t0 = time.perf_counter()
        for c in cycles:
            pipe.accept(c)
        fed = time.perf_counter() - t0
        if not concurrent:
            fwd.start()
            meter.threads = {"forwarder thread": fwd.thread_id() or 0}
            meter.start()
            t0 = time.perf_counter()
        if not fwd.flush(600):
            raise RuntimeError(f"not drained: {fwd.stats()}")
        elapsed = time.perf_counter() - t0
        for t in threading.enumerate():  # acks and reads ahead for the forwarder (a backlog)
            if t.name.startswith("dcim-forwarder-spool") and t.native_id is not None:
                meter.threads["its helper"] = t.native_id
        meter.stop()
    finally:
        fwd.stop()
        spool.close()
        store.close()
    st = fwd.stats()
    if st.quarantined:
        raise RuntimeError(f"{st.quarantined} readings quarantined")
    return elapsed, fed


# Each path measured this many times, in turns, the best time of each compared: on the shared
# 2-core machine one round's ceiling ranged from 57,000 to 270,000 lines/s within the hour.
ROUNDS = 3


Phase = Callable[[InfluxServer, str, CpuMeter], float]  # (server, database, meter) -> seconds


def on_fresh_influxdb(work: Path, db: str, n_polls: int, phase: Phase) -> tuple[float, CpuMeter]:
    """``phase`` against an InfluxDB of its own, started empty (every phase finds the server
    in the same state: not holding the points of the phases before, not compacting them);
    then the points are counted, the server stopped and its files deleted."""
    srv = start_influxdb(work / f"influxdb-{db}")
    try:
        meter = CpuMeter(srv)
        seconds = phase(srv, db, meter)
        got = polls_in(srv, db)
        if got != n_polls:
            raise RuntimeError(f"{db}: {got} dcim_poll points in InfluxDB, {n_polls} sent")
    finally:
        srv.stop()
        shutil.rmtree(work / f"influxdb-{db}", ignore_errors=True)
        os.sync()  # nor the disk still writing back the phase before
    return seconds, meter


def report_influx(cycles: list[list[Reading]], work: Path, *, gzip: bool) -> float:
    """(b); returns the ratio to the ceiling fed flat out (the best of each). ``gzip``: the
    collector's sink compresses its writes, and the ceiling posts the same compressed bytes."""
    readings = [r for c in cycles for r in c]
    n, p = len(readings), points(readings)
    n_polls = sum(1 for r in readings if r.measurement == "dcim_poll")
    runs: list[dict[str, tuple[float, CpuMeter]]] = []
    spooled: list[float] = []

    def drained(srv: InfluxServer, db: str, meter: CpuMeter) -> float:
        seconds, spooling = through_collector(
            srv, cycles, db, work, meter, concurrent=False, gzip=gzip
        )
        spooled.append(spooling)
        return seconds

    phases: dict[str, Phase] = {
        "ceiling": lambda srv, db, m: ceiling(srv, readings, db, work, m, gzip=gzip),
        "fed": lambda srv, db, m: through_collector(
            srv, cycles, db, work, m, concurrent=True, gzip=gzip
        )[0],
        "drain": drained,
    }
    for k in range(1, ROUNDS + 1):
        runs.append(
            {what: on_fresh_influxdb(work, f"{what}{k}", n_polls, f) for what, f in phases.items()}
        )

    def best(what: str) -> tuple[float, CpuMeter]:
        return min((r[what] for r in runs), key=lambda x: x[0])

    top = best("ceiling")[0]

    def verdict(seconds: float) -> str:
        ok = top / seconds >= RATIO_TARGET
        if not ok:
            MISSED.append(f"(b) a path into InfluxDB at {top / seconds:.0%} of the ceiling")
        return f"{top / seconds:.0%} of the ceiling (target >= {RATIO_TARGET:.0%}: " + (
            "OK)" if ok else "BELOW TARGET)"
        )

    def rates(what: str) -> str:
        return " then ".join(f"{p / r[what][0]:,.0f}" for r in runs) + " points/s"

    print(
        f"(b) into InfluxDB 1.x, {n:,} lines = {p:,} points ({p / n:.2f} fields/line), "
        f"batches of {BATCH:,} lines, the collector's writes {'gzip' if gzip else 'plain'}; "
        f"each path {ROUNDS} times in turns (ceiling, fed flat out, draining), each on an "
        "InfluxDB started empty, the best of each compared:"
    )
    t, m = best("ceiling")
    print(
        f"    ceiling, keep-alive POSTs to /write of the same bytes "
        f"({'gzip' if gzip else 'plain'}, encoded beforehand): {rates('ceiling')} "
        f"({n / t:,.0f} lines/s at best; {m.per_line(n, 'the client')})"
    )
    t, m = best("fed")
    each = ", ".join(f"{r['ceiling'][0] / r['fed'][0]:.0%}" for r in runs)
    print(
        f"    pipeline -> spool -> forwarder, fed flat out: {rates('fed')} "
        f"({n / t:,.0f} lines/s at best): {verdict(t)}; round by round {each} of that "
        "round's ceiling"
    )
    print(f"      ({m.per_line(n, 'collector: pipeline, spool and forwarder')})")
    t, m = best("drain")
    each = ", ".join(f"{r['ceiling'][0] / r['drain'][0]:.0%}" for r in runs)
    print(
        f"    forwarder draining a spooled backlog: {rates('drain')} ({n / t:,.0f} lines/s "
        f"at best): {verdict(t)}; round by round {each}"
    )
    print(f"      ({m.per_line(n, 'collector')})")
    fastest = min(spooled)
    print(
        f"    (pipeline -> spool alone, forwarder idle: {n / fastest:,.0f} lines/s = "
        f"{p / fastest:,.0f} points/s at best, {top / fastest:.0%} of the ceiling: fed flat "
        "out, the collector cannot go faster than it feeds its spool; it took "
        f"{best('fed')[0] / fastest:.2f} times as long as this feeding alone)"
    )
    return top / best("fed")[0]


# -- (c) memory ---------------------------------------------------------------------------------


def vm(key: str) -> float:
    """VmRSS / VmHWM of this process, MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def memory_child(config: str, stream: str) -> None:
    """The collector side of (c): replay the hour into the spool with InfluxDB down, say so,
    wait for a line on stdin (InfluxDB is up), wait until drained, print figures as JSON."""
    from dcim.config import load_config
    from dcim.runtime import Collector

    peak = {"phase": 0.0}

    def sample(stop: threading.Event) -> None:
        while not stop.wait(0.1):
            peak["phase"] = max(peak["phase"], vm("VmRSS"))

    logging.basicConfig(level=logging.WARNING, format="    [collector] %(message)s")
    col = Collector(load_config(config))
    col.forwarder.start()
    base = vm("VmRSS")
    stop = threading.Event()
    threading.Thread(target=sample, args=(stop,), daemon=True).start()
    t0 = time.perf_counter()
    with open(stream) as f:
        for line in f:
            col.pipeline.accept([Reading(*r) for r in json.loads(line)])
    fed_s = time.perf_counter() - t0
    backlog = col.spool.pending()
    build_peak, peak["phase"] = max(peak["phase"], vm("VmRSS")), 0.0
    print(json.dumps({"backlog": backlog}), flush=True)
    sys.stdin.readline()
    t1 = time.perf_counter()
    first: float | None = None
    while col.spool.pending():
        if first is None and col.spool.pending() < backlog:
            first = time.perf_counter() - t1
        time.sleep(0.1)
    drain_s = time.perf_counter() - t1
    stop.set()
    col.forwarder.stop()
    col.spool.close()
    col.store.close()
    out = {
        "base_mb": base,
        "build_peak_mb": build_peak,
        "drain_peak_mb": max(peak["phase"], vm("VmRSS")),
        "hwm_mb": vm("VmHWM"),
        "fed_s": fed_s,
        "drain_s": drain_s,
        "first_ack_s": first or drain_s,
        "sent": col.forwarder.stats().sent,
    }
    print(json.dumps(out), flush=True)


def report_memory(cycles: list[list[Reading]], hours: float, work: Path) -> None:
    srv = start_influxdb(work / "influxdb-c")
    srv.stop()  # down: the port and data directory are kept for the restart
    try:
        doc = paris_chapelle(
            spool_dir=str(work / "spool-c"),
            sink={"type": "influxdb", "url": srv.url, "database": "backlog"},
        )
        config = work / "site-c.yaml"
        config.write_text(yaml.safe_dump(doc))
        stream = work / "hour.jsonl"
        with stream.open("w") as f:
            for c in cycles:
                f.write(json.dumps([[r.measurement, r.tags, r.fields, r.time_ns] for r in c]))
                f.write("\n")
        child = subprocess.Popen(
            [sys.executable, __file__, "--memory-child", str(config), str(stream)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdin is not None and child.stdout is not None
        backlog = json.loads(child.stdout.readline())["backlog"]
        srv.start()
        child.stdin.write("go\n")
        child.stdin.flush()
        res = json.loads(child.stdout.readline())
        if child.wait(60) != 0:
            raise RuntimeError("the memory child failed")
        got = polls_in(srv, "backlog")
    finally:
        srv.stop()
    n_polls = sum(1 for c in cycles for r in c if r.measurement == "dcim_poll")
    if got != n_polls:
        raise RuntimeError(f"(c): {got} dcim_poll points in InfluxDB, {n_polls} spooled")
    verdict = "OK" if res["hwm_mb"] <= RSS_TARGET_MB else "ABOVE TARGET"
    if verdict != "OK":
        MISSED.append(f"(c) peak RSS {res['hwm_mb']:.0f} MB")
    print(
        f"(c) memory, {hours:g} h outage backlog of the reference site: {backlog:,} readings "
        f"spooled in {res['fed_s']:.1f} s with InfluxDB down"
    )
    print(
        f"    collector RSS: {res['base_mb']:.0f} MB at start, peak {res['build_peak_mb']:.0f} MB "
        f"while the backlog built up, peak {res['drain_peak_mb']:.0f} MB while it drained "
        f"({res['drain_s']:.1f} s after InfluxDB came up, first ack after "
        f"{res['first_ack_s']:.1f} s of retry backoff)"
    )
    print(
        f"    peak RSS (VmHWM): {res['hwm_mb']:.0f} MB "
        f"(target <= {RSS_TARGET_MB:.0f} MB: {verdict})"
    )


def _load() -> str:
    """The 1, 5 and 15 minute load averages (other work on the machine moves every figure)."""
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--memory-child":
        memory_child(sys.argv[2], sys.argv[3])
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--readings", type=int, default=200_000, help="readings for (a)")
    p.add_argument("--hours", type=float, default=1.0, help="reference-site hours, (b) and (c)")
    p.add_argument(
        "--gzip",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the InfluxDB sink's gzip switch for (b) (default on, as in the product)",
    )
    args = p.parse_args()
    cfg = SiteConfig.model_validate(paris_chapelle())
    t = time.perf_counter()
    cycles = reference_cycles(cfg, args.hours)
    n = sum(len(c) for c in cycles)
    print(f"load average {_load()} at the start")
    print(
        f"reference site: {len(cfg.devices)} devices every {INTERVAL_S:g} s, {args.hours:g} h = "
        f"{len(cycles)} cycles, {n:,} readings (data + dcim_poll), built in "
        f"{time.perf_counter() - t:.1f} s; {os.cpu_count()} CPUs"
    )
    report_spool(args, cycles)
    with tempfile.TemporaryDirectory(prefix="dcim-ingest-") as d:
        report_influx(cycles, Path(d), gzip=args.gzip)
        report_memory(cycles, args.hours, Path(d))
    print(f"load average {_load()} at the end")
    if MISSED:
        print("\nTARGET MISSED: " + "; ".join(MISSED))
        return 1
    print("\nall targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
