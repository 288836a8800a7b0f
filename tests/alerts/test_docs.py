"""docs/alerts.md documents every rule of the default pack with the threshold it really has."""

from __future__ import annotations

from pathlib import Path

from dcim.alerts.loader import DEFAULT_PACK, parse_rules
from dcim.alerts.rules import Rule

DOC = Path(__file__).parents[2] / "docs" / "alerts.md"


def condition(r: Rule) -> str:
    """The rule's condition as docs/alerts.md writes it."""
    if r.kind in ("threshold", "rate"):
        op = ">" if r.above is not None else "<"
        text = f"{op} {r.level:g}" + (f" {r.unit}" if r.unit else "")
        if r.kind == "rate":
            text += f" per {r.per_s:g} s"
        if r.clear is not None and r.clear != r.level:
            text += f", clear {r.clear:g}"
        if r.for_s:
            text += f", for {r.for_s:g} s"
        if r.min_hold_s:
            text += f", hold {r.min_hold_s:g} s"
        return text
    if r.kind == "stale":
        return f"{'unchanged' if r.unchanged else 'no data'} for {r.after_s:g} s"
    if r.kind == "counter":
        return f"backwards, or > {r.max_per_s:g} {r.unit}/s; fires {r.hold_s:g} s"
    return f"{r.figure} {'>' if r.above is not None else '<'} {r.level:g}"


def test_every_default_rule_is_documented_with_its_threshold() -> None:
    rules, issues = parse_rules(DEFAULT_PACK.read_text(), filename=str(DEFAULT_PACK))
    assert not issues
    rows = {
        line.split("|")[1].strip().strip("`"): line
        for line in DOC.read_text().split("## The default rule pack")[1].splitlines()
        if line.startswith("| `")
    }
    for r in rules:
        assert r.name in rows, f"{r.name} is not in the rule table of docs/alerts.md"
        assert f"| {condition(r)} |" in rows[r.name], (r.name, condition(r), rows[r.name])
        assert f"### {r.name}" in DOC.read_text(), f"no runbook section for {r.name}"
    assert set(rows) == {r.name for r in rules}, "docs/alerts.md lists a rule the pack lacks"
