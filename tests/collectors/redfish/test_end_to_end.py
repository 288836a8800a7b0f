"""Redfish end to end: the twin's BMCs (HTTPS, sessions) -> the real collector
(`dcim.runtime.Collector`: scheduler, Redfish pollers, pipeline, spool, forwarder) -> a real
InfluxDB 1.x server; what InfluxDB holds equals the twin's ground truth, for BMCs serving
the newer resources and for one serving only the older Power/Thermal."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import yaml

from dcim.config import load_config
from dcim.runtime import Collector
from dcim.testing.servers import InfluxServer
from dcim.twin.ports import free_port
from dcim.twin.runner import TwinRunner, TwinThread
from dcim.twin.serve_redfish import make_certificates

N = 6
OLD_ONLY = "srv-R01-03"
DB = "redfish_e2e"
T_MODEL = 1_767_000_000.0  # the twin's clock, frozen: every poll reads the same values


def site_file(tmp: Path, influx: InfluxServer) -> Path:
    ca, _, _, _ = make_certificates(tmp / "certs")
    devices: list[dict[str, Any]] = [
        {
            "name": f"srv-R01-{i:02d}",
            "protocol": "redfish",
            "profile": "redfish_dmtf",
            "host": "127.0.0.1",
            "port": free_port(),
            "rack": "R01",
            "redfish": {
                "username": f"dcim{i}",
                "password": {"value": f"secret-{i}"},
                "tls_ca": str(ca),
            },
        }
        for i in range(1, N + 1)
    ]
    doc = {
        "site": {"name": "e2e"},
        "defaults": {"interval_s": 1.0, "timeout_s": 0.8, "retries": 0},
        "racks": [{"name": "R01", "room": "salle-a"}],
        "rooms": [{"name": "salle-a"}],
        "storage": {
            "spool_dir": str(tmp / "spool"),
            "sink": {"type": "influxdb", "url": influx.url, "database": DB},
            "flush_interval_s": 0.2,
        },
        "devices": devices,
    }
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def stored(influx: InfluxServer, measurement: str) -> dict[tuple[str, str], dict[str, Any]]:
    """(device, row tag) -> the last point's fields, from InfluxDB."""
    res = influx.query(f'SELECT * FROM "{measurement}" GROUP BY *', db=DB)["results"][0]
    out = {}
    for s in res.get("series", []):
        tags = s.get("tags", {})
        row = tags.get("sensor") or tags.get("fan") or tags.get("psu") or ""
        last = dict(zip(s["columns"], s["values"][-1], strict=True))
        out[(tags["device"], row)] = {
            k: v for k, v in last.items() if k != "time" and k not in tags and v is not None
        }
    return out


def test_twin_to_collector_to_spool_to_influxdb(tmp_path: Path, influxdb: InfluxServer) -> None:
    cfg = load_config(site_file(tmp_path, influxdb))
    runner = TwinRunner(cfg, clock=lambda: T_MODEL, redfish_certs=tmp_path / "certs")

    async def collect() -> Collector:
        col = Collector(cfg)
        await col.start()
        await asyncio.sleep(4.0)
        await col.stop()
        return col

    with TwinThread(runner) as twin:
        redfish = twin.server("redfish")
        redfish.set_old_only(OLD_ONLY)  # before the first poll: a plain attribute
        truth = {
            d.name: redfish.state(d.name).truth(old_only=d.name == OLD_ONLY) for d in cfg.devices
        }
        col = asyncio.run(collect())
        assert {b.logins for b in redfish.bmcs.values()} == {1}  # one session per BMC
        assert {b.logouts for b in redfish.bmcs.values()} == {1}  # deleted at stop
    polls = col.scheduler.status()
    assert all(st.polls >= 3 and st.failures == 0 for st in polls.values()), polls
    got: dict[tuple[str, str, str], dict[str, Any]] = {}
    for m in ("server", "server_temperature", "server_fan", "server_psu"):
        for (device, row), fields in stored(influxdb, m).items():
            got[(device, m, row)] = fields
    want = {
        (device, m, row): fields
        for device, rows in truth.items()
        for (m, row), fields in rows.items()
    }
    assert got == want
    # tags as every reading of the site has them, plus the row's
    res = influxdb.query('SHOW TAG VALUES FROM "server_psu" WITH KEY = "room"', db=DB)
    assert [v[1] for v in res["results"][0]["series"][0]["values"]] == ["salle-a"]
