"""Write-through to the embedded store (dcim/spool_through.py), with the collector's real
spool, forwarder and embedded store (SQLite files in a temporary directory): what the
pipeline commits goes straight into the store while nothing waits in the spool; behind a
backlog, with the store locked by another connection, busy with its maintenance or full,
it is spooled, in order, and delivered by the forwarder; a kill -9 during direct writes
loses nothing that was committed."""

from __future__ import annotations

import json
import logging
import math
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from dcim.config import SiteConfig
from dcim.forwarder import Forwarder
from dcim.reading import Reading
from dcim.runtime import Collector
from dcim.spool import Spool, SpoolFullError
from dcim.spool_through import WAIT_S, WriteThrough
from dcim.storage.base import SinkError
from dcim.storage.sqlite import SqliteStore

T = 1_700_000_000_000_000_000
S = 1_000_000_000
REPO = Path(__file__).resolve().parents[1]


def cfg_of(tmp: Path, **storage: Any) -> SiteConfig:
    return SiteConfig.model_validate(
        {
            "site": {"name": "s"},
            "storage": {
                "spool_dir": str(tmp / "spool"),
                "sink": {"type": "embedded", "path": str(tmp / "store.sqlite")},
                "flush_interval_s": 0.05,
                **storage,
            },
        }
    )


def close(col: Collector) -> None:
    col.committer.close(5)
    col.forwarder.stop()
    col.spool.close()
    col.store.close()


def rd(i: int, value: float | None = None, dev: str = "p1") -> Reading:
    v = float(i) if value is None else value
    return Reading("pdu", {"site": "s", "device": dev}, {"power_w": v, "seq": i}, T + i * S)


