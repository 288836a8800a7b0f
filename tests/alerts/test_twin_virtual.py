"""Every twin scenario through the real protocol path in virtual time: the twin's SNMP and
Modbus servers serve the fault (its clock is virtual), the collector's own pollers read them
over the network, and the readings, stamped with the virtual time, go to the default pack's
evaluator. An hour of fault takes seconds: a poll per ``step_s`` of virtual time, of the
devices the scenario's rules select only.

Rules on readings the twin does not serve (``rack_env``, ``pdu_phase``, ``ups_input``, the
collector's ``dcim_spool``; MQTT greenhouse zones, which the collector does not poll) are
shown in test_scenarios.py on the same effects. The readings pass the collector's screen
(``quiet_screen``, as in the engine) first: the heat meter whose energy register is not
read serves its profile's no-value code there, which is no reading.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from dcim.alerts.engine import quiet_screen
from dcim.alerts.evaluator import FIRING, RESOLVED, Evaluator
from dcim.alerts.loader import DEFAULT_PACK, parse_rules
from dcim.config import SiteConfig
from dcim.protocols import PollError, make_poller
from dcim.reading import Reading
from dcim.testing.servers import free_ports
from dcim.twin.runner import TwinRunner, TwinThread
from dcim.twin.scenarios import FAULTS, Scenario
from dcim.twin.site import paris_chapelle
from tests.alerts.scenarios import total_s

NS = 1_000_000_000
T0 = 1_768_431_600.0  # 2026-01-15T00:00+01:00, a winter night
RULES, _ = parse_rules(DEFAULT_PACK.read_text(), filename="pack")
BY_NAME = {r.name: r for r in RULES}
NOT_SERVED = {"rack_env", "pdu_phase", "ups_input", "dcim_spool", "greenhouse"}


def selected(rule: str) -> set[str]:
    """The measurements ``rule`` reads: its selection's and its total()s'."""
    r = BY_NAME[rule]
    return set(r.select.measurement if r.select else ()) | set(
        re.findall(r"total\('(\w+)'", r.expr or "")
    )


def live_rules(fault_name: str) -> set[str]:
    out = set()
    for name in FAULTS[fault_name].fires:
        ms = selected(name)
        if not ms & NOT_SERVED and name != "CollectorPollsLate":
            out.add(name)
    return out


LIVE = [f for f in FAULTS if live_rules(f)]


def site(tmp: Path) -> SiteConfig:
    doc: dict[str, Any] = paris_chapelle(
        racks=1,
        servers_per_rack=2,
        snmp_base_port=free_ports(8, kind=2),
        modbus_base_port=free_ports(16),
        interval_s=60,
        spool_dir=str(tmp / "spool"),
        sink={"type": "embedded", "path": str(tmp / "store.sqlite")},
    )
    doc["devices"] = [d for d in doc["devices"] if d["protocol"] in ("snmp", "modbus")]
    doc["defaults"].update(timeout_s=0.3, retries=0)
    return SiteConfig.model_validate(doc)


@pytest.mark.parametrize("name", LIVE)
def test_scenario_through_the_twin_servers_and_pollers(name: str, tmp_path: Path) -> None:
    cfg = site(tmp_path)
    fault = FAULTS[name]
    sc = Scenario(fault, fault.start_s, fault.duration_s)
    want = live_rules(name)
    measurements = {m for r in want for m in selected(r)}
    profiles = cfg.profiles()
    devices = [
        d
        for d in cfg.devices
        if profiles[d.profile].measurement in measurements
        or ("dcim_poll" in measurements and d.name in fault.silent)
    ]
    assert devices, name
    vt = [T0]
    runner = TwinRunner(cfg, seed=11, t0=T0 - 3600, clock=lambda: vt[0], scenarios=[sc])
    ev = Evaluator(RULES, device_tags={d.name: cfg.tags_of(d) for d in cfg.devices})
    screen = quiet_screen(cfg)
    fired: dict[str, float] = {}
    resolved: dict[str, float] = {}

    async def poll_all(t_ns: int) -> list[Reading]:
        out: list[Reading] = []
        for p in pollers:
            tags = {"site": cfg.site.name, "device": p.device.name, "protocol": "x"}
            tags["protocol"] = p.device.protocol
            try:
                got = await asyncio.wait_for(p.poll(), 2.0)
                up = 1
            except (PollError, TimeoutError):
                got, up = [], 0
            out += [Reading(r.measurement, r.tags, r.fields, t_ns) for r in got]
            out.append(Reading("dcim_poll", tags, {"up": up, "late_s": 0.0}, t_ns))
        return out

    async def run() -> None:
        step = fault.step_s
        k = 0
        while k * step <= total_s(sc):
            vt[0] = T0 + k * step
            runner.sync_silence()
            t_ns = int(vt[0] * NS)
            for tr in ev.observe(screen(await poll_all(t_ns))) + ev.tick(t_ns):
                at = tr.at_ns / NS - runner.started_at
                if tr.new == FIRING:
                    fired.setdefault(tr.instance.rule, at)
                elif tr.new == RESOLVED:
                    resolved[tr.instance.rule] = at
            k += 1
        for p in pollers:
            await p.close()

    with TwinThread(runner):
        assert runner.started_at == T0  # the scenario's origin: the virtual clock
        pollers = [make_poller(cfg, d) for d in devices]
        asyncio.run(run())
    # what must fire does, within its ground truth's time; nothing the scenario does not
    # explain fires (a false alarm), and all of it resolves
    assert want <= set(fired) <= set(fault.fires), (want, fired)
    for rule in want:
        assert sc.start_s <= fired[rule] <= sc.start_s + fault.fires[rule], (rule, fired)
        assert rule in resolved, f"{rule} never resolved"
        assert resolved[rule] >= sc.end_s or rule.endswith("RegisterAnomaly"), (rule, resolved)
    assert ev.firing() == [], [i.key for i in ev.firing()]
