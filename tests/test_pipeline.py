from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dcim.config import EmbeddedSink, SiteConfig, Storage
from dcim.pipeline import Pipeline
from dcim.reading import Reading
from dcim.spool import Spool

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