def query(path: Path, sql: str) -> list[Any]:
    """The rows of ``sql`` on the SQLite file at ``path``, opened read-only."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def stored(path: Path) -> dict[int, tuple[float, int]]:
    """seq -> (power_w, seq) of the ``pdu`` points in the store, by their time."""
    rows = query(
        path,
        "SELECT p.time_ns, f.name, p.value FROM point p JOIN field_key f ON f.id = p.field_id"
        " JOIN series s ON s.id = p.series_id WHERE s.measurement = 'pdu'",
    )
    by_time: dict[int, dict[str, Any]] = {}
    for t, name, value in rows:
        by_time.setdefault(t, {})[name] = value
    return {(t - T) // S: (f["power_w"], f["seq"]) for t, f in by_time.items()}


def spool_rows(tmp: Path) -> int:
    return int(query(tmp / "spool" / "spool.sqlite", "SELECT count(*) FROM spool")[0][0])


def test_committed_readings_go_straight_into_the_store(tmp_path: Path) -> None:
    col = Collector(cfg_of(tmp_path))
    try:
        assert isinstance(col.pipeline.spool, WriteThrough)
        assert col.pipeline.accept([rd(i) for i in range(10)]) == 10
        assert col.offer([rd(10)])  # an MQTT message: committed (to the store) when it returns
        assert spool_rows(tmp_path) == 0 and col.spool.pending() == 0
        assert stored(tmp_path / "store.sqlite") == {i: (float(i), i) for i in range(11)}
        stats = col.forwarder.stats()
        assert (stats.sent, stats.pending, stats.failures, stats.lag_s) == (11, 0, 0, 0.0)
        assert col.through is not None and (col.through.direct, col.through.spooled) == (11, 0)
        assert col.pipeline.accepted == 11
        assert col.spool_health().fields["pending"] == 0
    finally:
        close(col)


def test_the_influxdb_sink_keeps_the_spool_path(tmp_path: Path) -> None:
    cfg = SiteConfig.model_validate(
        {
            "site": {"name": "s"},
            "storage": {
                "spool_dir": str(tmp_path / "spool"),
                "sink": {"type": "influxdb", "url": "http://127.0.0.1:9", "timeout_s": 1},
            },
        }
    )
    col = Collector(cfg)
    try:
        assert col.through is None and col.pipeline.spool is col.spool
        col.pipeline.accept([rd(i) for i in range(3)])
        assert col.spool.pending() == 3
    finally:
        col.forwarder.stop()
        col.committer.close(5)
        col.spool.close()
        col.store.close()


def test_behind_a_backlog_readings_are_spooled_in_order_then_drained(tmp_path: Path) -> None:
    """A backlog in the spool (left by a previous run): what is committed next goes behind it,
    encoded by the pipeline for the spool; the forwarder delivers all of it in order (the
    same point written again with another value ends with the later value); then the
    direct path is taken again."""
    with Spool(tmp_path / "spool") as sp:
        sp.append([rd(i) for i in range(5)])  # seq 0-4, value = seq
    col = Collector(cfg_of(tmp_path))
    try:
        assert col.spool.pending() == 5
        through = col.through
        assert through is not None and through.takes_lines  # the spool's lines are wanted
        # seq 3 and 4 again with other values (a device correcting itself), then 5-7
        col.pipeline.accept([rd(3, 30.0), rd(4, 40.0), *(rd(i) for i in range(5, 8))])
        assert col.spool.pending() == 10 and through.spooled == 5 and through.direct == 0
        assert stored(tmp_path / "store.sqlite") == {}
        assert col.forwarder.flush(10)
        want = {i: (float(i), i) for i in range(8)} | {3: (30.0, 3), 4: (40.0, 4)}
        assert stored(tmp_path / "store.sqlite") == want
        assert not through.takes_lines
        col.pipeline.accept([rd(8)])
        assert through.direct == 1 and col.spool.pending() == 0 and spool_rows(tmp_path) == 0
        assert col.forwarder.stats().sent == 11
    finally:
        close(col)


def test_store_locked_by_another_connection_spools_then_delivers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    col = Collector(cfg_of(tmp_path))
    other = sqlite3.connect(tmp_path / "store.sqlite", isolation_level=None)
    try:
        col.pipeline.accept([rd(0)])  # direct
        other.execute("BEGIN IMMEDIATE")  # another process's writer holds the store
        t0 = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="dcim.forwarder"):
            col.pipeline.accept([rd(1), rd(2)])
        assert WAIT_S * 0.9 <= time.monotonic() - t0 < WAIT_S + 2  # waited WAIT_S, no more
        assert not caplog.records  # busy is not a failure: spooled quietly
        assert col.spool.pending() == 2 and col.forwarder.stats().failures == 0
        col.pipeline.accept([rd(3)])  # behind the backlog: spooled at once, no wait
        assert col.spool.pending() == 3
        col.forwarder.start()
        time.sleep(0.3)  # the forwarder waits for the lock (its busy timeout is 10 s)
        assert col.spool.pending() == 3
        other.execute("COMMIT")
        assert col.forwarder.flush(15)
        assert stored(tmp_path / "store.sqlite") == {i: (float(i), i) for i in range(4)}
        col.pipeline.accept([rd(4)])
        assert col.through is not None and col.through.direct == 2
        assert col.forwarder.stats().sent == 5
    finally:
        other.close()
        close(col)


def test_store_busy_with_its_maintenance_spools_quietly(tmp_path: Path) -> None:
    col = Collector(cfg_of(tmp_path))
    store = col.store
    assert isinstance(store, SqliteStore)
    try:
        with store._lock:  # what maintain() holds while it rolls up or packs
            col.pipeline.accept([rd(0)])
        assert col.spool.pending() == 1 and col.forwarder.stats().last_error is None
        assert col.forwarder.flush(10) and stored(tmp_path / "store.sqlite") == {0: (0.0, 0)}
    finally:
        close(col)


def test_a_full_store_spools_keeps_everything_and_delivers_once_there_is_room(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The store refuses the write (SQLite's "database or disk is full", here from its page
    limit): the readings are spooled, the failure counted and logged; the forwarder retries
    and delivers once the store has room; none lost, none twice."""
    col = Collector(cfg_of(tmp_path, retry_max_s=0.2))
    store = col.store
    assert isinstance(store, SqliteStore)
    try:
        col.pipeline.accept([rd(0)])
        pages = store._con.execute("PRAGMA page_count").fetchone()[0]
        store._con.execute(f"PRAGMA max_page_count={pages}")  # no room for one more page
        big = [rd(i, dev=f"p{i}") for i in range(1, 400)]  # new series: new pages
        with caplog.at_level(logging.WARNING, logger="dcim.forwarder"):
            col.pipeline.accept(big)
        assert col.spool.pending() == 399
        stats = col.forwarder.stats()
        assert stats.failures == 1 and "full" in (stats.last_error or ""), stats
        assert any("full" in r.getMessage() for r in caplog.records)
        assert not col.forwarder.flush(0.5)  # still full: kept
        assert col.spool.pending() == 399
        store._con.execute("PRAGMA max_page_count=1073741823")
        assert col.forwarder.flush(10)
        got = stored(tmp_path / "store.sqlite")
        assert got == {i: (float(i), i) for i in range(400)}
        assert col.forwarder.stats().failures == 0 and col.forwarder.stats().sent == 400
        assert col.spool.quarantined() == []
    finally:
        close(col)


