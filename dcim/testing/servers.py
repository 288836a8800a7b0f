"""Real servers for tests and benchmarks, started as plain processes on 127.0.0.1 in a temp dir.

InfluxDB 1.x (Debian ``influxdb``) and Mosquitto (Debian ``mosquitto``). A missing binary is a
test *error* naming the package, never a skip: CI installs them (see README).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dcim.twin.ports import free_port, free_ports

__all__ = ["free_port", "free_ports"]


def need(binary: str, package: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise RuntimeError(
            f"{binary} not found: install the Debian package {package!r} (see README)"
        )
    return path


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} not ready after {timeout} s")


@dataclass
class Server:
    proc: subprocess.Popen[bytes] | None
    port: int
    workdir: Path
    args: list[str] = field(default_factory=list)
    log: Path | None = None

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def start(self) -> None:
        log = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.args, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir
        )


class InfluxServer(Server):
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=1) as r:
                return bool(r.status == 204)
        except (urllib.error.URLError, OSError):
            return False

    def start(self) -> None:
        super().start()
        wait_until(self.ready, 30, f"influxd on {self.port}")

    def query(self, q: str, db: str = "dcim") -> dict:  # type: ignore[type-arg]
        import json
        import urllib.parse

        data = urllib.parse.urlencode({"q": q, "db": db, "epoch": "ns"}).encode()
        with urllib.request.urlopen(f"{self.url}/query", data=data, timeout=30) as r:
            return json.loads(r.read())  # type: ignore[no-any-return]


def start_influxdb(workdir: Path, *, cold: str | None = None) -> InfluxServer:
    """influxd on ``workdir`` (its data kept there across starts). ``cold``: a shard without
    writes for that long (an InfluxQL duration) has its cache written to TSM and is fully
    compacted (InfluxDB's defaults: 10 min and 4 h), for benchmarks on compacted shards."""
    binary = need("influxd", "influxdb")
    compact = (
        ""
        if cold is None
        else f'  cache-snapshot-write-cold-duration = "{cold}"\n'
        f'  compact-full-write-cold-duration = "{cold}"\n'
    )
    workdir.mkdir(parents=True, exist_ok=True)
    port, rpc = free_port(), free_port()
    conf = workdir / "influxdb.conf"
    conf.write_text(
        f"""reporting-enabled = false
bind-address = "127.0.0.1:{rpc}"
[meta]
  dir = "{workdir}/meta"
[data]
  dir = "{workdir}/data"
  wal-dir = "{workdir}/wal"
  query-log-enabled = false
{compact}[coordinator]
  write-timeout = "30s"
[http]
  bind-address = "127.0.0.1:{port}"
  log-enabled = false
  max-body-size = 0
[ifql]
  enabled = false
[logging]
  level = "warn"
[continuous_queries]
  run-interval = "1s"
"""
    )
    srv = InfluxServer(
        None, port, workdir, [binary, "run", "-config", str(conf)], workdir / "influxd.log"
    )
    srv.start()
    return srv


class MosquittoServer(Server):
    user = "dcim"
    password = "dcim-test-pw"

    def ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def start(self) -> None:
        super().start()
        wait_until(self.ready, 15, f"mosquitto on {self.port}")


def start_mosquitto(workdir: Path, *, port: int | None = None) -> MosquittoServer:
    binary = need("mosquitto", "mosquitto")
    pw = need("mosquitto_passwd", "mosquitto")
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    passwd = workdir / "passwd"
    subprocess.run(
        [pw, "-b", "-c", str(passwd), MosquittoServer.user, MosquittoServer.password], check=True
    )
    acl = workdir / "acl"
    acl.write_text(f"user {MosquittoServer.user}\ntopic readwrite #\n")
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        f"""per_listener_settings false
allow_anonymous false
password_file {passwd}
acl_file {acl}
persistence true
persistence_location {workdir}/
autosave_interval 1
user root
log_dest file {workdir}/mosquitto.log
listener {port} 127.0.0.1
"""
    )
    if os.geteuid() != 0:
        conf.write_text(conf.read_text().replace("user root\n", ""))
    srv = MosquittoServer(None, port, workdir, [binary, "-c", str(conf)])
    srv.start()
    return srv
