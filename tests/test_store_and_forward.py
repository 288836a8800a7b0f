"""Store and forward, end to end: the real collector process (``dcim run``) polling the twin,
readings through the durable spool into a private, real InfluxDB 1.x that goes away.

- an InfluxDB outage: nothing polled during it is lost, nothing is doubled. What a long outage
  does to the collector happens here in under a minute: the forwarder's back-off grows to its
  cap (``storage.retry_max_s``, 4 s here against the 60 s default) and fails there again and
  again (some ten attempts at the cap; an outage of three minutes at the default cap makes two),
  and the backlog takes several batches to forward (small ``batch_size``);
- the collector killed with SIGKILL while it forwards (a write in flight, a backlog being
  drained, any moment), then restarted on the same spool: same result.

What "every reading the collectors took" means here: each poll cycle emits its data reading
and its ``dcim_poll`` health row (``up``, ``values_read``) in one ``Pipeline.accept`` call,
i.e. one spool transaction, so they are committed (collected) together or not at all. The
``dcim_poll`` rows go through the same spool and forwarder as the data; the check is then,
per device: one data point per ``up=1`` row, stamped inside that poll (after its start,
before the next one), carrying ``values_read`` field values.

Why counting is enough for "exactly once": InfluxDB keeps one point per series and timestamp
(a second write of the same point overwrites it), so a batch delivered again after a crash
cannot show as extra rows. Exactly once is therefore "as many points as successful polls",
each at its own poll; a duplicate could only appear with another timestamp, i.e. as a point
no poll accounts for, which the pairing below would catch.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
import yaml

from dcim.config import SiteConfig
from dcim.spool import Spool
from dcim.testing.servers import (
    InfluxServer,
    MosquittoServer,
    free_port,
    free_ports,
    start_influxdb,
    wait_until,
)
from dcim.twin.runner import TwinRunner, TwinThread
from dcim.twin.site import paris_chapelle

NS = 1_000_000_000
INTERVAL = 2.0
RACKS, SERVERS_PER_RACK = 2, 2  # 35 devices: 10 SNMP, 21 Modbus, 4 MQTT
RETRY_MAX_S = 4.0  # the forwarder's back-off cap in the outage test (default 60 s)
OUTAGE_S = 40.0  # the back-off reaches its cap after ~4 attempts, then ~10 more fail at it
OUTAGE_BATCH = 200  # readings per write: the outage's backlog (~1,400) takes several writes
FLOW_S = 6.0  # normal operation before the outage
DB = "saf"
# The first attempt after InfluxDB is back comes at most RETRY_MAX_S later; then the backlog.
DRAIN_TIMEOUT_S = 60.0
MQTT_SLACK_NS = 2 * NS  # an MQTT reading is stamped by the sensor, its dcim_poll on arrival


# -- set-up ----------------------------------------------------------------------------------


def write_site(
    tmp: Path,
    mqtt: MosquittoServer,
    sink: dict[str, Any],
    metrics: dict[str, Any] | None = None,
    **storage: Any,
) -> tuple[Path, SiteConfig]:
    doc = paris_chapelle(
        racks=RACKS,
        servers_per_rack=SERVERS_PER_RACK,
        snmp_base_port=free_ports(3 * RACKS + RACKS * SERVERS_PER_RACK, kind=2),
        modbus_base_port=free_ports(16),
        mqtt_port=mqtt.port,
        interval_s=INTERVAL,
        spool_dir=str(tmp / "spool"),
        sink=sink,
    )
    doc["mqtt"].update(username=mqtt.user, password={"value": mqtt.password}, client_id="dcim-saf")
    doc["defaults"]["timeout_s"] = 1.0
    doc["storage"].update(storage)
    if metrics is not None:
        doc["metrics"] = metrics
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path, SiteConfig.model_validate(doc)


class Collector:
    """``dcim run CONFIG`` as a subprocess, its output appended to one log file."""

    def __init__(self, config: Path, log: Path):
        self.config, self.log_path = config, log
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in wait()/kill()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dcim.cli", "run", str(self.config)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._close()

    def interrupt(self, timeout: float = 90.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        rc = self.proc.wait(timeout)
        self._close()
        return rc

    def _close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def ensure_stopped(self) -> None:
        if self.alive():
            self.kill()
        self._close()


@pytest.fixture
def influx(tmp_path: Path) -> Iterator[InfluxServer]:
    """A private InfluxDB: these tests stop it, freeze it and start it again on the same port
    and data directory (``Server.stop``/``Server.start`` keep both)."""
    srv = start_influxdb(tmp_path / "influxdb")
    yield srv
    if srv.proc is not None and srv.proc.poll() is None:
        srv.proc.send_signal(signal.SIGCONT)  # in case a test failed while it was frozen
    srv.stop()


# -- reading InfluxDB back --------------------------------------------------------------------


def query(srv: InfluxServer, q: str) -> list[dict[str, Any]]:
    """The series of an InfluxQL query (chunked, so no row limit applies)."""
    data = urllib.parse.urlencode(
        {"q": q, "db": DB, "epoch": "ns", "chunked": "true", "chunk_size": "10000"}
    ).encode()
    with urllib.request.urlopen(f"{srv.url}/query", data=data, timeout=60) as r:
        body = r.read().decode()
    series: list[dict[str, Any]] = []
    for line in body.splitlines():
        if not line.strip():
            continue
        for result in json.loads(line).get("results", []):
            if "error" in result and "database not found" not in result["error"]:
                raise AssertionError(f"{q}: {result['error']}")
            series.extend(result.get("series", []))
    return series


def polls(srv: InfluxServer) -> dict[str, list[tuple[int, int, int]]]:
    """device -> [(time_ns, up, values_read)] of its dcim_poll rows, in time order."""
    out: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for s in query(srv, 'SELECT "up", "values_read" FROM "dcim_poll" GROUP BY "device"'):
        out[s["tags"]["device"]].extend((t, up, n) for t, up, n in s["values"])
    return {d: sorted(v) for d, v in out.items()}


def data_points(srv: InfluxServer) -> dict[str, list[tuple[int, int]]]:
    """device -> [(time_ns, number of field values)] of its data points, in time order."""
    out: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for m in query(srv, "SHOW MEASUREMENTS"):
        for (name,) in m["values"]:
            if name == "dcim_poll":
                continue
            keys = [k for s in query(srv, f'SHOW FIELD KEYS FROM "{name}"') for k, _ in s["values"]]
            cols = ", ".join(f'"{k}"' for k in keys)
            for s in query(srv, f'SELECT {cols} FROM "{name}" GROUP BY "device"'):
                out[s["tags"]["device"]].extend(
                    (row[0], sum(v is not None for v in row[1:])) for row in s["values"]
                )
    return {d: sorted(v) for d, v in out.items()}


def newest_poll_ns(srv: InfluxServer) -> int:
    s = query(srv, 'SELECT last("up") FROM "dcim_poll"')
    return int(s[0]["values"][0][0]) if s else 0


def forwarder_failures(port: int) -> int:
    """The collector's failed sink writes in a row, from its /metrics endpoint."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("dcim_forwarder_consecutive_failures "):
                return int(float(line.split()[1]))
    raise AssertionError("no dcim_forwarder_consecutive_failures on /metrics")


