"""The spool gives disk space back: the file shrinks after a backlog drains, while readings
go on being appended (a real SQLite file; sizes from the file system)."""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

import pytest

from dcim.reading import Reading
from dcim.spool import Spool
from dcim.storage import space


def _batch(start: int, n: int) -> list[Reading]:
    return [
        Reading(
            "pdu",
            {"site": "paris", "device": f"pdu{i % 40}", "rack": f"r{i % 7}"},
            {"power_w": 1000.0 + i * 0.37, "energy_wh_total": 10**6 + i, "state": f"s{i % 3}"},
            1_700_000_000_000_000_000 + i * 10**7,
        )
        for i in range(start, start + n)
    ]


def test_file_shrinks_after_a_backlog_drains_while_writes_go_on(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "spool")
    for k in range(60):  # a backlog: the sink was away
        sp.append(_batch(k * 2000, 2000))
    with sqlite3.connect(sp.path) as con:
        con.execute("PRAGMA wal_checkpoint(PASSIVE)")
    backlog = sp.path.stat().st_size
    assert backlog > 10 * 2**20
    stop = threading.Event()
    appended = [0]

    def collect() -> None:  # the collector goes on meanwhile
        k = 1000
        while not stop.is_set():
            sp.append(_batch(k * 100, 100))
            appended[0] += 100
            k += 1

    writer = threading.Thread(target=collect)
    writer.start()
    try:
        forwarded = 0
        while True:  # the forwarder drains it
            batch = sp.peek(5000)
            if not batch.readings:
                break
            sp.ack(batch)
            forwarded += len(batch.readings)
            if forwarded > 120_000 + appended[0] - 5000:
                break
        for _ in range(50):  # steps go on with each ack while writes come in
            batch = sp.peek(50)
            sp.ack(batch)
            forwarded += len(batch.readings)
    finally:
        stop.set()
        writer.join()
    assert appended[0] > 0
    with sqlite3.connect(sp.path) as con:
        con.execute("PRAGMA wal_checkpoint(PASSIVE)")
    drained = sp.path.stat().st_size
    assert drained < backlog / 4, (backlog, drained)
    # nothing lost: what is pending is what was appended and not forwarded
    left = len(sp.peek(10**6).readings)
    assert left == sp.pending() == 120_000 + appended[0] - forwarded
    sp.close()


def test_free_pages_are_kept_while_most_of_a_backlog_is_still_pending(tmp_path: Path) -> None:
    """While the readings pending hold more pages than are free (a backlog being drained
    while new readings come and reuse them), no pages are moved and given back."""
    with Spool(tmp_path / "spool") as sp:
        for k in range(40):
            sp.append(_batch(k * 2000, 2000))
        pages = _pages(sp)
        steps: list[int] = []
        reclaim = space.reclaim

        def counted(con: sqlite3.Connection, max_pages: int = space.STEP_PAGES) -> int:
            steps.append(max_pages)
            return reclaim(con, max_pages)

        space.reclaim = counted  # type: ignore[assignment]
        try:
            while sp.pending() > 45_000:  # up to 55 % drained: more pages used than free
                sp.ack(sp.peek_lines(5000))
            assert steps == [] and _pages(sp) == pages
            while sp.pending():  # drained: given back, a step per ack
                sp.ack(sp.peek_lines(5000))
            assert steps and _pages(sp) < pages / 2
        finally:
            space.reclaim = reclaim  # type: ignore[assignment]


def _pages(sp: Spool) -> int:
    return int(sp._w.execute("PRAGMA page_count").fetchone()[0])


def _auto_vacuum(path: Path) -> int:
    with sqlite3.connect(path) as con:
        return int(con.execute("PRAGMA auto_vacuum").fetchone()[0])


def _old_spool(tmp_path: Path) -> Path:
    """A spool file from before: no auto_vacuum."""
    sp = Spool(tmp_path / "spool")
    sp.append(_batch(0, 500))
    sp.close()
    con = sqlite3.connect(sp.path, isolation_level=None)
    con.execute("PRAGMA auto_vacuum=NONE")
    con.execute("VACUUM")
    con.close()
    assert _auto_vacuum(sp.path) == 0
    return sp.path


def test_a_small_spool_from_before_is_converted_at_open(tmp_path: Path) -> None:
    path = _old_spool(tmp_path)
    sp = Spool(tmp_path / "spool")
    assert _auto_vacuum(path) == 2
    assert sp.pending() == 500  # nothing lost
    sp.close()


def test_a_large_spool_from_before_is_left_with_a_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = _old_spool(tmp_path)
    monkeypatch.setattr(space, "CONVERT_MAX_BYTES", 1000)
    with caplog.at_level(logging.WARNING, logger="dcim.spool"):
        sp = Spool(tmp_path / "spool")
    assert _auto_vacuum(path) == 0
    assert "auto_vacuum=INCREMENTAL; VACUUM" in caplog.text
    assert sp.pending() == 500
    sp.close()
