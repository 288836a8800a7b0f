"""The spool's durable commit off the event loop (dcim/spool_commit.py): with a disk whose
every commit takes 200 ms (a slow-disk shim around the spool's real commit), the collector's
polls of the twin's Modbus devices keep their cadence, and every polled reading is
committed by the stop."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import dcim.scheduler
from dcim.config import SiteConfig
from dcim.reading import Reading
from dcim.runtime import Collector
from dcim.spool import Spool
from dcim.spool_commit import Committer
from dcim.storage.sqlite import SqliteStore
from dcim.testing.servers import free_ports
from dcim.twin.runner import TwinRunner, TwinThread
from dcim.twin.site import paris_chapelle

SLOW_COMMIT_S = 0.2
INTERVAL_S = 0.5
RUN_S = 4.0


def test_committer_keeps_the_order_and_drains() -> None:
    got: list[int] = []
    gate = threading.Event()

    def commit(rs: list[Reading]) -> None:
        gate.wait(5)
        got.extend(r.time_ns for r in rs)

    c = Committer(commit)
    for i in range(5):
        c.submit([Reading("m", {}, {"v": 1.0}, i)])
    assert c.queued == 5 and not c.drain(0.1)
    gate.set()
    assert c.drain(5) and got == [0, 1, 2, 3, 4] and c.queued == 0
    c.close(1)


def test_what_queued_during_a_commit_is_committed_together() -> None:
    """Group commit: the submissions that queued up while a commit was going on go in one
    commit (one transaction, one fsync), in order; the submitters' lists are left as given."""
    calls: list[list[int]] = []
    gate = threading.Event()

    def commit(rs: list[Reading]) -> None:
        gate.wait(5)
        calls.append([r.time_ns for r in rs])

    c = Committer(commit)
    c.submit([Reading("m", {}, {"v": 1.0}, 0)])
    time.sleep(0.2)  # the thread takes the first one and waits at the gate
    submitted = [[Reading("m", {}, {"v": 1.0}, t) for t in (i, i + 10)] for i in range(1, 5)]
    for rs in submitted:
        c.submit(rs)
    gate.set()
    assert c.drain(5)
    assert calls == [[0], [1, 11, 2, 12, 3, 13, 4, 14]]
    assert all(len(rs) == 2 for rs in submitted)
    c.submit([Reading("m", {}, {"v": 1.0}, 99)])
    c.close(5)
    assert calls[-1] == [99] and c.queued == 0


def test_a_window_has_submissions_that_come_within_it_share_a_commit() -> None:
    """``window_s``: a commit waits that long after its first submission for more; one
    that comes later is the next commit's; close commits what waits without the window."""
    calls: list[list[int]] = []
    c = Committer(lambda rs: calls.append([r.time_ns for r in rs]), window_s=0.6)
    t0 = time.monotonic()
    for i in range(3):
        c.submit([Reading("m", {}, {"v": 1.0}, i)])
        time.sleep(0.1)
    assert c.drain(5)
    took = time.monotonic() - t0
    assert calls == [[0, 1, 2]] and took >= 0.6 - 0.05
    time.sleep(0.1)
    c.submit([Reading("m", {}, {"v": 1.0}, 3)])
    t1 = time.monotonic()
    c.close(5)
    assert calls == [[0, 1, 2], [3]] and c.queued == 0 and time.monotonic() - t1 < 0.5


def test_polls_keep_their_cadence_on_a_slow_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the two devices' polls half an interval apart (not one group, one commit): the slow
    # disk busy most of the time
    monkeypatch.setattr(dcim.scheduler, "GROUP_MAX", 1)
    doc: dict[str, Any] = paris_chapelle(
        racks=1,
        servers_per_rack=1,
        snmp_base_port=free_ports(12, kind=2),
        modbus_base_port=free_ports(16),
        interval_s=INTERVAL_S,
        spool_dir=str(tmp_path / "spool"),
        sink={"type": "embedded", "path": str(tmp_path / "store.sqlite")},
    )
    doc["devices"] = [d for d in doc["devices"] if d["protocol"] == "modbus"][:2]
    doc["defaults"].update(timeout_s=0.3, retries=0)
    cfg = SiteConfig.model_validate(doc)
    commits = []

    async def collect() -> Collector:
        col = Collector(cfg)
        # the pipeline's durable commit: straight into the embedded store, or the spool
        sink = col.pipeline.spool
        real = sink.append

        def slow_disk(*args: Any, **kw: Any) -> Any:
            time.sleep(SLOW_COMMIT_S)  # every durable commit takes this long
            commits.append(time.monotonic())
            return real(*args, **kw)

        sink.append = slow_disk  # type: ignore[method-assign]
        await col.start()
        await asyncio.sleep(RUN_S)
        await col.stop()
        return col

    with TwinThread(TwinRunner(cfg, seed=2)):
        asyncio.run(collect())
    with Spool(tmp_path / "spool") as sp:
        left = [r for r in sp.peek(10**6).readings if r.measurement == "dcim_poll"]
    store = SqliteStore(tmp_path / "store.sqlite", read_only=True)
    rows = store.aggregate(measurement="dcim_poll", field="late_s", fn="count",
                           start_ns=0, end_ns=2 * time.time_ns(), group_by=("device",))  # fmt: skip
    polls = {r.tags["device"]: int(r.value or 0) for r in rows}
    for r in left:
        polls[r.tags["device"]] = polls.get(r.tags["device"], 0) + 1
    late = store.aggregate(measurement="dcim_poll", field="late_s", fn="max",
                           start_ns=0, end_ns=2 * time.time_ns())  # fmt: skip
    worst = max([late[0].value or 0.0] + [float(r.fields["late_s"]) for r in left])
    store.close()
    # A poll per interval and device, every one committed (a commit each: 200 ms, so on the
    # loop they would have held it most of the time).
    assert set(polls) == {d.name for d in cfg.devices}
    assert all(n >= RUN_S / INTERVAL_S - 1 for n in polls.values()), polls
    assert len(commits) * SLOW_COMMIT_S > RUN_S / 2
    assert worst < 0.1, worst  # each poll started on time: the loop was never held by a commit
