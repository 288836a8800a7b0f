"""End to end: the twin live, the real Collector polling it over SNMP and Modbus with the
default rule pack, a real Alertmanager. A device goes silent (the twin blackholes it): the
default DeviceUnreachable alert appears in Alertmanager with the site file's labels and is
resolved there once the device answers again; nothing else fires on the healthy twin."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dcim.config import SiteConfig
from dcim.runtime import Collector
from dcim.storage import make_store
from dcim.testing.alertmanager import Alertmanager
from dcim.testing.servers import free_ports
from dcim.twin.runner import TwinRunner, TwinThread
from dcim.twin.site import paris_chapelle
from tests.alerts.receiver import Receiver

INTERVAL = 2.0
FAULTY = "crah-1"


@pytest.fixture
def am(tmp_path: Path) -> Iterator[tuple[Alertmanager, Receiver]]:
    hook = Receiver()
    srv = Alertmanager(tmp_path / "am", hook_url=hook.url)
    srv.start()
    yield srv, hook
    srv.stop()
    hook.close()


def site(tmp: Path, am_url: str, sink: dict[str, Any] | None = None) -> SiteConfig:
    doc: dict[str, Any] = paris_chapelle(
        racks=1,
        servers_per_rack=1,
        snmp_base_port=free_ports(4, kind=2),
        modbus_base_port=free_ports(16),
        interval_s=INTERVAL,
        spool_dir=str(tmp / "spool"),
        sink=sink or {"type": "embedded", "path": str(tmp / "store.sqlite")},
    )
    doc["devices"] = [d for d in doc["devices"] if d["protocol"] != "mqtt"]
    doc["defaults"].update(timeout_s=0.3, retries=0)
    doc["alerts"] = {"alertmanager": {"url": am_url, "resend_s": 5}}
    return SiteConfig.model_validate(doc)


def names(am: Alertmanager) -> dict[str, dict[str, Any]]:
    return {f"{a['labels']['alertname']}/{a['labels'].get('device')}": a for a in am.alerts()}


def test_device_silent_fires_and_resolves_in_alertmanager(
    tmp_path: Path, am: tuple[Alertmanager, Receiver]
) -> None:
    srv, hook = am
    cfg = site(tmp_path, srv.url)
    timeline: dict[str, float] = {}

    async def run(runner: TwinRunner) -> Collector:
        col = Collector(cfg)
        await col.start()
        try:
            await asyncio.sleep(3 * INTERVAL)
            runner.set_unreachable(FAULTY)
            timeline["fault"] = time.time()
            key = f"DeviceUnreachable/{FAULTY}"
            while key not in names(srv) and time.time() - timeline["fault"] < 60:
                await asyncio.sleep(0.2)
            timeline["in_am"] = time.time()
            alert = names(srv).get(key)
            assert alert is not None, f"not in alertmanager: {names(srv)}"
            assert alert["labels"]["room"] == "salle-a"  # from the site file
            assert alert["labels"]["severity"] == "warning"
            assert "does not answer" in alert["annotations"]["summary"]
            assert alert["annotations"]["runbook"]
            runner.set_unreachable(FAULTY, False)
            timeline["repair"] = time.time()
            while key in names(srv) and time.time() - timeline["repair"] < 30:
                await asyncio.sleep(0.2)
            timeline["resolved"] = time.time()
            assert key not in names(srv), "not resolved in alertmanager"
        finally:
            await col.stop()
        return col

    with TwinThread(TwinRunner(cfg, seed=3)) as runner:
        asyncio.run(run(runner))
    # DeviceUnreachable's for_s is 30 s: raised within a poll (+ the 1 s notifier round)
    delay = timeline["in_am"] - timeline["fault"]
    assert 30 <= delay <= 30 + INTERVAL + 3, timeline
    assert hook.wait_for(lambda a: a["status"] == "resolved")
    # the healthy twin raised nothing else (a default rule firing here is a false alarm)
    fired = {a["labels"]["alertname"] for a in hook.alerts()}
    assert fired == {"DeviceUnreachable"}, fired
    # the transitions are in the store as the alerts measurement (fired, then resolved)
    store = make_store(cfg.storage)
    try:
        rows = store.aggregate(
            measurement="alerts",
            field="firing",
            start_ns=int(timeline["fault"] * 1e9),
            end_ns=int((timeline["resolved"] + 5) * 1e9),
            fn="count",
            group_by=("alertname", "device"),
        )
        got = {(r.tags["alertname"], r.tags["device"]): r.value for r in rows}
        assert got == {("DeviceUnreachable", FAULTY): 2}, got
    finally:
        store.close()


def test_alerts_keep_coming_while_the_database_is_down(
    tmp_path: Path, am: tuple[Alertmanager, Receiver]
) -> None:
    """InfluxDB unreachable for the whole run (nothing listens on its port): the readings
    pile up in the spool, and the alert still reaches Alertmanager, on time."""
    srv, hook = am
    dead = {"type": "influxdb", "url": f"http://127.0.0.1:{free_ports(1)}", "timeout_s": 1}
    cfg = site(tmp_path, srv.url, dead)

    async def run(runner: TwinRunner) -> tuple[float, int]:
        col = Collector(cfg)
        await col.start()
        try:
            await asyncio.sleep(2 * INTERVAL)
            runner.set_unreachable("hp-2")
            t0 = time.time()
            key = "DeviceUnreachable/hp-2"
            while key not in names(srv) and time.time() - t0 < 60:
                await asyncio.sleep(0.2)
            assert key in names(srv), names(srv)
            return time.time() - t0, col.spool.stats().pending
        finally:
            await col.stop(flush_timeout_s=1)

    with TwinThread(TwinRunner(cfg, seed=5)) as runner:
        delay, pending = asyncio.run(run(runner))
    assert pending > 0  # the database never took anything
    assert delay <= 30 + INTERVAL + 3, delay
