"""``dcim db init`` on the real influxd: retention policies, continuous queries, idempotence;
the rollup statement's values; aggregate from the rollups as from the raw points."""

from __future__ import annotations

import itertools
import json
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dcim.cli import main
from dcim.config import InfluxSink
from dcim.dbinit import init_sink
from dcim.forwarder import Forwarder
from dcim.reading import Reading
from dcim.spool import Spool
from dcim.storage.base import Row
from dcim.storage.influx import InfluxStore, rollup_select
from dcim.testing.servers import InfluxServer
from tests.storage.helpers import influx_store, lone_power, means_by_field, meter_dataset

S = 1_000_000_000
H = 3600 * S
NOW = time.time_ns()
T0 = NOW - NOW % H - 30 * H  # an hour boundary, out of reach of the running CQs
SPAN = 4 * H


def dataset() -> list[Reading]:
    """Three meters over four hours, irregular times (distinct across series), a gap."""
    return meter_dataset(T0, SPAN, seed=5)


def _sink(st: InfluxStore, **kw: Any) -> InfluxSink:
    return st.sink.model_copy(update=kw)


def _rps(srv: InfluxServer, db: str) -> dict[str, tuple[str, bool]]:
    res = srv.query(f'SHOW RETENTION POLICIES ON "{db}"', db)["results"][0]["series"][0]
    return {r[0]: (r[1], r[4]) for r in res["values"]}


def _shards(srv: InfluxServer, db: str) -> dict[str, str]:
    res = srv.query(f'SHOW RETENTION POLICIES ON "{db}"', db)["results"][0]["series"][0]
    return {r[0]: r[2] for r in res["values"]}


def _cqs(srv: InfluxServer, db: str) -> dict[str, str]:
    series = srv.query("SHOW CONTINUOUS QUERIES", db)["results"][0]["series"]
    return {r[0]: r[1] for s in series if s["name"] == db for r in s.get("values", [])}


