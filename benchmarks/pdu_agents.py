"""SNMP agents for the PDU case of ``collect.py``: the twin's agent code (``SnmpTwin``) serving,
for every device of a site file, the values of a real APC AP8641's walk (PyPI
``snmpsim-data``: 24 metered outlets with their names, one phase), decoded through the
``apc_rpdu2`` profile so that the agent encodes them back to the recorded raw numbers.

Why not snmpsim itself (``--pdu-agent snmpsim``): it looks every var-bind up in its recorded
file and, on a busy 2-core machine, answered 50 PDUs too slowly for any tool to poll them.

    python benchmarks/pdu_agents.py SITE.yaml     # prints "serving N agents", runs until SIGTERM
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import yaml

from dcim.config import SiteConfig
from dcim.twin.serve_snmp import SnmpTwin

PREFIX = "1.3.6.1.4.1.318.1.1.26."


def walk_values(walk: Path, profile: dict) -> dict[str, float | int | str]:  # type: ignore[type-arg]
    """The profile's fields and table cells (``"<table>/<index>/<name>"``) from ``walk``
    (``oid|type|value`` lines), in canonical units (raw x scale)."""
    raw: dict[str, tuple[str, str]] = {}
    for line in walk.read_text().splitlines():
        parts = line.split("|", 2)
        if len(parts) == 3 and parts[0].startswith(PREFIX):
            raw[parts[0]] = (parts[1], parts[2])

    def value(spec: dict, typed: tuple[str, str]) -> float | int | str:  # type: ignore[type-arg]
        kind, text = typed
        if kind == "4x":  # an OCTET STRING recorded in hex
            return bytes.fromhex(text).decode(errors="replace")
        if kind != "2":  # not an INTEGER: a text tag
            return text
        scaled: float | int = int(text) * spec.get("scale", 1)
        return scaled

    out: dict[str, float | int | str] = {}
    for f in profile.get("fields", []):
        if f["oid"] in raw:
            out[f["name"]] = value(f, raw[f["oid"]])
    for t in profile.get("tables", []):
        for col in [*t.get("tags", []), *t["fields"]]:
            for oid, typed in raw.items():
                if oid.startswith(col["oid"] + "."):
                    index = oid[len(col["oid"]) + 1 :]
                    out[f"{t['name']}/{index}/{col['name']}"] = value(col, typed)
    return out


async def serve(site: Path, walk: Path) -> None:
    cfg = SiteConfig.model_validate(yaml.safe_load(site.read_text()))
    profile = yaml.safe_load(
        (Path(__file__).resolve().parent.parent / "collectors/profiles/apc_rpdu2.yaml").read_text()
    )
    values = walk_values(walk, profile)
    agents = SnmpTwin(cfg, lambda _device: values)
    await agents.start()
    print(f"serving {len(cfg.devices)} agents, {len(values)} values each", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await agents.stop()


if __name__ == "__main__":
    from peers import apc_walk

    asyncio.run(serve(Path(sys.argv[1]), apc_walk()))
