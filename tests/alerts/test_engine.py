"""The collector's engine (``build_engine``) judges the readings the pipeline keeps: a
device's no-value code, or a value outside the physical range, fires no rule."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from dcim.alerts.engine import build_engine
from dcim.alerts.evaluator import INACTIVE
from dcim.config import SiteConfig
from dcim.reading import Reading
from dcim.twin.site import paris_chapelle


def test_no_value_codes_fire_nothing(tmp_path: Path) -> None:
    doc: dict[str, Any] = paris_chapelle(
        racks=1,
        servers_per_rack=1,
        spool_dir=str(tmp_path / "spool"),
        sink={"type": "embedded", "path": str(tmp_path / "store.sqlite")},
    )
    cfg = SiteConfig.model_validate(doc)
    emitted: list[Reading] = []
    eng = build_engine(cfg, emitted.extend)
    assert eng is not None
    try:
        tags = cfg.tags_of(cfg.device("hm-cpcu"))
        now = time.time_ns()

        def supply(t: float) -> list[Reading]:
            return [Reading("heat_meter", tags, {"supply_temp_c": t}, now)]

        # int16 -32768 x 0.01: the meter's "no reading"; 900 degC: not water in a pipe
        def active() -> list[Any]:
            return [i for i in eng.evaluator.instances.values() if i.state != INACTIVE]

        eng.observe(supply(-327.68))
        assert active() == []
        eng.observe(supply(900.0))
        assert active() == []
        eng.observe(supply(50.0))  # a real 50 degC supply: below the 60 degC contract
        (inst,) = active()
        assert inst.rule == "CpcuSupplyBelowContract" and inst.value == 50.0
    finally:
        eng.stop()


def test_values_saved_only_when_they_changed(tmp_path: Path) -> None:
    """The periodic save writes an instance seen again or moved, not every instance each
    time (at 10x the site, that cost more than the rules)."""
    from dcim.alerts.engine import AlertEngine
    from dcim.alerts.rules import AlertsSettings, Rule

    stale = Rule.model_validate(
        {
            "name": "Silent",
            "kind": "stale",
            "severity": "warning",
            "select": {"measurement": "m"},
            "after_s": 600,
            "annotations": {"summary": "s", "description": "d", "runbook": "r"},
        }
    )
    eng = AlertEngine([stale], AlertsSettings(default_pack=False), state_path=tmp_path / "a.db")
    saved: list[int] = []
    real = eng.state.save_values

    def count(instances: Any) -> None:
        rows = list(instances)
        saved.append(len(rows))
        real(rows)

    eng.state.save_values = count  # type: ignore[method-assign]
    try:
        t = time.time_ns()
        eng.observe([Reading("m", {"site": "s", "device": d}, {"v": 1.0}, t) for d in "abc"])
        eng._save()
        eng._save()  # nothing changed
        eng.observe([Reading("m", {"site": "s", "device": "b"}, {"v": 2.0}, t + 10**9)])
        eng._save()
        assert saved == [3, 1]
        assert eng.state.load()  # and what was saved is there
    finally:
        eng.stop()


def _site(tmp_path: Path) -> SiteConfig:
    doc: dict[str, Any] = paris_chapelle(
        racks=1,
        servers_per_rack=1,
        spool_dir=str(tmp_path / "spool"),
        sink={"type": "embedded", "path": str(tmp_path / "store.sqlite")},
    )
    return SiteConfig.model_validate(doc)


def test_only_what_the_rules_read_is_screened(tmp_path: Path) -> None:
    """The engine screens and evaluates the readings of the measurements its rules select
    (or total()); the others are passed over before the screen (a PDU's 24 outlets)."""
    from dcim.alerts.engine import AlertEngine, quiet_screen
    from dcim.alerts.loader import DEFAULT_PACK, parse_rules
    from dcim.alerts.rules import AlertsSettings

    cfg = _site(tmp_path)
    rules, _ = parse_rules(DEFAULT_PACK.read_text(), filename="pack")
    real = quiet_screen(cfg)
    seen: list[list[str]] = []

    def screen(readings: list[Reading]) -> list[Reading]:
        seen.append([r.measurement for r in readings])
        return real(readings)

    eng = AlertEngine(
        rules, AlertsSettings(default_pack=False), state_path=tmp_path / "a.db", screen=screen
    )
    try:
        tags = {"site": "s", "device": "pdu-1"}
        now = time.time_ns()
        eng.observe(
            [Reading("pdu_outlet", tags, {"power_w": 1.0}, now)] * 3
            + [Reading("pdu_phase", tags, {"current_a": 1.0}, now)]
            + [Reading("dcim_poll", tags, {"up": 0}, now)]
        )
        assert seen == [["pdu_phase", "dcim_poll"]]
        (inst,) = [i for i in eng.evaluator.instances.values() if i.state != INACTIVE]
        assert inst.rule == "DeviceUnreachable"
        eng.observe([Reading("pdu_outlet", tags, {"power_w": 1.0}, now)])
        assert len(seen) == 1  # nothing a rule reads: not screened at all
    finally:
        eng.stop()


def test_a_rule_on_the_refused_count_sees_every_reading(tmp_path: Path) -> None:
    """A rule reading the ``refused`` count the screen puts on a ``dcim_poll`` row gets the
    count of the whole poll: every reading is screened, not only the selected ones."""
    from dcim.alerts.engine import AlertEngine, quiet_screen
    from dcim.alerts.rules import AlertsSettings, Rule

    cfg = _site(tmp_path)
    rule = Rule.model_validate(
        {
            "name": "ValuesRefused",
            "kind": "threshold",
            "severity": "warning",
            "select": {"measurement": "dcim_poll"},
            "field": "refused",
            "above": 0.5,
            "annotations": {"summary": "s", "description": "d", "runbook": "r"},
        }
    )
    eng = AlertEngine(
        [rule],
        AlertsSettings(default_pack=False),
        state_path=tmp_path / "a.db",
        screen=quiet_screen(cfg),
    )
    try:
        tags = cfg.tags_of(cfg.device("hm-cpcu"))
        now = time.time_ns()
        eng.observe(
            [
                Reading("heat_meter", tags, {"supply_temp_c": -327.68}, now),  # no value
                Reading("dcim_poll", tags, {"up": 1}, now),
            ]
        )
        (inst,) = eng.evaluator.instances.values()
        assert inst.value == 1.0 and inst.state != INACTIVE
    finally:
        eng.stop()
