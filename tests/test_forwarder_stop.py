"""A forwarder stopped while a write to a real InfluxDB is in flight, then its spool closed
(what ``Collector.stop`` does when its bound is short): the write's answer comes after the
spool was closed. Quiet (no error logged, no traceback) and lossless: every reading is in
InfluxDB or still in the spool, none acked that InfluxDB did not take."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from pathlib import Path

import pytest

from dcim.config import InfluxSink
from dcim.forwarder import Forwarder
from dcim.reading import Reading
from dcim.spool import Spool
from dcim.storage.influx import InfluxStore
from dcim.testing.servers import InfluxServer

S = 1_000_000_000
T = time.time_ns() // S * S - 60 * S  # recent: no rollups due


class HeldAnswers:
    """A TCP proxy to ``port`` on 127.0.0.1 that passes requests on at once and holds the
    server's answers while ``hold`` is set: a write in flight for as long as a test wants."""

    def __init__(self, port: int) -> None:
        self.port_to = port
        self.hold = threading.Event()
        self.released = threading.Event()
        self.waiting = 0  # answers held now
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self._sock.accept()
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", self.port_to))
            self._open += [c, up]
            threading.Thread(target=self._pump, args=(c, up, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, c, True), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket, answers: bool) -> None:
        with contextlib.suppress(OSError):
            while data := a.recv(65536):
                if answers and self.hold.is_set():
                    self.waiting += 1
                    self.released.wait()
                    self.waiting -= 1
                b.sendall(data)
        for s in (a, b):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.released.set()
        self._sock.close()
        for s in self._open:
            with contextlib.suppress(OSError):
                s.close()


def rd(i: int) -> Reading:
    return Reading("pdu", {"site": "s", "device": f"p{i % 5}"}, {"power_w": float(i)}, T + i)


def in_influx(srv: InfluxServer, db: str) -> set[int]:
    res = srv.query('SELECT "power_w" FROM "pdu"', db)["results"][0]
    return {int(v[1]) for s in res.get("series", []) for v in s["values"]}


def held_store(influxdb: InfluxServer, db: str) -> tuple[HeldAnswers, InfluxStore]:
    """A store of database ``db`` writing to ``influxdb`` through a :class:`HeldAnswers`."""
    proxy = HeldAnswers(influxdb.port)
    store = InfluxStore(
        InfluxSink(type="influxdb", url=f"http://127.0.0.1:{proxy.port}", database=db)
    )
    store.ensure_database()
    return proxy, store


def stop_mid_write(sp: Spool, store: InfluxStore, proxy: HeldAnswers) -> None:
    """A forwarder of ``sp`` into ``store`` started, stopped while its write waits in
    ``proxy``, the spool closed, then InfluxDB's answer let through: it comes after the spool
    was closed. The proxy and the spool are closed after."""
    proxy.hold.set()  # from now on the answers wait
    fwd = Forwarder(sp, store, batch_size=100, flush_interval_s=0.01)
    try:
        fwd.start()
        thread = fwd._thread
        assert thread is not None
        deadline = time.monotonic() + 10
        while not proxy.waiting and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proxy.waiting, "no write in flight"
        fwd.stop(timeout=0.2)  # the write still in flight: the thread is left to end
        assert thread.is_alive()
        sp.close()
        proxy.released.set()
        thread.join(10)
        assert not thread.is_alive()
    finally:
        proxy.close()
        sp.close()


