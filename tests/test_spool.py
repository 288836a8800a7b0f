from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from dcim.reading import Reading
from dcim.spool import Spool, SpoolError, SpoolFullError, SpoolLockedError

T = 1_700_000_000_000_000_000


def rd(i: int) -> Reading:
    return Reading(
        "pdu", {"site": "s", "device": f"p{i % 3}"}, {"power_w": float(i), "n": i}, T + i
    )


def test_fifo_peek_ack(tmp_path: Path) -> None:
    with Spool(tmp_path) as sp:
        sp.append([rd(i) for i in range(10)])
        sp.append([rd(10)])
        assert sp.pending() == 11
        b = sp.peek(4)
        assert [r.time_ns - T for r in b.readings] == [0, 1, 2, 3]
        assert b.readings[0] == rd(0)  # types survive: float stays float, int stays int
        assert sp.peek(4) == b  # peek does not consume
        sp.ack(b)
        assert sp.pending() == 7
        assert [r.time_ns - T for r in sp.peek(100).readings] == list(range(4, 11))
        assert sp.peek(0).readings  # at least one
        sp.ack(sp.peek(100))
        assert sp.pending() == 0 and sp.peek(10).readings == []


def test_unacked_survives_a_crash(tmp_path: Path) -> None:
    code = (
        "import os, sys; sys.path.insert(0, sys.argv[2]);"
        "from dcim.spool import Spool; from tests.test_spool import rd;"
        "sp = Spool(sys.argv[1]); sp.append([rd(i) for i in range(500)]);"
        "sp.peek(100);"  # taken by a forwarder, never acked
        "os._exit(9)"  # no close(), no checkpoint: a crash
    )
    root = str(Path(__file__).resolve().parents[1])
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path), root], check=False)
    assert p.returncode == 9
    with Spool(tmp_path) as sp:
        assert sp.pending() == 500
        assert sp.peek(1000).readings == [rd(i) for i in range(500)]


def test_second_opener_gets_a_clear_error(tmp_path: Path) -> None:
    with Spool(tmp_path):
        with pytest.raises(SpoolLockedError, match="in use by another collector"):
            Spool(tmp_path)
        code = "import sys; from dcim.spool import Spool; Spool(sys.argv[1])"
        root = str(Path(__file__).resolve().parents[1])
        p = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
            cwd=root, check=False,
        )  # fmt: skip
        assert p.returncode != 0 and "SpoolLockedError" in p.stderr
    with Spool(tmp_path):  # released on close
        pass


def test_quarantine_and_requeue(tmp_path: Path) -> None:
    with Spool(tmp_path) as sp:
        sp.append([rd(i) for i in range(6)])
        b = sp.peek(6)
        sp.ack(b, rejected=[([rd(2)], "field type conflict"), ([rd(4), rd(5)], "too old")])
        assert sp.pending() == 0
        q = sp.quarantined()
        assert [(x.reason, x.count) for x in q] == [("field type conflict", 1), ("too old", 2)]
        assert sp.quarantined_readings(q[1].id) == [rd(4), rd(5)]
        assert sp.requeue(q[1].id) == 2
        assert sp.pending() == 2 and len(sp.quarantined()) == 1
        sp.drop_quarantined(q[0].id)
        assert sp.quarantined() == []


