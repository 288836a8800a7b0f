"""Both stores answer the same ``aggregate`` calls the same way (InfluxQL semantics)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dcim.config import EmbeddedSink, Storage
from dcim.reading import Reading
from dcim.storage import SinkError, Store, make_store
from dcim.storage.base import Row
from dcim.storage.sqlite import SqliteStore
from dcim.testing.servers import InfluxServer
from tests.storage.helpers import influx_store

S = 1_000_000_000
T0 = 1_700_000_000 * S  # a multiple of 60 s: windows below are epoch aligned
DEVICES = {"em1": "r1", "em2": "r1", "em3": "r2", "em4": None}


def dataset() -> list[Reading]:
    """Four meters, irregular times (distinct across series), a gap, ints and a string."""
    rng = random.Random(7)
    out = []
    for i, (dev, room) in enumerate(DEVICES.items()):
        tags = {"site": "paris", "device": dev, "role": "grid_incomer"}
        if room:
            tags["room"] = room
        t = T0 + 3 * S + i * 1_000_000
        energy = 1000 * (i + 1)
        for k in range(120):
            t += rng.choice([4, 7, 10, 13]) * S + rng.randrange(1000)
            if 40 <= k < 55 and dev == "em2":
                continue  # a hole of several windows
            energy += rng.randrange(0, 50)
            fields: dict[str, Any] = {
                "power_w": round(rng.uniform(-50, 5000), 3),
                "energy_wh_total": energy,  # an integer counter
                "status": "ok",
            }
            out.append(Reading("energy_meter", dict(tags), fields, t))
    return out


@pytest.fixture(scope="module")
def stores(
    influxdb: InfluxServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Store, Store]]:
    data = dataset()
    sq = SqliteStore(tmp_path_factory.mktemp("sq") / "dcim.sqlite")
    ix = influx_store(influxdb, "cmp")
    for st in (sq, ix):
        st.write(data[:200])
        st.write(data[200:])
    yield sq, ix
    sq.close()
    ix.close()


def _same(a: list[Row], b: list[Row]) -> None:
    assert [(r.tags, r.time_ns) for r in a] == [(r.tags, r.time_ns) for r in b]
    for x, y in zip(a, b, strict=True):
        assert x.value == pytest.approx(y.value, rel=1e-9, abs=1e-9), (x, y)


START, END = T0 + 17 * S, T0 + 1500 * S  # not aligned to the windows
CASES = list(
    itertools.product(
        ["mean", "min", "max", "first", "last", "count", "sum"],
        ["power_w", "energy_wh_total"],
        [None, 60, 300],
        [None, {"room": "r1"}, {"room": ""}],
        [(), ("device",), ("room",), ("room", "device")],
    )
)


@pytest.mark.parametrize(("fn", "field", "every", "where", "group_by"), CASES)
def test_same_answers(
    stores: tuple[Store, Store], fn: Any, field: str, every: int | None, where: Any, group_by: Any
) -> None:
    sq, ix = stores
    kw = dict(measurement="energy_meter", field=field, start_ns=START, end_ns=END, fn=fn,
              every_s=every, where=where, group_by=group_by)  # fmt: skip
    a, b = sq.aggregate(**kw), ix.aggregate(**kw)
    assert a, "the case must select data"
    _same(a, b)


@pytest.mark.parametrize(
    ("every", "field"),
    # Windowed integrals only on floats: InfluxDB 1.x's integer integral reducer uses the
    # interpolated boundary value in place of the point's value after a window boundary.
    [(None, "energy_wh_total"), (None, "power_w"), (60, "power_w"), (45, "power_w"),
     (600, "power_w")],
)  # fmt: skip
def test_integral_same(stores: tuple[Store, Store], every: int | None, field: str) -> None:
    sq, ix = stores
    kw = dict(measurement="energy_meter", field=field, start_ns=START, end_ns=END,
              fn="integral", every_s=every, where={"site": "paris"},
              group_by=("device",))  # fmt: skip
    a, b = sq.aggregate(**kw), ix.aggregate(**kw)  # type: ignore[arg-type]
    assert len(a) >= 4
    _same(a, b)


def test_time_semantics(stores: tuple[Store, Store]) -> None:
    for st in stores:
        first = st.aggregate(measurement="energy_meter", field="power_w", start_ns=START,
                             end_ns=END, fn="first", where={"device": "em1"})  # fmt: skip
        assert len(first) == 1 and first[0].time_ns > START
        mean = st.aggregate(measurement="energy_meter", field="power_w", start_ns=START,
                            end_ns=END, fn="mean", where={"device": "em1"})  # fmt: skip
        assert mean[0].time_ns == START
        win = st.aggregate(measurement="energy_meter", field="power_w", start_ns=START,
                           end_ns=END, fn="count", every_s=60)  # fmt: skip
        assert all(r.time_ns % (60 * S) == 0 for r in win)
        assert isinstance(win[0].value, float)


def test_nothing_to_answer(stores: tuple[Store, Store]) -> None:
    for st in stores:
        for kw in (
            dict(measurement="nope", field="power_w"),
            dict(measurement="energy_meter", field="nope"),
            dict(measurement="energy_meter", field="power_w", where={"device": "zz"}),
        ):
            assert st.aggregate(start_ns=START, end_ns=END, fn="mean", **kw) == []


@pytest.mark.parametrize("kind", ["sqlite", "influx"])
def test_replay_is_idempotent(kind: str, influxdb: InfluxServer, tmp_path: Path) -> None:
    st: Store = (
        SqliteStore(tmp_path / "s.sqlite") if kind == "sqlite" else influx_store(influxdb, "rep")
    )
    batch = dataset()[:50]
    st.write(batch)
    st.write(batch)  # replayed after a crash before the ack
    rows = st.aggregate(measurement="energy_meter", field="power_w", start_ns=T0,
                        end_ns=T0 + 10**4 * S, fn="count", group_by=("device",))  # fmt: skip
    assert sum(r.value or 0 for r in rows) == 50
    changed = [Reading(r.measurement, r.tags, {"power_w": 1.0}, r.time_ns) for r in batch]
    st.write(changed)  # the same points, new values: replaced
    rows = st.aggregate(measurement="energy_meter", field="power_w", start_ns=T0,
                        end_ns=T0 + 10**4 * S, fn="sum")  # fmt: skip
    assert rows[0].value == 50.0
    st.close()


@pytest.mark.parametrize("kind", ["sqlite", "influx"])
def test_nan_refused_not_retryable(kind: str, influxdb: InfluxServer, tmp_path: Path) -> None:
    st: Store = (
        SqliteStore(tmp_path / "s.sqlite") if kind == "sqlite" else influx_store(influxdb, "nan")
    )
    bad = Reading("pdu", {"device": "p1"}, {"power_w": float("nan")}, T0)
    with pytest.raises(SinkError) as err:
        st.write([bad])
    assert not err.value.retryable and "power_w" in err.value.reason


def test_sqlite_reader_while_writer(tmp_path: Path) -> None:
    storage = Storage(sink=EmbeddedSink(path=tmp_path / "dcim.sqlite"))
    writer = make_store(storage)
    writer.write(dataset()[:10])
    reader = make_store(storage, read_only=True)
    writer.write(dataset()[10:20])  # the writer keeps going while a reader is open
    rows = reader.aggregate(measurement="energy_meter", field="power_w", start_ns=T0,
                            end_ns=T0 + 10**4 * S, fn="count")  # fmt: skip
    assert rows[0].value == 20.0
    with pytest.raises(SinkError):
        reader.write(dataset()[:1])
    reader.close()
    writer.close()


def test_integral_window_edges(influxdb: InfluxServer, tmp_path: Path) -> None:
    """Points exactly on window starts, a lone point, empty windows between points."""
    pts = [(0, 10.0), (60, 20.0), (90, 0.0), (300, 30.0), (420, 5.0), (600, 7.0)]
    data = [Reading("hp", {"device": "a"}, {"p": v}, T0 + t * S) for t, v in pts]
    data.append(Reading("hp", {"device": "b"}, {"p": 3.0}, T0 + 75 * S))  # alone
    sq, ix = SqliteStore(tmp_path / "e.sqlite"), influx_store(influxdb, "edge")
    for st in (sq, ix):
        st.write(data)
    for every in (None, 60, 120, 7):
        kw = dict(measurement="hp", field="p", start_ns=T0, end_ns=T0 + 700 * S,
                  fn="integral", every_s=every, group_by=("device",))  # fmt: skip
        _same(sq.aggregate(**kw), ix.aggregate(**kw))  # type: ignore[arg-type]
    total = sq.aggregate(measurement="hp", field="p", start_ns=T0, end_ns=T0 + 700 * S,
                         fn="integral", where={"device": "a"})  # fmt: skip
    assert total[0].value == pytest.approx(
        0.5 * (10 + 20) * 60 + 0.5 * 20 * 30 + 0.5 * 30 * 210 + 0.5 * 35 * 120 + 0.5 * 12 * 180
    )
