"""Scheduled statements: due from the configured day, rendered once per set of inputs, a new
revision (announced to a real HTTP receiver) when late data change them; the announcements
delivered durably to a receiver that is down, across a restart, once it comes back."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from dcim.config import SiteConfig, load_config
from dcim.reading import Reading
from dcim.reports.schedule import ScheduledStatements, due_month, run_due
from dcim.storage import make_store
from dcim.testing.heat_month import reports_section
from dcim.twin.site import paris_chapelle

NS = 1_000_000_000
TZ = ZoneInfo("Europe/Paris")


def ns(*a: int) -> int:
    return int(datetime(*a, tzinfo=TZ).timestamp()) * NS  # type: ignore[misc,arg-type]


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


def wait(check: Callable[[], object], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.1)


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
    statements = ScheduledStatements(store, cfg)
    statements.start()
    try:
        store.write([reading(cfg, d, t, t0, 116_000.0) for t in range(t0, t1, 60 * NS)
                     for d in ("hm-cpcu", "hm-greenhouse")])  # fmt: skip
        store.maintain()  # type: ignore[attr-defined]
        assert statements.run(ns(2026, 11, 1, 12)) == []  # not due before the 2nd
        first = statements.run(ns(2026, 11, 2, 6))
        assert [n["number"] for n in first] == ["CPCU-2026-10-R1", "SERRES-2026-10-R1"]
        assert statements.run(ns(2026, 11, 2, 7)) == []  # the same inputs: nothing new
        # a late reading of the CPCU meter: its statement's inputs changed
        late = reading(cfg, "hm-cpcu", ns(2026, 10, 15, 12) + 30 * NS, t0, 120_000.0)
        store.write([late])
        store.maintain()  # type: ignore[attr-defined]
        second = statements.run(ns(2026, 11, 3, 6))
        wait(lambda: len(got) >= 3)
    finally:
        statements.stop()
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


def site(tmp_path: Path, url: str) -> SiteConfig:
    doc = paris_chapelle(racks=1, servers_per_rack=1, interval_s=60.0,
                         spool_dir=str(tmp_path / "spool"),
                         sink={"type": "embedded", "path": str(tmp_path / "s.sqlite")})  # fmt: skip
    doc["reports"] = reports_section()
    doc["reports"]["heat"]["points"][0]["meters"].pop()
    doc["reports"]["heat"]["schedule"] = {"day": 2, "folder": str(tmp_path / "reports"),
                                          "webhook_url": url}  # fmt: skip
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    return load_config(path)


def serve(port: int, got: list[dict[str, Any]]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def test_announcements_wait_for_a_receiver_that_is_down_across_a_restart(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on: the receiver is down
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = site(tmp_path, f"http://127.0.0.1:{port}/hook")
    t0, t1 = ns(2026, 9, 30, 23), ns(2026, 11, 1, 1)
    store = make_store(cfg.storage)
    got: list[dict[str, Any]] = []
    srv = None
    try:
        store.write([reading(cfg, d, t, t0, 116_000.0) for t in range(t0, t1, 60 * NS)
                     for d in ("hm-cpcu", "hm-greenhouse")])  # fmt: skip
        store.maintain()  # type: ignore[attr-defined]
        # a round that wrote the files and died before queueing their announcements
        made = run_due(store, cfg, ns(2026, 11, 2, 6))
        assert [n["number"] for n in made] == ["CPCU-2026-10-R1", "SERRES-2026-10-R1"]
        first = ScheduledStatements(store, cfg, retry_max_s=1.0)
        first.start()
        try:
            assert first.run(ns(2026, 11, 2, 7)) == []  # nothing new rendered, both queued
            assert first.webhook is not None and first.outbox is not None
            wait(lambda: first.webhook is not None and first.webhook.failed_total >= 2)
            assert [n for n, _ in first.outbox.due(first.webhook.url)] == [
                "CPCU-2026-10-R1",
                "SERRES-2026-10-R1",
            ]
            assert first.webhook.sent_total == 0
        finally:
            first.stop()  # the collector stops while the receiver is still down
        srv = serve(port, got)  # the receiver comes back; the collector restarts
        second = ScheduledStatements(store, cfg, retry_max_s=1.0)
        second.start()
        try:
            wait(lambda: len(got) >= 2)
            assert second.run(ns(2026, 11, 2, 8)) == []
            time.sleep(1.0)  # time enough for a duplicate to arrive, were one sent
        finally:
            second.stop()
    finally:
        store.close()
        if srv is not None:
            srv.shutdown()
            srv.server_close()
    assert got == made  # each announced once, with the note of its round
    assert second.webhook is not None and second.webhook.sent_total == 2


def test_the_collector_runs_the_schedule_and_its_delivery_thread(
    tmp_path: Path, receiver: tuple[str, list[dict[str, Any]]]
) -> None:
    """The collector's report loop (dcim.runtime): last month's statements rendered and
    announced through the delivery thread, which stops with the loop."""
    import asyncio

    from dcim.runtime import Collector

    url, got = receiver
    site(tmp_path, url)  # the same site, due from the 1st
    path = tmp_path / "site.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["reports"]["heat"]["schedule"]["day"] = 1
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    cfg = load_config(path)
    now = datetime.now(TZ)
    first = (now.replace(day=1) - timedelta(days=1)).replace(day=1)  # last month, local
    t0 = int(first.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()) * NS
    t1 = int(now.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()) * NS
    col = Collector(cfg)
    try:
        col.store.write([reading(cfg, d, t, t0, 116_000.0) for t in range(t0, t1 + 60 * NS,
                         60 * NS) for d in ("hm-cpcu", "hm-greenhouse")])  # fmt: skip
        col.store.maintain()  # type: ignore[attr-defined]

        async def run() -> None:
            task = asyncio.create_task(col._report_loop())
            deadline = time.monotonic() + 120
            while len(got) < 2 and time.monotonic() < deadline and not task.done():
                await asyncio.sleep(0.2)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        asyncio.run(run())
    finally:
        col.spool.close()
        col.store.close()
    month = f"{first.year}-{first.month:02d}"
    assert [n["number"] for n in got] == [f"CPCU-{month}-R1", f"SERRES-{month}-R1"]
    assert not [t for t in threading.enumerate() if t.name == f"notify-{url}"]
