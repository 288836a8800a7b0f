from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dcim.config import EmbeddedSink, SiteConfig, Storage
from dcim.pipeline import Pipeline
from dcim.reading import Reading
from dcim.spool import Spool
from dcim.storage.lineprotocol import encode

T = 1_700_000_000_000_000_000


class ListSpool:
    def __init__(self) -> None:
        self.items: list[Reading] = []

    def append(self, readings: list[Reading]) -> None:
        self.items.extend(readings)


def rd(
    fields: dict[str, Any], tags: dict[str, Any] | None = None, m: str = "pdu", t: Any = T
) -> Reading:
    return Reading(m, {"site": "s", "device": "p1"} if tags is None else tags, fields, t)


def test_good_readings_pass_unchanged() -> None:
    sp = ListSpool()
    pipe = Pipeline(sp)
    good = rd({"power_w": 1.5, "n": 2, "up": True, "error": ""})
    assert pipe.accept([good]) == 1
    assert sp.items == [good] and sp.items[0] is good
    assert pipe.rejected == 0 and pipe.accepted == 1


def test_bad_values_dropped_from_their_reading() -> None:
    sp = ListSpool()
    pipe = Pipeline(sp)
    n = pipe.accept(
        [rd({"power_w": math.nan, "voltage_v": 230.0, "Bad-Name": 1.0, "x": math.inf,
             "s": "a\nb", "big": 2**70, "obj": object()})]
    )  # fmt: skip
    assert n == 1
    assert sp.items[0].fields == {"voltage_v": 230.0}
    assert pipe.rejected == 6


@pytest.mark.parametrize(
    "bad",
    [
        rd({"v": 1.0}, m="Bad Measurement"),
        rd({"v": 1.0}, tags={"site": "s", "device": ""}),
        rd({"v": 1.0}, tags={"site": "s", "device": 5}),
        rd({"v": 1.0}, tags={"bad key": "x"}),
        rd({"v": 1.0}, tags={"device": "ends\\"}),
        rd({"v": 1.0}, t=1.5e18),
        rd({"v": 1.0}, t=-1),
        rd({}),
        rd({"v": math.nan}),
        Reading("pdu", None, {"v": 1.0}, T),  # type: ignore[arg-type]
        Reading("pdu", {}, None, T),  # type: ignore[arg-type]
    ],
)
def test_bad_readings_dropped_never_raises(bad: Reading) -> None:
    sp = ListSpool()
    pipe = Pipeline(sp)
    assert pipe.accept([bad, rd({"v": 2.0})]) == 1
    assert sp.items == [rd({"v": 2.0})]
    assert pipe.rejected >= 1


def test_numpy_values_normalised() -> None:
    sp = ListSpool()
    Pipeline(sp).accept(
        [rd({"a": np.float64(1.5), "b": np.int64(3), "c": np.float32(2.0)}, t=np.int64(T))]
    )
    f = sp.items[0].fields
    assert type(f["a"]) is float and type(f["b"]) is int and type(f["c"]) is float
    assert type(sp.items[0].time_ns) is int


def test_logging_is_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    pipe = Pipeline(ListSpool(), log_every_s=3600)
    with caplog.at_level(logging.WARNING, logger="dcim.pipeline"):
        for _ in range(100):
            pipe.accept([rd({"power_w": math.nan, "ok_w": 1.0})])
    msgs = [r.getMessage() for r in caplog.records]
    assert len(msgs) == 1 and "pdu device p1 field power_w" in msgs[0]
    assert pipe.rejected == 100
    pipe._log_every_s = 0  # the next message tells how many were suppressed
    with caplog.at_level(logging.WARNING, logger="dcim.pipeline"):
        pipe.accept([rd({"power_w": math.nan, "ok_w": 1.0})])
    assert "99 more since the last message" in caplog.records[-1].getMessage()


def test_nothing_good_appends_nothing() -> None:
    sp = ListSpool()
    assert Pipeline(sp).accept([rd({"v": math.nan})]) == 0
    assert sp.items == []


def test_full_spool_is_refused_and_counted_never_raises(tmp_path: Path) -> None:
    with Spool(tmp_path, max_bytes=2**20) as sp:
        pipe = Pipeline(sp)
        big = [rd({"v": float(i), "s": "x" * 2000}, t=T + i) for i in range(600)]  # > 1 MB
        assert pipe.accept(big) == 0
        assert pipe.refused_full == 600 and pipe.accepted == 0 and sp.pending() == 0
        assert pipe.accept([rd({"v": 1.0})]) == 1  # what fits still goes in


def test_spool_health_reading(tmp_path: Path) -> None:
    from dcim.runtime import Collector

    storage = Storage(
        spool_dir=tmp_path / "sp", sink=EmbeddedSink(path=tmp_path / "s.sqlite"), spool_max_mb=2
    )
    col = Collector(SiteConfig.model_validate({"site": {"name": "s1"}, "storage": storage}))
    try:
        r = col.spool_health()
        assert r.measurement == "dcim_spool" and r.tags == {"site": "s1"}
        f: dict[str, Any] = r.fields
        assert f["max_bytes"] == 2 * 2**20 and 0 < f["bytes"] < f["max_bytes"]
        assert (f["pending"], f["refused_total"], f["dropped_total"], f["full"], f["warn"]) == (
            0, 0, 0, 0, 0,
        )  # fmt: skip
        assert col.pipeline.accept([r]) == 1 and col.pipeline.rejected == 0  # valid names
        # straight into the embedded store (dcim.spool_through): nothing pending
        assert col.spool_health().fields["pending"] == 0
        stored = col.store.aggregate(
            measurement="dcim_spool", field="max_bytes", start_ns=0, end_ns=2**62, fn="count"
        )
        assert [row.value for row in stored] == [1]
        col.spool.append([r])  # what the spool holds (a backlog) is counted
        assert col.spool_health().fields["pending"] == 1
    finally:
        col.spool.close()
        col.store.close()


