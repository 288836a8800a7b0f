"""The collector process (`dcim run`) killed -9 and restarted while an alert fires: the alert
stays in Alertmanager with the same start, the webhook is told once that it fires and once
that it resolved (no loss, no duplicate, no burst after the restart)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from dcim.config import SiteConfig
from dcim.testing.alertmanager import Alertmanager
from dcim.testing.servers import free_ports
from dcim.twin.runner import TwinRunner, TwinThread
from dcim.twin.site import paris_chapelle
from tests.alerts.receiver import Receiver

INTERVAL = 2.0
FAULTY = "drycooler-1"
KEY = "restart-test-key"


def wait(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.2)
    raise TimeoutError(what)


def test_kill_9_and_restart_while_firing(tmp_path: Path) -> None:
    hook, amhook = Receiver(KEY.encode()), Receiver()
    am = Alertmanager(tmp_path / "am", hook_url=amhook.url)
    am.start()
    doc: dict[str, Any] = paris_chapelle(
        racks=1,
        servers_per_rack=1,
        snmp_base_port=free_ports(4, kind=2),
        modbus_base_port=free_ports(16),
        interval_s=INTERVAL,
        spool_dir=str(tmp_path / "spool"),
        sink={"type": "embedded", "path": str(tmp_path / "store.sqlite")},
    )
    doc["devices"] = [d for d in doc["devices"] if d["protocol"] != "mqtt"]
    doc["defaults"].update(timeout_s=0.3, retries=0)
    doc["alerts"] = {
        "alertmanager": {"url": am.url, "resend_s": 2},
        "webhooks": [{"url": hook.url, "secret_env": "DCIM_TEST_HOOK_KEY"}],
        "retry_max_s": 2,
    }
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(doc))
    env = {**os.environ, "DCIM_TEST_HOOK_KEY": KEY}

    def start() -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "dcim.cli", "run", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )

    def mine(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            a
            for a in alerts
            if a["labels"]["alertname"] == "DeviceUnreachable" and a["labels"]["device"] == FAULTY
        ]

    procs = []
    try:
        with TwinThread(TwinRunner(SiteConfig.model_validate(doc), seed=4)) as runner:
            procs.append(start())
            time.sleep(2 * INTERVAL)
            runner.set_unreachable(FAULTY)
            first = wait(lambda: mine(am.alerts()), 60, "alert in alertmanager")[0]
            wait(lambda: mine(hook.alerts()), 10, "alert at the webhook")
            procs[-1].send_signal(signal.SIGKILL)
            procs[-1].wait(10)
            time.sleep(1)
            procs.append(start())  # restarted while the device is still silent
            time.sleep(8)  # several resend rounds of the new process
            now = mine(am.alerts())
            assert len(now) == 1 and now[0]["startsAt"] == first["startsAt"]
            assert now[0]["updatedAt"] != first["updatedAt"]  # kept alive by the new process
            procs[-1].send_signal(signal.SIGKILL)  # and once more, killed mid-flight
            procs[-1].wait(10)
            procs.append(start())
            time.sleep(2)
            runner.set_unreachable(FAULTY, False)
            wait(lambda: not mine(am.alerts()), 30, "resolved in alertmanager")
            wait(
                lambda: [a for a in mine(hook.alerts()) if a["status"] == "resolved"],
                30,
                "resolve at the webhook",
            )
            time.sleep(3)
            procs[-1].send_signal(signal.SIGINT)
            out = procs[-1].communicate(timeout=60)[0]
            assert procs[-1].returncode == 0, out[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        am.stop()
        hook.close()
        amhook.close()
    states = [a["status"] for a in mine(hook.alerts())]
    assert states == ["firing", "resolved"], states  # once each across two kills
    assert hook.refused == 0
    assert [a["status"] for a in mine(amhook.alerts())][-1] == "resolved"
