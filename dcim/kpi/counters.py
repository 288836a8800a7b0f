"""Cumulative registers (Wh, m3 counters) to energy over a period. Pure functions.

A meter index is sampled at poll times, never exactly at the period's boundaries. The index at a
boundary is linearly interpolated between the last sample before it and the first after it
(standard practice for meter readings; flagged ``interpolated``). Inside the period, the
increase is the sum of the steps between consecutive samples. A step down is one of:

- a wrap at ``wrap_at`` (from the upper half of the register's range to the lower half): the
  new index counts from the wrap;
- a reset (device restart, or a replacement from zero): a drop to near zero, below
  ``RESET_BELOW`` of the index before it; the new index counts from 0;
- otherwise a glitch (a register read a few Wh low, rounding in the device, a bad read): it
  is ignored, the index is held at its last level until the register passes it again, and
  it is counted in :attr:`CounterIncrease.glitches`, never as a reset that would add the
  whole index again.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

# A step down to below this share of the index before it is a reset; a smaller drop is a
# glitch. A restarted counter reads what it counted since the restart (one poll interval's
# energy), far below its old index; a meter read 1 Wh low is ~100 % of it.
RESET_BELOW = 0.5
Step = Literal["up", "wrap", "reset", "glitch"]


class Sample(NamedTuple):
    time_ns: int
    value: float


class Replacement(NamedTuple):
    """A meter swapped at ``time_ns``: the old one's last index and the new one's first."""

    time_ns: int
    old_last: float
    new_first: float


def continuous(samples: Sequence[Sample], replacements: Sequence[Replacement]) -> list[Sample]:
    """The samples on one continuous index across meter replacements: from each replacement
    on (samples at or after its time come from the new meter), values are shifted by
    ``old_last - new_first`` (accumulated over successive replacements)."""
    out = list(samples)
    for r in sorted(replacements):
        shift = r.old_last - r.new_first
        out = [Sample(s.time_ns, s.value + shift) if s.time_ns >= r.time_ns else s for s in out]
    return out


@dataclass(frozen=True)
class CounterIncrease:
    """Increase of one counter over [start, end)."""

    value: float | None  # None: not enough data to say
    interpolated: bool  # a boundary index was interpolated between two samples
    extrapolated: bool  # a boundary index was taken from a sample outside the period edge
    resets: int  # steps down treated as reset or wrap
    samples: int
    glitches: int = 0  # small steps down ignored (see the module doc)


def _step(prev: float, cur: float, wrap_at: float | None) -> tuple[float, Step]:
    """Increase from prev to cur, and what kind of step it was (see the module doc)."""
    if cur >= prev:
        return cur - prev, "up"
    if wrap_at is not None and prev > 0.5 * wrap_at and cur < 0.5 * wrap_at:
        return cur + (wrap_at - prev), "wrap"
    if cur < RESET_BELOW * prev:
        return cur, "reset"  # reset to zero, then counted up to cur
    return 0.0, "glitch"


def _at(t: int, before: Sample | None, after: Sample | None, wrap_at: float | None) -> float | None:
    """Index at time t from the samples around it (unwrapped relative to ``before``)."""
    if before is not None and after is not None:
        if after.time_ns == before.time_ns:
            return before.value
        inc, kind = _step(before.value, after.value, wrap_at)
        if kind == "reset":
            return None  # a reset between them: the boundary index is unknowable
        frac = (t - before.time_ns) / (after.time_ns - before.time_ns)
        return before.value + inc * frac
    return None


def counter_increase(
    samples: list[Sample],
    start_ns: int,
    end_ns: int,
    *,
    wrap_at: float | None = None,
    max_extrapolation_ns: int = 0,
    replacements: Sequence[Replacement] = (),
) -> CounterIncrease:
    """Increase of a cumulative counter over [start_ns, end_ns).

    ``samples`` are sorted by time and may extend past the period on both sides (one sample
    each side is enough for interpolation). Without a sample on one side of a boundary, the
    index there is extrapolated from the nearest sample inside the period, if it is within
    ``max_extrapolation_ns``, at the mean rate of the samples inside the period
    (``extrapolated``: an estimate, flagged as such); otherwise the value is None.
    ``replacements``: meter swaps declared in the config (see :func:`continuous`); the energy
    between the old meter's last sample and its removal is counted, nothing twice.
    """
    pts = [s for s in continuous(samples, replacements) if not math.isnan(s.value)]
    inside = [s for s in pts if start_ns <= s.time_ns <= end_ns]
    before_start = next((s for s in reversed(pts) if s.time_ns <= start_ns), None)
    after_start = next((s for s in pts if s.time_ns >= start_ns), None)
    before_end = next((s for s in reversed(pts) if s.time_ns <= end_ns), None)
    after_end = next((s for s in pts if s.time_ns >= end_ns), None)
    interpolated = extrapolated = False
    rate = 0.0  # per ns, for extrapolation: mean over the samples inside (0 across a reset)
    if (
        len(inside) >= 2
        and inside[-1].value >= inside[0].value
        and inside[-1].time_ns > inside[0].time_ns  # samples at one instant only: no rate
    ):
        rate = (inside[-1].value - inside[0].value) / (inside[-1].time_ns - inside[0].time_ns)

    v_start = _at(start_ns, before_start, after_start, wrap_at)
    first = before_start
    if v_start is not None:
        interpolated = before_start is not None and before_start.time_ns != start_ns
    elif after_start is not None and after_start.time_ns - start_ns <= max_extrapolation_ns:
        v_start = max(0.0, after_start.value - rate * (after_start.time_ns - start_ns))
        first, extrapolated = Sample(start_ns, v_start), True
    v_end = _at(end_ns, before_end, after_end, wrap_at)
    if v_end is not None:
        interpolated = interpolated or (before_end is not None and before_end.time_ns != end_ns)
    elif before_end is not None and end_ns - before_end.time_ns <= max_extrapolation_ns:
        v_end, extrapolated = before_end.value + rate * (end_ns - before_end.time_ns), True
        after_end = None
    if v_start is None or v_end is None or first is None or before_end is None:
        return CounterIncrease(None, interpolated, extrapolated, 0, len(inside))

    # Chain: index at start, every sample strictly inside, index at end.
    chain = [v_start] + [s.value for s in pts if first.time_ns < s.time_ns < end_ns] + [v_end]
    total = 0.0
    resets = glitches = 0
    level = chain[0]  # the index so far: held across a glitch
    for cur in chain[1:]:
        inc, kind = _step(level, cur, wrap_at)
        if kind == "glitch":
            glitches += 1
            continue
        total += inc
        resets += kind in ("wrap", "reset")
        level = cur
    return CounterIncrease(total, interpolated, extrapolated, resets, len(inside), glitches)