def test_a_drained_backlogs_acks_are_on_disk_before_a_newer_value_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The forwarder's acks are committed without an fsync (the next append's fsync used to
    make them durable). A value written straight to the store after a drained backlog must
    not reach the disk before those acks: a power loss would bring the backlog back, and
    its older values would be written over the newer one (found in review). The fsyncs
    seen: the spool's WAL is fsynced before the store's write of the corrected value."""
    col = Collector(cfg_of(tmp_path))
    store = col.store
    assert isinstance(store, SqliteStore)
    events: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        events.append(f"fsync {os.readlink(f'/proc/self/fd/{fd}')}")
        real_fsync(fd)

    try:
        col.pipeline.accept([rd(100)])  # straight to the store
        with store._lock:  # the store's maintenance holds it: spooled
            col.pipeline.accept([rd(i) for i in range(5)])
        assert col.forwarder.flush(10) and col.spool.pending() == 0  # acked, not fsynced
        monkeypatch.setattr(os, "fsync", fsync)
        real_write = col.through._write if col.through else None
        assert real_write is not None

        def write(readings: Any) -> None:
            events.append("store write")
            real_write(readings)

        monkeypatch.setattr(col.through, "_write", write)
        col.pipeline.accept([rd(3, 30.0)])  # the device corrects seq 3: straight to the store
        wal = str(tmp_path / "spool" / "spool.sqlite-wal")
        assert events[:2] == [f"fsync {wal}", "store write"], events
        assert stored(tmp_path / "store.sqlite")[3] == (30.0, 3)
        events.clear()
        col.pipeline.accept([rd(6)])  # nothing acked since: no fsync of the spool
        assert events == ["store write"], events
    finally:
        close(col)


def test_a_direct_write_after_a_failed_one_clears_the_forwarders_failure(
    tmp_path: Path,
) -> None:
    """A group the store failed to take and the spool could not take either (no room)
    leaves nothing for the forwarder to ack; the next group written straight ends the outage
    in the forwarder's stats (found in review: dcim_forwarder_consecutive_failures stayed
    up for good)."""
    store = SqliteStore(tmp_path / "store.sqlite")
    spool = Spool(tmp_path / "spool", max_bytes=1, on_full="refuse_new")  # no room
    fwd = Forwarder(spool, store, flush_interval_s=0.05)
    fail = [True]

    def write(readings: Any) -> None:  # the store's write, its first call failing (I/O)
        if fail.pop() if fail else False:
            raise SinkError(retryable=True, reason="disk I/O error (transient)")
        store.write(readings, wait_s=WAIT_S)

    through = WriteThrough(spool, fwd, write)
    try:
        with pytest.raises(SpoolFullError):
            through.append([rd(0)])
        assert fwd.stats().failures == 1
        through.append([rd(1)])
        stats = fwd.stats()
        assert (stats.failures, stats.last_error, stats.sent) == (0, None, 1), stats
        assert stored(tmp_path / "store.sqlite") == {1: (1.0, 1)}
    finally:
        spool.close()
        store.close()


# -- kill -9 while writing straight to the store ----------------------------------------------

WRITER = """
import sys, time
from pathlib import Path
from dcim.config import SiteConfig
from dcim.reading import Reading
from dcim.runtime import Collector