@pytest.mark.parametrize("n", [40, 1000])  # a batch alone; a backlog (batches back to back)
def test_a_stop_with_a_write_in_flight_is_quiet_and_loses_nothing(
    tmp_path: Path, influxdb: InfluxServer, n: int, caplog: pytest.LogCaptureFixture
) -> None:
    db = f"stop_{n}"
    proxy, store = held_store(influxdb, db)
    sp = Spool(tmp_path / "spool")
    for k in range(0, n, 20):
        sp.append([rd(i) for i in range(k, k + 20)])
    caplog.set_level(logging.INFO)
    stop_mid_write(sp, store, proxy)
    bad = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not bad, [(r.levelname, r.getMessage(), r.exc_text) for r in bad]
    with Spool(tmp_path / "spool") as again:
        left = {int(r.fields["power_w"]) for r in again.peek(10**6).readings}  # type: ignore[arg-type]
    got = in_influx(influxdb, db)
    assert got, "the write in flight reached InfluxDB"
    assert got | left == set(range(n))  # lossless: nothing acked that InfluxDB did not take
    assert left  # the batch whose answer came after the spool closed: still spooled


def test_a_refusal_answered_after_the_stop_is_quiet_and_loses_nothing(
    tmp_path: Path, influxdb: InfluxServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The write in flight is refused for good (400: a field type conflict) after the spool
    closed: the forwarder would read the batch again to find the bad readings, and the spool
    is closed. Said at INFO, no traceback; the batch stays spooled."""
    proxy, store = held_store(influxdb, "stop_refused")
    store.write([Reading("pdu", {"site": "s", "device": "p0"}, {"power_w": "text"}, T - S)])
    sp = Spool(tmp_path / "spool")
    sp.append([rd(i) for i in range(20)])
    caplog.set_level(logging.INFO)
    stop_mid_write(sp, store, proxy)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not errors, [(r.levelname, r.getMessage()) for r in errors]
    assert any("refused a batch" in r.getMessage() for r in caplog.records)  # the 400 came
    assert any("stopped with a write in flight" in r.getMessage() for r in caplog.records)
    with Spool(tmp_path / "spool") as again:
        assert again.peek(10**6).count == 20


def test_the_collector_stopped_with_a_short_bound_mid_write(
    tmp_path: Path, influxdb: InfluxServer, caplog: pytest.LogCaptureFixture
) -> None:
    """``Collector.stop`` with a short ``flush_timeout_s`` while a write is in flight (the
    brief's case): the stop keeps its bound, nothing is logged as an error when the answer
    comes after the spool was closed, every reading is in InfluxDB or in the spool."""
    import asyncio

    from dcim.config import SiteConfig
    from dcim.runtime import Collector

    proxy = HeldAnswers(influxdb.port)
    url = f"http://127.0.0.1:{proxy.port}"
    cfg = SiteConfig.model_validate(
        {
            "site": {"name": "s"},
            "storage": {
                "spool_dir": str(tmp_path / "spool"),
                "sink": {"type": "influxdb", "url": url, "database": "stopcol", "timeout_s": 30},
                "batch_size": 100,
            },
        }
    )
    n = 600
    caplog.set_level(logging.INFO)

    async def run() -> float:
        col = Collector(cfg)
        InfluxStore(col.store.sink).ensure_database()  # type: ignore[attr-defined]
        col.pipeline.accept([rd(i) for i in range(n)])
        proxy.hold.set()
        await col.start()
        deadline = time.monotonic() + 10
        while not proxy.waiting and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert proxy.waiting, "no write in flight"
        t = time.monotonic()
        await col.stop(flush_timeout_s=0.5)
        return time.monotonic() - t

    try:
        took = asyncio.run(run())
        forwarders = [t for t in threading.enumerate() if t.name == "dcim-forwarder"]
        proxy.released.set()
        for t in forwarders:
            t.join(10)
            assert not t.is_alive()
    finally:
        proxy.close()
    assert took < 0.5 + 0.5, took
    bad = [
        r for r in caplog.records if r.levelno >= logging.WARNING or "is closed" in r.getMessage()
    ]
    assert not bad, [(r.levelname, r.getMessage()) for r in bad]
    with Spool(tmp_path / "spool") as again:
        left = {
            int(r.fields["power_w"]) for r in again.peek(10**6).readings if r.measurement == "pdu"
        }  # type: ignore[arg-type]
    got = in_influx(influxdb, "stopcol")
    assert got | left == set(range(n)) and left
