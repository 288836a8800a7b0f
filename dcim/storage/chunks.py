"""The embedded store's compressed chunks: the raw points of one series, field and UTC day
in one blob (a day: a few KB, so that SQLite's overflow pages are well filled; an hour's blob
wasted half a page).

Times: offsets from the chunk's first time, divided by their greatest common divisor (a poll
grid of whole milliseconds costs no bytes for the nanoseconds), then delta-of-delta (a
regular poll is a run of zeros). Values: floats XORed with the previous one (Gorilla's idea:
a slowly changing signal shares its sign, exponent and high mantissa bits), integers as
deltas, and floats that are decimals (a register times its scale, a value in a payload:
21.37) as integers with their number of decimals. Each array is byte-shuffled (all first
bytes, then all second bytes, ...) and the whole compressed with zlib.

Written by hand with the standard library (``array``, big-integer XOR, ``zlib``): the
collector's production install has no numpy, and the time-series libraries on PyPI that do
this either need numpy or are not maintained. The measured alternatives are in
``docs/architecture.md`` (storage section).
"""

from __future__ import annotations

import math
import struct
import sys
import zlib
from array import array
from collections.abc import Callable, Sequence
from itertools import accumulate

VERSION = 1
FLOAT, INT = 0, 1
DECIMAL = 2  # + k: floats that are integers divided by 10**k (k <= _MAX_DECIMALS)
_MAX_DECIMALS = 6
SHARED = 0x80  # | kind: the times are in a times blob whose id is in the first time's place
_HEAD = struct.Struct("<BBIqq")  # version, kind, count, first time, time step (gcd)
_TIMES = struct.Struct("<Iqq")  # a times blob: count, first time, time step
_LEVEL = 6  # zlib: 9 gains ~1 % for twice the CPU


class ChunkError(ValueError):
    """A blob that is not a chunk of this version (a damaged or newer store)."""


def _shuffle(raw: bytes) -> bytes:
    return b"".join(raw[i::8] for i in range(8))


def _unshuffle(data: bytes, n: int) -> bytes:
    out = bytearray(8 * n)
    for i in range(8):
        out[i::8] = data[i * n : (i + 1) * n]
    return bytes(out)


def _le(a: array[int] | array[float]) -> bytes:
    if sys.byteorder != "little":
        a = array(a.typecode, a)
        a.byteswap()
    return a.tobytes()


def _from_le(typecode: str, raw: bytes) -> array[int] | array[float]:
    a: array[int] | array[float] = array(typecode)  # type: ignore[assignment]
    a.frombytes(raw)
    if sys.byteorder != "little":
        a.byteswap()
    return a


def encode(
    times: Sequence[int], values: Sequence[int] | Sequence[float], *, shared: int | None = None
) -> bytes | None:
    """The chunk of these points (times ascending; values ``int``, or ``float`` and integers
    up to 2**53); None when they cannot be packed (other types, integers beyond 64 bits, a
    float among integers beyond 2**53): they stay rows. ``shared``: the times are not in the
    chunk but in a times blob (:func:`encode_times`) of that id, shared by the fields of a
    reading (a poll's jitter is most of a point's bytes)."""
    n = len(times)
    if n == 0 or n != len(values):
        return None
    got = _values_part(values)
    if got is None:
        return None
    kind, vpart = got
    if shared is not None:
        return _HEAD.pack(VERSION, kind | SHARED, n, shared, 0) + zlib.compress(vpart, _LEVEL)
    t0, step, tpart = _times_part(times)
    return _HEAD.pack(VERSION, kind, n, t0, step) + zlib.compress(tpart + vpart, _LEVEL)


def encode_times(times: Sequence[int]) -> bytes:
    """The times of a shared-times chunk (times ascending, at least one)."""
    t0, step, tpart = _times_part(times)
    return _TIMES.pack(len(times), t0, step) + zlib.compress(tpart, _LEVEL)


def decode_times(blob: bytes) -> list[int]:
    try:
        n, t0, step = _TIMES.unpack_from(blob)
        body = zlib.decompress(blob[_TIMES.size :])
    except (struct.error, zlib.error) as exc:
        raise ChunkError(f"damaged times: {exc}") from exc
    if len(body) != 8 * n:
        raise ChunkError(f"damaged times: {len(body)} bytes for {n} points")
    return _times_of(body, n, t0, step)


def shared_id(blob: bytes) -> int | None:
    """The id of the times a chunk shares, None when it holds its own."""
    _, kind, _, ref, _ = _HEAD.unpack_from(blob)
    return int(ref) if kind & SHARED else None


