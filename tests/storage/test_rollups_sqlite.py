"""Embedded store: maintain() rolls up closed hours, aggregate answers from the rollups exactly
as from the raw points, late points redo their hour, old raw rows are deleted."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from dcim.reading import Reading
from dcim.storage import chunks
from dcim.storage.base import Row, align_windows, floor_to, plan_pieces
from dcim.storage.sqlite import SqliteStore, _times_loader
from tests.storage.helpers import lone_power, means_by_field, meter_dataset

S = 1_000_000_000
H = 3600 * S
T0 = 472_222 * H  # 2023-11-14 22:00 UTC, an hour boundary
SPAN = 5 * H


def dataset() -> list[Reading]:
    """Three meters over five hours, irregular times, a gap, ints, floats and a string."""
    return meter_dataset(T0, SPAN, seed=11)


def _same(a: list[Row], b: list[Row]) -> None:
    assert [(r.tags, r.time_ns) for r in a] == [(r.tags, r.time_ns) for r in b]
    for x, y in zip(a, b, strict=True):
        assert x.value == pytest.approx(y.value, rel=1e-12), (x, y)


def _counts(stats: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in stats.items() if k in ("hours_rolled", "hours_redone", "raw_deleted")}


def _kinds(st: SqliteStore) -> dict[str, int]:
    """Chunks, and raw rows left."""
    q = "SELECT (SELECT COUNT(*) FROM chunk), (SELECT COUNT(*) FROM point)"
    chunk, point = st._con.execute(q).fetchone()
    return {"chunk": chunk, "point": point}


def _stores(tmp_path: Path, **kw: Any) -> tuple[SqliteStore, SqliteStore]:
    raw, rolled = SqliteStore(tmp_path / "raw.sqlite"), SqliteStore(tmp_path / "r.sqlite", **kw)
    for st in (raw, rolled):
        st.write(dataset())
    return raw, rolled


FNS = ["mean", "min", "max", "first", "last", "count", "sum"]
EVERY = [None, 60, 300, 3600, 7200]
SHAPES = [(None, ()), (None, ("device",)), ({"room": "r1"}, ("device",)), ({"room": ""}, ())]


def test_pieces_plan() -> None:
    m = 60 * S
    # hour-multiple windows: raw edges, 1-minute rollups up to the hours, 1-hour rollups
    assert plan_pieces("last", 17 * S, 3 * H + 5 * m + 3 * S, 3600, 10 * H) == [
        (17 * S, m, 0), (m, H, 60), (H, 3 * H, 3600), (3 * H, 3 * H + 5 * m, 60),
        (3 * H + 5 * m, 3 * H + 5 * m + 3 * S, 0),
    ]  # fmt: skip
    # rollups only before rollup_before; windows that are not whole minutes: raw only
    assert plan_pieces("count", 0, 3 * H, None, 2 * H + 30 * S) == [
        (0, 2 * H, 3600),
        (2 * H, 3 * H, 0),
    ]
    assert plan_pieces("count", 0, 3 * H, 45, 10 * H) == [(0, 3 * H, 0)]
    assert plan_pieces("integral", 0, 3 * H, 60, 10 * H) == [(0, 3 * H, 0)]
    assert plan_pieces("mean", 0, 3 * H, 60, None) == [(0, 3 * H, 0)]


def test_rollups_answer_like_raw(tmp_path: Path) -> None:
    """Not aligned ranges too: the edges come from the raw points."""
    raw, rolled = _stores(tmp_path)
    assert _counts(rolled.maintain(now_ns=T0 + 10 * H)) == {
        "hours_rolled": 9, "hours_redone": 0, "raw_deleted": 0,
    }  # fmt: skip
    assert rolled.maintain(now_ns=T0 + 10 * H)["hours_rolled"] == 0
    # the UTC days rolled up are packed in chunks (T0 is 22:00: two days), numbers only
    assert rolled.maintain(now_ns=T0 + 30 * H)["days_packed"] == 1
    assert _kinds(rolled) == {"chunk": 3 * 2 * 2, "point": len(dataset())}
    # a meter's power and energy, read together, share their times
    assert rolled._con.execute("SELECT COUNT(*) FROM chunk_time").fetchone()[0] == 3 * 2
    assert rolled._rollup_before(T0, T0 + SPAN) == T0 + 29 * H
    ranges = [(T0, T0 + SPAN), (T0 + 17 * S, T0 + 4 * H + 1234 * S), (T0 - H, T0 + 2 * H)]
    for fn, every, (where, group_by), (a, b), field in itertools.product(
        FNS, EVERY, SHAPES, ranges, ["power_w", "energy_wh_total"]
    ):
        kw = dict(measurement="energy_meter", field=field, start_ns=a, end_ns=b, fn=fn,
                  every_s=every, where=where, group_by=group_by)  # fmt: skip
        expect = raw.aggregate(**kw)  # type: ignore[arg-type]
        assert expect
        _same(rolled.aggregate(**kw), expect)  # type: ignore[arg-type]
    for st in (raw, rolled):
        st.close()


def test_retention_deletes_raw_and_rollups_still_answer(tmp_path: Path) -> None:
    raw, rolled = _stores(tmp_path, retention_raw_days=1)
    stats = rolled.maintain(now_ns=T0 + 3 * 24 * H)  # whole UTC days: T0 is 22:00
    assert stats["raw_deleted"] == len(dataset()) * 3  # three fields each
    assert rolled._con.execute("SELECT COUNT(*) FROM point").fetchone()[0] == 0
    for fn, every, (where, group_by), field in itertools.product(
        FNS, EVERY, SHAPES, ["power_w", "energy_wh_total", "status"]
    ):
        if field == "status" and fn != "count":
            continue
        kw = dict(measurement="energy_meter", field=field, start_ns=T0 - H, end_ns=T0 + SPAN,
                  fn=fn, every_s=every, where=where, group_by=group_by)  # fmt: skip
        expect = raw.aggregate(**kw)  # type: ignore[arg-type]
        assert expect
        _same(rolled.aggregate(**kw), expect)  # type: ignore[arg-type]
    # first/last without windows keep the time of the point
    kw = dict(measurement="energy_meter", field="power_w", start_ns=T0, end_ns=T0 + SPAN,
              group_by=("device",))  # fmt: skip
    for fn in ("first", "last"):
        _same(rolled.aggregate(fn=fn, **kw), raw.aggregate(fn=fn, **kw))  # type: ignore[arg-type]
    # a point older than the retention, written later, is dropped like InfluxDB does
    late = Reading("energy_meter", {"device": "em1"}, {"power_w": 1.0}, T0 + 30 * S)
    rolled.write([late])
    assert _counts(rolled.maintain(now_ns=T0 + 3 * 24 * H)) == {
        "hours_rolled": 0, "hours_redone": 0, "raw_deleted": 1,
    }  # fmt: skip
    for st in (raw, rolled):
        st.close()


def test_late_points_redo_their_hour(tmp_path: Path) -> None:
    raw, rolled = _stores(tmp_path)
    rolled.maintain(now_ns=T0 + SPAN + H)
    late = [
        Reading("energy_meter", {"site": "paris", "device": "em2", "room": "r1"},
                {"power_w": 9999.5, "energy_wh_total": 10**6}, T0 + H + 900 * S),
        Reading("energy_meter", {"site": "paris", "device": "em9"},
                {"power_w": -1.0, "energy_wh_total": 1}, T0 + 3 * H + 1),
    ]  # fmt: skip
    for st in (raw, rolled):
        st.write(late)
    assert rolled._rollup_before(T0, T0 + SPAN) == T0 + H  # the first hour to redo
    assert rolled._rollup_before(T0 + 4 * H, T0 + SPAN) == T0 + SPAN  # the watermark

    def check() -> None:
        for fn, every in itertools.product(FNS, [None, 60, 3600]):
            kw = dict(measurement="energy_meter", field="power_w", start_ns=T0,
                      end_ns=T0 + SPAN, fn=fn, every_s=every, group_by=("device",))  # fmt: skip
            _same(rolled.aggregate(**kw), raw.aggregate(**kw))  # type: ignore[arg-type]

    assert _kinds(rolled)["chunk"] == 3 * 2  # the first UTC day; late points: rows beside
    check()  # answered from the raw points from the first dirty hour on
    assert rolled.maintain(now_ns=T0 + SPAN + H)["hours_redone"] == 2
    # em2's chunks of the first day rewritten with its late point (em9's day: not packed)
    assert _kinds(rolled)["chunk"] == 3 * 2
    sid, day, data = rolled._con.execute(
        "SELECT c.series_id, c.day_ns, c.data FROM chunk c JOIN series s ON s.id = c.series_id "
        "JOIN field_key f ON f.id = c.field_id WHERE s.tags LIKE '%em2%' AND f.name = 'power_w'"
    ).fetchone()
    assert 9999.5 in chunks.decode(data, _times_loader(rolled._con, sid, day))[1]
    assert not rolled._con.execute(  # no row left in the packed day but the text ones
        "SELECT 1 FROM point WHERE time_ns < ? AND typeof(value) != 'text'", (T0 + 2 * H,)
    ).fetchall()
    assert rolled._rollup_before(T0, T0 + SPAN) == T0 + SPAN  # the watermark
    check()  # the redone rollups hold the late points
    for st in (raw, rolled):
        st.close()


def test_maintain_on_an_empty_store_and_read_only(tmp_path: Path) -> None:
    st = SqliteStore(tmp_path / "e.sqlite", retention_raw_days=30)
    assert _counts(st.maintain()) == {"hours_rolled": 0, "hours_redone": 0, "raw_deleted": 0}
    st.write(dataset()[:5])
    st.close()
    ro = SqliteStore(tmp_path / "e.sqlite", read_only=True)
    with pytest.raises(Exception, match="read-only"):
        ro.maintain()
    ro.close()


def _days_dataset() -> list[Reading]:
    """Over two UTC days and a bit (T0 is 22:00 UTC), so whole days come from rollup_1d."""
    return meter_dataset(T0, 52 * H, seed=5)


def _check_days(rolled: SqliteStore, raw: SqliteStore, *, late: bool = False) -> None:
    day = 86400 * S
    ranges = [(T0, T0 + 52 * H), (T0 + 2 * H, T0 + 50 * H), (T0 + 77 * S, T0 + 51 * H + 5 * S)]
    for fn, every, (a, b), field in itertools.product(
        FNS, [None, 86400, 3600], ranges, ["power_w", "energy_wh_total"]
    ):
        kw = dict(measurement="energy_meter", field=field, start_ns=a, end_ns=b, fn=fn,
                  every_s=every, group_by=("device",))  # fmt: skip
        _same(rolled.aggregate(**kw), raw.aggregate(**kw))  # type: ignore[arg-type]
    if not late:  # the whole days are read from the daily rollups
        pieces = plan_pieces("last", T0, T0 + 52 * H, 86400, T0 + 52 * H, rolled._levels)
        assert (T0 + 2 * H, T0 + 2 * H + 2 * day, 86400) in pieces


def test_daily_rollups_answer_like_raw_and_are_redone(tmp_path: Path) -> None:
    raw, rolled = SqliteStore(tmp_path / "raw.sqlite"), SqliteStore(tmp_path / "r.sqlite")
    for st in (raw, rolled):
        st.write(_days_dataset())
    rolled.maintain(now_ns=T0 + 60 * H)
    days = rolled._con.execute("SELECT COUNT(DISTINCT time_ns) FROM rollup_1d").fetchone()[0]
    assert days == 4  # 22:00 on the first day to 02:00 on the fourth
    _check_days(rolled, raw)
    # a late point in a rolled-up day: its hour is redone, and its day with it
    late = Reading("energy_meter", {"site": "paris", "device": "em1", "room": "r1"},
                   {"power_w": 123456.0, "energy_wh_total": 5}, T0 + 30 * H + 7 * S)  # fmt: skip
    for st in (raw, rolled):
        st.write([late])
    _check_days(rolled, raw, late=True)  # from the raw points from the dirty hour on
    assert rolled.maintain(now_ns=T0 + 60 * H)["hours_redone"] == 1
    _check_days(rolled, raw)
    for st in (raw, rolled):
        st.close()


def test_a_store_from_before_the_daily_rollups(tmp_path: Path) -> None:
    """Read-only, it answers from the hours; opened for writing, its days are built."""
    raw, old = SqliteStore(tmp_path / "raw.sqlite"), SqliteStore(tmp_path / "old.sqlite")
    for st in (raw, old):
        st.write(_days_dataset())
    old.maintain(now_ns=T0 + 60 * H)
    built = old._con.execute("SELECT * FROM rollup_1d ORDER BY 1, 2, 3").fetchall()
    assert len(built) == 3 * 3 * 4  # devices, fields, days
    old._con.execute("DROP TABLE rollup_1d")
    old.close()
    ro = SqliteStore(tmp_path / "old.sqlite", read_only=True)
    assert 86400 not in ro._levels
    _check_days(ro, raw, late=True)
    ro.close()
    upgraded = SqliteStore(tmp_path / "old.sqlite")
    assert upgraded._con.execute("SELECT * FROM rollup_1d ORDER BY 1, 2, 3").fetchall() == built
    _check_days(upgraded, raw)
    for st in (raw, upgraded):
        st.close()


def test_a_multi_batch_backfill_rolls_each_hour_up_once(tmp_path: Path) -> None:
    """Late points written in many batches (a backfill behind the watermark, and single
    readings as the forwarder's bisection writes them): the writes only mark their hours,
    maintain() rolls each hour up once (one statement per level and hour chunk)."""
    st = SqliteStore(tmp_path / "s.sqlite")
    st.write(dataset()[:1])
    st.maintain(now_ns=T0 + 30 * H)  # the watermark: everything after is late
    statements: list[str] = []
    st._con.set_trace_callback(statements.append)
    data = dataset()
    for i in range(0, len(data), 50):
        st.write(data[i : i + 50])
    for r in data[:20]:
        st.write([r])
    assert not [q for q in statements if "INTO rollup_1" in q]  # no rollup per write
    assert st.maintain(now_ns=T0 + 30 * H)["hours_redone"] == 5
    rollups = [q for q in statements if "INSERT OR REPLACE INTO rollup_1" in q]
    # per hour: the 1-minute and 1-hour rollups and the day: once each
    assert len(rollups) == 3 * 5
    assert len(data) // 50 >= 10
    st._con.set_trace_callback(None)
    assert st.rollup_status()["dirty_hours"] == 0
    st.close()


def test_minute_rollups_kept_for_their_horizon_the_others_for_ever(tmp_path: Path) -> None:
    raw = SqliteStore(tmp_path / "raw.sqlite")
    rolled = SqliteStore(tmp_path / "r.sqlite", retention_1m_days=1)
    for st in (raw, rolled):
        st.write(_days_dataset())
    now = T0 + 60 * H
    stats = rolled.maintain(now_ns=now)
    cut = (now - 86400 * S) // (86400 * S) * (86400 * S)
    assert stats["minutes_deleted"] > 0
    con = rolled._con
    assert con.execute("SELECT MIN(time_ns) FROM rollup_1m").fetchone()[0] >= cut
    assert con.execute("SELECT COUNT(*) FROM rollup_1h WHERE time_ns < ?", (cut,)).fetchone()[0]
    assert rolled.rollup_status()["rolled_to_ns"] is not None
    # 1-minute windows before the cut come from the raw points, after it from the rollups
    for fn, every, field in itertools.product(FNS, [None, 60, 300, 3600, 86400], ["power_w"]):
        kw = dict(measurement="energy_meter", field=field, start_ns=T0 + 77 * S,
                  end_ns=T0 + 52 * H, fn=fn, every_s=every, group_by=("device",))  # fmt: skip
        _same(rolled.aggregate(**kw), raw.aggregate(**kw))  # type: ignore[arg-type]
    assert rolled.maintain(now_ns=now)["minutes_deleted"] == 0  # done once
    for st in (raw, rolled):
        st.close()


def test_window_means_as_the_means_per_field(tmp_path: Path) -> None:
    """``window_means`` gives exactly ``aggregate(fn="mean")`` of each field on the windows
    they all have: from the rollups as stored (one series, rollup-long windows), otherwise
    from ``aggregate``; a window with one field only is left out."""
    raw, rolled = _stores(tmp_path)
    extra = lone_power(T0 + SPAN)
    for st in (raw, rolled):
        st.write([extra])
    rolled.maintain(now_ns=T0 + 10 * H)
    fields = ("power_w", "energy_wh_total")
    shapes = [({"device": "em1"}, 60), ({"device": "em2"}, 60), ({"device": "em1"}, 3600),
              ({"device": "em3"}, 300), ({"room": "r1"}, 60), ({"device": "none"}, 60)]  # fmt: skip
    stored = 0
    for st, (where, every), (a, b) in itertools.product(
        (raw, rolled), shapes, [(T0, T0 + 6 * H), (T0 + 17 * S, T0 + 4 * H + 1234 * S)]
    ):
        kw = dict(measurement="energy_meter", start_ns=a, end_ns=b, every_s=every, where=where)
        expect = means_by_field(st, fields, **kw)
        assert st.window_means(fields=fields, **kw) == expect, (st.path, kw)  # type: ignore[arg-type]
        with st._reader() as con:
            fast = st._stored_means(con, "energy_meter", fields, a, b, every, where)
        if fast is not None:
            stored += 1
            assert fast == expect
        if where["device" if "device" in where else "room"] in ("em1", "em2") and every != 300:
            assert expect[0]  # windows to compare
    # the rollups answered where they can: em1 and em2 at 1 min and 1 h over the whole hours
    assert stored == 3
    lone = floor_to(extra.time_ns, 60)
    got = rolled.window_means(measurement="energy_meter", fields=fields, start_ns=T0,
                              end_ns=T0 + 6 * H, every_s=60, where={"device": "em1"})  # fmt: skip
    only_power = rolled.window_means(measurement="energy_meter", fields=("power_w",),
                                     start_ns=T0, end_ns=T0 + 6 * H, every_s=60,
                                     where={"device": "em1"})  # fmt: skip
    assert lone in only_power[0] and lone not in got[0]
    assert only_power[1][0][only_power[0].index(lone)] == 123.25
    for st in (raw, rolled):
        st.close()


def test_align_windows() -> None:
    a, b = [(1, 1.0), (2, 2.0), (3, 3.0)], [(1, 10.0), (3, 30.0)]
    assert align_windows([a, b]) == ([1, 3], [[1.0, 3.0], [10.0, 30.0]])
    assert align_windows([a, a]) == ([1, 2, 3], [[1.0, 2.0, 3.0]] * 2)
    assert align_windows([a, []]) == ([], [[], []])
    assert align_windows([list(reversed(a))]) == ([1, 2, 3], [[1.0, 2.0, 3.0]])