def wait_flowing(srv: InfluxServer, since: float, timeout: float = 60.0) -> None:
    """Until a poll taken after ``since`` (UNIX s) is in InfluxDB: the collector forwards."""
    wait_until(lambda: newest_poll_ns(srv) > since * NS, timeout, "readings in InfluxDB")


def wait_drained(srv: InfluxServer, before: float, timeout: float) -> None:
    """Until the spool's backlog is in InfluxDB: polls of the last few seconds have arrived
    (the forwarder is delivering again, not backing off) and the number of polls stamped
    before ``before`` (UNIX s) stays the same over two seconds."""
    q = f'SELECT count("up") FROM "dcim_poll" WHERE time < {int(before * NS)}'

    def count() -> int:
        s = query(srv, q)
        return int(s[0]["values"][0][1]) if s else 0

    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        if newest_poll_ns(srv) > (time.time() - 3 * INTERVAL) * NS:
            n = count()
            if n == last:
                return
            last = n
        time.sleep(2.0)
    raise TimeoutError(f"the spool's backlog was not in InfluxDB after {timeout} s")


# -- the check --------------------------------------------------------------------------------


def check_every_poll_once(
    cfg: SiteConfig, srv: InfluxServer, *, redelivered_mqtt: bool = False
) -> dict[str, list[tuple[int, int, int]]]:
    """Per device: exactly one data point per successful poll, inside that poll, with the
    values it read. ``redelivered_mqtt``: the collector was killed, so an MQTT message it had
    committed but not yet acknowledged to the broker comes again (QoS 1, at least once): a
    second dcim_poll row for the same sensor reading, which must still map to a data point.
    Returns the dcim_poll rows."""
    all_polls, all_data = polls(srv), data_points(srv)
    problems: list[str] = []
    for dev in cfg.devices:
        ups = [(t, n) for t, up, n in all_polls.get(dev.name, []) if up == 1]
        data = all_data.get(dev.name, [])
        if not ups:
            problems.append(f"{dev.name}: no successful poll at all")
            continue
        if dev.protocol == "mqtt":
            # stamped by the sensor when published; its dcim_poll when it arrived, a little later
            times = [t for t, _ in data]
            by_time = dict(data)
            for t, n in ups:
                near = [d for d in times if t - MQTT_SLACK_NS <= d <= t + 1_000_000]
                if not near:
                    problems.append(f"{dev.name}: message at {t} has no data point")
                elif n not in (by_time[d] for d in near):
                    problems.append(f"{dev.name}: message at {t}: no point with {n} values")
            if len(data) > len(ups) or (not redelivered_mqtt and len(data) != len(ups)):
                problems.append(f"{dev.name}: {len(data)} data points, {len(ups)} messages")
            continue
        interval_ns = int(cfg.interval_of(dev) * NS)
        if len(data) != len(ups):
            missing = [t for t, _ in ups if not any(t <= d < t + interval_ns for d, _ in data)]
            orphans = [d for d, _ in data if not any(t <= d < t + interval_ns for t, _ in ups)]
            problems.append(
                f"{dev.name}: {len(data)} data points for {len(ups)} successful polls; "
                f"polls without data: {missing[:5]}, points without poll: {orphans[:5]}"
            )
            continue
        for (t, n), (d, got) in zip(ups, data, strict=True):
            if not t <= d < t + interval_ns or n != got:
                problems.append(
                    f"{dev.name}: poll at {t} ({n} values) paired with point at {d} ({got})"
                )
                break
    assert not problems, "\n".join(problems[:40])
    return all_polls


