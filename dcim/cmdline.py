"""What the ``dcim`` sub-commands share, below ``dcim.cli`` so that a sub-command's module
(``dcim.quarantine``, ``dcim.twin.cli``) does not import the CLI that imports it."""

from __future__ import annotations

import sys
from pathlib import Path

from dcim.config import ConfigError, SiteConfig, load_config


def load_or_exit(path: str | Path) -> SiteConfig:
    """The site config at ``path``; on errors, all of them on stderr and exit status 2."""
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"{len(exc.issues)} error(s) in the configuration:", file=sys.stderr)
        for issue in exc.issues:
            print(f"  {issue}", file=sys.stderr)
        raise SystemExit(2) from None
