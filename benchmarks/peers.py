"""The pieces of ``collect.py``'s side-by-side run: the product as ``dcim run``, collectd's snmp
plugin and prometheus-snmp-exporter on the same agents and OIDs, each measured the same way.

Every tool is a process of its own; its CPU is utime + stime of the process tree from /proc
(threads included; children too), its memory the tree's VmRSS and the root's VmHWM, and its
values those it *stored*, stamped inside the measured window:

- the product: the embedded store's points (``dcim_*`` health rows left out);
- collectd: the ``csv`` plugin's files (``StoreRates false``), one value per number on a line;
- the exporter: what a keep-alive scraper in this process got per scrape (samples named
  ``dcim_*``, NaN left out). The scraper's CPU is *not* counted (the product's store is):
  that favours the exporter.

The peers' configurations are generated from the product's own profiles (the same OIDs):
scalar fields are one GET each poll, tables walked by column. What the product does and the
peers do not: read the tables' tag columns (e.g. the outlet names), scale, range-check and tag
each value, keep a durable spool and a queryable store with rollups. What the exporter does
not: a scalar that is also a cell of a walked table (e.g. rPDU2PhaseStatusCurrent.1) is read
once, from the walk (the exporter refuses two metrics for one OID).
"""

from __future__ import annotations

import contextlib
import http.client
import math
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dcim.twin.ports import free_port, free_ports

PROFILES = Path(__file__).resolve().parent.parent / "collectors" / "profiles"
TICK = os.sysconf("SC_CLK_TCK")
# Debian's packages of the peers (``make bench`` installs them; see BENCH_DEB_PACKAGES)
COLLECTD = "/usr/sbin/collectd"
EXPORTER = "/usr/bin/prometheus-snmp-exporter"


# -- what a process tree costs ------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def tree(pid: int) -> list[int]:
    """``pid`` and its live descendants."""
    parent: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (st := _stat(int(entry.name))) is not None:
            parent[int(entry.name)] = int(st[1])
    out, todo = [pid], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out += kids
        todo += kids
    return out


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of ``pid``'s tree: every thread of each live process, and
    the children each has waited for."""
    total = 0
    for p in tree(pid):
        if (st := _stat(p)) is not None:
            total += sum(int(x) for x in st[11:15])  # utime stime cutime cstime
    return total / TICK


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS of the tree, VmHWM of ``pid``) in MB."""
    rss = sum(_status_kb(p, "VmRSS") for p in tree(pid))
    return rss / 1024, _status_kb(pid, "VmHWM") / 1024


# -- the devices and their OIDs -----------------------------------------------------------------


@dataclass(frozen=True)
class Device:
    name: str
    host: str
    port: int
    community: str
    profile: str


@dataclass
class Table:
    name: str
    columns: list[tuple[str, str]]  # (field, column OID)


@dataclass
class Spec:
    """One profile's OIDs: scalar fields (instance OIDs, one GET) and tables (columns)."""

    name: str
    scalars: list[tuple[str, str]]
    tables: list[Table]

    def scalars_outside_tables(self) -> list[tuple[str, str]]:
        cols = [c for t in self.tables for _, c in t.columns]
        return [(n, o) for n, o in self.scalars if not any(o.startswith(c + ".") for c in cols)]


def load_spec(profile: str) -> Spec:
    doc = yaml.safe_load((PROFILES / f"{profile}.yaml").read_text())
    scalars = [(f["name"], f["oid"]) for f in doc.get("fields", [])]
    tables = [
        Table(t["name"], [(f["name"], f["oid"]) for f in t["fields"]])
        for t in doc.get("tables", [])
    ]
    return Spec(profile, scalars, tables)


def devices_of(doc: dict[str, Any]) -> list[Device]:
    out = []
    for d in doc["devices"]:
        if d["protocol"] != "snmp":
            continue
        comm = d["snmp"]["community"]
        out.append(Device(d["name"], d["host"], int(d["port"]), str(comm["value"]), d["profile"]))
    return out


# -- robust ports ----------------------------------------------------------------------------


