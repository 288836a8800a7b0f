"""End to end: the twin live, the real collector process (`dcim run`) polling it over SNMP,
Modbus TCP and MQTT, readings through the spool into a real InfluxDB 1.x server and into the
embedded store at the same time; PUE and heat delivered checked against the twin's truth."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from dcim.config import SiteConfig
from dcim.kpi.period import compute_kpis
from dcim.storage import make_store
from dcim.testing.servers import InfluxServer, MosquittoServer, free_ports
from dcim.twin.runner import TwinRunner, TwinThread
from dcim.twin.site import paris_chapelle

NS = 1_000_000_000
INTERVAL = 5.0
RUN_S = 80.0
BLACKHOLED = ("srv-R01-01", "crah-1")  # one SNMP agent, one Modbus device
# The twin runs as on a winter night (heat pumps on, both heat consumers drawing), whatever
# the date of the test run; a minute of the smallest flow is then ~100 Wh, so the meters'
# 1 Wh registers are not what limits the 1 % comparison.
AS_OF = datetime(2026, 1, 15, 3, 0, tzinfo=ZoneInfo("Europe/Paris")).timestamp()
# 30 racks (the reference site's electrical size: racks, PDUs, rack gear), one server each.
RACKS, SERVERS_PER_RACK = 30, 1
N_SNMP = 2 + 3 * RACKS  # UPSes, two PDUs and one BMC per rack


def site(
    tmp: Path, name: str, sink: dict[str, Any], mqtt: MosquittoServer, ports: tuple[int, int]
) -> Path:
    doc = paris_chapelle(
        racks=RACKS,
        servers_per_rack=SERVERS_PER_RACK,
        snmp_base_port=ports[0],
        modbus_base_port=ports[1],
        mqtt_port=mqtt.port,
        interval_s=INTERVAL,
        spool_dir=str(tmp / name / "spool"),
        sink=sink,
    )
    doc["mqtt"].update(
        username=mqtt.user, password={"value": mqtt.password}, client_id=f"dcim-e2e-{name}"
    )
    doc["defaults"]["timeout_s"] = 1.0
    path = tmp / f"{name}.yaml"
    (tmp / name).mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc))
    return path


def rel_err(a: float | None, b: float) -> float:
    assert a is not None, "figure is missing"
    return abs(a - b) / abs(b)


@pytest.mark.slow
def test_twin_to_influxdb_and_embedded(
    tmp_path: Path, influxdb: InfluxServer, mosquitto: MosquittoServer
) -> None:
    ports = (
        free_ports(N_SNMP, kind=2),
        free_ports(16),
    )  # UDP range for SNMP agents, TCP for Modbus
    influx_sink = {"type": "influxdb", "url": influxdb.url, "database": "e2e"}
    embedded_sink = {"type": "embedded", "path": str(tmp_path / "embedded.sqlite")}
    paths = {
        "influx": site(tmp_path, "influx", influx_sink, mosquitto, ports),
        "embedded": site(tmp_path, "embedded", embedded_sink, mosquitto, ports),
    }
    cfg = {k: SiteConfig.model_validate(yaml.safe_load(p.read_text())) for k, p in paths.items()}
    runner = TwinRunner(cfg["embedded"], seed=7, offset_s=AS_OF - time.time())
    with TwinThread(runner) as twin:
        procs = {
            k: subprocess.Popen(
                [sys.executable, "-m", "dcim.cli", "run", str(p)],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for k, p in paths.items()
        }
        try:
            t_begin = time.time()
            time.sleep(RUN_S / 3)
            t_blackhole = time.time()
            for dev in BLACKHOLED:
                twin.set_unreachable(dev)
            time.sleep(RUN_S - (time.time() - t_begin))
            t_end = time.time()
        finally:
            for p in procs.values():
                p.send_signal(signal.SIGINT)
            logs = {k: p.communicate(timeout=60)[0] for k, p in procs.items()}
    for k, p in procs.items():
        assert p.returncode == 0, f"collector ({k}) failed:\n{logs[k][-3000:]}"

    # A window inside the run, away from start-up, with samples on both sides of each edge.
    start_ns = int((t_begin + 2 * INTERVAL + 1) * NS)
    end_ns = int((t_end - 2 * INTERVAL - 1) * NS)
    assert (end_ns - start_ns) / NS >= 55, "the twin must run live for at least a minute"
    truth = runner.model.truth(runner.model_time(start_ns / NS), runner.model_time(end_ns / NS))

    for k, c in cfg.items():
        store = make_store(c.storage)
        try:
            rep = compute_kpis(store, c, start_ns, end_ns, category=1)
            errors = {
                "pue": rel_err(rep.figure("pue").value, truth.pue(1)),
                "heat_cpcu": rel_err(rep.figure("heat_cpcu_kwh").value, truth.heat_cpcu_wh / 1e3),
                "heat_greenhouse": rel_err(
                    rep.figure("heat_greenhouse_kwh").value, truth.heat_greenhouse_wh / 1e3
                ),
            }
            print(k, {n: f"{e:.3%}" for n, e in errors.items()})
            assert max(errors.values()) < 0.01, (k, errors, rep.figures, truth)
            assert rep.figure("pue").completeness > 0.9

            # Every device was polled; the blackholed ones are recorded as gaps (up=0)...
            polls = store.aggregate(
                measurement="dcim_poll",
                field="up",
                start_ns=int(t_blackhole * NS) + 3 * int(INTERVAL * NS),
                end_ns=int(t_end * NS),
                fn="mean",
                group_by=("device",),
            )
            up = {r.tags["device"]: r.value for r in polls}
            for dev in BLACKHOLED:
                assert up.get(dev) == 0.0, (k, dev, up.get(dev))
            # ...and the others kept their cadence: every cycle ran, none started late.
            counts = store.aggregate(
                measurement="dcim_poll",
                field="up",
                start_ns=start_ns,
                end_ns=end_ns,
                fn="count",
                group_by=("device",),
            )
            expected = (end_ns - start_ns) / NS / INTERVAL
            polled = [d.name for d in c.devices if d.protocol != "mqtt"]
            got = {r.tags["device"]: r.value or 0 for r in counts}
            assert set(polled) <= set(got)
            for dev in polled:
                assert got[dev] >= expected - 1.5, (k, dev, got[dev], expected)
            late = store.aggregate(
                measurement="dcim_poll",
                field="late_s",
                start_ns=start_ns,
                end_ns=end_ns,
                fn="max",
                group_by=("device",),
            )
            worst = max(r.value or 0 for r in late if r.tags["device"] not in BLACKHOLED)
            assert worst < 1.0, (k, worst)
            # MQTT readings arrived too.
            gh = store.aggregate(
                measurement="greenhouse",
                field="air_temp_c",
                start_ns=start_ns,
                end_ns=end_ns,
                fn="count",
                group_by=("device",),
            )
            assert len(gh) == 4 and all((r.value or 0) >= expected - 2 for r in gh), gh
        finally:
            store.close()
