"""Period rules over stored figures: daily energy-based PUE and ERF from the same code as
`dcim kpi`, on a day of the twin's history written into the embedded store."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

from dcim.alerts.engine import AlertEngine, _kpi_of
from dcim.alerts.rules import AlertsSettings, Rule
from dcim.cli import main
from dcim.config import load_config
from dcim.twin.site import paris_chapelle

NS = 1_000_000_000
PARIS = ZoneInfo("Europe/Paris")
ANN = {"summary": "{alertname} {value:.3f} on {detail}", "description": "d", "runbook": "r"}


def period_rule(name: str, figure: str, **level: float) -> Rule:
    return Rule.model_validate(
        {
            "name": name,
            "kind": "period",
            "severity": "warning",
            "figure": figure,
            "select": {"measurement": "kpi"},
            "annotations": ANN,
            **level,
        }
    )


def test_daily_pue_and_erf_on_stored_data(tmp_path: Path) -> None:
    doc = paris_chapelle(
        racks=1,
        servers_per_rack=1,
        interval_s=60.0,
        spool_dir=str(tmp_path / "spool"),
        sink={"type": "embedded", "path": str(tmp_path / "store.sqlite")},
    )
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert main(["twin", "backfill", str(path), "--from", "2026-02-01", "--to", "2026-02-03"]) == 0
    cfg = load_config(path)
    rules = [
        period_rule("PueAboveTarget", "pue", above=1.05, clear=1.0),  # any real site breaches
        period_rule("PueAboveFive", "pue", above=5.0),
        period_rule("ErfBelowFloor", "erf", below=0.99),
        period_rule("ErfBelowZero", "erf", below=0.0),
    ]
    values: list[tuple[str, float | None]] = []
    real = _kpi_of(cfg)

    def kpi(figure: str, category: int, start: int, end: int) -> float | None:
        v = real(figure, category, start, end)
        values.append((figure, v))
        return v

    eng = AlertEngine(
        rules,
        AlertsSettings(),
        state_path=tmp_path / "alerts.sqlite",
        kpi=kpi,
        site="paris-chapelle",
        timezone="Europe/Paris",
    )
    try:
        now = int(datetime(2026, 2, 2, 6, 0, tzinfo=PARIS).timestamp() * NS)  # Feb 1 closed
        eng.evaluate_periods(now)
        pue = dict(values)["pue"]
        erf = dict(values)["erf"]
        assert pue is not None and 1.05 < pue < 2.0, pue
        assert erf is not None and 0.0 < erf < 0.99, erf
        firing = {i.rule: i for i in eng.firing()}
        assert set(firing) == {"PueAboveTarget", "ErfBelowFloor"}
        hist = eng.state.history()
        assert hist[0]["annotations"]["summary"].endswith("on 2026-02-01")
        n = len(values)
        eng.evaluate_periods(now + 3600 * NS)  # the same day again: not recomputed
        assert len(values) == n
        assert len(eng.state.history()) == len(hist)  # and not re-fired
    finally:
        eng.stop()


def test_a_good_day_resolves_and_a_gap_changes_nothing(tmp_path: Path) -> None:
    figures = {"2026-03-01": 1.6, "2026-03-02": None, "2026-03-03": 1.3}

    def kpi(figure: str, category: int, start: int, end: int) -> float | None:
        day = datetime.fromtimestamp(start / NS, PARIS).date().isoformat()
        return figures[day]

    eng = AlertEngine(
        [period_rule("PueAboveTarget", "pue", above=1.5, clear=1.4)],
        AlertsSettings(),
        state_path=tmp_path / "a.sqlite",
        kpi=kpi,
        timezone="Europe/Paris",
    )
    try:

        def at(day: int) -> int:
            return int(datetime(2026, 3, day, 7, 0, tzinfo=PARIS).timestamp() * NS)

        eng.evaluate_periods(at(2))
        assert [i.value for i in eng.firing()] == [1.6]
        eng.evaluate_periods(at(3))  # 2 March incomplete: no figure, still firing
        assert [i.value for i in eng.firing()] == [1.6]
        eng.evaluate_periods(at(4))
        assert eng.firing() == []
        assert [h["state"] for h in eng.state.history()] == ["resolved", "firing"]
    finally:
        eng.stop()
