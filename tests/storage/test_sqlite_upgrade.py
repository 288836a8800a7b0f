"""Embedded store: a store from before the chunks is upgraded on open (its raw rows packed by
maintain), a newer one is refused, and disk space goes back after retention."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from dcim.reading import Reading
from dcim.storage.base import Row, StoreError
from dcim.storage.sqlite import SCHEMA_VERSION, SqliteStore
from tests.storage.helpers import meter_dataset

S = 1_000_000_000
H = 3600 * S
T0 = 472_222 * H


def _same(a: list[list[Row]], b: list[list[Row]]) -> None:
    """Equal but for the float rounding of sums taken in another order (rollups)."""
    assert [[(r.tags, r.time_ns) for r in x] for x in a] == [
        [(r.tags, r.time_ns) for r in x] for x in b
    ]
    for x, y in zip(a, b, strict=True):
        for r, q in zip(x, y, strict=True):
            assert r.value == pytest.approx(q.value, rel=1e-12)


def _answers(st: SqliteStore) -> list[list[Row]]:
    out: list[list[Row]] = []
    for fn in ("mean", "last", "count", "integral"):
        for every in (None, 60, 3600):
            out.append(
                st.aggregate(
                    measurement="energy_meter",
                    field="power_w",
                    start_ns=T0 + 7 * S,
                    end_ns=T0 + 5 * H,
                    fn=fn,
                    every_s=every,  # type: ignore[arg-type]
                    group_by=("device",),
                )  # fmt: skip
            )
    return out


def test_a_store_from_before_the_chunks_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    st = SqliteStore(path)
    st.write(meter_dataset(T0, 5 * H, seed=3))
    expect = _answers(st)
    st.close()
    con = sqlite3.connect(path, isolation_level=None)  # as the previous version left it
    con.execute("DROP TABLE chunk")
    con.execute("PRAGMA user_version=0")
    con.execute("PRAGMA auto_vacuum=NONE")
    con.execute("VACUUM")
    con.close()
    st = SqliteStore(path)
    assert st._con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert st._con.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # small: converted
    stats = st.maintain(now_ns=T0 + 30 * H)
    assert stats["days_packed"] == 2  # T0 is 22:00 UTC
    assert st._con.execute("SELECT COUNT(*) FROM chunk").fetchone()[0] == 3 * 2 * 2
    _same(_answers(st), expect)
    st.close()
    ro = SqliteStore(path, read_only=True)
    _same(_answers(ro), expect)
    ro.close()


def test_a_newer_store_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite"
    SqliteStore(path).close()
    with sqlite3.connect(path) as con:
        con.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer than this dcim"):
        SqliteStore(path)


def test_space_goes_back_after_retention(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    st = SqliteStore(path, retention_raw_days=1, retention_1m_days=1)
    for day in range(4):
        rows = [
            Reading(
                "pdu",
                {"device": f"p{i % 50}"},
                {"power_w": 100.0 + (i * 37 % 1000) / 7, "state": f"s{i % 5}"},
                T0 + day * 24 * H + i * S,
            )  # fmt: skip
            for i in range(0, 86400, 2)
        ]
        st.write(rows)
    st.maintain(now_ns=T0 + 3 * 24 * H)  # rolled up and packed; nothing old enough yet
    st._con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    full = os.path.getsize(path)
    stats = st.maintain(now_ns=T0 + 6 * 24 * H)
    assert stats["raw_deleted"] > 0 and stats["minutes_deleted"] > 0
    assert stats["pages_freed"] > 0
    st._con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert os.path.getsize(path) < full / 2, (full, os.path.getsize(path))
    # the hourly rollups are kept: the count of the first day is still there
    got = st.aggregate(measurement="pdu", field="power_w", start_ns=T0, end_ns=T0 + 24 * H,
                       fn="count")  # fmt: skip
    assert got[0].value == 43200
    st.close()


def test_an_upgraded_store_cut_inside_a_day_packs_whole_days(tmp_path: Path) -> None:
    """Version 1 deleted raw rows by the hour: packing starts at that day's start."""
    path = tmp_path / "old.sqlite"
    st = SqliteStore(path)
    st.write(meter_dataset(T0, 5 * H, seed=4))
    st.maintain(now_ns=T0 + 5 * H)  # rolled up to T0 + 4 h
    cut = T0 + 3 * H  # 01:00 UTC
    st._con.execute("DELETE FROM point WHERE time_ns < ?", (cut,))
    st._con.execute("DROP TABLE chunk")  # version 1 had none (the first day's: before cut)
    st._con.execute("DROP TABLE chunk_time")
    st._con.execute("INSERT OR REPLACE INTO rollup_state VALUES ('raw_from_ns', ?)", (cut,))
    st._con.execute("DELETE FROM rollup_state WHERE name = 'packed_to_ns'")
    st._con.execute("PRAGMA user_version=1")
    st.close()
    st = SqliteStore(path)
    assert st.maintain(now_ns=T0 + 30 * H)["days_packed"] == 1
    days = [d for (d,) in st._con.execute("SELECT DISTINCT day_ns FROM chunk")]
    assert days == [T0 + 2 * H]  # the UTC day from 00:00
    left = st.aggregate(measurement="energy_meter", field="power_w", start_ns=cut,
                        end_ns=T0 + 5 * H, fn="count")  # fmt: skip
    assert left and (left[0].value or 0) > 0
    st.close()
