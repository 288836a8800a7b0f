from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
import threading
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dcim import spool_rows
from dcim.reading import Reading
from dcim.spool import QuarantineView, Spool, SpoolError, SpoolFullError, SpoolLockedError
from dcim.storage.lineprotocol import decode_lines, encode_many

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


def test_an_ack_survives_a_crash_and_appends_stay_fsynced(tmp_path: Path) -> None:
    """An ack is not fsynced (a power loss may undo it: the batch is sent again), but kill -9
    keeps it (it is in the WAL file), and the appends after it are fsynced again."""
    code = (
        "import os, sys; sys.path.insert(0, sys.argv[2]);"
        "from dcim.spool import Spool; from tests.test_spool import rd;"
        "sp = Spool(sys.argv[1]); sp.append([rd(i) for i in range(500)]);"
        "sp.ack(sp.peek_lines(100));"
        "full = sp._w.execute('PRAGMA synchronous').fetchone()[0];"
        "sp.append([rd(500)]);"
        "os._exit(9 if full == 2 else 1)"  # FULL again; a crash: no close(), no checkpoint
    )
    root = str(Path(__file__).resolve().parents[1])
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path), root], check=False)
    assert p.returncode == 9
    with Spool(tmp_path) as sp:
        assert sp.pending() == 401
        assert sp.peek(1000).readings == [rd(i) for i in range(100, 501)]


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