def test_field_types_stay_stable_so_influxdb_never_sees_a_conflict(tmp_path: Path) -> None:
    with Spool(tmp_path) as sp:
        p = Pipeline(sp)

        def one(**fields: object) -> None:
            p.accept([Reading("pdu", {"device": "p1"}, dict(fields), 1_000 + p.accepted)])  # type: ignore[arg-type]

        one(power_w=1.5, status=0)  # power_w: float, status: int
        one(power_w=2, status=1.0)  # an int for the float, a whole float for the int
        one(power_w="high", status=2.5)  # cannot be kept in their types: refused
        got = [r.fields for r in sp.peek(10).readings]
    assert got[:2] == [{"power_w": 1.5, "status": 0}, {"power_w": 2.0, "status": 1}]
    assert type(got[1]["power_w"]) is float and type(got[1]["status"]) is int
    assert len(got) == 2 and p.rejected == 2
    assert any("stored as float" in why for why in p.reasons)
    assert any("stored as int" in why for why in p.reasons)


def test_a_whole_float_for_an_int_field_stays_within_int64() -> None:
    sp = ListSpool()
    p = Pipeline(sp)
    p.accept([rd({"n": 1})])
    assert p.accept([rd({"n": 2.0**63}), rd({"n": -(2.0**63)}, t=T + 1)]) == 1
    assert [r.fields for r in sp.items] == [{"n": 1}, {"n": -(2**63)}]
    assert p.reasons == {
        "field: float value 9.223372036854776e+18 for a field stored as int is outside int64": 1
    }


# -- the quick way (shapes seen good) says and writes what the full checks do ----------------


class LineSpool:
    """A sink that takes line protocol, as the spool does."""

    takes_lines = True

    def __init__(self) -> None:
        self.items: list[Reading] = []
        self.lines: list[str] = []

    def append(self, readings: list[Reading], lines: list[str] | None = None) -> None:
        assert lines is not None and len(lines) == len(readings)
        self.items.extend(readings)
        self.lines.extend(lines)


class FullChecks(Pipeline):
    """Every reading through the full checks and the general encoder."""

    def _learn(self, r: Reading, encoding: bool) -> str | None:
        return None


def _typed(r: Reading) -> tuple[object, ...]:
    return r.measurement, r.tags, [(k, type(v), v) for k, v in r.fields.items()], r.time_ns


_tag_value = st.sampled_from(["p1", "p2", "a%s", "%%d", "x y,z=w", "é", "", "a\\b", "bad\\", 5])
_field_value = st.one_of(
    st.floats(),
    st.sampled_from([1e308, -1e308, 0.0, -0.0, 2.5]),
    st.integers(min_value=-(2**65), max_value=2**65),
    st.booleans(),
    st.text(alphabet='ab"\\%\n é', max_size=4),
    st.sampled_from([np.float64(1.5), np.int64(3), np.float32("nan"), None]),
)
_readings = st.lists(
    st.builds(
        Reading,
        st.sampled_from(["pdu", "ups", "Bad Name"]),
        st.dictionaries(st.sampled_from(["site", "device", "bad key", "room"]), _tag_value),
        st.dictionaries(
            st.sampled_from(["power_w", "n", "up", "error", "pct", "Bad"]), _field_value
        ),
        st.one_of(st.just(T), st.integers(min_value=-5, max_value=2**64), st.just(1.5)),
    ),
    max_size=8,
)


@settings(max_examples=200, deadline=None)
@given(batches=st.lists(_readings, min_size=1, max_size=4))
def test_the_quick_way_is_the_full_checks_and_encode(batches: list[list[Reading]]) -> None:
    quick, full = LineSpool(), LineSpool()
    pq, pf = Pipeline(quick), FullChecks(full)
    for batch in [*batches, *batches]:  # again: every shape seen before
        assert pq.accept(batch) == pf.accept(batch)
    assert [_typed(r) for r in quick.items] == [_typed(r) for r in full.items]
    assert quick.lines == full.lines == [encode(r) for r in full.items]
    assert (pq.accepted, pq.rejected, pq.reasons) == (pf.accepted, pf.rejected, pf.reasons)
    plain = ListSpool()  # a sink without line protocol: the same readings
    pp = Pipeline(plain)
    for batch in [*batches, *batches]:
        pp.accept(batch)
    assert [_typed(r) for r in plain.items] == [_typed(r) for r in full.items]


def test_lines_decode_to_the_readings(tmp_path: Path) -> None:
    with Spool(tmp_path) as sp:
        p = Pipeline(sp)
        rs = [
            rd({"power_w": 1.5 + i, "n": i, "up": True, "s": 'a "%d" \\'}, t=T + i)
            for i in range(3)
        ]
        rs.append(rd({"v": 1.0}, tags={"site": "s", "device": "a b,c=%s"}, t=T + 9))
        assert p.accept(rs) == p.accept([rd({"v": 2.0}, tags=rs[-1].tags, t=T + 10)]) + 3
        got = sp.peek(10).readings
    assert [_typed(r) for r in got] == [
        _typed(r) for r in [*rs, rd({"v": 2.0}, tags=rs[-1].tags, t=T + 10)]
    ]
