"""examples/alertmanager.yml is a valid Alertmanager config (checked by Alertmanager's own
amtool, from the Debian package) and its inhibit rules name rules of the default pack."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from dcim.alerts.loader import DEFAULT_PACK

EXAMPLE = Path(__file__).parents[2] / "examples" / "alertmanager.yml"


def test_amtool_accepts_the_example() -> None:
    amtool = shutil.which("amtool")
    assert amtool, "amtool not found: install the Debian package 'prometheus-alertmanager'"
    out = subprocess.run([amtool, "check-config", str(EXAMPLE)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "4 inhibit rules" in out.stdout


def test_inhibit_rules_name_default_rules() -> None:
    names = {r["name"] for r in yaml.safe_load(DEFAULT_PACK.read_text())["rules"]}
    doc = yaml.safe_load(EXAMPLE.read_text())
    for rule in doc["inhibit_rules"]:
        for m in rule["source_matchers"] + rule["target_matchers"]:
            pattern = re.fullmatch(r'alertname\s*(=~|=|!=)\s*"(.*)"', m)
            assert pattern, m
            regex = pattern.group(2) if pattern.group(1) == "=~" else re.escape(pattern.group(2))
            assert any(re.fullmatch(regex, n) for n in names), (m, "matches no default rule")


def test_inhibit_rules_in_a_real_alertmanager(tmp_path: Path) -> None:
    """The example's routes and inhibit rules loaded in a real Alertmanager (its receivers
    swapped for a local webhook: nothing leaves the machine): a device that is down
    inhibits its other alerts; a CRAH that no longer cools inhibits the inlet warnings of
    its room, not those of the other room."""
    import time

    from dcim.testing.alertmanager import Alertmanager
    from tests.alerts.receiver import Receiver

    hook = Receiver()
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc.pop("global")
    doc["receivers"] = [
        {"name": r["name"], "webhook_configs": [{"url": hook.url}]} for r in doc["receivers"]
    ]
    am = Alertmanager(tmp_path / "am", config=yaml.safe_dump(doc))
    am.start()
    try:

        def alert(name: str, sev: str, **labels: str) -> dict[str, object]:
            return {
                "labels": {"alertname": name, "severity": sev, "site": "s", **labels},
                "annotations": {"summary": name},
            }

        am.post_alerts(
            [
                alert("DeviceUnreachable", "warning", device="hm-cpcu"),
                alert("HeatMeterEnergyMissing", "warning", device="hm-cpcu"),
                alert("HeatMeterEnergyMissing", "warning", device="hm-greenhouse"),
                alert("CrahNotCooling", "critical", device="crah-1", room="salle-a"),
                alert("RackInletAboveRecommended", "warning", device="env-R01", room="salle-a"),
                alert("RackInletAboveRecommended", "warning", device="env-R20", room="salle-b"),
            ]
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            got = {
                (a["labels"]["alertname"], a["labels"]["device"]): a["status"] for a in am.alerts()
            }
            if len(got) == 6 and any(s["inhibitedBy"] for s in got.values()):
                break
            time.sleep(0.2)
        state = {k: s["state"] for k, s in got.items()}
        assert state == {
            ("DeviceUnreachable", "hm-cpcu"): "active",
            ("HeatMeterEnergyMissing", "hm-cpcu"): "suppressed",
            ("HeatMeterEnergyMissing", "hm-greenhouse"): "active",
            ("CrahNotCooling", "crah-1"): "active",
            ("RackInletAboveRecommended", "env-R01"): "suppressed",
            ("RackInletAboveRecommended", "env-R20"): "active",
        }, state
    finally:
        am.stop()
        hook.close()
