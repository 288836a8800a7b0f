"""``water.window_powers``: ``heat_power_w`` for many windows, the same floats bit for bit,
None where it raises."""

from __future__ import annotations

import math
import random

import pytest

from dcim.kpi import water


def _one(q: float, a: float, b: float, sensor: water.SensorPosition, p: float) -> float | None:
    try:
        return water.heat_power_w(q, a, b, sensor=sensor, p_mpa=p)
    except ValueError:
        return None


@pytest.mark.parametrize("sensor", ["supply", "return"])
@pytest.mark.parametrize("p_mpa", [water.DEFAULT_PRESSURE_MPA, 0.101325])
def test_window_powers_bit_for_bit(sensor: water.SensorPosition, p_mpa: float) -> None:
    rng = random.Random(7)
    lo, hi = water.liquid_range(p_mpa)
    temps = water.table(p_mpa)[0]
    cases = [(rng.uniform(0, 40), rng.uniform(lo, hi), rng.uniform(lo, hi)) for _ in range(3000)]
    cases += [(12.0, a, a - rng.uniform(0, 2e-3)) for a in (temps[5], temps[400], 55.0)]
    cases += [(3.0, temps[i], temps[j]) for i, j in ((1, 0), (100, 37), (-1, -2), (0, -1))]
    cases += [(3.0, lo + 0.02, lo + 0.01), (3.0, hi, hi - 5), (3.0, 50.0, 50.0)]
    cases += [(3.0, -327.68, 30.0), (3.0, 60.0, hi + 1), (3.0, math.nan, 30.0), (-1.0, 60, 50)]
    cases += [(3.0, lo - 5e-10, 30.0), (3.0, 60.0, hi + 5e-10), (math.nan, 60.0, 50.0)]
    q, a, b = (list(c) for c in zip(*cases, strict=True))
    got = water.window_powers(q, a, b, sensor=sensor, p_mpa=p_mpa)
    want = [_one(*c, sensor, p_mpa) for c in cases]
    same = [
        g is w or (g is not None and w is not None and (g == w or math.isnan(g) and math.isnan(w)))
        for g, w in zip(got, want, strict=True)
    ]
    assert all(same), [
        (c, g, w) for c, g, w, s in zip(cases, got, want, same, strict=True) if not s
    ]
    assert sum(p is None for p in got) == 3  # -327.68, above the liquid range, NaN