def check_spool_empty(cfg: SiteConfig) -> None:
    with Spool(cfg.storage.spool_dir) as spool:
        assert spool.pending() == 0, f"{spool.pending()} readings left in the spool"
        assert spool.quarantined() == [], spool.quarantined()


def run_twin(cfg: SiteConfig) -> TwinThread:
    return TwinThread(TwinRunner(cfg, seed=11))


# -- the tests --------------------------------------------------------------------------------


@pytest.mark.slow
def test_influxdb_outage_loses_and_doubles_nothing(
    tmp_path: Path, influx: InfluxServer, mosquitto: MosquittoServer
) -> None:
    sink = {"type": "influxdb", "url": influx.url, "database": DB}
    metrics_port = free_port()
    path, cfg = write_site(
        tmp_path,
        mosquitto,
        sink,
        metrics={"port": metrics_port},
        retry_max_s=RETRY_MAX_S,
        batch_size=OUTAGE_BATCH,
    )
    col = Collector(path, tmp_path / "collector.log")
    with run_twin(cfg):
        try:
            t_start = time.time()
            col.start()
            wait_flowing(influx, t_start)
            time.sleep(FLOW_S)

            t_down = time.time()
            influx.stop()  # SIGTERM: the database goes away
            time.sleep(OUTAGE_S)
            assert col.alive(), col.output()
            # The back-off grew to its cap and failed there again and again.
            failures = forwarder_failures(metrics_port)
            assert failures >= 8, (failures, col.output())
            t_up = time.time()
            influx.start()  # same port, same data directory

            wait_drained(influx, t_up, DRAIN_TIMEOUT_S)
            rc = col.interrupt()
            assert rc == 0, col.output()
        finally:
            col.ensure_stopped()
    check_spool_empty(cfg)

    all_polls = check_every_poll_once(cfg, influx)
    # The outage window is in InfluxDB now (written there after the restart, so through the
    # spool): every device kept being polled during it.
    expected = OUTAGE_S / INTERVAL
    for dev in cfg.devices:
        rows = [r for r in all_polls[dev.name] if t_down * NS <= r[0] < t_up * NS]
        ups = sum(up for _, up, _ in rows)
        assert ups >= 0.9 * expected, (dev.name, ups, expected)