def _times_part(times: Sequence[int]) -> tuple[int, int, bytes]:
    t0 = times[0]
    offs = [t - t0 for t in times]
    step = math.gcd(*offs) or 1
    if step != 1:
        offs = [o // step for o in offs]
    deltas = [b - a for a, b in zip([0, *offs], offs, strict=False)]
    dod = [b - a for a, b in zip([0, *deltas], deltas, strict=False)]
    return t0, step, _shuffle(_le(array("q", dod)))


def _times_of(raw: bytes, n: int, t0: int, step: int) -> list[int]:
    dod = _from_le("q", _unshuffle(raw, n))
    return [t0 + step * o for o in accumulate(accumulate(dod))]  # type: ignore[arg-type,misc]


def _values_part(values: Sequence[int] | Sequence[float]) -> tuple[int, bytes] | None:
    n = len(values)
    kinds = {type(v) for v in values}
    if kinds == {int}:
        kind = INT
    elif kinds == {float} or (
        # SQLite stores a float with an integral value as an integer (NUMERIC affinity):
        # back among the floats, exact up to 2**53, and stored the same way again on decode
        kinds == {int, float} and all(-(2**53) <= v <= 2**53 for v in values if type(v) is int)
    ):
        kind = FLOAT
        values = [float(v) for v in values]
        dec = _decimal(values)  # type: ignore[arg-type]
        if dec is not None:
            kind, values = DECIMAL + dec[0], dec[1]
    else:
        return None
    try:
        if kind == FLOAT:  # XOR with the previous value
            raw = _le(array("d", values))  # type: ignore[arg-type]
            big = int.from_bytes(raw, "little")
            x = (big ^ (big << 64)) & ((1 << (64 * n)) - 1)
            return kind, _shuffle(x.to_bytes(8 * n, "little"))
        ints: Sequence[int] = values  # type: ignore[assignment]
        dv = [b - a for a, b in zip([0, *ints], ints, strict=False)]
        return kind, _shuffle(_le(array("q", dv)))
    except OverflowError:
        return None


def _decimal(values: list[float]) -> tuple[int, list[int]] | None:
    """(k, integers) when every value is an integer divided by 10**k, exactly as the value
    read (a register times its scale as the collector rounds it, a decimal in a payload):
    stored as integers, their deltas a byte or two; None otherwise (the first value that
    does not fit ends each try)."""
    for k in range(_MAX_DECIMALS + 1):
        scale = 10**k
        try:
            ints = [round(v * scale) for v in values]
        except (OverflowError, ValueError):
            return None
        if all(i / scale == v for i, v in zip(ints, values, strict=True)) and all(
            -(2**53) < i < 2**53 for i in ints
        ):
            if any(v == 0 and math.copysign(1.0, v) < 0 for v in values):
                return None  # -0.0 would come back as 0.0
            return k, ints
    return None


def decode(
    blob: bytes, times: Callable[[int], list[int]] | None = None
) -> tuple[list[int], list[int] | list[float]]:
    """The times and values of a chunk, as written; ``times``: the shared times of an id
    (for a chunk made with ``shared``)."""
    try:
        version, kind, n, t0, step = _HEAD.unpack_from(blob)
        base = kind & ~SHARED
        if version != VERSION or not FLOAT <= base <= DECIMAL + _MAX_DECIMALS:
            raise ChunkError(f"chunk version {version}, kind {kind}: not one this code reads")
        body = zlib.decompress(blob[_HEAD.size :])
    except (struct.error, zlib.error) as exc:
        raise ChunkError(f"damaged chunk: {exc}") from exc
    if kind & SHARED:
        if times is None:
            raise ChunkError("chunk with shared times read without them")
        tlist = times(t0)
        if len(body) != 8 * n or len(tlist) != n:
            raise ChunkError(f"damaged chunk: {len(body)} bytes, {len(tlist)} times for {n}")
        vraw = _unshuffle(body, n)
    else:
        if len(body) != 16 * n:
            raise ChunkError(f"damaged chunk: {len(body)} bytes for {n} points")
        tlist = _times_of(body[: 8 * n], n, t0, step)
        vraw = _unshuffle(body[8 * n :], n)
    if base == INT:
        return tlist, list(accumulate(_from_le("q", vraw)))  # type: ignore[arg-type]
    if base >= DECIMAL:
        scale = 10 ** (base - DECIMAL)
        return tlist, [i / scale for i in accumulate(_from_le("q", vraw))]  # type: ignore[operator]
    # prefix XOR of the 64-bit words (a scan by doubling, on one big integer)
    y = int.from_bytes(vraw, "little")
    mask = (1 << (64 * n)) - 1
    shift = 64
    while shift < 64 * n:
        y ^= (y << shift) & mask
        shift *= 2
    return tlist, list(_from_le("d", y.to_bytes(8 * n, "little")))  # type: ignore[arg-type]
