"""What the benchmarks share: the twin in its own process, CPU clocks, percentiles.

The twin runs as ``dcim twin serve CONFIG`` in a child process, as real devices are
elsewhere: its CPU is never counted in the collector's (``RUSAGE_SELF``), and the
children's clock (``RUSAGE_CHILDREN``) only counts children once they have been waited for.
"""

from __future__ import annotations

import math
import os
import resource
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from dcim.twin.ports import free_port, free_ports
from dcim.twin.site import SERVERS_PER_RACK, paris_chapelle

REFERENCE_RACKS = 30  # Porte de la Chapelle: 30 racks of 10 servers, about 300 servers


def cpu_self() -> float:
    """CPU seconds (user + system) of this process, every thread included."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def cpu_children() -> float:
    """CPU seconds of the children this process has waited for."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def cpu_of(pid: int) -> float:
    """CPU seconds of a running process (Linux /proc), e.g. the twin's; nan if unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return math.nan


def pct(values: Sequence[float], p: float) -> float:
    """The ``p`` quantile (0..1) of ``values`` by the nearest-rank rule; nan when empty."""
    if not values:
        return math.nan
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(p * len(s)) - 1))]


def work_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


def site_doc(
    work: Path,
    *,
    racks: int = REFERENCE_RACKS,
    interval_s: float = 10.0,
    snmp_only: bool = False,
) -> dict[str, Any]:
    """The reference site (scaled by ``racks``) on free loopback ports. ``snmp_only`` keeps
    its SNMP devices (UPS, PDUs, server BMCs) and nothing else."""
    doc = paris_chapelle(
        racks=racks,
        interval_s=interval_s,
        snmp_base_port=free_ports(2 + (2 + SERVERS_PER_RACK) * racks, kind=socket.SOCK_DGRAM),
        modbus_base_port=free_ports(20),
        mqtt_port=free_port(),
        spool_dir=str(work / "spool"),
        sink={"type": "embedded", "path": str(work / "bench.sqlite")},
    )
    if snmp_only:
        doc["devices"] = [d for d in doc["devices"] if d["protocol"] == "snmp"]
    return doc


@contextmanager
def twin(doc: dict[str, Any], work: Path, *, embedded_broker: bool = False) -> Iterator[int]:
    """Serves ``doc``'s devices from ``dcim twin serve`` in a child process; yields its pid
    once every agent is bound. Stopped (and waited for) on exit."""
    path = work / "site.yaml"
    path.write_text(yaml.safe_dump(doc))
    cmd = [sys.executable, "-m", "dcim.cli", "twin", "serve", str(path)]
    if embedded_broker:
        cmd.append("--embedded-broker")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "twin serving" not in line:
            raise RuntimeError(f"the twin did not start (exit {proc.poll()}); see above")
        yield proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