def start_on_free_port(
    start: Callable[[int], subprocess.Popen[Any]],
    ready: Callable[[int, subprocess.Popen[Any]], bool],
    kind: int = socket.SOCK_STREAM,
    tries: int = 5,
    timeout_s: float = 30.0,
    count: int = 1,
) -> tuple[subprocess.Popen[Any], int]:
    """Starts a server on a port (``count`` consecutive ports from it) picked free at run
    time; another program on this shared host
    may take the port between the pick and the server's bind: then the server exits and this
    tries again on another port (``tries`` times)."""
    last = ""
    for _ in range(tries):
        port = free_ports(count, kind) if count > 1 else free_port(kind)
        proc = start(port)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and proc.poll() is None:
            if ready(port, proc):
                return proc, port
            time.sleep(0.2)
        last = f"exit {proc.poll()}" if proc.poll() is not None else "not ready in time"
        stop(proc)
    raise RuntimeError(f"could not start a server on a free port ({tries} tries; last: {last})")


def stop(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, wait_s: float = 20) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def tcp_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def snmp_answers(port: int, community: str) -> bool:
    """A GET of sysUpTime.0 answered (net-snmp's snmpget)."""
    res = subprocess.run(
        ["snmpget", "-v2c", "-c", community, "-t", "1", "-r", "0", "-On"]
        + [f"127.0.0.1:{port}", ".1.3.6.1.2.1.1.3.0"],
        capture_output=True,
        text=True,
        env=dict(os.environ, MIBS=""),
        check=False,
    )
    return res.returncode == 0


# -- snmpsim with a recorded walk (the PDU case) ------------------------------------------------


def apc_walk() -> Path:
    """A real APC AP8641 (24 metered outlets) walk from PyPI ``snmpsim-data``."""
    import snmpsim_data

    return Path(snmpsim_data.__file__).resolve().parent / "data" / "UPS" / "apc-8641.snmprec"