def test_db_init_creates_policies_and_cqs_idempotently(influxdb: InfluxServer) -> None:
    st = influx_store(influxdb, "init")
    st.write([Reading("pdu", {"device": "p1"}, {"power_w": 1.0}, NOW)])  # creates it
    sink, db = st.sink, st.sink.database
    first = init_sink(sink)
    assert first[0] == f"database {db}: exists"
    assert (
        "retention policy raw (raw points, default): created, keeps 30d in shard groups of 1d"
        in first
    )
    assert any(line.startswith("note: the default policy was autogen") for line in first)
    assert _rps(influxdb, db) == {
        "autogen": ("0s", False),
        "raw": ("720h0m0s", True),
        "rp_1m": ("9600h0m0s", False),
        "rp_1h": ("0s", False),
        "rp_1d": ("0s", False),
    }
    # a year of rp_1h (or rp_1d) in one or two shards, not 52
    assert _shards(influxdb, db) == {
        "autogen": "168h0m0s",
        "raw": "24h0m0s",
        "rp_1m": "168h0m0s",
        "rp_1h": "8736h0m0s",
        "rp_1d": "8736h0m0s",
    }
    cqs = _cqs(influxdb, db)
    assert set(cqs) == {"cq_1m", "cq_1h", "cq_1d"}
    assert "RESAMPLE FOR 5m BEGIN SELECT mean(*), min(*), max(*), first(*), last(*), " \
        f"count(*), sum(*) INTO {db}.rp_1m.:MEASUREMENT FROM {db}.raw./.*/ GROUP BY " \
        "time(1m), * END" in cqs["cq_1m"]  # fmt: skip
    assert f"INTO {db}.rp_1h.:MEASUREMENT FROM {db}.raw./.*/ GROUP BY time(1h), *" in cqs["cq_1h"]
    assert "RESAMPLE FOR 2d BEGIN" in cqs["cq_1d"]
    assert f"INTO {db}.rp_1d.:MEASUREMENT FROM {db}.raw./.*/ GROUP BY time(1d), *" in cqs["cq_1d"]
    assert (
        "retention policy rp_1d (1-day rollups): created, keeps INF in shard groups of 52w" in first
    )

    assert (
        first[-1].startswith("rollups complete from ") and "dcim_rollups in rp_1h: set" in first[-1]
    )
    frm = InfluxStore(sink).complete_from()
    assert frm is not None and frm % H == 0 and 0 < frm - time.time_ns() <= H

    again = init_sink(sink)
    assert again[0] == f"database {db}: exists"
    assert all("unchanged" in line for line in again[1:]), again
    assert _cqs(influxdb, db) == cqs

    changed = init_sink(_sink(influx_store(influxdb), database=db, retention_raw="7d",
                              retention_1h="520w", retention_1d="1040w"))  # fmt: skip
    assert (
        "retention policy raw (raw points, default): altered, keeps 7d in shard groups of 1d "
        "(was 30d in 1d, default; new shard groups only)"
    ) in changed
    assert (
        "retention policy rp_1h (1-hour rollups): altered, keeps 520w in shard groups of 52w "
        "(was INF in 52w; new shard groups only)"
    ) in changed
    assert (
        "retention policy rp_1d (1-day rollups): altered, keeps 1040w in shard groups of 52w "
        "(was INF in 52w; new shard groups only)"
    ) in changed
    # a retention shorter than the kind's shard groups: shards as long as the retention
    short = init_sink(_sink(influx_store(influxdb), database=db, retention_raw="7d",
                            retention_1h="520w", retention_1m="3d",
                            retention_1d="1040w"))  # fmt: skip
    assert (
        "retention policy rp_1m (1-minute rollups): altered, keeps 3d in shard groups of 3d "
        "(was 400d in 1w; new shard groups only)"
    ) in short
    assert _shards(influxdb, db)["rp_1m"] == "72h0m0s"
    assert _rps(influxdb, db)["raw"] == ("168h0m0s", True)

    # another raw policy: created, made the default, the CQs read from it
    other = init_sink(_sink(influx_store(influxdb), database=db, retention_policy="short"))
    assert any("continuous query cq_1m: replaced" in line for line in other)
    assert _rps(influxdb, db)["short"] == ("720h0m0s", True)
    assert _rps(influxdb, db)["raw"][1] is False
    assert f"FROM {db}.short./.*/" in _cqs(influxdb, db)["cq_1h"]


@pytest.fixture(scope="module")
def rolled(influxdb: InfluxServer) -> Iterator[InfluxStore]:
    """A database set up by db init; the data is hours old, so writing it rolls it up."""
    st = influx_store(influxdb, "roll")
    init_sink(st.sink)
    st.write(dataset())
    st.flush_rollups()
    yield st
    st.close()


def _expected(level_s: int) -> dict[tuple[str, int], dict[str, Any]]:
    """The rollup rows computed here: (device, window) -> {mean_power_w: ..., ...}."""
    groups: dict[tuple[str, int], list[Reading]] = defaultdict(list)
    for r in dataset():
        groups[(r.tags["device"], r.time_ns - r.time_ns % (level_s * S))].append(r)
    out = {}
    for key, rs in groups.items():
        row: dict[str, Any] = {}
        for f in ("power_w", "energy_wh_total"):
            vals = [float(r.fields[f]) for r in rs]
            row |= {f"mean_{f}": sum(vals) / len(vals), f"min_{f}": min(vals),
                    f"max_{f}": max(vals), f"first_{f}": vals[0], f"last_{f}": vals[-1],
                    f"count_{f}": len(vals), f"sum_{f}": sum(vals)}  # fmt: skip
        row |= {"count_status": len(rs), "first_status": "ok", "last_status": "ok"}
        out[key] = row
    return out


