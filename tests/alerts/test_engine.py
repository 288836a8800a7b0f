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
