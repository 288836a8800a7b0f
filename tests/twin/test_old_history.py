"""``dcim twin backfill`` of history older than InfluxDB's raw retention (a real InfluxDB,
set up by ``dcim db init`` with the default retentions: raw 30 days, rp_1m 400 days, rp_1h
forever): the older part is written as the rollups the continuous queries would have left,
the store answers from them what the readings give; without rollup policies the command says
what to do instead of having its points refused."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from dcim.cli import main
from dcim.config import InfluxSink, load_config
from dcim.dbinit import init_sink
from dcim.reading import Reading
from dcim.storage.influx import InfluxStore
from dcim.testing.servers import InfluxServer
from dcim.twin.model import SiteModel, backfill
from dcim.twin.site import paris_chapelle

NS = 1_000_000_000
HOUR = 3600 * NS
DEV, MEAS, FIELD = "meter-incomer", "energy_meter", "power_w"


def site(tmp: Path, url: str, db: str) -> Path:
    doc = paris_chapelle(racks=1, servers_per_rack=1, interval_s=60.0,
                         spool_dir=str(tmp / "spool"),
                         sink={"type": "influxdb", "url": url, "database": db})  # fmt: skip
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / NS, UTC).isoformat()


def hourly_truth(path: Path, start: int, end: int, lo: int, hi: int) -> dict[int, float]:
    """The mean of DEV's FIELD per hour of [lo, hi), from the readings the backfill makes."""
    cfg = load_config(path)
    model = SiteModel(cfg, t0=start / NS, seed=1)
    sums: dict[int, list[float]] = {}
    for batch in backfill(cfg, model, start / NS, end / NS, interval_s=60.0, devices=[DEV]):
        for r in batch:
            if lo <= r.time_ns < hi:
                s = sums.setdefault(r.time_ns // HOUR * HOUR, [0.0, 0])
                s[0] += float(r.fields[FIELD])  # type: ignore[arg-type]
                s[1] += 1
    return {h: s / n for h, (s, n) in sums.items()}


def count(st: InfluxStore, rp: str, field: str, lo: int, hi: int) -> int:
    got = st.query(f'SELECT count("{field}") FROM "{rp}"."{MEAS}" WHERE time >= {lo} '
                   f"AND time < {hi} AND device = '{DEV}'")  # fmt: skip
    return sum(int(v[1]) for s in got for v in s.get("values", []))


def test_a_past_span_goes_to_the_rollups(
    tmp_path: Path, influxdb: InfluxServer, capsys: pytest.CaptureFixture[str]
) -> None:
    path = site(tmp_path, influxdb.url, "pastyear")
    cfg = load_config(path)
    assert isinstance(cfg.storage.sink, InfluxSink)
    init_sink(cfg.storage.sink)  # dcim db init: raw 30d (default policy), rp_1m 400d, rp_1h INF
    now = time.time_ns()
    cut = -(-(now - 30 * 86400 * NS + 60 * NS) // HOUR) * HOUR  # where the store reads raw
    start, end = cut - 3 * HOUR - 90 * NS, cut + 2 * HOUR  # a minute into the 4th hour
    assert main(["twin", "backfill", str(path), "--from", iso(start), "--to", iso(end)]) == 0
    out = capsys.readouterr().out
    assert "as rollups only" in out and "into rp_1m" in out and "into rp_1h" in out
    # a year and more ago: older than rp_1m keeps, so only the hours (InfluxDB would refuse)
    y0 = (now - 402 * 86400 * NS) // HOUR * HOUR
    assert main(["twin", "backfill", str(path), "--from", iso(y0), "--to", iso(y0 + 3 * HOUR)]) == 0
    assert "windows older than rp_1m keeps left out" in capsys.readouterr().out

    st = InfluxStore(cfg.storage.sink)
    try:
        assert count(st, "raw", FIELD, start, cut) == 0  # nothing refused, nothing raw before
        assert count(st, "raw", FIELD, cut, end) > 100
        assert count(st, "rp_1m", f"mean_{FIELD}", cut - 4 * HOUR, cut) == 3 * 60 + 1
        assert count(st, "rp_1h", f"mean_{FIELD}", cut - 4 * HOUR, cut) == 4  # one in part
        assert count(st, "rp_1m", f"mean_{FIELD}", y0, y0 + 3 * HOUR) == 0
        assert count(st, "rp_1h", f"mean_{FIELD}", y0, y0 + 3 * HOUR) == 3
        # the cut's UTC day in rp_1d: its hours on both sides of the cut, not one side's
        day = cut // (86400 * NS) * 86400 * NS
        span = f"WHERE time >= {day} AND time < {day + 86400 * NS} AND device = '{DEV}'"
        got = st.query(f'SELECT sum("count_{FIELD}") FROM "rp_1h"."{MEAS}" {span}')
        hours_n = sum(int(v[1]) for s in got for v in s.get("values", []))
        got = st.query(f'SELECT "count_{FIELD}" FROM "rp_1d"."{MEAS}" {span}')
        days_n = [int(v[1]) for s in got for v in s.get("values", [])]
        assert days_n == [hours_n]
        assert hours_n > (0 if day == cut else count(st, "raw", FIELD, cut, end))
        # the store answers the old hours from them, as the readings give them
        for lo, hi, a, b in ((cut - 3 * HOUR, cut, start, end), (y0, y0 + 3 * HOUR, y0,
                                                                 y0 + 3 * HOUR)):  # fmt: skip
            rows = st.aggregate(measurement=MEAS, field=FIELD, start_ns=lo, end_ns=hi,
                                fn="mean", every_s=3600, where={"device": DEV})  # fmt: skip
            want = hourly_truth(path, a, b, lo, hi)
            assert len(want) == 3
            assert {r.time_ns: r.value for r in rows} == pytest.approx(want, rel=1e-12)
            n = st.aggregate(measurement=MEAS, field=FIELD, start_ns=lo, end_ns=hi, fn="count",
                             where={"device": DEV})  # fmt: skip
            assert n[0].value == 3 * 60
    finally:
        st.close()


def test_without_rollup_policies_it_says_what_to_do(
    tmp_path: Path, influxdb: InfluxServer, capsys: pytest.CaptureFixture[str]
) -> None:
    path = site(tmp_path, influxdb.url, "rawonly")
    cfg = load_config(path)
    assert isinstance(cfg.storage.sink, InfluxSink)
    st = InfluxStore(cfg.storage.sink, create_database=False)
    try:  # a database kept 30 days, set up by hand: no rollup policies
        st.query('CREATE DATABASE "rawonly" WITH DURATION 30d NAME "raw"', write=True)
    finally:
        st.close()
    old = time.time_ns() - 60 * 86400 * NS
    rc = main(["twin", "backfill", str(path), "--from", iso(old), "--to", iso(old + HOUR)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "raw retention policy raw keeps 30 days" in err and "dcim db init" in err
    assert "start --from at or after" in err


def test_readings_split_at_the_cut_and_the_moving_horizon() -> None:
    """Unit check of the split (no server): before the cut, validated as the pipeline does
    and rolled up to the cut; after it, what the raw policy no longer takes goes to the raw
    part's rollups only; the rest is written raw."""
    from dcim.twin.old_history import Horizons, OldHistory

    class Store:
        def __init__(self) -> None:
            self.points: dict[int, list[Reading]] = {60: [], 3600: []}

        def write_rollups(self, level: int, points: list[Reading]) -> None:
            self.points[level] += points

    class RawRollups(list[Reading]):
        def add(self, readings: list[Reading]) -> None:
            self.extend(readings)

    now = time.time_ns()
    cut = now // HOUR * HOUR - 10 * HOUR
    raw_s = (now - cut) // NS - 1800  # the raw policy now takes points from 35 min after cut
    h = Horizons(cut, "raw", raw_s, {60: cut - HOUR, 3600: None})
    st, late = Store(), RawRollups()
    old = OldHistory(st, h)
    tags = {"site": "s", "device": "d"}
    rows: list[Any] = [Reading("m", tags, {"power_w": float(i)}, cut - 2 * HOUR + i * 60 * NS)
                       for i in range(180)]  # fmt: skip
    rows.insert(119, Reading("m", tags, {"power_w": float("nan")}, cut - 30 * NS))  # refused
    raw = old.split(rows, late)
    old.close()
    assert [r.time_ns for r in late] == [cut + i * 60 * NS for i in range(36)]
    assert [r.time_ns for r in raw] == [cut + i * 60 * NS for i in range(36, 60)]
    assert old.readings == 120 + 36 and old.late_raw == 36 and old.pipeline.rejected == 1
    assert [p.time_ns for p in st.points[3600]] == [cut - 2 * HOUR, cut - HOUR]
    assert len(st.points[60]) == 60 and old.too_old[60] == 60  # the older hour's minutes
    assert st.points[3600][1].fields["mean_power_w"] == pytest.approx(sum(range(60, 120)) / 60)
