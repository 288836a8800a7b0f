"""What `dcim run` loads: a collector of SNMP devices into the embedded store, without a
``metrics:`` section, KPI meters or HTTP alert receivers, imports none of the modules only
those need (prometheus_client and the HTTP server, the KPI package, urllib's HTTP client,
influxdb-client and aiohttp, pysnmp): each costs memory the collector holds for its life
(issue #15: RSS of the reference site). Each one is imported once its feature is configured.
And the ``dcim run`` process itself holds neither pydantic (the site file is validated by a
child process, dcim.runconfig) nor, where nothing needs it, ssl."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from dcim.runtime import SQLITE_SOFT_HEAP_LIMIT

REPO = Path(__file__).resolve().parents[1]

# Run in a fresh interpreter: the test process has imported everything already.
CODE = """
import asyncio, json, sys
from pathlib import Path
import yaml
from dcim.config import load_config
from dcim.runtime import Collector
from dcim.twin.site import paris_chapelle

work = Path(sys.argv[1])
WATCHED = ("prometheus_client", "http.server", "urllib.request", "http.client", "dcim.kpi",
           "dcim.metrics", "influxdb_client", "aiohttp", "urllib3", "pysnmp", "pymodbus", "paho")

def loaded():
    return sorted(w for w in WATCHED if any(m == w or m.startswith(w + ".") for m in sys.modules))

def collector(name, **extra):
    doc = paris_chapelle(racks=2, servers_per_rack=2, spool_dir=str(work / name / "spool"),
                         sink={"type": "embedded", "path": str(work / name / "s.sqlite")})
    roles = extra.pop("roles", ())
    doc["devices"] = [d for d in doc["devices"] if d["protocol"] == "snmp" or d.get("role")
                      in roles]
    doc.pop("mqtt", None)
    doc.update(extra)
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return Collector(load_config(path))

async def started(col):
    await col.start()
    await col.stop(flush_timeout_s=2)

out = {}
col = collector("plain")
asyncio.run(started(col))
out["plain"] = loaded()
collector("metered", roles=("grid_incomer",))
out["metered"] = loaded()
asyncio.run(started(collector("metrics", metrics={"port": 0})))
out["metrics"] = loaded()
print(json.dumps(out))
"""


def test_a_plain_collector_imports_only_what_it_uses(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-c", CODE, str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.splitlines()[-1])
    assert out["plain"] == [], out  # SNMP v2c into the embedded store: none of them
    assert "dcim.kpi" in out["metered"], out  # a grid incomer: the KPI writer
    # a metrics: section: the /metrics endpoint and prometheus_client (its HTTP server
    # modules come with it)
    assert {"dcim.metrics", "prometheus_client"} <= set(out["metrics"]), out
    assert not {"influxdb_client", "aiohttp", "pysnmp"} & set(out["metrics"]), out


# `dcim run` itself, as users start it (dcim.cli.main in a fresh interpreter): once the
# collector has started, the modules its process holds, then SIGTERM (a clean stop).
RUN = """
import json, os, signal, sys, threading, time
from pathlib import Path

def watch():
    spool = Path(sys.argv[2])
    while not (spool.exists() and "dcim.runtime" in sys.modules):
        time.sleep(0.1)
    time.sleep(1.0)
    from dcim.modelbase import PLAIN
    mods = sorted(m for m in ("pydantic", "pydantic_core", "ssl", "_ssl") if sys.modules.get(m))
    import sqlite3
    soft = sqlite3.connect(":memory:").execute("PRAGMA soft_heap_limit").fetchone()[0]
    print(json.dumps({"plain": PLAIN, "modules": mods, "sqlite_soft_heap": soft}), flush=True)
    os.kill(os.getpid(), signal.SIGTERM)

threading.Thread(target=watch, daemon=True).start()
from dcim.cli import main
sys.exit(main(["run", sys.argv[1]]))
"""


def _dcim_run(tmp: Path, name: str, **extra: object) -> dict[str, object]:
    import yaml

    from dcim.twin.site import paris_chapelle

    doc = paris_chapelle(
        racks=1,
        servers_per_rack=2,
        spool_dir=str(tmp / name / "spool"),
        sink={"type": "embedded", "path": str(tmp / name / "s.sqlite")},
    )
    doc["devices"] = [d for d in doc["devices"] if d["protocol"] == "snmp"]
    doc.pop("mqtt", None)
    doc.update(extra)
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    run = subprocess.run(
        [sys.executable, "-c", RUN, str(path), str(tmp / name / "spool")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out: dict[str, object] = json.loads(run.stdout.splitlines()[-1])
    return out


def test_dcim_run_holds_neither_pydantic_nor_ssl_for_what_needs_neither(tmp_path: Path) -> None:
    """The site file is validated by a child process (dcim.runconfig): the collector runs on
    the plain models; SNMP v1/v2c into the embedded store needs no ssl (asyncio's import of
    it is left out). An alert receiver over plain HTTP neither."""
    hooks = {"webhooks": [{"url": "http://127.0.0.1:9/hook", "secret_env": "HOME"}]}
    got = _dcim_run(tmp_path, "plain", alerts=hooks)
    assert got.pop("sqlite_soft_heap") == SQLITE_SOFT_HEAP_LIMIT  # its page caches bounded
    assert got == {"plain": True, "modules": []}
    # prometheus_client imports ssl: with a metrics: section ssl is there, pydantic is not
    got = _dcim_run(tmp_path, "metrics", metrics={"port": 0})
    assert got == {"plain": True, "modules": ["_ssl", "ssl"], "sqlite_soft_heap": 1 << 20}, got
