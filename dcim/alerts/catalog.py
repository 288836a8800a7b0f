"""What readings exist: measurement -> field names, from the profiles (every field of each,
tables included: ``Profile.field_specs``) and the collector's own readings. A rule that names
a measurement or a field nobody produces would never fire: a typo there is a silent hole in
the alerting, so the loader refuses it with the names that do exist."""

from __future__ import annotations

import difflib
from collections.abc import Mapping

from dcim.alerts.expr import compile_expr
from dcim.alerts.rules import Rule
from dcim.profiles import Profile

# the collector's own readings (docs/architecture.md, "Collector measurements")
COLLECTOR: dict[str, set[str]] = {
    "dcim_poll": {
        "up",
        "duration_s",
        "values_read",
        "error",
        "late_s",
        "refused",
        "refused_reason",
    },
    "dcim_spool": {
        "bytes",
        "max_bytes",
        "used_pct",
        "pending",
        "refused_total",
        "dropped_total",
        "quarantined",
        "full",
        "warn",
    },
}


def catalog(profiles: Mapping[str, Profile]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {m: set(f) for m, f in COLLECTOR.items()}
    for p in profiles.values():
        for measurement, f in p.field_specs():
            out.setdefault(measurement, set()).add(f.name)
    return out


def _close(name: str, known: set[str]) -> str:
    near = difflib.get_close_matches(name, sorted(known), n=3)
    return f" (did you mean {', '.join(near)}?)" if near else ""


def check_rule(rule: Rule, known: Mapping[str, set[str]]) -> list[tuple[str, str]]:
    """(key of the rule, message) for each name the rule uses that no reading carries."""
    if rule.select is None:
        return []
    problems: list[tuple[str, str]] = []
    fields: set[str] = set()
    for m in rule.select.measurement:
        if m not in known:
            problems.append(
                (
                    "select",
                    f"no profile or collector reading has measurement {m!r}{_close(m, set(known))}",
                )
            )
        else:
            fields |= known[m]
    if problems or not fields:
        return problems
    used = {rule.field} if rule.field else set()
    if rule.expr:
        used |= set(compile_expr(rule.expr).fields)
    for name in sorted(used - fields):
        key = "field" if name == rule.field else "expr"
        ms = ", ".join(rule.select.measurement)
        problems.append((key, f"no {ms} reading has a field {name!r}{_close(name, fields)}"))
    return problems
