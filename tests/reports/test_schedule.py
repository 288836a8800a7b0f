"""Scheduled statements: due from the configured day, rendered once per set of inputs, a new
revision (announced to a real HTTP receiver) when late data change them."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from dcim.config import SiteConfig, load_config
from dcim.reading import Reading
from dcim.reports.schedule import due_month, run_due
from dcim.storage import make_store
from dcim.testing.heat_month import reports_section
from dcim.twin.site import paris_chapelle

NS = 1_000_000_000
TZ = ZoneInfo("Europe/Paris")


def ns(*a: int) -> int:
    return int(datetime(*a, tzinfo=TZ).timestamp()) * NS  # type: ignore[misc]


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    got: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/hook", got
    finally:
        srv.shutdown()
        srv.server_close()


def reading(cfg: SiteConfig, dev: str, t: int, t0: int, power: float) -> Reading:
    tags = {"site": cfg.site.name, "device": dev, "role": cfg.device(dev).role or ""}
    fields = {"heat_energy_wh_total": 1e6 + power * (t - t0) / 3600 / NS,
              "volume_m3_total": 100.0 + 2.0 * (t - t0) / 3600 / NS, "flow_m3_per_h": 2.0,
              "supply_temp_c": 65.0, "return_temp_c": 40.0, "heat_power_w": power}  # fmt: skip
    return Reading("heat_meter", tags, fields, t)  # type: ignore[arg-type]


def test_due_month() -> None:
    assert due_month(ns(2026, 11, 1, 23), "Europe/Paris", 2) is None
    assert due_month(ns(2026, 11, 2), "Europe/Paris", 2) == "2026-10"
    assert due_month(ns(2027, 1, 5), "Europe/Paris", 2) == "2026-12"


def test_rendered_once_then_again_on_late_data(
    tmp_path: Path, receiver: tuple[str, list[dict[str, Any]]]
) -> None:
    url, got = receiver
    doc = paris_chapelle(racks=1, servers_per_rack=1, interval_s=60.0,
                         spool_dir=str(tmp_path / "spool"),
                         sink={"type": "embedded", "path": str(tmp_path / "s.sqlite")})  # fmt: skip
    doc["reports"] = reports_section()
    doc["reports"]["heat"]["points"][0]["meters"].pop()
    doc["reports"]["heat"]["schedule"] = {"day": 2, "folder": str(tmp_path / "reports"),
                                          "webhook_url": url}  # fmt: skip
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    cfg = load_config(path)
    t0, t1 = ns(2026, 9, 30, 23), ns(2026, 11, 1, 1)
    store = make_store(cfg.storage)
    try:
        store.write([reading(cfg, d, t, t0, 116_000.0) for t in range(t0, t1, 60 * NS)
                     for d in ("hm-cpcu", "hm-greenhouse")])  # fmt: skip
        store.maintain()  # type: ignore[attr-defined]
        assert run_due(store, cfg, ns(2026, 11, 1, 12)) == []  # not due before the 2nd
        first = run_due(store, cfg, ns(2026, 11, 2, 6))
        assert [n["number"] for n in first] == ["CPCU-2026-10-R1", "SERRES-2026-10-R1"]
        assert run_due(store, cfg, ns(2026, 11, 2, 7)) == []  # the same inputs: nothing new
        # a late reading of the CPCU meter: its statement's inputs changed
        late = reading(cfg, "hm-cpcu", ns(2026, 10, 15, 12) + 30 * NS, t0, 120_000.0)
        store.write([late])
        store.maintain()  # type: ignore[attr-defined]
        second = run_due(store, cfg, ns(2026, 11, 3, 6))
    finally:
        store.close()
    [again] = second
    assert again["number"] == "CPCU-2026-10-R2" and again["replaces"] == "CPCU-2026-10-R1"
    assert again["fingerprint"] != first[0]["fingerprint"]
    assert got == first + second  # each new statement announced once, to the receiver
    names = sorted(p.name for p in (tmp_path / "reports").iterdir())
    assert [n for n in names if n.endswith(".pdf")] == [
        "heat-cpcu-2026-10-r1.pdf",
        "heat-cpcu-2026-10-r2.pdf",
        "heat-serres-2026-10-r1.pdf",
    ]