@pytest.mark.parametrize(("level", "rp"), [(60, "rp_1m"), (3600, "rp_1h"), (86400, "rp_1d")])
def test_rollup_statement_values(
    rolled: InfluxStore, influxdb: InfluxServer, level: int, rp: str
) -> None:
    """The CQ body run over a past range (what write() did for these late points)."""
    db = rolled.sink.database
    assert rolled.rollup(T0, T0 + SPAN) > 0  # idempotent: the same points again
    res = influxdb.query(f'SELECT * FROM "{rp}"."energy_meter" GROUP BY "device"', db)
    got = {}
    for s in res["results"][0]["series"]:
        for values in s["values"]:
            row = dict(zip(s["columns"], values, strict=True))
            t = row.pop("time")
            row.pop("site")
            row.pop("room", None)
            got[(s["tags"]["device"], t)] = {k: v for k, v in row.items() if v is not None}
    expected = _expected(level)
    assert got.keys() == expected.keys()
    for key, row in expected.items():
        texts = {k: got[key].pop(k) for k in ("first_status", "last_status")}
        assert texts == {k: row.pop(k) for k in texts}
        assert got[key] == pytest.approx(row, rel=1e-12), key
    assert "WHERE time >= 1 AND time < 2 GROUP BY time(1m), *" in rollup_select(
        rolled.sink, 60, 1, 2
    )


def _same(a: list[Row], b: list[Row]) -> None:
    assert [(r.tags, r.time_ns) for r in a] == [(r.tags, r.time_ns) for r in b]
    for x, y in zip(a, b, strict=True):
        assert x.value == pytest.approx(y.value, rel=1e-12), (x, y)


FNS = ["mean", "min", "max", "first", "last", "count", "sum"]
SHAPES = [(None, ()), ({"room": "r1"}, ("device",)), ({"room": ""}, ("room", "device"))]


def test_aggregate_from_rollups_like_raw(rolled: InfluxStore) -> None:
    raw = InfluxStore(rolled.sink)  # raw kept 30d: the default answers from raw points
    fast = InfluxStore(rolled.sink, rollup_before_ns=NOW)  # rollups for all closed windows
    assert raw._rollup_before("last", 60) == pytest.approx(NOW - 30 * 24 * H, abs=2 * H)
    ranges = [(T0, T0 + SPAN), (T0 + 17 * S, T0 + 3 * H + 1234 * S)]
    for fn, every, (where, group_by), (a, b), field in itertools.product(
        FNS, [None, 60, 300, 3600, 7200], SHAPES, ranges, ["power_w", "energy_wh_total"]
    ):
        if fn in ("first", "last") and "device" not in group_by:
            continue  # rollups keep window starts: exact for one series per group only
        kw = dict(measurement="energy_meter", field=field, start_ns=a, end_ns=b, fn=fn,
                  every_s=every, where=where, group_by=group_by)  # fmt: skip
        expect = raw.aggregate(**kw)  # type: ignore[arg-type]
        assert expect
        got = fast.aggregate(**kw)  # type: ignore[arg-type]
        if fn in ("first", "last") and every is None:  # the time of a rollup window's start
            assert [(r.tags, r.value) for r in got] == [(r.tags, r.value) for r in expect]
            assert all(0 <= e.time_ns - g.time_ns < H for g, e in zip(got, expect, strict=True))
            continue
        _same(got, expect)


