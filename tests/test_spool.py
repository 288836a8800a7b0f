from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from dcim.reading import Reading
from dcim.spool import Spool, SpoolLockedError

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