@contextlib.contextmanager
def snmpsim(work: Path, communities: Sequence[str], walk: Path) -> Iterator[tuple[int, int]]:
    """snmpsim serving ``walk`` under each community, an agent (UDP port) each, the ports
    consecutive from a free one; yields (pid, first port). Device ``i`` is community ``i``
    at port ``first + i`` (snmpsim picks the file by community on any of its ports)."""
    import sys

    data = work / "snmpsim-data"
    data.mkdir(parents=True, exist_ok=True)
    for c in communities:
        shutil.copyfile(walk, data / f"{c}.snmprec")
    (work / "snmpsim-cache").mkdir(exist_ok=True)
    binary = Path(sys.executable).with_name("snmpsim-command-responder")
    env = dict(os.environ, SNMPSIM_ALLOW_ROOT="true")

    n = len(communities)

    def start(port: int) -> subprocess.Popen[Any]:
        endpoints = [f"--agent-udpv4-endpoint=127.0.0.1:{port + i}" for i in range(n)]
        return subprocess.Popen(
            [str(binary), f"--data-dir={data}", *endpoints]
            + [f"--cache-dir={work / 'snmpsim-cache'}", "--logging-method=null"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )

    proc, port = start_on_free_port(
        start,
        lambda p, _: snmp_answers(p + n - 1, communities[-1]),
        socket.SOCK_DGRAM,
        timeout_s=60,
        count=n,
    )
    try:
        # A first walk of each agent: snmpsim indexes a file on its first use, slowly (the
        # first tool measured would pay for it, with timeouts).
        env = dict(os.environ, MIBS="")
        for i, c in enumerate(communities):
            subprocess.run(
                ["snmpbulkwalk", "-v2c", "-c", c, "-t", "5", "-r", "2", "-On"]
                + [f"127.0.0.1:{port + i}", ".1.3.6.1.4.1.318.1.1.26"],
                capture_output=True,
                env=env,
                check=False,
            )
        yield proc.pid, port
    finally:
        stop(proc)


# -- collectd ---------------------------------------------------------------------------------


def collectd_config(work: Path, devices: Sequence[Device], interval_s: float) -> Path:
    """collectd.conf (snmp + csv plugins) and a types.db of one type per profile's scalars and
    per table (a GAUGE per column), generated from the profiles."""
    specs = {d.profile: load_spec(d.profile) for d in devices}
    types, data = [], []
    for spec in specs.values():
        groups = [("s", spec.scalars, False)] + [(t.name, t.columns, True) for t in spec.tables]
        for gname, cols, table in groups:
            if not cols:
                continue
            tname = f"dcim_{spec.name}_{gname}"
            ds = ", ".join(f"v{i}:GAUGE:U:U" for i in range(len(cols)))
            types.append(f"{tname} {ds}")
            values = " ".join(f'"{o}"' for _, o in cols)
            data.append(
                f'  <Data "{tname}">\n    Type "{tname}"\n    Table {str(table).lower()}\n'
                f"    Values {values}\n  </Data>"
            )
    hosts = []
    for d in devices:
        spec = specs[d.profile]
        names = [f"dcim_{spec.name}_s"] * bool(spec.scalars) + [
            f"dcim_{spec.name}_{t.name}" for t in spec.tables
        ]
        collect = " ".join(f'"{n}"' for n in names)
        hosts.append(
            f'  <Host "{d.name}">\n    Address "{d.host}:{d.port}"\n    Version 2\n'
            f'    Community "{d.community}"\n    Collect {collect}\n'
            f"    Interval {interval_s:g}\n    Timeout 2\n    Retries 1\n  </Host>"
        )
    (work / "dcim_types.db").write_text("\n".join(types) + "\n")
    conf = work / "collectd.conf"
    conf.write_text(
        f'Interval {interval_s:g}\nBaseDir "{work / "collectd"}"\n'
        f'PIDFile "{work / "collectd.pid"}"\nPluginDir "/usr/lib/collectd"\n'
        f'TypesDB "/usr/share/collectd/types.db" "{work / "dcim_types.db"}"\n'
        'LoadPlugin logfile\n<Plugin logfile>\n  LogLevel "warning"\n'
        f'  File "{work / "collectd.log"}"\n</Plugin>\n'
        f'LoadPlugin snmp\nLoadPlugin csv\n<Plugin csv>\n  DataDir "{work / "csv"}"\n'
        "  StoreRates false\n</Plugin>\n<Plugin snmp>\n" + "\n".join(data + hosts) + "\n</Plugin>\n"
    )
    return conf


def collectd_values(csv_dir: Path, t0: float, t1: float) -> int:
    """Numbers (NaN left out) on the csv plugin's lines stamped in [t0, t1)."""
    n = 0
    for f in csv_dir.rglob("*"):
        if not f.is_file():
            continue
        for line in f.read_text().splitlines()[1:]:
            parts = line.split(",")
            try:
                t = float(parts[0])
            except ValueError:
                continue
            if t0 <= t < t1:
                n += sum(1 for v in parts[1:] if v and v.lower() != "nan")
    return n


# -- prometheus-snmp-exporter ---------------------------------------------------------------


def module_name(d: Device) -> str:
    """0.21 has one community per module: a module per profile and community."""
    return re.sub(r"[^A-Za-z0-9_]", "_", f"{d.profile}__{d.community}")


def exporter_config(work: Path, devices: Sequence[Device]) -> Path:
    """snmp.yml by hand (the generator is not in Debian): per module, the profile's scalars
    as ``get`` and its tables' columns as ``walk``, each a gauge (tables: indexed by
    ``index``)."""
    doc: dict[str, Any] = {}
    for d in devices:
        name = module_name(d)
        if name in doc:
            continue
        spec = load_spec(d.profile)
        scalars = spec.scalars_outside_tables()
        metrics: list[dict[str, Any]] = [
            {"name": f"dcim_{spec.name}_{f}", "oid": o, "type": "gauge"} for f, o in scalars
        ]
        walk = []
        for t in spec.tables:
            for f, col in t.columns:
                walk.append(col)
                metrics.append(
                    {
                        "name": f"dcim_{spec.name}_{t.name}_{f}",
                        "oid": col,
                        "type": "gauge",
                        "indexes": [{"labelname": "index", "type": "gauge"}],
                    }
                )
        doc[name] = {
            "version": 2,
            "auth": {"community": d.community},
            "timeout": "2s",
            "retries": 1,
            "max_repetitions": 25,
            **({"get": [o for _, o in scalars]} if scalars else {}),
            **({"walk": walk} if walk else {}),
            "metrics": metrics,
        }
    path = work / "snmp.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def start_exporter(work: Path, config: Path) -> tuple[subprocess.Popen[Any], int]:
    log = open(work / "exporter.log", "w")  # noqa: SIM115 - the process's, closed at exit

    def start(port: int) -> subprocess.Popen[Any]:
        return subprocess.Popen(
            [EXPORTER, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    return start_on_free_port(start, lambda p, _: tcp_open(p))


@dataclass
class Scraper:
    """Scrapes each device from the exporter every ``interval_s``, the devices spread evenly
    over the interval, from ``threads`` threads each with its own keep-alive connection;
    counts the ``dcim_*`` samples (NaN left out) of the scrapes started in the window."""

    port: int
    devices: Sequence[Device]
    interval_s: float
    threads: int = 8
    window: tuple[float, float] = (math.inf, math.inf)
    values: int = 0
    scrapes: int = 0
    failed: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        t0 = time.time() + 0.5
        n = len(self.devices)
        for k in range(self.threads):
            mine = [(i, d) for i, d in enumerate(self.devices) if i % self.threads == k]
            th = threading.Thread(target=self._run, args=(mine, t0, n), daemon=True)
            th.start()
            self._workers.append(th)

    def stop(self) -> None:
        self._stop.set()
        for th in self._workers:
            th.join(30)

    def _run(self, mine: list[tuple[int, Device]], t0: float, n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        k = 0
        while not self._stop.is_set():
            for i, d in mine:
                due = t0 + self.interval_s * (k + i / n)
                if self._stop.wait(max(0.0, due - time.time())):
                    return
                got = self._scrape(conn, d)
                if self.window[0] <= due < self.window[1]:
                    with self._lock:
                        self.scrapes += 1
                        self.failed += got is None
                        self.values += got or 0
            k += 1

    def _scrape(self, conn: http.client.HTTPConnection, d: Device) -> int | None:
        path = f"/snmp?target={d.host}:{d.port}&module={module_name(d)}"
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read().decode()
        except (OSError, http.client.HTTPException):
            conn.close()
            return None
        if resp.status != 200:
            return None
        return count_samples(body)


def count_samples(text: str, prefix: str = "dcim_") -> int:
    """Samples named ``prefix*`` in a Prometheus text exposition, NaN values left out."""
    n = 0
    for line in text.splitlines():
        if line.startswith(prefix):
            value = line.rsplit(" ", 1)[-1]
            n += value.lower() != "nan"
    return n


# -- the product ---------------------------------------------------------------------------


def store_values(path: Path, t0_ns: int, t1_ns: int) -> int:
    """Points in the embedded store stamped in [t0, t1), health rows (``dcim_*``) left out."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = con.execute(
            "SELECT count(*) FROM point p JOIN series s ON s.id = p.series_id "
            "WHERE s.measurement NOT LIKE 'dcim\\_%' ESCAPE '\\' "
            "AND p.time_ns >= ? AND p.time_ns < ?",
            (t0_ns, t1_ns),
        ).fetchone()
    finally:
        con.close()
    return int(row[0])


def store_polls(path: Path, t0_ns: int, t1_ns: int) -> tuple[int, int]:
    """(polls, failed polls) of the store's ``dcim_poll`` rows stamped in [t0, t1)."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = con.execute(
            "SELECT count(*), sum(p.value = 0) FROM point p JOIN series s ON s.id = p.series_id "
            "JOIN field_key k ON k.id = p.field_id WHERE s.measurement = 'dcim_poll' "
            "AND k.name = 'up' AND p.time_ns >= ? AND p.time_ns < ?",
            (t0_ns, t1_ns),
        ).fetchone()
    finally:
        con.close()
    return int(row[0]), int(row[1] or 0)


@contextlib.contextmanager
def pdu_twin(
    work: Path, doc_for: Callable[[int], dict[str, Any]], n: int
) -> Iterator[tuple[int, dict[str, Any]]]:
    """``pdu_agents.py`` serving ``doc_for(first_port)``'s ``n`` devices on consecutive free
    UDP ports; yields (pid, the site document)."""
    import sys

    site = work / "agents.yaml"
    docs: dict[int, dict[str, Any]] = {}

    def start(port: int) -> subprocess.Popen[Any]:
        docs[port] = doc_for(port)
        site.write_text(yaml.safe_dump(docs[port]))
        script = Path(__file__).resolve().with_name("pdu_agents.py")
        return subprocess.Popen(
            [sys.executable, str(script), str(site)], stdout=subprocess.PIPE, text=True
        )

    def ready(port: int, proc: subprocess.Popen[Any]) -> bool:
        assert proc.stdout is not None
        return "serving" in proc.stdout.readline()

    proc, port = start_on_free_port(start, ready, socket.SOCK_DGRAM, count=n)
    try:
        yield proc.pid, docs[port]
    finally:
        stop(proc)


def favour(pid: int, niceness: int = -5) -> bool:
    """Runs the agents ahead of the tools measured (as root): on a shared, busy machine a
    starved agent times every tool out. False when not allowed."""
    try:
        for p in tree(pid):
            os.setpriority(os.PRIO_PROCESS, p, niceness)
    except OSError:
        return False
    return True