tmp = Path(sys.argv[1])
sink = {"type": "embedded", "path": str(tmp / "store.sqlite")}
cfg = SiteConfig.model_validate(
    {"site": {"name": "s"}, "storage": {"spool_dir": str(tmp / "spool"), "sink": sink}})
col = Collector(cfg)
T, S = 1_700_000_000_000_000_000, 1_000_000_000
seq = int(sys.argv[2])  # each run its own readings
while True:
    group = [Reading("pdu", {"site": "s", "device": f"p{d}"}, {"power_w": float(seq), "seq": seq},
                     T + seq * S) for d in range(20)]
    col.pipeline.accept(group)  # the commit thread's call: durable when it returns
    print(seq, col.spool.pending(), flush=True)
    seq += 1
"""


def test_kill_9_during_direct_writes_loses_nothing_committed(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    committed: list[tuple[int, int]] = []
    for run in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), str(1000 * run)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert proc.stdout is not None
        lines: list[str] = []
        reader = threading.Thread(target=lines.extend, args=(proc.stdout,), daemon=True)
        reader.start()
        deadline = time.monotonic() + 60
        while len(lines) < 30 + 10 * run and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        reader.join(10)
        done = [x.split() for x in lines if x.endswith("\n")]  # a line cut by the kill: not
        committed += [(int(a), int(b)) for a, b in done]  # counted (checked as in flight)
    assert len(committed) >= 90
    assert all(pending == 0 for _, pending in committed)  # each run wrote straight through
    got = stored_by_device(tmp_path / "store.sqlite")
    seqs = {seq for seq, _ in committed}
    for seq in seqs:  # every group that was committed, whole, with its values
        assert got.get(seq) == {(f"p{d}", float(seq)) for d in range(20)}, seq
    # beyond those: at most the group in flight at each kill, whole or not at all
    extra = set(got) - seqs
    assert all(got[s] == {(f"p{d}", float(s)) for d in range(20)} for s in extra), extra
    with Spool(tmp_path / "spool") as sp:
        assert sp.pending() == 0


def stored_by_device(path: Path) -> dict[int, set[tuple[str, float]]]:
    rows = query(
        path,
        "SELECT s.tags, p.time_ns, p.value FROM point p JOIN series s ON s.id = p.series_id"
        " JOIN field_key f ON f.id = p.field_id WHERE f.name = 'power_w'",
    )
    out: dict[int, set[tuple[str, float]]] = {}
    for tags, t, value in rows:
        out.setdefault((t - T) // S, set()).add((json.loads(tags)["device"], value))
    return out


def test_late_points_written_straight_have_their_hours_rolled_up_again(tmp_path: Path) -> None:
    """The store's maintenance runs as before: a point older than its rollup watermark,
    written straight, marks its hour, which the next ``maintain`` rolls up again."""
    col = Collector(cfg_of(tmp_path))
    store = col.store
    assert isinstance(store, SqliteStore)
    hour = 3600 * S
    t = (time.time_ns() // hour - 2) * hour  # two hours ago, an hour's start
    try:
        col.pipeline.accept([Reading("pdu", {"device": "p1"}, {"power_w": 1.0}, t)])
        assert store.maintain()["hours_rolled"] >= 1
        col.pipeline.accept([Reading("pdu", {"device": "p1"}, {"power_w": 3.0}, t + S)])
        assert col.spool.pending() == 0 and store.rollup_status()["dirty_hours"] == 1
        assert store.maintain()["hours_redone"] == 1
        rows = store.aggregate(
            measurement="pdu", field="power_w", start_ns=t, end_ns=t + hour, fn="mean",
            every_s=3600,
        )  # fmt: skip
        assert [(r.time_ns, r.value) for r in rows] == [(t, 2.0)]
    finally:
        close(col)


def test_a_value_the_store_refuses_is_quarantined_from_the_spool_the_rest_stored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A group with a value the store refuses (NaN: the pipeline never passes one, this
    goes to the write-through itself): spooled whole, the forwarder stores the rest and
    quarantines the refused reading with its reason; not an outage (no failure counted)."""
    col = Collector(cfg_of(tmp_path))
    through = col.through
    assert through is not None
    try:
        bad = Reading("pdu", {"site": "s", "device": "p1"}, {"power_w": math.nan, "seq": 1}, T + S)
        with caplog.at_level(logging.WARNING, logger="dcim.forwarder"):
            through.append([rd(0), bad, rd(2)])
            assert col.spool.pending() == 3 and col.forwarder.stats().failures == 0
            assert col.forwarder.flush(10)
        assert stored(tmp_path / "store.sqlite") == {0: (0.0, 0), 2: (2.0, 2)}
        [q] = col.spool.quarantined()
        assert q.count == 1 and "nan" in q.reason.lower()
        assert not [r for r in caplog.records if "sink write failed" in r.getMessage()]
        stats = col.forwarder.stats()
        assert (stats.sent, stats.quarantined, stats.failures) == (2, 1, 0)
    finally:
        close(col)


