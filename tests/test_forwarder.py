from __future__ import annotations

import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from dcim import forwarder
from dcim.forwarder import Forwarder
from dcim.pipeline import Pipeline
from dcim.reading import Reading
from dcim.spool import Batch, Spool
from dcim.storage.base import SinkError, Store
from dcim.storage.lineprotocol import decode_lines, encode_many
from dcim.storage.sqlite import SqliteStore
from dcim.testing.servers import InfluxServer, free_port, start_influxdb
from tests.storage.helpers import influx_store
from tests.test_spool import _scribble, _spool_of, _truncate, v1_spool

T = 1_700_000_000_000_000_000
S = 1_000_000_000


def rd(i: int, dev: str = "p1", value: object = None) -> Reading:
    v = float(i) if value is None else value
    return Reading("pdu", {"site": "s", "device": dev}, {"power_w": v}, T + i * S)  # type: ignore[dict-item]


def count(store: Store, dev: str | None = None) -> int:
    where = {"device": dev} if dev else None
    rows = store.aggregate(measurement="pdu", field="power_w", start_ns=0, end_ns=2 * T,
                           fn="count", where=where)  # fmt: skip
    return int(sum(r.value or 0 for r in rows))


FAST = dict(backoff_initial_s=0.02, backoff_max_s=0.2)


def test_delivers_and_acks(tmp_path: Path) -> None:
    sp, st = Spool(tmp_path / "spool"), SqliteStore(tmp_path / "s.sqlite")
    fwd = Forwarder(sp, st, batch_size=100, flush_interval_s=0.05, **FAST)
    fwd.start()
    sp.append([rd(i) for i in range(1000)])
    for i in range(1000, 1050):
        sp.append([rd(i)])
    assert fwd.flush(10)
    assert count(st) == 1050 and sp.pending() == 0
    stats = fwd.stats()
    assert stats.sent == 1050 and stats.pending == 0 and stats.last_error is None
    fwd.stop()
    sp.close()


def test_lag_is_the_age_of_the_oldest_reading_waiting(tmp_path: Path) -> None:
    """Through an outage the lag is the age of the oldest reading held back; drained, 0."""
    sp = Spool(tmp_path / "spool")
    now = time.time_ns()
    sp.append([Reading("pdu", {"device": "p1"}, {"power_w": 1.0}, now - (90 - i) * S)
               for i in range(60)])  # fmt: skip
    store = Flaky(3)
    fwd = Forwarder(sp, store, batch_size=25, flush_interval_s=0.01, **FAST)  # type: ignore[arg-type]
    assert fwd.stats().lag_s == 0.0  # nothing peeked yet
    assert not fwd.step()  # the sink is away
    lag = fwd.stats().lag_s
    assert 90 <= lag < 100, lag
    assert fwd.flush(10)
    assert fwd.stats().pending == 0 and fwd.stats().lag_s == 0.0
    assert len(store.got) == 60
    sp.close()


def test_flush_without_thread(tmp_path: Path) -> None:
    sp, st = Spool(tmp_path / "spool"), SqliteStore(tmp_path / "s.sqlite")
    sp.append([rd(i) for i in range(250)])
    assert Forwarder(sp, st, batch_size=100, flush_interval_s=1).flush(10)
    assert count(st) == 250
    sp.close()


class Flaky:
    """Fails ``n`` times with a retryable error (optionally with Retry-After), then works."""

    def __init__(self, n: int, retry_after: float | None = None):
        self.n, self.retry_after, self.calls, self.got = n, retry_after, [], []  # type: ignore[var-annotated]

    def write(self, readings: Sequence[Reading]) -> None:
        self.calls.append(time.monotonic())
        if self.n > 0:
            self.n -= 1
            raise SinkError(retryable=True, reason="down", retry_after_s=self.retry_after)
        self.got.extend(readings)

    def close(self) -> None:
        pass


