"""``dcim alerts CONFIG``: firing now, history, --json, from the state the collector left."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from dcim.alerts.engine import AlertEngine
from dcim.alerts.loader import load_rules
from dcim.alerts.rules import AlertsSettings
from dcim.cli import main
from dcim.config import load_config
from dcim.reading import Reading
from dcim.twin.site import paris_chapelle

NS = 1_000_000_000


def test_alerts_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = paris_chapelle(racks=1, servers_per_rack=1, spool_dir=str(tmp_path / "spool"))
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert main(["alerts", str(path)]) == 1  # no state yet: said so
    assert "has not run with alerts" in capsys.readouterr().err

    cfg = load_config(path)
    eng = AlertEngine(
        load_rules(cfg, path),
        cfg.alerts or AlertsSettings(),
        state_path=cfg.storage.spool_dir / "alerts.sqlite",
        device_tags={d.name: cfg.tags_of(d) for d in cfg.devices},
    )
    now = time.time_ns()
    ups = {"site": "paris-chapelle", "device": "ups-a"}
    eng.observe(
        [Reading("ups", ups, {"on_battery": 1, "battery_runtime_min": 30.0}, now - 600 * NS)]
    )
    eng.observe(
        [Reading("ups", ups, {"on_battery": 0, "battery_runtime_min": 30.0}, now - 300 * NS)]
    )
    eng.observe([Reading("ups", ups, {"on_battery": 1, "battery_runtime_min": 8.0}, now - 60 * NS)])
    eng.stop()

    assert main(["alerts", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2 alert(s) firing")
    assert "UpsOnBattery" in out and "UpsRuntimeLow" in out and "(60 s)" in out
    assert "UPS ups-a has 8 min of battery left" in out
    assert "4 events" in out  # fired, resolved, fired again, runtime low

    assert main(["alerts", str(path), "--json", "--history", "2m"]) == 0
    doc_out = json.loads(capsys.readouterr().out)
    assert {a["labels"]["alertname"] for a in doc_out["now"]} == {"UpsOnBattery", "UpsRuntimeLow"}
    assert all(a["state"] == "firing" for a in doc_out["now"])
    assert [h["state"] for h in doc_out["history"]] == ["firing", "firing"]  # the last 2 min


def test_demo_view_lines(tmp_path: Path) -> None:
    from dcim.alerts.rules import Rule
    from dcim.alerts.view import alert_lines

    assert alert_lines(None) == ["  Alerts: off (no rules)"]
    rule = Rule.model_validate(
        {
            "name": "Hot",
            "kind": "threshold",
            "severity": "critical",
            "select": {"measurement": "m"},
            "field": "v",
            "above": 1,
            "annotations": {"summary": "s", "description": "d", "runbook": "r"},
        }
    )
    eng = AlertEngine([rule], AlertsSettings(), state_path=tmp_path / "a.sqlite")
    try:
        assert alert_lines(eng) == ["  Alerts: none firing"]
        eng.observe([Reading("m", {"device": "d1"}, {"v": 2.5}, 100 * NS)])
        lines = alert_lines(eng, now_ns=100 * NS + 180 * NS)
        assert lines[0].startswith("  Alerts: 1 firing")
        assert "critical" in lines[1] and "Hot" in lines[1] and "2.5" in lines[1]
        assert lines[1].endswith("for 3 min")
    finally:
        eng.stop()


def test_run_without_the_webhook_key_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DCIM_NO_SUCH_KEY", raising=False)
    doc = paris_chapelle(racks=1, servers_per_rack=1, spool_dir=str(tmp_path / "spool"))
    doc["alerts"] = {
        "webhooks": [{"url": "http://127.0.0.1:9/x", "secret_env": "DCIM_NO_SUCH_KEY"}]
    }
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert main(["run", str(path)]) == 2
    assert "no HMAC key in $DCIM_NO_SUCH_KEY" in capsys.readouterr().err
