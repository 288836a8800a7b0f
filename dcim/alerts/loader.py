"""Load the rules a site uses: the default pack shipped with the package, the site file's
``alerts.rule_files`` and its inline ``alerts.rules``. Every problem of every file is
reported at once, as :class:`dcim.config.ConfigIssue` with file:line (the site file's own
reporting, reused), so ``dcim check-config`` lists rule errors with the site file's.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from dcim.alerts.catalog import catalog, check_rule
from dcim.alerts.rules import AlertsSettings, Rule
from dcim.config import (
    ConfigError,
    ConfigIssue,
    SiteConfig,
    _compose_lines,
    _line_for,
    _path_str,
    load_yaml,
)
from dcim.modelbase import ValidationError
from dcim.profiles import load_profiles

DEFAULT_PACK = Path(__file__).with_name("default_rules.yaml")
_Loc = tuple[str | int, ...]


def _issues(
    exc: ValidationError, filename: str, lines: dict[_Loc, int], data: Any, prefix: _Loc
) -> list[ConfigIssue]:
    out = []
    for err in exc.errors():
        loc = (*prefix, *err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling and indentation)"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif (
            isinstance(err.get("input"), str | int | float | bool) and repr(err["input"]) not in msg
        ):
            msg = f"{msg}, got {err['input']!r}"
        out.append(ConfigIssue(filename, _line_for(lines, loc), _path_str(loc, data), msg))
    return out


def parse_rules(
    text: str, *, filename: str, known: Mapping[str, set[str]] | None = None
) -> tuple[list[Rule], list[ConfigIssue]]:
    """The rules of one rule file (a mapping with a ``rules:`` list) and every problem in it;
    a rule with a problem is left out, the others are kept. ``known``: the measurements and
    fields that exist (:func:`dcim.alerts.catalog.catalog`); a name outside them is an
    error."""
    try:
        data = load_yaml(text)
        lines = _compose_lines(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        why = getattr(exc, "problem", exc)
        return [], [ConfigIssue(filename, line, "", f"not valid YAML: {why}")]
    raw = data.get("rules") if isinstance(data, dict) else None
    if not isinstance(raw, list):
        return [], [
            ConfigIssue(filename, 1, "", "a rule file is a mapping with a 'rules:' list of rules")
        ]
    extra = sorted(set(data) - {"rules"})
    issues = [
        ConfigIssue(filename, _line_for(lines, (k,)), str(k), "unknown key (only 'rules:')")
        for k in extra
    ]
    rules = []
    for i, item in enumerate(raw):
        try:
            rule = Rule.model_validate(item)
        except ValidationError as exc:
            issues += _issues(exc, filename, lines, data, ("rules", i))
            continue
        found = _unknown_names(rule, known, filename, lines, data, ("rules", i))
        issues += found
        if not found:
            rules.append(rule)
    return rules, issues


def _unknown_names(
    rule: Rule,
    known: Mapping[str, set[str]] | None,
    filename: str,
    lines: dict[_Loc, int],
    data: Any,
    at: _Loc,
) -> list[ConfigIssue]:
    if known is None:
        return []
    return [
        ConfigIssue(filename, _line_for(lines, (*at, key)), _path_str((*at, key), data), msg)
        for key, msg in check_rule(rule, known)
    ]


def _site_lines(site_path: Path | None) -> tuple[dict[_Loc, int], Any]:
    if site_path is None:
        return {}, None
    try:
        text = site_path.read_text()
        return _compose_lines(text), load_yaml(text)
    except (OSError, yaml.YAMLError):
        return {}, None


def load_rules(cfg: SiteConfig, site_path: str | Path | None = None) -> list[Rule]:
    """Every rule the site uses, the default pack first; raise ConfigError with every
    problem of every rule file and the name clashes between them."""
    settings: AlertsSettings = cfg.alerts or AlertsSettings()
    known = catalog(cfg.profiles())
    site = Path(site_path) if site_path is not None else None
    base = site.resolve().parent if site is not None else Path.cwd()
    sources: list[tuple[str, list[Rule], list[_Loc] | None]] = []
    issues: list[ConfigIssue] = []
    if settings.default_pack:
        rules, found = parse_rules(
            DEFAULT_PACK.read_text(), filename=str(DEFAULT_PACK), known=known
        )
        issues += found
        sources.append((str(DEFAULT_PACK), rules, None))
    lines, data = _site_lines(site)
    site_name = str(site) if site is not None else "<site>"
    for i, rf in enumerate(settings.rule_files):
        path = rf if rf.is_absolute() else base / rf
        try:
            text = path.read_text()
        except OSError as exc:
            loc: _Loc = ("alerts", "rule_files", i)
            issues.append(
                ConfigIssue(
                    site_name,
                    _line_for(lines, loc),
                    _path_str(loc, data),
                    f"cannot read rule file {str(path)!r}: {exc.strerror}",
                )
            )
            continue
        rules, found = parse_rules(text, filename=str(path), known=known)
        issues += found
        sources.append((str(path), rules, None))
    for i, r in enumerate(settings.rules):
        issues += _unknown_names(r, known, site_name, lines, data, ("alerts", "rules", i))
    sources.append(
        (site_name, settings.rules, [("alerts", "rules", i) for i in range(len(settings.rules))])
    )
    issues += _checks(settings, sources, lines, data, site_name)
    if settings.mqtt is not None and cfg.mqtt is None:
        at: _Loc = ("alerts", "mqtt")
        issues.append(
            ConfigIssue(
                site_name,
                _line_for(lines, at),
                _path_str(at, data),
                "alerts are published on the site's broker: add a top-level 'mqtt:' "
                "section (host, port, ...)",
            )
        )
    if issues:
        raise ConfigError(issues)
    disabled = set(settings.disable)
    out = []
    for filename, rules, _ in sources:
        pack = filename == str(DEFAULT_PACK)
        out += [r for r in rules if not (pack and r.name in disabled)]
    return out


def _checks(
    settings: AlertsSettings,
    sources: list[tuple[str, list[Rule], list[_Loc] | None]],
    lines: dict[_Loc, int],
    data: Any,
    site_name: str,
) -> list[ConfigIssue]:
    issues = []
    where: dict[str, str] = {}
    disabled = set(settings.disable)
    pack_names: set[str] = set()
    for filename, rules, locs in sources:
        pack = filename == str(DEFAULT_PACK)
        for j, r in enumerate(rules):
            if pack:
                pack_names.add(r.name)
                if r.name in disabled:
                    continue  # replaced or not wanted: its name is free
            if r.name in where:
                line = _line_for(lines, locs[j]) if locs else None
                issues.append(
                    ConfigIssue(
                        filename,
                        line,
                        f"rules.{r.name}",
                        f"rule name {r.name!r} is already used in {where[r.name]}; names must "
                        "be unique (to replace a default rule, list it under 'alerts.disable')",
                    )
                )
            where.setdefault(r.name, filename)
    for i, name in enumerate(settings.disable):
        if name not in pack_names:
            loc: _Loc = ("alerts", "disable", i)
            issues.append(
                ConfigIssue(
                    site_name,
                    _line_for(lines, loc),
                    _path_str(loc, data),
                    f"the default pack has no rule named {name!r} to disable (see docs/alerts.md)",
                )
            )
    return issues


def check_site_alerts(site_path: str | Path, cfg: SiteConfig | None) -> list[ConfigIssue]:
    """The rule problems of a site file, for ``dcim check-config``: with ``cfg`` None (the
    site file itself has errors) the rule files it names are still checked on their own."""
    if cfg is not None:
        try:
            load_rules(cfg, site_path)
        except ConfigError as exc:
            return exc.issues
        return []
    lines, data = _site_lines(Path(site_path))
    section = data.get("alerts") if isinstance(data, dict) else None
    files = section.get("rule_files") if isinstance(section, dict) else None
    issues: list[ConfigIssue] = []
    base = Path(site_path).resolve().parent
    for i, rf in enumerate(files if isinstance(files, list) else []):
        if not isinstance(rf, str):
            continue
        path = Path(rf) if Path(rf).is_absolute() else base / rf
        try:
            known = catalog(load_profiles())
            issues += parse_rules(path.read_text(), filename=str(path), known=known)[1]
        except OSError as exc:
            loc: _Loc = ("alerts", "rule_files", i)
            issues.append(
                ConfigIssue(
                    str(site_path),
                    _line_for(lines, loc),
                    _path_str(loc, data),
                    f"cannot read rule file {str(path)!r}: {exc.strerror}",
                )
            )
    return issues
