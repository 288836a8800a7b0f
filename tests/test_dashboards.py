"""Every panel query of every dashboard runs against a real InfluxDB holding twin data
(Grafana itself is not available here) and returns values."""

from __future__ import annotations

import importlib.util
import json
from datetime import UTC, datetime
from pathlib import Path

import yaml

from dcim.cli import main
from dcim.testing.servers import InfluxServer
from dcim.twin.site import paris_chapelle

DASH = Path(__file__).resolve().parent.parent / "dashboards"


def _build():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("dash_build", DASH / "build.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.build()


def test_committed_dashboards_are_built_from_build_py() -> None:
    for name, doc in _build().items():
        assert json.loads((DASH / name).read_text()) == doc, (
            f"run: python dashboards/build.py ({name})"
        )


def test_every_panel_query_returns_data(tmp_path: Path, influxdb: InfluxServer) -> None:
    doc = paris_chapelle(
        racks=2,
        servers_per_rack=2,
        spool_dir=str(tmp_path / "spool"),
        sink={"type": "influxdb", "url": influxdb.url, "database": "dash"},
    )
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert (
        main(
            [
                "twin",
                "backfill",
                str(path),
                "--from",
                "2026-11-02T00:00Z",
                "--to",
                "2026-11-02T02:00Z",
                "--interval",
                "60",
                "--all-devices",
            ]
        )
        == 0
    )
    # dcim_poll rows come from the live collector, not the backfill: add a few.
    at_ns = int(datetime(2026, 11, 2, 1, 0, tzinfo=UTC).timestamp()) * 1_000_000_000
    influxdb_write = (
        f"dcim_poll,site=paris-chapelle,device=ups-a,protocol=snmp up=1i {at_ns}\n"
        f"dcim_poll,site=paris-chapelle,device=ups-b,protocol=snmp up=0i {at_ns}\n"
    )
    import urllib.request

    urllib.request.urlopen(
        urllib.request.Request(f"{influxdb.url}/write?db=dash", data=influxdb_write.encode()),
        timeout=10,
    )
    time_filter = "time >= '2026-11-02T00:00:00Z' AND time < '2026-11-02T02:00:00Z'"
    for name, dash in _build().items():
        for panel in dash["panels"]:
            for target in panel["targets"]:
                q = (
                    target["query"]
                    .replace("$timeFilter", time_filter)
                    .replace("$__interval", "10m")
                    .replace("$site", "paris-chapelle")
                )
                res = influxdb.query(q, db="dash")["results"][0]
                assert "error" not in res, (name, panel["title"], res.get("error"), q)
                values = [
                    v
                    for s in res.get("series", [])
                    for row in s["values"]
                    for v in row[1:]
                    if v is not None
                ]
                assert values, (name, panel["title"], q)
