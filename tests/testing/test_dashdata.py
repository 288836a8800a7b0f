"""dcim.testing.dashdata's rollup lines: the aggregates of each window as the continuous
queries write them, integer fields as integers, floats to 10 significant digits."""

from __future__ import annotations

import numpy as np
import pytest

from dcim.testing.dashdata import NS, rollup_lines


def _parse(line: bytes) -> tuple[str, dict[str, int | float], int]:
    key, fields, t = line.decode().rsplit(" ", 2)
    out: dict[str, int | float] = {}
    for kv in fields.split(","):
        name, v = kv.split("=")
        out[name] = int(v[:-1]) if v.endswith("i") else float(v)
    return key, out, int(t)


def test_rollup_lines_are_the_windows_aggregates() -> None:
    rng = np.random.default_rng(3)
    power = rng.random(12) * 1000.0
    up = np.array([1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1], dtype=np.float64)
    key = "pdu,device=a%b,site=x"  # a '%' in a tag: not a format directive
    lines = rollup_lines(key, 7200 * NS, {"power_w": power, "up": up}, 3600, 6, 360,
                         frozenset({"up"}))  # fmt: skip
    assert len(lines) == 2
    for i, line in enumerate(lines):
        k, f, t = _parse(line)
        w, u = power[6 * i : 6 * i + 6], up[6 * i : 6 * i + 6]
        assert k == key and t == (7200 + 3600 * i) * NS
        assert f["mean_power_w"] == pytest.approx(w.mean(), rel=1e-9)
        assert f["sum_power_w"] == pytest.approx(w.mean() * 360, rel=1e-9)
        for name, want in (("min", w.min()), ("max", w.max()), ("first", w[0]), ("last", w[-1])):
            assert f[f"{name}_power_w"] == pytest.approx(want, rel=1e-9)
        assert f["count_power_w"] == 360 and isinstance(f["count_power_w"], int)
        assert f["min_up"] == 0 and isinstance(f["min_up"], int) and isinstance(f["sum_up"], int)
        assert f["sum_up"] == round(u.mean() * 360)
        assert isinstance(f["mean_up"], float)
    assert rollup_lines(key, 0, {"power_w": power[:5]}, 3600, 6, 360) == []