@pytest.mark.slow
def test_collector_killed_while_forwarding_loses_nothing(
    tmp_path: Path, influx: InfluxServer, mosquitto: MosquittoServer
) -> None:
    # Small batches: a backlog takes several writes to forward, so a kill can land between
    # them; a long sink timeout: a write to a frozen InfluxDB stays in flight until the kill.
    sink = {"type": "influxdb", "url": influx.url, "database": DB, "timeout_s": 60.0}
    path, cfg = write_site(tmp_path, mosquitto, sink, batch_size=20)
    col = Collector(path, tmp_path / "collector.log")
    rnd = random.Random(5)
    assert influx.proc is not None
    pid = influx.proc.pid
    backlog_at_kill: list[int] = []
    with run_twin(cfg):
        try:
            for mode in ("write in flight", "draining a backlog", "any time"):
                t_start = time.time()
                col.start()
                wait_flowing(influx, t_start)
                time.sleep(rnd.uniform(1.0, 3.0))
                if mode == "any time":
                    time.sleep(rnd.uniform(0.0, INTERVAL))
                    col.kill()
                else:
                    # InfluxDB frozen: the forwarder's next write hangs, the backlog grows.
                    os.kill(pid, signal.SIGSTOP)
                    try:
                        time.sleep(3.0)
                        if mode == "draining a backlog":
                            os.kill(pid, signal.SIGCONT)
                            time.sleep(rnd.uniform(0.0, 0.05))
                        col.kill()
                    finally:
                        os.kill(pid, signal.SIGCONT)
                with Spool(cfg.storage.spool_dir) as spool:  # the kill freed the spool's lock
                    backlog_at_kill.append(spool.pending())

            t_start = time.time()
            col.start()  # the last run: forward everything, stop cleanly
            wait_flowing(influx, t_start)
            wait_drained(influx, time.time(), 60.0)
            rc = col.interrupt()
            assert rc == 0, col.output()
        finally:
            col.ensure_stopped()
    # Killed with readings committed but not yet acknowledged by InfluxDB.
    assert backlog_at_kill[0] > 0, backlog_at_kill
    check_spool_empty(cfg)
    all_polls = check_every_poll_once(cfg, influx, redelivered_mqtt=True)
    ups = {d.name: sum(up for _, up, _ in all_polls[d.name]) for d in cfg.devices}
    assert min(ups.values()) >= 4, ups  # polled in each of the four runs
