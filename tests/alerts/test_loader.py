"""Rule files: every mistake of every file at once, with file:line, through `dcim check-config`
(exit status 2) next to the site file's own errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dcim.alerts.loader import DEFAULT_PACK, load_rules, parse_rules
from dcim.cli import main
from dcim.config import ConfigError, load_config
from dcim.twin.site import paris_chapelle

BAD_RULES = """\
rules:
  - name: InletHot
    kind: threshold
    severity: warning
    select: {measurement: server}
    field: inlet_temp_c
    above: 27
    clear: 29
    annotations: {summary: s, description: d, runbook: r}
  - name: Approach
    kind: threshold
    severity: page
    select: {measurement: heat_exchanger}
    expr: "primary_supply_temp_c.real - 1"
    above: 5
    annotations: {summary: s, description: d, runbook: r}
  - name: Silent
    kind: stale
    severity: warning
    select: {measurement: greenhouse}
    annotations: {summary: "{value:zz}", description: d, runbook: r}
  - name: NoLevel
    kind: rate
    severity: info
    select: {measurement: water_meter}
    field: volume_m3_total
    annotations: {summary: s, description: d}
    treshold: 3
  - name: InletHot
    kind: counter
    severity: info
    select: {measurement: energy_meter}
    field: power_w
    annotations: {summary: s, description: d, runbook: r}
"""


def site_file(tmp: Path, alerts: dict[str, object], **extra: object) -> Path:
    doc = paris_chapelle(racks=1, servers_per_rack=1, spool_dir=str(tmp / "spool"))
    doc["alerts"] = alerts
    doc.update(extra)
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_default_pack_is_valid() -> None:
    rules, issues = parse_rules(DEFAULT_PACK.read_text(), filename=str(DEFAULT_PACK))
    assert issues == []
    assert len(rules) >= 25
    assert len({r.name for r in rules}) == len(rules)


def test_rule_file_with_several_mistakes_reports_all_with_lines(tmp_path: Path) -> None:
    rules, issues = parse_rules(BAD_RULES, filename="bad.yaml")
    text = [str(i) for i in issues]
    expect = [
        ("bad.yaml:2:", "rules[0](InletHot)", "'clear: 29' must be at or below 'above: 27'"),
        ("bad.yaml:12:", "rules[1](Approach).severity", "'critical', 'warning' or 'info'"),
        ("bad.yaml:14:", "rules[1](Approach).expr", "Attribute is not allowed at column 1"),
        ("bad.yaml:21:", "rules[2](Silent).annotations.summary", "'zz' is not a number format"),
        ("bad.yaml:27:", "rules[3](NoLevel).annotations.runbook", "required key is missing"),
        ("bad.yaml:28:", "rules[3](NoLevel).treshold", "unknown key"),
        ("bad.yaml:29:", "rules[4](InletHot)", "a counter rule needs 'field:' naming a *_total"),
    ]
    for where, path, what in expect:
        assert any(t.startswith(where) and path in t and what in t for t in text), (where, text)
    assert rules == []  # nothing half-valid is kept


def test_check_config_lists_rule_errors_with_the_site_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bad.yaml").write_text(BAD_RULES)
    path = site_file(tmp_path, {"rule_files": ["bad.yaml"], "disable": ["NoSuchRule"]})
    text = path.read_text().replace("interval_s: 10.0", "interval_s: -1", 1)
    path.write_text(text)
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "defaults.interval_s" in err  # the site file's own error...
    assert f"{tmp_path / 'bad.yaml'}:14: rules[1](Approach).expr" in err  # ...and the rules'
    assert err.count("bad.yaml:") == 7


def test_site_with_rules_loads_and_names_clash(tmp_path: Path) -> None:
    rule = {
        "name": "UpsOnBattery",
        "kind": "threshold",
        "severity": "info",
        "select": {"measurement": "ups"},
        "field": "on_battery",
        "above": 0.5,
        "annotations": {"summary": "s", "description": "d", "runbook": "r"},
    }
    path = site_file(tmp_path, {"rules": [rule]})
    with pytest.raises(ConfigError) as exc:
        load_rules(load_config(path), path)
    assert "already used in" in str(exc.value) and "alerts.disable" in str(exc.value)
    path = site_file(tmp_path, {"rules": [rule], "disable": ["UpsOnBattery"]})
    rules = load_rules(load_config(path), path)
    mine = [r for r in rules if r.name == "UpsOnBattery"]
    assert len(mine) == 1 and mine[0].severity == "info"
    path = site_file(tmp_path, {"default_pack": False, "rules": [rule]})
    assert [r.name for r in load_rules(load_config(path), path)] == ["UpsOnBattery"]


def test_check_config_ok_with_default_pack(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = site_file(tmp_path, {"disable": ["GreenhouseOverheat"]})
    assert main(["check-config", str(path)]) == 0
    n = len(parse_rules(DEFAULT_PACK.read_text(), filename="p")[0])
    assert f"{n - 1} alert rules" in capsys.readouterr().out


def test_label_names_alertmanager_takes() -> None:
    bad = BAD_RULES.split("  - name: Approach")[0].replace(
        "    clear: 29\n", "    labels: {team-name: x, severity: page}\n"
    )
    rules, issues = parse_rules(bad, filename="labels.yaml")
    assert rules == [] and len(issues) == 1
    assert "label 'team-name'" in str(issues[0]) and str(issues[0]).startswith("labels.yaml:8:")


TYPOS = """\
rules:
  - name: InletHot
    kind: threshold
    severity: warning
    select: {measurement: sever}
    field: inlet_temp_c
    above: 27
    annotations: {summary: s, description: d, runbook: r}
  - name: Approach
    kind: threshold
    severity: warning
    select: {measurement: heat_exchanger}
    expr: "primary_suply_temp_c - secondary_supply_temp_c"
    above: 5
    annotations: {summary: s, description: d, runbook: r}
  - name: Battery
    kind: threshold
    severity: warning
    select: {measurement: ups}
    field: battery_runtime
    below: 5
    annotations: {summary: s, description: d, runbook: r}
"""


def test_names_no_reading_carries_are_refused(tmp_path: Path) -> None:
    """A measurement or field nobody produces: the rule would never fire (a silent hole)."""
    (tmp_path / "typos.yaml").write_text(TYPOS)
    path = site_file(tmp_path, {"rule_files": ["typos.yaml"]})
    with pytest.raises(ConfigError) as exc:
        load_rules(load_config(path), path)
    text = [str(i) for i in exc.value.issues]
    assert len(text) == 3, text
    assert (
        "typos.yaml:5: rules[0](InletHot).select: no profile or collector reading has "
        "measurement 'sever' (did you mean server, server_psu, server_fan?)" in text[0]
    )
    assert (
        "typos.yaml:13: rules[1](Approach).expr: no heat_exchanger reading has a field "
        "'primary_suply_temp_c' (did you mean primary_supply_temp_c" in text[1]
    )
    assert "typos.yaml:20: rules[2](Battery).field:" in text[2]
    assert "did you mean battery_runtime_min" in text[2]
