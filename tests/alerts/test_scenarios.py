"""Every default rule fires, and resolves, in its fault scenario of the twin
(:mod:`dcim.twin.scenarios`), within the time its ground truth gives; and no other rule
fires in it (an alert a scenario does not explain would be a false alarm). Virtual time:
the scenario's readings go straight to the evaluator, a day of fouling in a second."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from dcim.alerts.evaluator import FIRING, RESOLVED, Evaluator
from dcim.alerts.loader import DEFAULT_PACK, parse_rules
from dcim.config import SiteConfig
from dcim.twin.model import SiteModel
from dcim.twin.scenarios import Scenario
from dcim.twin.site import paris_chapelle
from tests.alerts import scenarios as S

NS = 1_000_000_000
T0 = datetime(2026, 1, 15, 0, 0, tzinfo=ZoneInfo("Europe/Paris")).timestamp()
RULES, _ = parse_rules(DEFAULT_PACK.read_text(), filename="pack")


def site() -> SiteConfig:
    cfg = SiteConfig.model_validate(paris_chapelle(racks=1, servers_per_rack=2))
    return cfg


@pytest.mark.parametrize("sc", S.scenarios(), ids=lambda s: s.name)
def test_scenario_fires_and_resolves_its_rules(sc: Scenario) -> None:
    cfg = site()
    model = SiteModel(cfg, t0=T0 - 3600, seed=11)
    ev = Evaluator(RULES, device_tags={d.name: cfg.tags_of(d) for d in cfg.devices})
    fired: dict[str, float] = {}
    resolved: dict[str, float] = {}
    for batch in S.run(sc, model, cfg, T0):
        t = batch[0].time_ns
        for tr in ev.observe(batch) + ev.tick(t):
            at = (tr.at_ns / NS) - T0
            if tr.new == FIRING:
                fired.setdefault(tr.instance.rule, at)
            elif tr.new == RESOLVED:
                resolved[tr.instance.rule] = at
    expected = sc.fault.fires
    assert set(fired) == set(expected), (set(fired) ^ set(expected), fired)
    for rule, within in expected.items():
        assert sc.start_s <= fired[rule] <= sc.start_s + within, (rule, fired[rule])
        assert rule in resolved, f"{rule} never resolved"
        assert resolved[rule] >= sc.end_s or rule.endswith("RegisterAnomaly"), (rule, resolved)
    assert ev.firing() == [], [i.key for i in ev.firing()]


def test_every_default_rule_has_a_scenario() -> None:
    covered = set().union(*(sc.fault.fires for sc in S.scenarios()))
    assert covered == {r.name for r in RULES}, {r.name for r in RULES} - covered
