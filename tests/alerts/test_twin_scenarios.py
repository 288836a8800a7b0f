"""Twin scenarios end to end: the twin serves a fault (``TwinRunner(scenarios=...)``, as
``dcim twin serve --scenario``), the real Collector polls it over Modbus and SNMP with the
default pack, and the alert appears in a real Alertmanager's ``/api/v2/alerts`` with its
labels and annotations, within a poll of the fault (plus the rule's ``for_s``, 0 here, plus
2 s), and is resolved there when the scenario ends. Nothing else fires."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from dcim.runtime import Collector
from dcim.testing.alertmanager import Alertmanager
from dcim.twin.runner import TwinRunner, TwinThread
from dcim.twin.scenarios import HP_TRIP_CODE, parse
from tests.alerts.receiver import Receiver
from tests.alerts.test_collector import INTERVAL, am, names, site

__all__ = ["am"]  # the fixture, imported for pytest

AT_S, FOR_S = 8.0, 16.0  # the faults start 8 s after the twin and last 16 s


def test_twin_faults_fire_and_resolve_in_alertmanager(
    tmp_path: Path, am: tuple[Alertmanager, Receiver]
) -> None:
    srv, hook = am
    cfg = site(tmp_path, srv.url)
    scenarios = [parse(f"heat-pump-trip@{AT_S:g}s:{FOR_S:g}s"), parse(f"ups-on-battery@{AT_S:g}")]
    scenarios[1].duration_s = FOR_S
    seen: dict[str, float] = {}
    gone: dict[str, float] = {}
    keys = {"HeatPumpTrip/hp-1", "UpsOnBattery/ups-a"}

    async def run(runner: TwinRunner) -> dict[str, dict[str, Any]]:
        col = Collector(cfg)
        await col.start()
        got: dict[str, dict[str, Any]] = {}
        try:
            deadline = runner.started_at + AT_S + FOR_S + 30
            while time.time() < deadline and len(gone) < len(keys):
                now = names(srv)
                for k in keys:
                    if k in now and k not in seen:
                        seen[k], got[k] = time.time(), now[k]
                    if k in seen and k not in now and k not in gone:
                        gone[k] = time.time()
                await asyncio.sleep(0.2)
        finally:
            await col.stop()
        return got

    with TwinThread(TwinRunner(cfg, seed=3, scenarios=scenarios)) as runner:
        # what the twin's Modbus server serves is the fault (the collector read it from there)
        start = runner.started_at
        got = asyncio.run(run(runner))
    assert set(got) == keys, (got, seen)
    trip = got["HeatPumpTrip/hp-1"]
    assert trip["labels"]["severity"] == "critical"
    assert trip["labels"]["device"] == "hp-1" and trip["labels"]["site"] == cfg.site.name
    assert f"alarm code {HP_TRIP_CODE}" in trip["annotations"]["summary"]
    assert trip["annotations"]["runbook"]
    ups = got["UpsOnBattery/ups-a"]
    assert ups["labels"]["severity"] == "critical" and ups["annotations"]["summary"]
    for k in keys:
        # fault -> Alertmanager within a poll interval + for_s (0) + 2 s
        assert seen[k] - (start + AT_S) <= INTERVAL + 0 + 2, (k, seen[k] - start)
        # resolved there once the fault is over (not before it is)
        assert start + AT_S + FOR_S <= gone[k] <= start + AT_S + FOR_S + INTERVAL + 5, k
    assert hook.wait_for(lambda a: a["status"] == "resolved")
    fired = {a["labels"]["alertname"] for a in hook.alerts()}
    assert fired == {"HeatPumpTrip", "UpsOnBattery"}, fired