def test_first_and_last_beyond_raw_retention_from_the_rollups(rolled: InfluxStore) -> None:
    """Raw points gone (read from an empty policy): a meter index at a boundary is still
    found, the value exact, the time the start of its rollup window (a minute or an hour)."""
    raw = InfluxStore(rolled.sink)
    expired = InfluxStore(_sink(rolled, retention_policy="autogen"), rollup_before_ns=NOW)
    M = 60 * S
    for fn, (a, b) in itertools.product(
        ["first", "last"],
        [(T0 + H - 2 * M, T0 + H), (T0 + H, T0 + H + 2 * M), (T0 + 5 * M, T0 + 3 * H + 7 * M)],
    ):
        kw = dict(measurement="energy_meter", field="energy_wh_total", start_ns=a, end_ns=b,
                  fn=fn, group_by=("device",))  # fmt: skip
        exact = {r.tags["device"]: r for r in raw.aggregate(**kw)}  # type: ignore[arg-type]
        got = {r.tags["device"]: r for r in expired.aggregate(**kw)}  # type: ignore[arg-type]
        assert got.keys() == exact.keys() and exact, (fn, a, b)
        for dev, r in got.items():
            assert r.value == exact[dev].value
            window = H if (fn, b - a) == ("last", 3 * H + 2 * M) else M
            assert r.time_ns % M == 0 and 0 <= exact[dev].time_ns - r.time_ns < window
    # a range holding no whole minute cannot be answered once the raw points are gone
    assert expired.aggregate(measurement="energy_meter", field="energy_wh_total",
                             start_ns=T0 + H - 30 * S, end_ns=T0 + H, fn="last") == []  # fmt: skip


def test_rollups_only_beyond_raw_retention(influxdb: InfluxServer) -> None:
    st = influx_store(influxdb, "horizon")
    assert st._rollup_before("count", 3600) is None  # no database, no rollups
    st = InfluxStore(_sink(st, retention_raw="2h"))
    init_sink(st.sink)
    cut = st._rollup_before("count", 3600)
    assert cut is not None and cut % H == 0 and 0 < cut - (time.time_ns() - 2 * H) <= H + 60 * S
    assert st._rollup_before("first", None) == cut  # the window start stands for its time
    # db init marked the rollups complete from the next hour: a query starting there uses
    # them up to two hours ago (the CQs are done), not only before the raw retention
    frm = st.complete_from()
    assert frm is not None
    assert st._rollup_before("count", 3600, frm) == max(cut, (time.time_ns() - 2 * H) // H * H)
    assert st._rollup_before("count", 3600, frm - 1) == cut
    assert st._rollup_before("integral", 60) is None
    forever = InfluxStore(_sink(st, retention_raw="INF"))
    init_sink(forever.sink)
    assert forever._rollup_before("count", 3600) is None  # raw points kept: they answer


@pytest.mark.parametrize(("precision", "unit"), [("s", S), ("ms", 10**6), ("us", 1000)])
def test_write_precision(influxdb: InfluxServer, precision: str, unit: int) -> None:
    st = InfluxStore(_sink(influx_store(influxdb, "prec"), precision=precision))
    t = NOW - NOW % H + 123_456_789_123
    st.write([Reading("pdu", {"device": "p1"}, {"power_w": 1.0}, t)])
    rows = st.aggregate(measurement="pdu", field="power_w", start_ns=t - H, end_ns=t + H,
                        fn="last")  # fmt: skip
    assert [r.time_ns for r in rows] == [t - t % unit]


def _config(tmp_path: Path, sink: dict[str, Any]) -> str:
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump({"site": {"name": "x"}, "storage": {"sink": sink}}))
    return str(path)


