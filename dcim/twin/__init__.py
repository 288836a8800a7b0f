"""The digital twin of the reference site: physics and ground truth (``model``, ``physics``),
history (``backfill``), the reference config (``site``) and the protocol servers
(``serve_*``, ``runner``).

The twin needs the ``twin`` extra (``pip install 'dcim-heat[twin]'``: numpy for the physics,
amqtt for the in-process MQTT broker); a production install has neither. Only ``site`` (the
reference config) and ``cli`` (the parser) load without it.
"""

from __future__ import annotations

import importlib

EXTRA_MODULES = ("numpy", "amqtt")  # what `pip install 'dcim-heat[twin]'` adds


def missing_extra(command: str) -> str | None:
    """None if the twin extra is installed, else the message to print for ``command``."""
    missing = []
    for name in EXTRA_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if not missing:
        return None
    return (
        f"`{command}` needs the digital twin's extra packages ({', '.join(missing)} not "
        "installed): install dcim-heat[twin] (pip install 'dcim-heat[twin]', or `make demo` "
        "in a clone)"
    )