def test_backoff_and_retry_after(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    st = Flaky(2, retry_after=0.3)
    fwd = Forwarder(sp, st, batch_size=10, flush_interval_s=0.01, **FAST)  # type: ignore[arg-type]
    fwd.start()
    sp.append([rd(i) for i in range(5)])
    assert fwd.flush(5)
    assert len(st.got) == 5
    gaps = [b - a for a, b in zip(st.calls, st.calls[1:], strict=False)]
    assert all(g >= 0.29 for g in gaps[:2]), gaps  # Retry-After honoured over the backoff
    fwd.stop()
    sp.close()


def test_delay_grows_with_jitter_and_cap(tmp_path: Path) -> None:
    with Spool(tmp_path) as sp:
        fwd = Forwarder(sp, Flaky(0), backoff_initial_s=1, backoff_max_s=60)  # type: ignore[arg-type]
        delays = []
        for n in range(1, 12):
            fwd._failures = n
            delays.append(fwd._delay(None))
        assert 0.5 <= delays[0] <= 1 and 1 <= delays[1] <= 2 and 2 <= delays[2] <= 4
        assert all(30 <= d <= 60 for d in delays[7:])


def test_outage_then_recovery_loses_nothing(tmp_path: Path) -> None:
    srv = start_influxdb(tmp_path / "influx")  # our own: this test stops it
    try:
        sp, st = Spool(tmp_path / "spool"), influx_store(srv, "outage")
        fwd = Forwarder(sp, st, batch_size=50, flush_interval_s=0.02, **FAST)
        fwd.start()
        sp.append([rd(i) for i in range(100)])
        assert fwd.flush(10)
        srv.stop()
        sp.append([rd(i) for i in range(100, 300)])
        assert not fwd.flush(0.5)  # nowhere to go: kept
        assert sp.pending() == 200
        assert "unreachable" in (fwd.stats().last_error or "")
        srv.start()
        assert fwd.flush(20)
        assert count(st) == 300 and fwd.stats().last_error is None
        fwd.stop()
        sp.close()
    finally:
        srv.stop()


def test_closed_port_keeps_everything(tmp_path: Path) -> None:
    from dcim.config import InfluxSink
    from dcim.storage.influx import InfluxStore

    url = f"http://127.0.0.1:{free_port()}"
    st = InfluxStore(InfluxSink(type="influxdb", url=url, timeout_s=0.5))
    with Spool(tmp_path) as sp:
        sp.append([rd(i) for i in range(20)])
        fwd = Forwarder(sp, st, batch_size=10, flush_interval_s=0.01, **FAST)
        assert not fwd.flush(0.3)
        assert sp.pending() == 20 and fwd.stats().failures >= 1 and not sp.quarantined()


def test_bad_batch_quarantined_rest_flows(tmp_path: Path, influxdb: InfluxServer) -> None:
    st = influx_store(influxdb, "quar")
    st.write([rd(0)])  # power_w is a float in this database
    with Spool(tmp_path) as sp:
        batch = [rd(i) for i in range(1, 100)]
        batch[41] = rd(42, value=7)  # integer: field type conflict -> 400
        batch[77] = rd(78, dev="p2", value="text")  # string: conflict as well
        sp.append(batch)
        sp.append([rd(i) for i in range(100, 150)])
        fwd = Forwarder(sp, st, batch_size=100, flush_interval_s=0.01, **FAST)
        assert fwd.flush(20)
        q = sp.quarantined()
        assert sum(x.count for x in q) == 2 and all("conflict" in x.reason for x in q)
        bad = [r for x in q for r in sp.quarantined_readings(x.id)]
        assert sorted(r.time_ns for r in bad) == [T + 42 * S, T + 78 * S]
        assert count(st) == 150 - 2
        assert fwd.stats().quarantined == 2 and fwd.stats().sent == 147


def test_nan_in_spool_is_quarantined(tmp_path: Path) -> None:
    # The pipeline drops NaN before the spool; if one gets there anyway it must not block.
    st = SqliteStore(tmp_path / "s.sqlite")
    with Spool(tmp_path / "sp") as sp:
        sp.append([rd(1), rd(2, value=float("nan")), rd(3)])
        assert Forwarder(sp, st, batch_size=10, **FAST).flush(5)
        assert [x.count for x in sp.quarantined()] == [1]
        assert count(st) == 2


@pytest.mark.parametrize("n", [0, 1])
def test_stop_is_prompt_even_in_backoff(tmp_path: Path, n: int) -> None:
    with Spool(tmp_path) as sp:
        sp.append([rd(1)])
        fwd = Forwarder(sp, Flaky(10**6), flush_interval_s=0.01, backoff_initial_s=30)  # type: ignore[arg-type]
        fwd.start()
        time.sleep(0.1 * n)
        t = time.monotonic()
        fwd.stop()
        assert time.monotonic() - t < 2
        assert sp.pending() == 1


def test_full_spool_refuses_new_then_forwards_what_it_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    st = SqliteStore(tmp_path / "s.sqlite")
    with Spool(tmp_path / "sp", max_bytes=2**20) as sp:
        pipe = Pipeline(sp, log_every_s=3600)
        accepted = 0
        with caplog.at_level("ERROR", logger="dcim.pipeline"):
            for k in range(0, 30_000, 100):  # the sink is away: nothing is forwarded
                accepted += pipe.accept([rd(i) for i in range(k, k + 100)])
        assert 5000 < accepted < 30_000 and pipe.accepted == accepted
        assert pipe.refused_full == 30_000 - accepted == sp.stats().refused_total
        msgs = [r.getMessage() for r in caplog.records]
        assert len(msgs) == 1 and "is full" in msgs[0]  # rate-limited, the collector goes on
        assert Forwarder(sp, st, batch_size=5000, **FAST).flush(10)  # the sink is back
        assert count(st) == accepted and sp.pending() == 0
        assert pipe.accept([rd(i) for i in range(30_000, 30_100)]) == 100  # room again


@pytest.mark.parametrize("damage", [_truncate, _scribble])
def test_readable_part_of_a_corrupt_spool_is_forwarded(
    tmp_path: Path, damage: Callable[[Path], None]
) -> None:
    damage(_spool_of(tmp_path / "sp", 2000))
    st = SqliteStore(tmp_path / "s.sqlite")
    with Spool(tmp_path / "sp") as sp:
        n = sp.pending()
        assert sp.corrupt_copy is not None and n > 500
        assert Forwarder(sp, st, batch_size=300, **FAST).flush(10)
        assert count(st) == n


def test_undecodable_rows_do_not_stop_the_forwarder(tmp_path: Path) -> None:
    with Spool(tmp_path / "sp") as sp:
        sp.append([rd(i) for i in range(10)])
    con = sqlite3.connect(tmp_path / "sp" / "spool.sqlite")
    con.executemany("INSERT INTO spool (n, r) VALUES (1, ?)", [("{broken",), (b"\xff",)])
    con.commit()
    con.close()
    st = SqliteStore(tmp_path / "s.sqlite")
    with Spool(tmp_path / "sp") as sp:
        sp.append([rd(i) for i in range(10, 20)])
        fwd = Forwarder(sp, st, batch_size=5, flush_interval_s=0.01, **FAST)
        fwd.start()
        assert fwd.flush(5)
        assert count(st) == 20 and len(sp.quarantined()) == 2
        assert fwd._thread is not None and fwd._thread.is_alive()
        fwd.stop()


class FlakyDisk(Spool):
    """A real spool whose first reads and acks fail as a broken disk would."""

    fails, ack_fails = 2, 2

    def peek(self, max_n: int) -> Batch:
        if self.fails:
            self.fails -= 1
            raise sqlite3.OperationalError("disk I/O error")
        return super().peek(max_n)

    def ack(self, batch: Batch, **kw: Any) -> None:  # escapes step(): the thread's own guard
        if self.ack_fails:
            self.ack_fails -= 1
            raise sqlite3.OperationalError("disk I/O error")
        super().ack(batch, **kw)


def test_thread_survives_unexpected_errors(tmp_path: Path) -> None:
    st = SqliteStore(tmp_path / "s.sqlite")
    with FlakyDisk(tmp_path / "sp") as sp:
        sp.append([rd(i) for i in range(5)])
        fwd = Forwarder(sp, st, batch_size=100, flush_interval_s=0.01, **FAST)
        fwd.start()
        assert fwd.flush(5)
        assert count(st) == 5 and sp.fails == sp.ack_fails == 0
        assert fwd.stats().last_error is None
        assert fwd._thread is not None and fwd._thread.is_alive()
        fwd.stop()


def test_flush_ends_a_backoff(tmp_path: Path) -> None:
    with Spool(tmp_path) as sp:
        st = Flaky(1)
        fwd = Forwarder(sp, st, flush_interval_s=0.01, backoff_initial_s=60, backoff_max_s=60)  # type: ignore[arg-type]
        fwd.start()
        sp.append([rd(1)])
        deadline = time.monotonic() + 5
        while not st.calls and time.monotonic() < deadline:  # failed once: 30-60 s of back-off
            time.sleep(0.01)
        time.sleep(0.1)
        t = time.monotonic()
        assert fwd.flush(5)  # the sink is back: flush does not wait for the back-off
        assert time.monotonic() - t < 2 and st.got == [rd(1)]
        st.n = 10**6  # down again: flush tries once now, then the back-off holds
        sp.append([rd(2)])
        assert not fwd.flush(0.5)
        assert len(st.calls) == 3, st.calls
        fwd.stop()
        assert sp.pending() == 1


class LinesStore:
    """A store that takes line protocol (like InfluxDB's): refuses a body or readings holding
    a ``power_w`` of 13 (a bad point), records what it got."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.readings: list[Reading] = []
        self.refused = 0

    def write_lines(self, body: bytes, spans: Sequence[tuple[int, int]]) -> None:
        if b"power_w=13.0 " in body:
            self.refused += 1
            raise SinkError(retryable=False, reason="partial write: 1 point refused")
        self.bodies.append(body)

    def write(self, readings: Sequence[Reading]) -> None:
        if any(r.fields.get("power_w") == 13.0 for r in readings):
            self.refused += 1
            raise SinkError(retryable=False, reason="partial write: 1 point refused")
        self.readings.extend(readings)

    def close(self) -> None:
        pass


def test_line_protocol_block_partly_refused(tmp_path: Path) -> None:
    good = [rd(i) for i in range(40) if i != 13]
    with Spool(tmp_path) as sp:
        for k in range(0, 40, 10):  # rows of 10
            sp.append([rd(i) for i in range(k, k + 10)])
        st = LinesStore()
        fwd = Forwarder(sp, st, batch_size=20, **FAST)  # type: ignore[arg-type]
        assert fwd.flush(5)
        # The block with the bad point was refused, decoded and bisected: only the bad reading
        # is quarantined, its neighbours are delivered; the other block went as line protocol.
        assert [r for x in sp.quarantined() for r in sp.quarantined_readings(x.id)] == [rd(13)]
        assert sp.quarantined()[0].reason == "partial write: 1 point refused"
        assert st.bodies == [encode_many([rd(i) for i in range(20, 40)])]
        assert sorted(st.readings, key=lambda r: r.time_ns) == good[:19]
        assert fwd.stats().sent == 39 and fwd.stats().quarantined == 1 and sp.pending() == 0


def test_a_backlog_of_the_previous_format_is_forwarded(tmp_path: Path) -> None:
    v1_spool(tmp_path, [rd(i) for i in range(25)])
    with Spool(tmp_path) as sp:
        sp.append([rd(i) for i in range(25, 30)])
        st = LinesStore()
        assert Forwarder(sp, st, batch_size=5, **FAST).flush(5)  # type: ignore[arg-type]
        # old rows have no line protocol: sent as readings; the new row as line protocol
        assert st.readings == [rd(i) for i in range(25) if i != 13]
        assert st.bodies == [encode_many([rd(i) for i in range(25, 30)])]
        assert [x.count for x in sp.quarantined()] == [1, 1]  # v1's own entry, and rd(13)


def test_switch_interval_lowered_while_running(tmp_path: Path) -> None:
    before = sys.getswitchinterval()
    with Spool(tmp_path) as sp:
        a, b = Forwarder(sp, Flaky(0)), Forwarder(sp, Flaky(0))
        a.start()
        b.start()
        assert sys.getswitchinterval() == min(before, forwarder.GIL_SWITCH_S)
        a.stop()
        assert sys.getswitchinterval() == min(before, forwarder.GIL_SWITCH_S)
        b.stop()
        b.stop()
    assert sys.getswitchinterval() == before


def test_a_full_batch_is_sent_at_once(tmp_path: Path) -> None:
    """Not after ``flush_interval_s``: the spool's append wakes the thread."""
    with Spool(tmp_path) as sp:
        st = Flaky(0)
        fwd = Forwarder(sp, st, batch_size=100, flush_interval_s=30)
        fwd.start()
        time.sleep(0.2)  # the thread waits, nothing pending
        sp.append([rd(i) for i in range(99)])
        time.sleep(0.2)
        assert st.got == []  # less than a batch: waits for the interval
        t0 = time.monotonic()
        sp.append([rd(99)])
        while len(st.got) < 100 and time.monotonic() - t0 < 5:
            time.sleep(0.01)
        assert len(st.got) == 100 and time.monotonic() - t0 < 2
        fwd.stop()


class SlowLinesStore(LinesStore):
    """Takes a while per body (a batch in flight while the next is read and the last acked);
    fails ``down`` times with a retryable error after ``ok_first`` bodies."""

    def __init__(self, down: int = 0, ok_first: int = 0) -> None:
        super().__init__()
        self.down, self.ok_first = down, ok_first

    def write_lines(self, body: bytes, spans: Sequence[tuple[int, int]]) -> None:
        time.sleep(0.005)
        if len(self.bodies) >= self.ok_first and self.down > 0:
            self.down -= 1
            raise SinkError(retryable=True, reason="down")
        super().write_lines(body, spans)


class PreparingLinesStore(SlowLinesStore):
    """Prepares a body apart from its write (as InfluxDB's store compresses it), noting in
    which thread."""

    def __init__(self, down: int = 0, ok_first: int = 0) -> None:
        super().__init__(down, ok_first)
        self.prepared_in: list[str] = []

    def prepare_lines(self, body: bytes, spans: Sequence[tuple[int, int]]) -> Any:
        self.prepared_in.append(threading.current_thread().name)
        return body, tuple(spans)

    def write_prepared(self, prepared: Any) -> None:
        self.write_lines(*prepared)


@pytest.mark.parametrize("store", [SlowLinesStore, PreparingLinesStore])
@pytest.mark.parametrize("down", [0, 2])
def test_a_backlog_goes_back_to_back_each_reading_once(
    tmp_path: Path, down: int, store: type[SlowLinesStore]
) -> None:
    """Batches of a backlog in a burst (the next read and prepared, the last acked while one
    is written): every reading delivered once and in order, a refused one quarantined, an
    outage in the middle of it retried."""
    n = 2000
    with Spool(tmp_path) as sp:
        for k in range(0, n, 50):  # rows of 50: batches of 2 rows
            sp.append([rd(i) for i in range(k, k + 50)])
        st = store(down=down, ok_first=7)
        fwd = Forwarder(sp, st, batch_size=100, **FAST)  # type: ignore[arg-type]
        fwd.start()
        assert fwd.flush(30)
        assert fwd._helper is not None  # the burst ran
        if isinstance(st, PreparingLinesStore):  # the next bodies prepared by the helper
            assert sum(t.startswith("dcim-forwarder-spool") for t in st.prepared_in) >= 10
        fwd.stop()
        got = [r for body in st.bodies for r in decode_lines(body)] + st.readings
        want = [rd(i) for i in range(n) if i != 13]
        assert sorted(got, key=lambda r: r.time_ns) == want  # each one once
        lines_only = [r.time_ns for body in st.bodies for r in decode_lines(body)]
        assert lines_only == sorted(lines_only)  # the blocks in spool order
        assert [r for x in sp.quarantined() for r in sp.quarantined_readings(x.id)] == [rd(13)]
        assert fwd.stats().sent == n - 1 and sp.pending() == 0
        assert fwd.stats().failures == 0 and fwd.stats().last_error is None


def test_storage_retry_max_s_caps_the_collectors_back_off(tmp_path: Path) -> None:
    from dcim.config import SiteConfig
    from dcim.runtime import Collector
    from dcim.twin.site import paris_chapelle

    doc = paris_chapelle(racks=1, servers_per_rack=1, spool_dir=str(tmp_path / "spool"))
    doc["storage"]["retry_max_s"] = 4.0
    col = Collector(SiteConfig.model_validate(doc))
    try:
        assert col.forwarder.backoff_max_s == 4.0
        col.forwarder._failures = 40  # far past the doubling: the cap, jittered down to half
        delays = [col.forwarder._delay(None) for _ in range(200)]
        assert min(delays) >= 2.0 and max(delays) <= 4.0, (min(delays), max(delays))
    finally:
        col.spool.close()
        col.store.close()
    assert SiteConfig.model_validate(paris_chapelle()).storage.retry_max_s == 60.0