def test_dcim_run_killed_9_then_restarted_stores_every_poll_once(tmp_path: Path) -> None:
    """``dcim run`` (the embedded store, the twin's Modbus devices every 0.5 s) killed with
    SIGKILL twice while it writes straight to the store, then run again and stopped: per
    device, one data point per successful poll, inside that poll (a poll is committed whole
    with its ``dcim_poll`` row, or not at all), and nothing left in the spool."""
    from dcim.testing.servers import free_ports
    from dcim.twin.runner import TwinRunner, TwinThread
    from dcim.twin.site import paris_chapelle
    from tests.test_store_and_forward import Collector as DcimRun

    interval = 0.5
    doc: dict[str, Any] = paris_chapelle(
        racks=1,
        servers_per_rack=1,
        snmp_base_port=free_ports(12, kind=2),
        modbus_base_port=free_ports(16),
        interval_s=interval,
        spool_dir=str(tmp_path / "spool"),
        sink={"type": "embedded", "path": str(tmp_path / "store.sqlite")},
    )
    doc["devices"] = [d for d in doc["devices"] if d["protocol"] == "modbus"][:4]
    doc["defaults"].update(timeout_s=0.3, retries=0)
    doc.pop("mqtt", None)
    cfg = SiteConfig.model_validate(doc)
    path = tmp_path / "site.yaml"
    path.write_text(json.dumps(doc))  # JSON is YAML
    run = DcimRun(path, tmp_path / "collector.log")
    with TwinThread(TwinRunner(cfg, seed=3)):
        try:
            for _ in range(2):
                run.start()
                time.sleep(4.0 + random.uniform(0.0, interval))
                run.kill()
            run.start()
            time.sleep(4.0)
            assert run.interrupt() == 0, run.output()
        finally:
            run.ensure_stopped()
    with Spool(tmp_path / "spool") as sp:
        assert sp.pending() == 0
    con = sqlite3.connect(f"file:{tmp_path / 'store.sqlite'}?mode=ro", uri=True)
    try:
        rows = con.execute(
            "SELECT s.measurement, s.tags, f.name, p.time_ns, p.value FROM point p"
            " JOIN series s ON s.id = p.series_id JOIN field_key f ON f.id = p.field_id"
        ).fetchall()
    finally:
        con.close()
    polls: dict[str, dict[int, int]] = {}
    data: dict[str, set[int]] = {}
    for m, tags, name, t, value in rows:
        dev = json.loads(tags).get("device")
        if m == "dcim_poll" and name == "up":
            polls.setdefault(dev, {})[t] = value
        elif m not in ("dcim_poll", "dcim_spool", "dcim_collector", "alert"):
            data.setdefault(dev, set()).add(t)
    ns = int(interval * S)
    assert set(polls) == {d.name for d in cfg.devices}, (set(polls), run.output())
    for dev, by_time in polls.items():
        ups = sorted(t for t, up in by_time.items() if up == 1)
        got = sorted(data.get(dev, ()))
        assert len(ups) >= 3 * 4 / interval * 0.5, (dev, len(ups))  # polled in each run
        assert len(got) == len(ups), (dev, len(got), len(ups))
        assert all(t <= d < t + ns for t, d in zip(ups, got, strict=True)), dev
