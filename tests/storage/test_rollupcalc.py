"""dcim.storage.rollupcalc against InfluxDB's own rollup statement on the same raw points:
the same points, field names, values (exactly) and field types."""

from __future__ import annotations

import time
from typing import Any

from dcim.config import SiteConfig
from dcim.dbinit import init_sink
from dcim.reading import Reading
from dcim.storage.influx import InfluxStore, rollup_select
from dcim.storage.rollupcalc import Rollups, SuppliedRollups
from dcim.testing.servers import InfluxServer
from dcim.twin.model import SiteModel, backfill
from dcim.twin.site import paris_chapelle
from tests.storage.helpers import influx_store, meter_dataset

S = 1_000_000_000
H = 3600 * S
NOW = time.time_ns()
T0 = NOW - NOW % H - 30 * H  # out of reach of the running CQs


def _data() -> list[Reading]:
    """The reference site's twin over an hour and a half (floats with long sums, an integer
    counter), the meters' dataset (integers, a string, a gap) and a boolean. Field names of
    one type across measurements (InfluxDB's ``/.*/`` wildcard gives a name one type: the
    other measurements' values of that name are not rolled up; ``Rollups.conflicts``)."""
    cfg = SiteConfig.model_validate(paris_chapelle())
    model = SiteModel(cfg, t0=T0 / S, seed=3)
    devices = [d.name for d in cfg.devices if d.role]
    out = [
        r
        for b in backfill(cfg, model, T0 / S, (T0 + H + H // 2) / S, interval_s=10, devices=devices)
        for r in b
    ]
    out += [
        Reading("test_meter", r.tags, {f"t_{k}": v for k, v in r.fields.items()}, r.time_ns)
        for r in meter_dataset(T0, 2 * H, seed=4)
    ]
    out += [
        Reading("door", {"device": "d1"}, {"open": i % 3 == 0}, T0 + i * 7 * S) for i in range(900)
    ]
    return sorted(out, key=lambda r: r.time_ns)


def _stored(srv: InfluxServer, db: str, rp: str) -> dict[Any, dict[str, Any]]:
    q = f'SELECT * FROM "{rp}"./.*/ WHERE time >= {T0} AND time < {T0 + 2 * H} GROUP BY *'
    out: dict[Any, dict[str, Any]] = {}
    for s in srv.query(q, db)["results"][0].get("series", []):
        tags = tuple(sorted((k, v) for k, v in s.get("tags", {}).items() if v))
        for row in s["values"]:
            fields = {c: v for c, v in zip(s["columns"][1:], row[1:], strict=True) if v is not None}
            out[(s["name"], tags, row[0])] = fields
    return out


def _types(srv: InfluxServer, db: str, rp: str) -> dict[Any, str]:
    res = srv.query(f'SHOW FIELD KEYS FROM "{rp}"./.*/', db)["results"][0]["series"]
    return {(s["name"], k): t for s in res for k, t in s["values"]}


def test_rollups_computed_as_influxdb_computes_them(influxdb: InfluxServer) -> None:
    data = _data()
    # the rollup statements over two hours take more than the default 5 s on a loaded machine
    ref = influx_store(influxdb, "rcref", timeout_s=60)
    mine = influx_store(influxdb, "rcmine", timeout_s=60)
    for st in (ref, mine):
        init_sink(st.sink)
        st.supply_rollups(T0, T0 + 2 * H)  # no rollup on write: each side does its own
    for i in range(0, len(data), 5000):
        ref.write(data[i : i + 5000])
    assert ref.rollups_due() == 0
    for level in (60, 3600):
        ref.query(rollup_select(ref.sink, level, T0, T0 + 2 * H), write=True)
    calc = Rollups()
    calc.add(data)
    assert calc.conflicts == set()
    got = calc.pop(T0 + 2 * H)
    assert len(got[60]) > 5000 and len(got[3600]) > 100
    for level, points in got.items():
        mine.write_rollups(level, points)
    for rp in ("rp_1m", "rp_1h"):
        expect = _stored(influxdb, ref.sink.database, rp)
        have = _stored(influxdb, mine.sink.database, rp)
        assert have.keys() == expect.keys()
        for k, fields in expect.items():
            assert have[k] == fields, (k, sorted(have[k].items()), sorted(fields.items()))
        assert _types(influxdb, mine.sink.database, rp) == _types(influxdb, ref.sink.database, rp)
    assert calc.pop(T0 + 3 * H) == {60: [], 3600: []}


def test_a_field_name_of_two_types_is_a_conflict() -> None:
    calc = Rollups()
    calc.add([Reading("a", {}, {"status": 1, "x": 1.0}, 0), Reading("b", {}, {"status": "ok"}, 1)])
    assert calc.conflicts == {"status"}


def test_a_reading_after_its_window_was_popped_is_late() -> None:
    calc = Rollups()
    calc.add([Reading("a", {}, {"x": 1.0}, T0 + H + 1)])
    assert len(calc.pop(T0 + 2 * H)[60]) == 1
    calc.add([Reading("a", {}, {"x": 2.0}, T0 + H + 2), Reading("a", {}, {"x": 3.0}, T0 + 2 * H)])
    assert calc.late == 1 and len(calc.pop(T0 + 3 * H)[3600]) == 1


def test_supplied_hours_are_not_due_others_are(influxdb: InfluxServer) -> None:
    st: InfluxStore = influx_store(influxdb, "rcdue")
    init_sink(st.sink)
    st.supply_rollups(T0, T0 + H)
    r = Reading("em", {"device": "a"}, {"power_w": 1.0}, T0 + 5 * S)
    st.write([r])
    assert st.rollups_due() == 0
    st.write([Reading("em", {"device": "a"}, {"power_w": 1.0}, T0 + H + 5 * S)])
    assert st.rollup_statements == 2 or st.rollups_due() == 1  # due, or already rolled up


def test_a_backfill_supplies_its_whole_hours(influxdb: InfluxServer) -> None:
    """SuppliedRollups over a span from 20 min past an hour to 30 min past the hour two hours
    on: the two whole hours are written by it (no statement), the partial ones rolled up by
    the store; every rollup as the statement makes it on a copy of the raw points."""
    cfg = SiteConfig.model_validate(paris_chapelle())
    start, end = T0 + H // 3, T0 + 3 * H + H // 2
    model = SiteModel(cfg, t0=start / S, seed=3)
    devices = [d.name for d in cfg.devices if d.role][:20]
    st = influx_store(influxdb, "rcsup", timeout_s=60)
    ref = influx_store(influxdb, "rcsupref", timeout_s=60)
    for s in (st, ref):
        init_sink(s.sink)
    sup = SuppliedRollups(st, start, end)
    assert (sup.lo, sup.hi) == (T0 + H, T0 + 3 * H)
    for batch in backfill(cfg, model, start / S, end / S, interval_s=10, devices=devices):
        sup.add(batch)
        st.write(batch)
        ref.write(batch)
    sup.close()
    st.flush_rollups()
    ref.flush_rollups()
    assert sup.written > 0 and st.rollups_due() == ref.rollups_due() == 0
    # the partial hours only (T0, T0 + 3 H): a 1-minute statement each, one 1-hour one each
    assert st.rollup_statements < ref.rollup_statements
    for rp in ("rp_1m", "rp_1h", "rp_1d"):  # rp_1d: the statement's, over the whole days
        lo = T0 - T0 % (24 * H) if rp == "rp_1d" else T0  # a day's point: at its start
        q = f'SELECT * FROM "{rp}"./.*/ WHERE time >= {lo} AND time < {T0 + 4 * H} GROUP BY *'
        a, b = (influxdb.query(q, s.sink.database)["results"][0] for s in (st, ref))
        assert a == b and a["series"]
