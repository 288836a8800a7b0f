"""YAML documents as the site file and the profiles are read, with PyYAML imported on first
use: ``dcim run``'s process, which restores its site validated elsewhere (dcim.runconfig),
never loads it (1.2 MB).

libyaml's parser when PyYAML has it (its wheels do): the same documents and errors as the
pure-Python one, from a fraction of the transient objects, whose garbage fragments the heap
for the collector's life, and some ten times faster (``dcim kpi`` parsed the reference site's
file in a second, several times). With the lines composed only to report errors
(dcim.config.parse_config), that file (362 devices) leaves 3 MB of RSS after loading instead
of 5.
"""

from __future__ import annotations

from typing import Any


def yaml_loader() -> Any:
    """libyaml's safe loader, else PyYAML's own."""
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` with :func:`yaml_loader`."""
    import yaml

    return yaml.load(text, Loader=yaml_loader())  # noqa: S506 - a safe loader