def test_kept_readings_are_peeked_as_appended_and_forgotten_once_gone(tmp_path: Path) -> None:
    """keep_readings (the embedded store's forwarder): peek() gives the appended readings
    themselves, not decoded from their rows; acked, dropped or quarantined rows are
    forgotten; beyond KEPT_MAX a backlog is decoded from its rows."""
    from dcim import spool as spool_mod

    with Spool(tmp_path) as sp:
        sp.keep_readings = True
        first = [rd(i) for i in range(10)]
        sp.append(first)
        sp.append([rd(10)])
        part = sp.peek(4)  # a part of the first row
        assert part.readings == first[:4] and part.readings[0] is first[0]
        sp.ack(part)
        rest = sp.peek(100)
        assert rest.readings == [*first[4:], rd(10)] and rest.readings[0] is first[4]
        assert sp._kept_n == 11
        sp.ack(rest)
        assert sp._kept == {} and sp._kept_n == 0 and sp.pending() == 0
        # a row whose kept readings are gone (not this process's) is decoded from disk
        sp.append([rd(20), rd(21)])
        sp._kept.clear()
        sp._kept_n = 0
        got = sp.peek(10).readings
        assert got == [rd(20), rd(21)] and got[0] is not rd(20)
        sp.ack(sp.peek(10))
        mp = pytest.MonkeyPatch()
        mp.setattr(spool_mod, "KEPT_MAX", 5)
        try:
            sp.append([rd(i) for i in range(30, 34)])
            sp.append([rd(i) for i in range(34, 38)])  # over the cap: not kept
        finally:
            mp.undo()
        assert sp._kept_n == 4
        assert sp.peek(100).readings == [rd(i) for i in range(30, 38)]
    with Spool(tmp_path / "drop", max_bytes=MB, on_full="drop_oldest") as sp:
        sp.keep_readings = True
        assert fill(sp, 15_000) == 15_000
        st = sp.stats()
        assert st.dropped_total > 0
        assert sp._kept_n == sum(map(len, sp._kept.values())) == st.pending
        kept = [r.time_ns - T for r in sp.peek(10**6).readings]
        assert kept == list(range(st.dropped_total, 15_000))


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
    # inside a b-tree leaf page of the spool table, past its header (the middle one: with
    # auto_vacuum the middle of the file may be an overflow page, payload only)
    with sqlite3.connect(path) as con:
        leaves = [
            n
            for (n,) in con.execute(
                "SELECT pageno FROM dbstat WHERE name = 'spool' AND pagetype = 'leaf' ORDER BY 1"
            )
        ]
        size = con.execute("PRAGMA page_size").fetchone()[0]
    with path.open("r+b") as f:
        f.seek((leaves[len(leaves) // 2] - 1) * size + 100)
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
        "INSERT INTO spool (n, r) VALUES (?, ?)",
        [(1, "not json"), (1, "[[1, 2, 3, 4]]"), (1, b"\xff\xfe"), (1, '[["pdu", {}, {}, 5]]'),
         (2, '[["pdu", {"device": "p1"}, {"v": 1.0}, 5]]')],
    )  # fmt: skip
    con.commit()
    con.close()
    with Spool(tmp_path) as sp:
        sp.append([rd(2)])
        assert sp.pending() == 8
        b = sp.peek(10)
        assert b.readings == [rd(1), rd(2)] and sp.pending() == 2
        q = sp.quarantined()
        assert len(q) == 5 and all("undecodable spool row" in x.reason for x in q)
        assert "should hold 2 readings, holds 1" in q[-1].reason
        with pytest.raises(SpoolError, match="corrupt spool row"):
            sp.quarantined_readings(q[0].id)
        sp.ack(b)
        assert sp.pending() == 0 and sp.peek(10).readings == []


# -- format 2: a row per appended batch, with its line protocol ------------------------------


def _rows(path: Path) -> list[tuple[int, int]]:
    con = sqlite3.connect(path / "spool.sqlite")
    try:
        return con.execute("SELECT n, done FROM spool ORDER BY id").fetchall()
    finally:
        con.close()


def test_a_row_per_batch_and_batches_of_whole_rows(tmp_path: Path) -> None:
    readings = [rd(i) for i in range(2500)]
    with Spool(tmp_path) as sp:
        sp.append(readings)  # more than ROW_MAX (1000): split into rows, one transaction
        assert _rows(tmp_path) == [(1000, 0), (1000, 0), (500, 0)] and sp.pending() == 2500
        b = sp.peek_lines(1800)  # whole rows only, as many as fit
        assert b.count == 1000 and b.lines == encode_many(readings[:1000]) and not b.readings
        assert sp.peek(2000).readings == readings[:2000]
        b = sp.peek_lines(400)  # the oldest row alone holds more: its first 400 readings
        assert (b.count, b.take, b.skip) == (400, 400, 0)
        assert b.lines == encode_many(readings[:400])
        sp.ack(b)
        assert _rows(tmp_path)[0] == (1000, 400) and sp.pending() == 2100
        assert sp.peek(250).readings == readings[400:650]
    with Spool(tmp_path) as sp:  # what was acked stays acked: nothing sent twice or skipped
        assert sp.pending() == 2100
        b = sp.peek_lines(1600)  # the rest of the first row, then the second whole
        assert b.count == 1600 and b.lines == encode_many(readings[400:2000])
        assert b.spans == ((T, T + 999), (T + 1000, T + 1999))
        sp.ack(b)
        assert _rows(tmp_path) == [(500, 0)]
        b = sp.peek_lines(10**6)
        sp.ack(b)
        assert b.lines == encode_many(readings[2000:]) and sp.pending() == 0


def test_a_batch_stops_at_the_first_row_that_does_not_fit(tmp_path: Path) -> None:
    with Spool(tmp_path) as sp:
        for k, n in enumerate((3, 5, 1, 2)):
            sp.append([rd(10 * k + i) for i in range(n)])
        assert [len(sp.peek_lines(m)) for m in (1, 3, 4, 7, 8, 9, 11, 100)] == [
            1,
            3,
            3,
            3,
            8,
            9,
            11,
            11,
        ]
        assert sp.peek_lines(2).take == 2 and sp.peek_lines(3).take == 0
        sp.ack(sp.peek_lines(2))  # the first 2 of row 1: 1 left in it
        assert [len(sp.peek_lines(m)) for m in (1, 5, 6, 9)] == [1, 1, 6, 9]
        assert [r.time_ns - T for r in sp.peek(6).readings] == [2, 10, 11, 12, 13, 14]


def test_unencodable_or_damaged_line_protocol_is_sent_decoded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    nan = Reading("pdu", {"device": "p1"}, {"power_w": float("nan")}, T + 1)
    empty_tag = Reading("pdu", {"device": "p1", "room": ""}, {"power_w": 5.0}, T + 5)
    with Spool(tmp_path) as sp:
        sp.append([rd(0), nan])  # line protocol cannot carry NaN: the row has none
        b = sp.peek_lines(10)
        assert b.lines is None and b.readings[0] == rd(0) and b.readings[1].time_ns == T + 1
        sp.ack(b)
        sp.append([rd(i) for i in range(1, 4)])
        sp.append([rd(4)])
        sp.append([empty_tag])  # line protocol and JSON: "room" is not in the line protocol
        assert _json(tmp_path) == [False, False, True]
    con = sqlite3.connect(tmp_path / "spool.sqlite")  # a bit flipped in the line protocol
    con.execute("UPDATE spool SET lp = CAST(replace(CAST(lp AS TEXT), 'p1', 'q1') AS BLOB)")
    con.commit()
    con.close()
    with Spool(tmp_path) as sp, caplog.at_level(logging.ERROR, logger="dcim.spool"):
        b = sp.peek_lines(10)  # the rows without JSON are quarantined, the last is decoded
        assert b.lines is None and b.readings == [empty_tag] and b.readings[0].tags["room"] == ""
        q = sp.quarantined()
        assert [x.count for x in q] == [3, 1]
        assert all("line protocol fails its checksum" in x.reason for x in q)
        assert sp.pending() == 1
        with sp._r:  # kept as text, the damage visible
            text = sp._r.execute("SELECT readings FROM quarantine").fetchall()
        assert [t.count("q1") for (t,) in text] == [1, 1]
    assert "fails its checksum" in caplog.text


def _json(path: Path) -> list[bool]:
    """For each row, whether it holds JSON besides its line protocol."""
    con = sqlite3.connect(path / "spool.sqlite")
    try:
        return [bool(x) for (x,) in con.execute("SELECT r IS NOT NULL FROM spool ORDER BY id")]
    finally:
        con.close()


V1_SCHEMA = """
CREATE TABLE spool (id INTEGER PRIMARY KEY AUTOINCREMENT, r TEXT NOT NULL);
CREATE TABLE quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ns INTEGER NOT NULL,
    reason TEXT NOT NULL,
    n INTEGER NOT NULL,
    readings TEXT NOT NULL
);
"""


def v1_spool(directory: Path, readings: list[Reading], garbled: int | None = None) -> None:
    """A spool as the previous format wrote it: a row per reading (``[measurement, tags,
    fields, time_ns]``), acked rows gone, a quarantine entry; row ``garbled`` is not JSON."""
    directory.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(directory / "spool.sqlite")
    con.execute("PRAGMA journal_mode=WAL")
    con.executescript(V1_SCHEMA)
    rows = [json.dumps([r.measurement, r.tags, r.fields, r.time_ns]) for r in readings]
    if garbled is not None:
        rows[garbled] = "{not json"
    con.executemany("INSERT INTO spool (r) VALUES (?)", [(r,) for r in ["acked", *rows]])
    con.execute("DELETE FROM spool WHERE id = 1")  # forwarded before the upgrade
    con.execute(
        "INSERT INTO quarantine (time_ns, reason, n, readings) VALUES (?, ?, 1, ?)",
        (T, "field type conflict", f"[{rows[0]}]"),
    )
    con.commit()
    con.close()


@pytest.mark.parametrize("chunk", [50_000, 7])
def test_a_spool_of_the_previous_format_is_upgraded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, chunk: int
) -> None:
    monkeypatch.setattr("dcim.spool_rows._UPGRADE_CHUNK", chunk)
    old = [rd(i) for i in range(30)]
    v1_spool(tmp_path, old, garbled=12)
    with caplog.at_level(logging.WARNING, logger="dcim.spool_rows"), Spool(tmp_path) as sp:
        assert "30 pending readings of the previous format kept" in caplog.text
        assert sp.pending() == 30 and [q.reason for q in sp.quarantined()] == [
            "field type conflict"
        ]
        sp.append([rd(i) for i in range(30, 40)])  # after the old ones
        b = sp.peek_lines(100)  # old rows have no line protocol: decoded
        assert b.lines is None and len(b.readings) == 39
        assert b.readings == [r for i, r in enumerate(old) if i != 12] + [
            rd(i) for i in range(30, 40)
        ]
        assert "undecodable spool row" in sp.quarantined()[-1].reason  # the garbled one
        sp.ack(b)
        assert sp.pending() == 0
    con = sqlite3.connect(tmp_path / "spool.sqlite")
    tables = {n for (n,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "spool_v1" not in tables and con.execute("PRAGMA user_version").fetchone() == (3,)
    con.close()


def test_an_interrupted_upgrade_goes_on(tmp_path: Path) -> None:
    old = [rd(i) for i in range(20)]
    v1_spool(tmp_path, old)
    con = sqlite3.connect(tmp_path / "spool.sqlite")  # as a crash after the first chunk left it
    con.execute("ALTER TABLE spool RENAME TO spool_v1")
    con.executescript(spool_rows.SCHEMA)
    con.execute(
        "INSERT INTO spool (id, n, r) SELECT id, 1, CAST('[' || r || ']' AS BLOB) "
        "FROM spool_v1 WHERE id <= 8"
    )
    con.execute("DELETE FROM spool_v1 WHERE id <= 8")
    con.commit()
    con.close()
    with Spool(tmp_path) as sp:
        assert sp.pending() == 20 and sp.peek(100).readings == old


def test_quarantine_view_of_a_spool_not_upgraded_yet(tmp_path: Path) -> None:
    v1_spool(tmp_path, [rd(i) for i in range(5)])
    view = QuarantineView(tmp_path)  # read-only: `dcim quarantine list` next to an old collector
    assert view.pending() == 5 and [e.count for e in view.entries()] == [1]
    view.close()


def test_salvage_of_a_corrupt_spool_of_the_previous_format(tmp_path: Path) -> None:
    v1_spool(tmp_path, [rd(i) for i in range(3000)])
    _truncate(tmp_path / "spool.sqlite")
    with Spool(tmp_path) as sp:
        assert sp.corrupt_copy is not None
        got = sp.peek(10**6).readings
        assert 500 < len(got) < 3000 and all(r == rd(r.time_ns - T) for r in got)


V2_SCHEMA = """
CREATE TABLE spool (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    n INTEGER NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    t_min INTEGER,
    t_max INTEGER,
    crc INTEGER,
    lp BLOB,
    r BLOB NOT NULL
);
CREATE TABLE quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ns INTEGER NOT NULL,
    reason TEXT NOT NULL,
    n INTEGER NOT NULL,
    readings TEXT NOT NULL
);
"""


def v2_spool(directory: Path, batches: list[list[Reading]], done: int = 0) -> None:
    """A spool as format 2 wrote it: a row per batch with its JSON and line protocol (none
    when a reading cannot be written), ``done`` readings of the first row delivered."""
    directory.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(directory / "spool.sqlite")
    con.execute("PRAGMA journal_mode=WAL")
    con.executescript(V2_SCHEMA)
    con.execute("PRAGMA user_version=2")
    for b in batches:
        js = spool_rows.dump(b).encode()
        try:
            lp: bytes | None = encode_many(b)
        except ValueError:
            lp = None
        times = [r.time_ns for r in b]
        crc = None if lp is None else zlib.crc32(lp)
        con.execute(
            "INSERT INTO spool (n, t_min, t_max, crc, lp, r) VALUES (?,?,?,?,?,?)",
            (len(b), min(times), max(times), crc, lp, js),
        )
    con.execute("UPDATE spool SET done = ? WHERE id = 1", (done,))
    con.execute(
        "INSERT INTO quarantine (time_ns, reason, n, readings) VALUES (?, ?, 1, ?)",
        (T, "field type conflict", spool_rows.dump(batches[0][:1])),
    )
    con.commit()
    con.close()


@pytest.mark.parametrize("chunk", [200, 1])
def test_a_spool_of_format_2_is_upgraded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, chunk: int
) -> None:
    monkeypatch.setattr("dcim.spool_rows._UPGRADE_CHUNK_V2", chunk)
    nan = Reading("pdu", {"device": "p1"}, {"power_w": float("nan")}, T + 20)
    batches = [[rd(i) for i in range(10)], [rd(i) for i in range(10, 20)], [nan], [rd(21)]]
    v2_spool(tmp_path, batches, done=4)
    with caplog.at_level(logging.WARNING, logger="dcim.spool_rows"), Spool(tmp_path) as sp:
        assert "18 pending readings of the previous format kept" in caplog.text
        assert sp.pending() == 18 and [q.reason for q in sp.quarantined()] == [
            "field type conflict"
        ]
        assert _json(tmp_path) == [True] * 4  # the rows as they were
        sp.append([rd(i) for i in range(30, 35)])  # after the old ones, line protocol only
        assert _json(tmp_path) == [True] * 4 + [False]
        b = sp.peek_lines(16)  # the old rows' line protocol as is, the first one's rest
        assert b.lines == encode_many([rd(i) for i in range(4, 20)]) and b.count == 16
        sp.ack(b)
        b = sp.peek_lines(100)  # the NaN row has no line protocol: decoded
        assert b.lines is None and b.readings[1:] == [rd(21)] + [rd(i) for i in range(30, 35)]
        sp.ack(b)
        assert sp.pending() == 0
    con = sqlite3.connect(tmp_path / "spool.sqlite")
    tables = {n for (n,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "spool_v2" not in tables and con.execute("PRAGMA user_version").fetchone() == (3,)
    con.close()


def test_an_interrupted_upgrade_of_format_2_goes_on(tmp_path: Path) -> None:
    batches = [[rd(i) for i in range(k, k + 5)] for k in range(0, 30, 5)]
    v2_spool(tmp_path, batches)
    con = sqlite3.connect(tmp_path / "spool.sqlite")  # as a crash after the first chunk left it
    con.execute("ALTER TABLE spool RENAME TO spool_v2")
    con.executescript(spool_rows.SCHEMA)
    con.execute("INSERT INTO spool SELECT * FROM spool_v2 WHERE id <= 2")
    con.execute("DELETE FROM spool_v2 WHERE id <= 2")
    con.commit()
    con.close()
    with Spool(tmp_path) as sp:
        assert sp.pending() == 30 and sp.peek(100).readings == [rd(i) for i in range(30)]


def test_salvage_of_an_interrupted_upgrade_keeps_the_order(tmp_path: Path) -> None:
    batches = [[rd(i) for i in range(k, k + 100)] for k in range(0, 3000, 100)]
    v2_spool(tmp_path, batches)
    con = sqlite3.connect(tmp_path / "spool.sqlite")  # half moved, then the file damaged
    con.execute("ALTER TABLE spool RENAME TO spool_v2")
    con.executescript(spool_rows.SCHEMA)
    con.execute("INSERT INTO spool SELECT * FROM spool_v2 WHERE id <= 15")
    con.execute("DELETE FROM spool_v2 WHERE id <= 15")
    con.commit()
    con.close()
    _scribble(tmp_path / "spool.sqlite")
    with Spool(tmp_path) as sp:
        assert sp.corrupt_copy is not None
        got = [r.time_ns - T for r in sp.peek(10**6).readings]
        assert 500 < len(got) < 3000 and got == sorted(got) and set(got) <= set(range(3000))


@settings(max_examples=200, deadline=None)
@given(
    readings=st.lists(
        st.builds(
            Reading,
            st.sampled_from(["pdu", "m é", 'a"b']),
            st.dictionaries(st.text(min_size=1, max_size=5), st.text(max_size=5), max_size=3),
            st.dictionaries(
                st.text(min_size=1, max_size=5),
                st.one_of(
                    st.floats(),
                    st.integers(min_value=-(2**64), max_value=2**64),
                    st.booleans(),
                    st.text(max_size=5),
                    st.none(),
                ),
                max_size=3,
            ),  # fmt: skip
            st.integers(min_value=-(2**64), max_value=2**64),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_row_holds_the_line_protocol_and_json_only_when_needed(readings: list[Reading]) -> None:
    """The spool's encoder writes what the line protocol encoder writes, leaves it out when a
    reading cannot be written, and writes the JSON too exactly when the line protocol does not
    decode back to the same readings (values of the same types)."""
    ((n, t_min, t_max, crc, lp, r),) = spool_rows.make_rows(readings)
    assert n == len(readings)
    try:
        want: bytes | None = encode_many(readings)
    except (ValueError, TypeError):
        want = None
    assert lp == want
    if lp is not None:
        assert crc == zlib.crc32(lp)
        assert (t_min, t_max) == (
            min(x.time_ns for x in readings),
            max(x.time_ns for x in readings),
        )
        exact = [_typed(x) for x in decode_lines(lp)] == [_typed(x) for x in readings]
        assert (r is None) == exact
    if r is not None:
        assert r == spool_rows.dump(readings).encode()
    else:  # what peek gives
        got = spool_rows.decode_row(None, n, lp, crc)
        assert [_typed(x) for x in got] == [_typed(x) for x in readings]


def _typed(r: Reading) -> tuple[object, ...]:
    return r.measurement, r.tags, [(k, type(v), v) for k, v in r.fields.items()], r.time_ns


def _garble_header(path: Path) -> None:
    with path.open("r+b") as f:
        f.write(bytes(range(7, 107)))  # the first 100 bytes: SQLite's header


@pytest.mark.parametrize("page_size", [None, 1024, 16384])
def test_a_damaged_header_salvages_every_row(tmp_path: Path, page_size: int | None) -> None:
    """The first 100 bytes garbled ("file is not a database") while every page is whole:
    every pending reading and the quarantine come back, in order (the header rebuilt in a
    copy, whatever the page size)."""
    if page_size:
        con = sqlite3.connect(tmp_path / "spool.sqlite")
        con.execute(f"PRAGMA page_size={page_size}")
        con.execute("VACUUM")
        con.close()
    path = _spool_of(tmp_path, 3000)
    with Spool(tmp_path) as sp:
        sp.ack(sp.peek(100), rejected=[([rd(7)], "refused: field type conflict")])
    _garble_header(path)
    with Spool(tmp_path) as sp:
        assert sp.corrupt_copy is not None
        assert sp.peek(10**6).readings == [rd(i) for i in range(100, 3000)]
        assert [q.reason for q in sp.quarantined()] == ["refused: field type conflict"]
        assert sp.quarantined_readings(sp.quarantined()[0].id) == [rd(7)]
    assert sorted(p.name for p in tmp_path.iterdir() if ".rebuilt" in p.name) == []


def test_spool_files_are_private(tmp_path: Path) -> None:
    """The spool directory the collector creates is 0700, the spool, its WAL and -shm, the
    lock, a corrupt copy and the salvaged spool are 0600 (the site's readings)."""
    old = os.umask(0o022)
    try:
        d = tmp_path / "var" / "spool"
        with Spool(d) as sp:
            sp.append([rd(i) for i in range(10)])
            files = {p.name: p.stat().st_mode & 0o777 for p in d.iterdir()}
            assert {"spool.sqlite", "spool.sqlite-wal", "spool.sqlite-shm", "spool.lock"} <= set(
                files
            )
            assert set(files.values()) == {0o600}, files
        assert d.stat().st_mode & 0o777 == 0o700
        _garble_header(d / "spool.sqlite")
        with Spool(d) as sp:
            assert sp.corrupt_copy is not None and sp.pending() == 10
            files = {p.name: p.stat().st_mode & 0o777 for p in d.iterdir()}
            assert set(files.values()) == {0o600}, files
            assert sp.corrupt_copy.name in files
    finally:
        os.umask(old)
