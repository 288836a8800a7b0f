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
from collections.abc import Sequence
from itertools import accumulate

VERSION = 1
FLOAT, INT = 0, 1
DECIMAL = 2  # + k: floats that are integers divided by 10**k (k <= _MAX_DECIMALS)
_MAX_DECIMALS = 6
_HEAD = struct.Struct("<BBIqq")  # version, kind, count, first time, time step (gcd)
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


def encode(times: Sequence[int], values: Sequence[int] | Sequence[float]) -> bytes | None:
    """The chunk of these points (times ascending; values ``int``, or ``float`` and integers
    up to 2**53); None when they cannot be packed (other types, integers beyond 64 bits, a
    float among integers beyond 2**53): they stay rows."""
    n = len(times)
    if n == 0 or n != len(values):
        return None
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
    t0 = times[0]
    offs = [t - t0 for t in times]
    step = math.gcd(*offs) or 1
    if step != 1:
        offs = [o // step for o in offs]
    deltas = [b - a for a, b in zip([0, *offs], offs, strict=False)]
    dod = [b - a for a, b in zip([0, *deltas], deltas, strict=False)]
    try:
        tpart = _shuffle(_le(array("q", dod)))
        if kind == FLOAT:  # XOR with the previous value
            raw = _le(array("d", values))  # type: ignore[arg-type]
            big = int.from_bytes(raw, "little")
            x = (big ^ (big << 64)) & ((1 << (64 * n)) - 1)
            vpart = _shuffle(x.to_bytes(8 * n, "little"))
        else:
            ints: Sequence[int] = values  # type: ignore[assignment]
            dv = [b - a for a, b in zip([0, *ints], ints, strict=False)]
            vpart = _shuffle(_le(array("q", dv)))
    except OverflowError:
        return None
    return _HEAD.pack(VERSION, kind, n, t0, step) + zlib.compress(tpart + vpart, _LEVEL)


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


def decode(blob: bytes) -> tuple[list[int], list[int] | list[float]]:
    """The times and values of a chunk, as written."""
    try:
        version, kind, n, t0, step = _HEAD.unpack_from(blob)
        if version != VERSION or not FLOAT <= kind <= DECIMAL + _MAX_DECIMALS:
            raise ChunkError(f"chunk version {version}, kind {kind}: not one this code reads")
        body = zlib.decompress(blob[_HEAD.size :])
    except (struct.error, zlib.error) as exc:
        raise ChunkError(f"damaged chunk: {exc}") from exc
    if len(body) != 16 * n:
        raise ChunkError(f"damaged chunk: {len(body)} bytes for {n} points")
    dod = _from_le("q", _unshuffle(body[: 8 * n], n))
    times = [t0 + step * o for o in accumulate(accumulate(dod))]
    vraw = _unshuffle(body[8 * n :], n)
    if kind == INT:
        return times, list(accumulate(_from_le("q", vraw)))  # type: ignore[arg-type]
    if kind >= DECIMAL:
        scale = 10 ** (kind - DECIMAL)
        return times, [i / scale for i in accumulate(_from_le("q", vraw))]  # type: ignore[operator]
    # prefix XOR of the 64-bit words (a scan by doubling, on one big integer)
    y = int.from_bytes(vraw, "little")
    mask = (1 << (64 * n)) - 1
    shift = 64
    while shift < 64 * n:
        y ^= (y << shift) & mask
        shift *= 2
    return times, list(_from_le("d", y.to_bytes(8 * n, "little")))  # type: ignore[arg-type]
