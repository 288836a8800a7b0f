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
