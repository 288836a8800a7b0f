"""What ``dcim check-config`` checks beyond loading the site file: the credentials given by
reference (``{file: PATH}``, ``{env: NAME}``) as the collector would find them on this
machine.

Decision: a secret file that is missing or unreadable is an **error** (the collector could
not log in; check-config is meant to be run where the collector runs, as its user); an
environment variable that is unset is a **warning** (a service usually gets its environment
from its unit or container, not from the shell check-config runs in).

The raw YAML is walked, not the validated config, so that a credential is checked even when
another part of the file fails the schema: one run shows every problem.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from dcim.config import ConfigIssue, _compose_lines, _line_for, _path_str

Loc = tuple[str | int, ...]


def _references(node: Any, loc: Loc = ()) -> Iterator[tuple[Loc, str, str]]:
    """(location, "file" or "env", value) of every mapping shaped like a secret reference."""
    if isinstance(node, dict):
        if len(node) == 1:
            ((key, value),) = node.items()
            if key in ("file", "env") and isinstance(value, str):
                yield loc, key, value
                return
        for k, v in node.items():
            yield from _references(v, (*loc, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _references(v, (*loc, i))


def _file_problem(path: str) -> str | None:
    p = Path(path)
    rel = "" if p.is_absolute() else f" (relative to the working directory {Path.cwd()})"
    if not p.exists():
        return f"secret file {path!r} does not exist{rel}"
    if not p.is_file():
        return f"secret file {path!r} is not a file{rel}"
    if not os.access(p, os.R_OK):
        return f"secret file {path!r} is not readable by this user{rel}"
    if not p.read_text(errors="replace").strip():
        return f"secret file {path!r} is empty{rel}"
    return None


def credential_issues(path: str | Path) -> tuple[list[ConfigIssue], list[ConfigIssue]]:
    """(errors, warnings) about the credentials the site file at ``path`` refers to; none if
    the file cannot be read or parsed (loading it reports that)."""
    try:
        text = Path(path).read_text()
        data = yaml.safe_load(text)
        lines = _compose_lines(text)
    except (OSError, yaml.YAMLError):
        return [], []
    errors: list[ConfigIssue] = []
    warnings: list[ConfigIssue] = []
    for loc, kind, value in _references(data):
        where = (str(path), _line_for(lines, (*loc, kind)), _path_str(loc, data))
        if kind == "file":
            problem = _file_problem(value)
            if problem:
                errors.append(ConfigIssue(*where, problem))
        elif value not in os.environ:
            warnings.append(
                ConfigIssue(
                    *where,
                    f"environment variable {value} is not set here: the collector's service "
                    "must set it",
                )
            )
    return errors, warnings
