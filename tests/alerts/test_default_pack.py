"""The default rule pack on the twin's healthy site over a day in each season: no alert at
all (a default rule that fires here would wake someone for nothing)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from dcim.alerts.evaluator import FIRING, Evaluator
from dcim.alerts.loader import DEFAULT_PACK, parse_rules
from dcim.config import SiteConfig
from dcim.reading import Reading
from dcim.twin.model import SiteModel
from dcim.twin.site import paris_chapelle

NS = 1_000_000_000
STEP_S = 300
PARIS = ZoneInfo("Europe/Paris")


def twin_readings(model: SiteModel, cfg: SiteConfig, t: float) -> list[Reading]:
    profiles = cfg.profiles()
    out = []
    for d in cfg.devices:
        values = model.values(d.name, t)
        tags = cfg.tags_of(d)
        out.append(Reading(profiles[d.profile].measurement, tags, dict(values), int(t * NS)))
        out.append(
            Reading(
                "dcim_poll",
                {"site": cfg.site.name, "device": d.name, "protocol": d.protocol},
                {"up": 1, "late_s": 0.01},
                int(t * NS),
            )
        )
    return out


@pytest.mark.parametrize("month", [1, 4, 7, 10])
def test_healthy_twin_raises_nothing(month: int) -> None:
    cfg = SiteConfig.model_validate(paris_chapelle(racks=2, servers_per_rack=2))
    rules, issues = parse_rules(DEFAULT_PACK.read_text(), filename="pack")
    assert not issues
    start = datetime(2026, month, 15, tzinfo=PARIS).timestamp()
    model = SiteModel(cfg, t0=start - 3600, seed=month)
    ev = Evaluator(rules, device_tags={d.name: cfg.tags_of(d) for d in cfg.devices})
    fired = []
    for k in range(24 * 3600 // STEP_S):
        t = start + k * STEP_S
        out = ev.observe(twin_readings(model, cfg, t)) + ev.tick(int(t * NS))
        fired += [
            (x.instance.rule, x.instance.labels.get("device"), x.instance.value)
            for x in out
            if x.new == FIRING
        ]
    assert fired == [], fired
    # every rule whose measurement the twin produces did see data
    seen = {i.rule for i in ev.instances.values()}
    assert {
        "ServerInletAboveAllowable",
        "HeatPumpCopLow",
        "CrahNotCooling",
        "HeatExchangerApproachHigh",
        "CpcuSupplyBelowContract",
        "GreenhouseFrost",
        "HeatMeterRegisterAnomaly",
        "WaterFlowUnexpected",
        "DeviceUnreachable",
    } <= seen
