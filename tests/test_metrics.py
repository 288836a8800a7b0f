"""The collector's /metrics endpoint: scraped over HTTP from a real ``dcim run`` process that
polls the twin (SNMP, Modbus TCP, MQTT through Mosquitto), parsed with prometheus_client's
own text parser."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from dcim.config import SiteConfig
from dcim.testing.servers import MosquittoServer, free_port, free_ports
from dcim.twin.runner import TwinRunner, TwinThread
from dcim.twin.site import paris_chapelle

Samples = dict[str, list[tuple[dict[str, str], float]]]


def scrape(port: int) -> tuple[str, Samples]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as rsp:
        ctype = rsp.headers["Content-Type"]
        text = rsp.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.setdefault(s.name, []).append((dict(s.labels), s.value))
    return ctype, samples


def by_device(samples: Samples, name: str) -> dict[str, float]:
    return {labels["device"]: v for labels, v in samples.get(name, [])}


def test_metrics_endpoint_of_a_running_collector(
    tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    doc: dict[str, Any] = paris_chapelle(
        racks=2,
        servers_per_rack=1,
        snmp_base_port=free_ports(12, kind=2),
        modbus_base_port=free_ports(16),
        mqtt_port=mosquitto.port,
        interval_s=1.0,
        spool_dir=str(tmp_path / "spool"),
        sink={"type": "embedded", "path": str(tmp_path / "store.sqlite")},
    )
    doc["mqtt"].update(
        username=mosquitto.user, password={"value": mosquitto.password}, client_id="dcim-metrics"
    )
    doc["defaults"].update(timeout_s=0.3, retries=0)
    twin_cfg = SiteConfig.model_validate(doc)
    # One more Modbus device that the twin does not serve: nothing listens on its port.
    dead = {"name": "wm-dead", "protocol": "modbus", "profile": "water_meter",
            "host": "127.0.0.1", "port": free_port()}  # fmt: skip
    doc["devices"].append(dead)
    port = free_port()
    doc["metrics"] = {"host": "127.0.0.1", "port": port}
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(doc))
    polled = {d["name"] for d in doc["devices"] if d["protocol"] != "mqtt"}
    pushed = {d["name"] for d in doc["devices"] if d["protocol"] == "mqtt"}
    assert polled and pushed

    with TwinThread(TwinRunner(twin_cfg, seed=3)), open(tmp_path / "run.log", "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dcim.cli", "run", str(path)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            samples: Samples = {}
            while time.monotonic() < deadline:
                try:
                    ctype, samples = scrape(port)
                except (urllib.error.URLError, OSError):
                    time.sleep(0.2)
                    continue
                seen = set(by_device(samples, "dcim_poll_up"))
                forwarded = sum(v for _, v in samples.get("dcim_forwarder_sent_total", []))
                if seen >= polled | pushed and forwarded > 0:
                    break
                time.sleep(0.2)
            else:
                pytest.fail(f"not every device in /metrics: {(tmp_path / 'run.log').read_text()}")
            time.sleep(1.5)  # a few more cycles
            ctype, samples = scrape(port)
        finally:
            proc.send_signal(signal.SIGINT)
            rc = proc.wait(60)
    assert rc == 0, (tmp_path / "run.log").read_text()[-3000:]

    assert ctype.startswith("text/plain; version=0.0.4")
    up = by_device(samples, "dcim_poll_up")
    assert up["wm-dead"] == 0
    assert all(up[d] == 1 for d in (polled | pushed) - {"wm-dead"}), up
    protocols = {labels["device"]: labels["protocol"] for labels, _ in samples["dcim_poll_up"]}
    assert protocols["wm-dead"] == "modbus" and {protocols[d] for d in pushed} == {"mqtt"}
    errors = {
        (labels["device"], labels["kind"]): v
        for labels, v in samples.get("dcim_poll_errors_total", [])
    }
    assert errors[("wm-dead", "refused")] >= 1
    assert not [k for k in errors if k[0] != "wm-dead" and k[1] not in ("gap", "missed")], errors
    polls = by_device(samples, "dcim_polls_total")
    assert all(polls[d] >= 2 for d in polled), polls
    durations = by_device(samples, "dcim_poll_duration_seconds")
    assert all(0 < durations[d] < 1 for d in polled - {"wm-dead"}), durations
    values = by_device(samples, "dcim_poll_values_read")
    assert values["wm-dead"] == 0 and all(values[d] >= 1 for d in polled - {"wm-dead"})
    assert all(v < 1 for v in by_device(samples, "dcim_poll_late_seconds").values())
    last_ok = by_device(samples, "dcim_poll_last_success_timestamp_seconds")
    assert "wm-dead" not in last_ok and all(time.time() - v < 10 for v in last_ok.values())

    def one(name: str) -> float:
        [(_, v)] = samples[name]
        return v

    assert one("dcim_pipeline_accepted_total") > 0 and one("dcim_forwarder_sent_total") > 0
    assert one("dcim_pipeline_rejected_values_total") == 0
    assert one("dcim_forwarder_consecutive_failures") == 0
    assert 0 <= one("dcim_forwarder_lag_seconds") < 60  # live readings: seconds behind at most
    assert one("dcim_spool_bytes") > 0 and one("dcim_spool_max_bytes") == 1024 * 2**20
    assert one("dcim_spool_pending_readings") >= 0 and one("dcim_spool_quarantined_readings") == 0
    assert one("dcim_spool_refused_total") == 0 and one("dcim_spool_dropped_total") == 0
    assert one("dcim_mqtt_connected") == 1
    msgs = by_device(samples, "dcim_mqtt_messages_total")
    assert set(msgs) == pushed and all(v >= 1 for v in msgs.values())
    assert all(v == 0 for v in by_device(samples, "dcim_mqtt_malformed_total").values())
    [(info, _)] = samples["dcim_collector_info"]
    assert info["site"] == doc["site"]["name"]
    assert one("process_cpu_seconds_total") > 0


def test_metrics_are_off_unless_configured() -> None:
    cfg = SiteConfig.model_validate({"site": {"name": "x"}})
    assert cfg.metrics is None
    on = SiteConfig.model_validate({"site": {"name": "x"}, "metrics": {}})
    assert on.metrics is not None and (on.metrics.host, on.metrics.port) == ("127.0.0.1", 9108)


def test_idle_connections_cost_no_thread_and_do_not_keep_a_scrape_out(tmp_path: Path) -> None:
    """200 connections that send nothing: no thread each, a scrape still answers at once,
    and the idle ones are closed after the timeout."""
    import socket
    import threading

    from dcim.metrics import MetricsServer
    from dcim.runtime import Collector

    cfg = SiteConfig.model_validate(
        {"site": {"name": "x"}, "storage": {"spool_dir": str(tmp_path / "spool")}}
    )
    col = Collector(cfg)
    srv = MetricsServer(col, col.poll_metrics, "127.0.0.1", 0, idle_timeout_s=2.0)
    idle: list[socket.socket] = []
    try:
        threads = threading.active_count()
        for _ in range(200):
            idle.append(socket.create_connection(("127.0.0.1", srv.port), timeout=5))
        time.sleep(0.3)
        assert threading.active_count() == threads  # the server's own thread only, before too
        t = time.monotonic()
        ctype, samples = scrape(srv.port)
        assert time.monotonic() - t < 1.0
        assert ctype.startswith("text/plain") and "dcim_spool_pending_readings" in samples
        with urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/nope", timeout=5) as rsp:
            pytest.fail(f"answered {rsp.status}")
    except urllib.error.HTTPError as exc:
        assert exc.code == 404
        # the idle connections are closed: by the cap (the oldest made room) or the timeout
        time.sleep(2.5)
        for s in idle:
            s.settimeout(1)
            assert s.recv(1) == b""
    finally:
        for s in idle:
            s.close()
        srv.close()
        col.spool.close()
        col.store.close()