def test_cli_db_init(
    influxdb: InfluxServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _config(tmp_path, {"type": "influxdb", "url": influxdb.url, "database": "cli_init"})
    assert main(["db", "init", cfg]) == 0
    out = capsys.readouterr().out
    assert "database cli_init: created" in out and "continuous query cq_1h: created" in out
    emb = _config(tmp_path, {"type": "embedded", "path": str(tmp_path / "s.sqlite")})
    assert main(["db", "init", emb]) == 0
    assert main(["db", "init", emb]) == 0
    out = capsys.readouterr().out
    assert "s.sqlite: created" in out and "s.sqlite: schema checked" in out
    assert "raw points kept 400 days" in out
    bad = _config(tmp_path, {"type": "influxdb", "url": "http://127.0.0.1:9", "timeout_s": 1})
    assert main(["db", "init", bad]) == 1
    assert "unreachable" in capsys.readouterr().err


def test_bad_retention_is_a_config_error(tmp_path: Path) -> None:
    cfg = _config(tmp_path, {"type": "influxdb", "url": "http://x", "retention_1m": "30x"})
    with pytest.raises(SystemExit):
        main(["db", "init", cfg])


def test_a_multi_batch_backfill_rolls_each_hour_up_once(
    influxdb: InfluxServer, tmp_path: Path
) -> None:
    """Six hours of late points forwarded from the spool in a dozen batches, one of them
    with a refused reading isolated by bisection: the rollups run once, after the batches
    (an hour per statement for the 1-minute rollups, six for the 1-hour ones), not per write
    (which was 2 statements per write, some 40 here), and are right."""
    st = influx_store(influxdb, "bf")
    init_sink(st.sink)
    data = meter_dataset(T0, 6 * H, seed=9)
    bad = Reading("energy_meter", {"site": "paris", "device": "em1"}, {"power_w": "text"},
                  T0 + 2 * H + 7)  # fmt: skip
    with Spool(tmp_path / "spool") as sp:
        for i in range(0, len(data), 100):
            sp.append(data[i : i + 100])
        sp.append([bad])
        fwd = Forwarder(sp, st, batch_size=150, flush_interval_s=0.01)
        fwd.start()
        try:
            assert fwd.flush(60)
            deadline = time.monotonic() + 10
            while st.rollups_due() and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            fwd.stop()
        assert sum(q.count for q in sp.quarantined()) == 1
    assert len(data) // 150 >= 10  # a dozen batches and more
    assert st.rollups_due() == 0
    # the 1-minute rollups an hour, the 1-hour ones 6, the 1-day ones a (UTC) day each
    days = len({(T0 + k * H) // (24 * H) for k in range(6)})
    assert st.rollup_statements == 6 + 1 + days
    db = st.sink.database
    for rp in ("rp_1m", "rp_1h", "rp_1d"):
        res = influxdb.query(f'SELECT SUM("count_power_w") FROM "{rp}"."energy_meter"', db)
        assert res["results"][0]["series"][0]["values"][0][1] == len(data), rp


def test_hours_due_for_rollup_survive_a_stop(influxdb: InfluxServer, tmp_path: Path) -> None:
    """A collector that stops (close_within) leaves the hours due in its due file; the next
    store on that file rolls them up, then the file is empty."""
    due = tmp_path / "due.json"
    st = influx_store(influxdb, "due", due_file=due)
    init_sink(st.sink)
    data = meter_dataset(T0, 3 * H, seed=3)
    st.write(data)
    assert json.loads(due.read_text()) == {
        "format": 2,
        "all": [],
        "measurements": {"energy_meter": [T0, T0 + H, T0 + 2 * H]},
    }
    assert due.stat().st_mode & 0o777 == 0o600
    st.close_within(0.0)
    assert st.rollup_statements == 0
    again = InfluxStore(st.sink, due_file=due)
    assert again.rollups_due() == 3
    assert again.flush_rollups() == 3
    assert json.loads(due.read_text()) == {"format": 2, "all": [], "measurements": {}}
    res = influxdb.query(
        'SELECT SUM("count_power_w") FROM "rp_1h"."energy_meter"', st.sink.database
    )
    assert res["results"][0]["series"][0]["values"][0][1] == len(data)


def test_a_late_point_rolls_up_its_measurement_only(influxdb: InfluxServer, tmp_path: Path) -> None:
    """A late ``kpi`` point (the collector writes an hour's an hour after it) rolls up the
    ``kpi`` series of its hour and its day, not the other measurements of that hour (here
    written with their rollups left out, so any statement over them would show); the daily
    rollups of a backfill's days (rollup_days) leave the measurement due to its flush and do
    the others. A due file of the first format (hours only, from the store before) rolls up
    every measurement of its hours."""
    due = tmp_path / "due.json"
    st = influx_store(influxdb, "permeas", due_file=due)
    init_sink(st.sink)
    db = st.sink.database
    data = meter_dataset(T0, 2 * H, seed=6)
    st.supply_rollups(T0, T0 + 2 * H)  # no rollups of these: none in rp_1m, rp_1h, rp_1d
    st.write(data)
    st.supply_rollups(0, 0)
    assert st.rollups_due() == 0
    kpi = Reading("kpi", {"site": "paris", "resolution": "hourly"}, {"pue": 1.31}, T0 + H)
    st.write([kpi])
    assert json.loads(due.read_text())["measurements"] == {"kpi": [T0 + H]}

    def count(rp: str, meas: str, field: str) -> int:
        res = influxdb.query(f'SELECT SUM("count_{field}") FROM "{rp}"."{meas}"', db)
        series = res["results"][0].get("series", [])
        return int(series[0]["values"][0][1]) if series else 0

    st.rollup_days(T0, T0 + 2 * H)  # a backfill's days: energy_meter's, not kpi's (due)
    assert count("rp_1d", "energy_meter", "power_w") == len(data)
    assert count("rp_1d", "kpi", "pue") == 0
    n = st.rollup_statements
    assert st.flush_rollups() == 1 and st.rollups_due() == 0
    assert st.rollup_statements - n == 3  # kpi's hour in rp_1m and rp_1h, its day in rp_1d
    for rp in ("rp_1m", "rp_1h", "rp_1d"):
        assert count(rp, "kpi", "pue") == 1, rp
    assert count("rp_1m", "energy_meter", "power_w") == count("rp_1h", "energy_meter", "power_w")
    assert count("rp_1h", "energy_meter", "power_w") == 0  # not rolled up for the kpi point
    assert json.loads(due.read_text()) == {"format": 2, "all": [], "measurements": {}}
    st.close()
    due.write_text(json.dumps([T0, T0 + H]))  # format 1: every measurement of these hours
    again = InfluxStore(st.sink, due_file=due)
    assert again.rollups_due() == 2
    assert again.flush_rollups() == 2
    for rp in ("rp_1m", "rp_1h", "rp_1d"):
        assert count(rp, "energy_meter", "power_w") == len(data), rp
        assert count(rp, "kpi", "pue") == 1, rp
    assert json.loads(due.read_text()) == {"format": 2, "all": [], "measurements": {}}
    again.close()


def test_window_means_as_the_means_per_field(influxdb: InfluxServer) -> None:
    """``window_means`` gives exactly ``aggregate(fn="mean")`` of each field on the windows
    they all have: one statement for all the fields from the rollups as stored (rollup-long
    windows inside them), otherwise from ``aggregate``; a window with one field only is
    left out."""
    st = influx_store(influxdb, "means")
    init_sink(st.sink)
    extra = lone_power(T0 + SPAN)
    st.write([*dataset(), extra])
    st.flush_rollups()
    raw = InfluxStore(st.sink)  # raw points kept 30 days: they answer
    fast = InfluxStore(st.sink, rollup_before_ns=NOW)  # the rollups of every closed window
    statements: list[str] = []
    query = fast.query

    def counted(q: str, **kw: Any) -> list[dict[str, Any]]:
        statements.append(q)
        return query(q, **kw)

    fast.query = counted  # type: ignore[method-assign]
    fields = ("power_w", "energy_wh_total")
    shapes = [({"device": "em1"}, 60), ({"device": "em2"}, 3600), ({"room": "r1"}, 60),
              ({"device": "em3"}, 300), ({"device": "none"}, 60)]  # fmt: skip
    for store, (where, every), (a, b) in itertools.product(
        (raw, fast), shapes, [(T0, T0 + 5 * H), (T0 + 17 * S, T0 + 3 * H + 1234 * S)]
    ):
        kw = dict(measurement="energy_meter", start_ns=a, end_ns=b, every_s=every, where=where)
        expect = means_by_field(store, fields, **kw)
        statements.clear()
        assert store.window_means(fields=fields, **kw) == expect, kw  # type: ignore[arg-type]
        whole = a == T0 and every in (60, 3600)
        if store is fast and whole:  # one statement, the rollups as stored
            assert len(statements) == 1 and "sum_power_w" in statements[0], statements
        if whole and where.get("device") in ("em1", "em2"):
            assert expect[0]
    got = fast.window_means(measurement="energy_meter", fields=fields, start_ns=T0,
                            end_ns=T0 + 5 * H, every_s=60, where={"device": "em1"})  # fmt: skip
    lone = extra.time_ns - extra.time_ns % (60 * S)
    only_power = fast.window_means(measurement="energy_meter", fields=("power_w",),
                                   start_ns=T0, end_ns=T0 + 5 * H, every_s=60,
                                   where={"device": "em1"})  # fmt: skip
    assert lone not in got[0] and lone in only_power[0]
    assert only_power[1][0][only_power[0].index(lone)] == 123.25
    for s in (st, raw, fast):
        s.close()


def test_a_database_set_up_before_rp_1d_still_rolls_up(influxdb: InfluxServer) -> None:
    """Without ``rp_1d`` (set up by an older ``dcim db init``) late points get their 1-minute
    and 1-hour rollups, the store still answers from them, and no daily statement runs; db
    init adds the policy and its CQ."""
    st = influx_store(influxdb, "old1d")
    init_sink(st.sink)
    db = st.sink.database
    influxdb.query(f'DROP CONTINUOUS QUERY "cq_1d" ON "{db}"', db)
    influxdb.query(f'DROP RETENTION POLICY "rp_1d" ON "{db}"', db)
    old = InfluxStore(st.sink)
    assert old.rollups_ready()
    data = meter_dataset(T0, 2 * H, seed=4)
    old.write(data)
    assert old.flush_rollups() == 2
    assert old.rollup_statements == 2 + 1  # no daily one
    res = influxdb.query('SELECT SUM("count_power_w") FROM "rp_1h"."energy_meter"', db)
    assert res["results"][0]["series"][0]["values"][0][1] == len(data)
    old.close()
    again = init_sink(st.sink)
    assert any(line.startswith("retention policy rp_1d (1-day rollups): created") for line in again)
    assert any(line.startswith("continuous query cq_1d: created") for line in again)
    # the days before: filled from rp_1h, as the daily statement computes them from raw points
    assert any(line.startswith("rp_1d filled from rp_1h up to today: ") for line in again)
    # cq_1d is not one the store reads: the rollups it reads are complete since as before
    assert "dcim_rollups in rp_1h: unchanged" in again[-1]
    assert "rp_1d: unchanged, filled from rp_1h before (marker dcim_rollups)" in init_sink(st.sink)
    q = 'SELECT * FROM "rp_1d"."energy_meter" GROUP BY "device"'

    def days() -> dict[tuple[str, int], dict[str, Any]]:
        res = influxdb.query(q, db)["results"][0]
        return {(s["tags"]["device"], v[0]): dict(zip(s["columns"], v, strict=True))
                for s in res["series"] for v in s["values"]}  # fmt: skip

    filled = days()
    assert filled and sum(r["count_power_w"] for r in filled.values()) == len(data)
    InfluxStore(st.sink).rollup(T0, T0 + 2 * H, levels=(86400,))  # from the raw points
    stated = days()
    assert stated.keys() == filled.keys()
    for key, row in stated.items():
        assert {k for k, v in filled[key].items() if v is None} == {
            k for k, v in row.items() if v is None
        }, key
        texts = {k: v for k, v in row.items() if isinstance(v, str)}
        assert {k: filled[key][k] for k in texts} == texts, key
        nums = {k: v for k, v in row.items() if k not in texts and v is not None}
        assert {k: filled[key][k] for k in nums} == pytest.approx(nums, rel=1e-12), key
