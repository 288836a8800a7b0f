"""``dcim run``'s site file, validated in a short-lived child process so that the collector,
which runs for months, never imports pydantic (issue #15: 14 MB of RSS for its whole life).

The child (``python -m dcim.runconfig SITE``) loads and checks the file exactly as every other
command does (:func:`dcim.cmdline.load_or_exit`: the same errors with file:line on stderr and
exit status 2), loads the profiles and alert rules the collector uses, and writes them to
its stdout pickled, after a small header. The collector then activates the plain models
(:mod:`dcim.plainmodel`) and restores them; with ``ssl`` left out too when nothing the site
uses needs it (:func:`needs_ssl`): asyncio imports it otherwise, 4 MB more.

Where the plain models are not enough the collector validates in its own process as before
(``plain`` false in the header): a site with scheduled statements (dcim.reports renders them
from the models with pydantic's serializers) or a third-party protocol plugin (its models
are pydantic's), or a process that imported the models already (``dcim.cli.main`` called
by a test).
"""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dcim.alerts.rules import Rule
    from dcim.config import SiteConfig

TLS_SCHEMES = ("https:", "mqtts:", "ssl:", "wss:")


def needs_ssl(cfg: SiteConfig) -> bool:
    """Whether the collector may import ``ssl``: no unless it polls SNMP (v1, v2c) devices
    only, into the embedded store, with no ``metrics:`` endpoint, and no ``https://`` (or
    ``mqtts://``...) URL or ``tls*`` setting anywhere in the file (alert receivers, the MQTT
    broker). The other protocols' libraries (pymodbus, aiohttp, pysnmp's USM), the InfluxDB
    client and prometheus_client import ``ssl`` whether they use TLS or not: a wrong no
    would fail the collector's start, so the answer errs towards yes."""
    if cfg.metrics is not None or cfg.storage.sink.type != "embedded":
        return True
    for d in cfg.devices:
        if d.enabled and (d.protocol != "snmp" or getattr(d.options, "version", None) == "3"):
            return True

    def walk(node: Any, key: str = "") -> bool:
        if isinstance(node, str):
            return node.lower().startswith(TLS_SCHEMES)
        if key.startswith("tls") and node not in (None, False, "", [], {}):
            return True
        if isinstance(node, dict):
            return any(walk(v, str(k)) for k, v in node.items())
        if isinstance(node, list | tuple):
            return any(walk(v, key) for v in node)
        return False

    return walk(cfg.model_dump(mode="json"))


BUILT_IN = "collectors."  # the built-in protocol plugins' package: models from dcim.modelbase


def plain_ok(cfg: SiteConfig) -> bool:
    """Whether the collector can run on the plain models (see the module doc): not with
    scheduled statements, nor with a third-party protocol plugin (its models are pydantic's
    own, not written against dcim.modelbase)."""
    from dcim import protocols

    heat = cfg.reports.heat
    if heat is not None and heat.schedule is not None:
        return False
    return all(
        protocols.plugin(p).profile.__module__.startswith(BUILT_IN)
        for p in {d.protocol for d in cfg.devices}
    )


def child(path: str) -> int:
    """Validate ``path`` and write the header and the models to stdout (pickled)."""
    from dcim import protocols
    from dcim.alerts.loader import load_rules
    from dcim.cmdline import load_or_exit
    from dcim.profiles import loaded_dirs

    cfg = load_or_exit(path)  # every error on stderr, exit status 2
    header = {"plain": plain_ok(cfg), "ssl": needs_ssl(cfg)}
    out = sys.stdout.buffer
    pickle.dump(header, out, protocol=pickle.HIGHEST_PROTOCOL)
    if header["plain"]:
        pickle.dump(protocols.entry_points(), out, protocol=pickle.HIGHEST_PROTOCOL)
        body = (cfg, loaded_dirs(tuple(cfg.profile_dirs)), load_rules(cfg))
        pickle.dump(body, out, protocol=pickle.HIGHEST_PROTOCOL)
    out.flush()
    return 0


def load_for_run(path: str | Path, *, debug: bool = False) -> tuple[SiteConfig, list[Rule] | None]:
    """The site config for ``dcim run`` and its alert rules (None: the collector loads them
    itself). The config's errors, found by the child, are on stderr and raise SystemExit(2)."""
    import dcim.plainmodel

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    run = subprocess.run(
        [sys.executable, "-m", "dcim.runconfig", str(path), *(["--debug"] if debug else [])],
        stdout=subprocess.PIPE,
        env=env,
        check=False,
    )
    if run.returncode < 0:  # killed (out of memory?): not the file's fault
        print(
            f"dcim run: validating {path} failed: its process was ended by signal "
            f"{-run.returncode}",
            file=sys.stderr,
        )
        raise SystemExit(1)
    if run.returncode:  # 2: the file's errors, printed by the child; 1: a failure, printed
        raise SystemExit(run.returncode)
    stream = io.BytesIO(run.stdout)
    header = pickle.load(stream)  # noqa: S301 - written by our own child process
    if not header["plain"] or "dcim.modelbase" in sys.modules:
        from dcim.cmdline import load_or_exit

        return load_or_exit(path), None
    dcim.plainmodel.activate()
    if not header["ssl"] and "ssl" not in sys.modules:
        sys.modules["ssl"] = None  # type: ignore[assignment]  # asyncio then goes without
    plugins = pickle.load(stream)  # noqa: S301 - written by our own child process
    from dcim import protocols

    protocols.preset(plugins)  # before the models: unpickling them imports the plugins
    cfg, dirs, rules = pickle.load(stream)  # noqa: S301
    from dcim.profiles import prime

    prime(dirs)
    return cfg, rules


def main(argv: list[str]) -> int:
    """``python -m dcim.runconfig SITE [--debug]``: :func:`child`, an unexpected error in one
    line as the ``dcim`` command words it (exit status 1; with ``--debug``, the traceback)."""
    try:
        return child(argv[0])
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug: one line, as dcim.cli.main
        if "--debug" in argv[1:]:
            raise
        print(
            f"dcim run: unexpected error validating {argv[0]}: {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