def test_threads_append_while_forwarding(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    n_threads, per = 4, 200
    seen: list[int] = []
    done = threading.Event()

    def producer(k: int) -> None:
        for i in range(per):
            sp.append([rd(k * per + i)])

    def consumer() -> None:
        while not done.is_set() or sp.pending():
            b = sp.peek(50)
            seen.extend(r.time_ns - T for r in b.readings)
            if b.readings:
                sp.ack(b)

    c = threading.Thread(target=consumer)
    c.start()
    ps = [threading.Thread(target=producer, args=(k,)) for k in range(n_threads)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    done.set()
    c.join(30)
    assert sorted(seen) == list(range(n_threads * per))
    assert sp.pending() == 0
    sp.close()


def test_closed_spool_refuses(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    sp.close()
    sp.close()  # idempotent
    with pytest.raises(Exception, match="closed"):
        sp.append([rd(1)])


MB = 2**20


def fill(sp: Spool, upto: int = 30_000) -> int:
    """Append batches of 100 until refused (or ``upto``); returns how many were accepted."""
    for i in range(0, upto, 100):
        try:
            sp.append([rd(j) for j in range(i, i + 100)])
        except SpoolFullError:
            return i
    return upto


def test_refuse_new_keeps_everything_accepted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log_warnings = caplog.at_level(logging.WARNING, logger="dcim.spool")
    with log_warnings, Spool(tmp_path, max_bytes=MB) as sp:
        n = fill(sp)
        assert 5000 < n < 30_000
        warned = [r for r in caplog.records if "% full" in r.getMessage()]
        assert len(warned) == 1 and warned[0].levelno == logging.WARNING  # before the limit
        with pytest.raises(SpoolFullError, match="is full .*: 100 new readings refused"):
            sp.append([rd(i) for i in range(n, n + 100)])  # the batch refused by fill(), again
        st = sp.stats()
        assert st.full and st.warn and st.refused_total == 200 and st.dropped_total == 0
        assert st.pending == n and st.bytes <= MB and st.max_bytes == MB
        assert sp.peek(10**6).readings == [rd(i) for i in range(n)]  # intact, in order
        sp.ack(sp.peek(10**6))  # forwarded: room again
        sp.append([rd(n)])
        st = sp.stats()
        assert not st.full and not st.warn and st.pending == 1
    assert any("back under 80%" in r.getMessage() for r in caplog.records)


def test_drop_oldest_makes_room(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log_errors = caplog.at_level(logging.ERROR, logger="dcim.spool")
    with log_errors, Spool(tmp_path, max_bytes=MB, on_full="drop_oldest") as sp:
        assert fill(sp, 20_000) == 20_000  # never refused
        st = sp.stats()
        assert st.dropped_total > 0 and st.refused_total == 0 and st.bytes <= MB
        assert st.pending + st.dropped_total == 20_000
        kept = [r.time_ns - T for r in sp.peek(10**6).readings]
        assert kept == list(range(st.dropped_total, 20_000))  # the newest, none missing
        with pytest.raises(SpoolFullError):  # larger than the whole budget: refused
            sp.append([rd(i) for i in range(20_000)])
    assert any("dropped the" in r.getMessage() for r in caplog.records)


def _spool_of(tmp_path: Path, n: int) -> Path:
    with Spool(tmp_path) as sp:
        for k in range(0, n, 100):
            sp.append([rd(i) for i in range(k, k + 100)])
    return tmp_path / "spool.sqlite"


def _truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def _scribble(path: Path) -> None:
    with path.open("r+b") as f:
        f.seek(path.stat().st_size // 2 + 100)  # inside a page, past its header
        f.write(bytes(range(256)) * 8)


@pytest.mark.parametrize("damage", [_truncate, _scribble])
def test_corrupt_spool_is_moved_aside_and_salvaged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: Callable[[Path], None]
) -> None:
    path = _spool_of(tmp_path, 2000)
    damage(path)
    before = path.read_bytes()
    with caplog.at_level(logging.ERROR, logger="dcim.spool"), Spool(tmp_path) as sp:
        assert sp.corrupt_copy is not None and sp.corrupt_copy.name.startswith(
            "spool.sqlite.corrupt-"
        )
        assert sp.corrupt_copy.read_bytes() == before  # kept as it was found
        n = sp.pending()
        assert 500 < n < 2000
        got = sp.peek(10**6).readings
        assert len(got) == n and got == sorted(got, key=lambda r: r.time_ns)
        assert all(r == rd(r.time_ns - T) for r in got)  # each one is an original reading
        for q in sp.quarantined():  # a half-readable row, if any, is kept as evidence
            assert "undecodable" in q.reason
        sp.append([rd(5000)])
    msgs = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(msgs) == 1 and "corrupt" in msgs[0] and f"salvaged {n} readings" in msgs[0]
    with Spool(tmp_path) as sp:  # the new spool is sound
        assert sp.corrupt_copy is None and sp.pending() == n + 1
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    con.close()


def test_not_a_database_at_all(tmp_path: Path) -> None:
    (tmp_path / "spool.sqlite").write_bytes(b"\x00garbage" * 1000)
    with Spool(tmp_path) as sp:
        assert sp.corrupt_copy is not None and sp.pending() == 0
        sp.append([rd(1)])
        assert sp.peek(10).readings == [rd(1)]


def test_undecodable_row_goes_to_quarantine(tmp_path: Path) -> None:
    with Spool(tmp_path) as sp:
        sp.append([rd(1)])
    con = sqlite3.connect(tmp_path / "spool.sqlite")
    con.executemany(
        "INSERT INTO spool (r) VALUES (?)",
        [("not json",), ("[1, 2, 3, 4]",), (b"\xff\xfe",), ('["pdu", {}, {}, 5]',)],
    )
    con.commit()
    con.close()
    with Spool(tmp_path) as sp:
        sp.append([rd(2)])
        assert sp.pending() == 6
        b = sp.peek(10)
        assert b.readings == [rd(1), rd(2)] and sp.pending() == 2
        q = sp.quarantined()
        assert len(q) == 4 and all("undecodable spool row" in x.reason for x in q)
        with pytest.raises(SpoolError, match="corrupt spool row"):
            sp.quarantined_readings(q[0].id)
        sp.ack(b)
        assert sp.pending() == 0 and sp.peek(10).readings == []
