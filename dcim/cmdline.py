"""What the ``dcim`` sub-commands share, below ``dcim.cli`` so that a sub-command's module
(``dcim.quarantine``, ``dcim.twin.cli``) does not import the CLI that imports it."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported when a command loads its site file (dcim run: not in its process)
    from dcim.config import SiteConfig


class UsageError(Exception):
    """A mistake on the command line (an option's value, a file to write to): the command
    prints the message and exits with status 2, without a traceback."""


def load_or_exit(path: str | Path) -> SiteConfig:
    """The site config at ``path``, its alert rule files checked too; on errors, all of them
    on stderr and exit status 2."""
    from dcim.alerts.loader import check_site_alerts
    from dcim.config import ConfigError, load_config

    cfg, issues = None, []
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        issues = sorted(exc.issues, key=lambda i: i.line or 0)  # in the file's order
    issues += check_site_alerts(path, cfg)  # the rule files' errors with the site file's
    if cfg is None or issues:
        print(f"{len(issues)} error(s) in the configuration:", file=sys.stderr)
        for issue in issues:
            print(f"  {issue}", file=sys.stderr)
        raise SystemExit(2) from None
    return cfg


def writable_file(path: str | Path, option: str) -> Path:
    """``path`` if a file can be written there (its folder exists and is writable), checked
    before a long computation whose result it is for; else :class:`UsageError`."""
    p = Path(path)
    folder = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise UsageError(f"{option} {path}: is a folder; give a file name")
    if not folder.is_dir():
        raise UsageError(f"{option} {path}: folder {folder} does not exist (create it first)")
    if not os.access(folder, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise UsageError(f"{option} {path}: not writable by this user")
    return p
