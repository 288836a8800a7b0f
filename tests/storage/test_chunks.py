"""The chunk codec: what goes in comes out, value for value and type for type."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dcim.storage.chunks import ChunkError, decode, decode_times, encode, encode_times, shared_id

T0 = 1_700_000_000_000_000_000


def _times(gaps: list[int]) -> list[int]:
    out, t = [], T0
    for g in gaps:
        t += g
        out.append(t)
    return out


@given(
    st.lists(st.integers(1, 10**12), min_size=1, max_size=400),
    st.data(),
)
def test_floats_round_trip(gaps: list[int], data: st.DataObject) -> None:
    times = _times(gaps)
    vals = data.draw(
        st.lists(
            st.floats(allow_nan=False, allow_infinity=False),
            min_size=len(times),
            max_size=len(times),
        )
    )
    blob = encode(times, vals)
    assert blob is not None
    t2, v2 = decode(blob)
    assert t2 == times
    assert [struct.pack("<d", v) for v in v2] == [struct.pack("<d", v) for v in vals]  # -0.0


@given(st.lists(st.integers(-(2**61), 2**61), min_size=1, max_size=400))  # deltas fit
def test_integers_round_trip(vals: list[int]) -> None:
    times = [T0 + 10**10 * i + (i * 7919) % 23_000_000 for i in range(len(vals))]
    t2, v2 = decode(encode(times, vals) or b"")
    assert t2 == times and v2 == vals and all(type(v) is int for v in v2)


def test_what_cannot_be_packed_stays_rows() -> None:
    t = [T0, T0 + 1]
    assert encode(t, ["ok", "ok"]) is None  # type: ignore[arg-type]
    assert encode(t, [2**63, 0]) is None  # beyond 64 bits
    assert encode(t, [-(2**63), 2**63 - 1]) is None  # the delta overflows
    assert encode(t, [1.5, 2**60]) is None  # not exact among floats
    assert encode([], []) is None
    # SQLite's integral floats read back as integers: packed among the floats
    assert decode(encode(t, [1.5, 2]) or b"") == (t, [1.5, 2.0])


def test_a_regular_poll_costs_little() -> None:
    times = [T0 + 10 * 10**9 * i for i in range(360)]
    blob = encode(times, [1000 + i for i in range(360)])
    assert blob is not None and len(blob) < 100  # an hour of 10 s integer counter readings


def test_damaged_chunks_are_refused() -> None:
    blob = encode([T0, T0 + 5], [1.0, 2.0]) or b""
    with pytest.raises(ChunkError, match="damaged"):
        decode(blob[:-3])
    with pytest.raises(ChunkError, match="version 9"):
        decode(b"\x09" + blob[1:])


@given(st.lists(st.integers(-(10**12), 10**12), min_size=1, max_size=300), st.integers(0, 8))
def test_decimals_round_trip_as_the_collector_rounds_them(ints: list[int], k: int) -> None:
    vals = [float(f"{i / 10**k:.12g}") for i in ints]  # dcim.plausible's rounding
    times = [T0 + 10**10 * i for i in range(len(vals))]
    t2, v2 = decode(encode(times, vals) or b"")
    assert t2 == times
    assert [struct.pack("<d", v) for v in v2] == [struct.pack("<d", v) for v in vals]


def test_decimals_cost_a_byte_or_two() -> None:
    times = [T0 + 10 * 10**9 * i for i in range(8640)]
    temps = [round(45 + (i % 200) / 100 - (i % 7) / 100, 2) for i in range(8640)]
    blob = encode(times, temps)
    assert blob is not None and blob[1] == 2 + 2  # decimals, two of them
    assert len(blob) < 8640 * 1.0  # a day of 10 s temperatures at 0.01 degC


def test_fields_read_together_share_their_times() -> None:
    times = [T0 + 10 * 10**9 * i + (i * 7919) % 23_000 * 1000 for i in range(8640)]
    power = [float(1000 + (i * 37) % 500) for i in range(8640)]
    energy = [10**6 + i * 3 for i in range(8640)]
    own = encode(times, power) or b""
    shared = [encode(times, v, shared=4) or b"" for v in (power, energy)]
    tblob = encode_times(times)
    assert shared_id(own) is None and shared_id(shared[0]) == 4
    load = {4: decode_times(tblob)}.__getitem__
    assert decode(shared[0], load) == (times, power)
    assert decode(shared[1], load) == (times, energy)
    # the jittered times are most of a point's bytes: stored once for both fields
    assert sum(map(len, shared)) + len(tblob) < 0.7 * (len(own) + len(encode(times, energy) or b""))
    with pytest.raises(ChunkError, match="without them"):
        decode(shared[0])
