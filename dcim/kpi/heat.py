"""Heat energy integrated from a heat meter's flow and temperatures (EN 1434), to reconcile
with the meter's own energy register.

The store aggregates: per window, the mean flow and the mean supply and return temperatures
of the meter; the power of each window is k(theta_f, theta_r) * (theta_f - theta_r) * flow
(:mod:`dcim.kpi.water`), times the part of the window inside the period. A window missing
any of the three is a gap: it adds nothing and lowers the completeness; it is never filled.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from dcim.config import Device, SiteConfig
from dcim.kpi import water
from dcim.storage.base import Store

NS = 1_000_000_000
FIELDS = ("flow_m3_per_h", "supply_temp_c", "return_temp_c")
# The smallest of these windows giving at most ~50,000 windows over the period: a month
# at 1 min, a quarter at 5 min, a year at 1 h. Each nests in the stores' 1-minute or 1-hour
# rollups, so a long period is read from them. The mean of products over a window differs
# from the product of means only by the covariance inside it, negligible for plant signals.
_WINDOWS_S = (60, 300, 3600)


@dataclass(frozen=True)
class IntegratedHeat:
    device: str
    value_wh: float | None  # None: no window had the three values
    windows: int  # windows with flow and both temperatures
    expected: int
    completeness: float


@dataclass(frozen=True)
class Reconciliation:
    device: str
    register_wh: float | None
    integrated_wh: float | None
    difference: float | None  # (register - integrated) / integrated
    tolerance: float
    ok: bool | None  # None: one side missing


def window_for(period_s: float, interval_s: float) -> int:
    for w in _WINDOWS_S:
        if w >= interval_s and period_s / w <= 50_000:
            return w
    return _WINDOWS_S[-1]


def integrated_heat(
    store: Store, cfg: SiteConfig, dev: Device, start_ns: int, end_ns: int, *, measurement: str
) -> IntegratedHeat:
    """Heat delivered through ``dev`` over [start, end), Wh, from flow and temperatures."""
    window = window_for((end_ns - start_ns) / NS, cfg.interval_of(dev))
    step = window * NS
    where = {"site": cfg.site.name, "device": dev.name}

    def means(fld: str) -> dict[int, float]:
        rows = store.aggregate(
            measurement=measurement,
            field=fld,
            start_ns=start_ns,
            end_ns=end_ns,
            fn="mean",
            every_s=window,
            where=where,
        )
        return {r.time_ns: float(r.value) for r in rows if r.value is not None}

    with ThreadPoolExecutor(max_workers=len(FIELDS)) as pool:  # the database works in parallel
        series = list(pool.map(means, FIELDS))
    times = sorted(set(series[0]) & set(series[1]) & set(series[2]))
    first = start_ns // step * step
    expected = max(1, -(-(end_ns - first) // step))
    if not times:
        return IntegratedHeat(dev.name, None, 0, expected, 0.0)
    t = np.array(times, dtype=np.int64)
    flow, tf, tr = (np.array([s[x] for x in times]) for s in series)
    power = water.heat_power_w(flow, tf, tr, sensor=dev.flow_sensor)
    inside_s = (np.minimum(t + step, end_ns) - np.maximum(t, start_ns)) / NS
    return IntegratedHeat(
        dev.name,
        float(np.sum(power * inside_s) / 3600.0),
        len(times),
        expected,
        min(1.0, len(times) / expected),
    )


def reconcile(
    device: str, register_wh: float | None, integrated_wh: float | None, tolerance: float
) -> Reconciliation:
    """Compare a meter's register increase with the heat integrated from its flow and
    temperatures; a relative difference above ``tolerance`` is not ok."""
    if register_wh is None or integrated_wh is None or integrated_wh == 0:
        return Reconciliation(device, register_wh, integrated_wh, None, tolerance, None)
    diff = (register_wh - integrated_wh) / integrated_wh
    return Reconciliation(
        device, register_wh, integrated_wh, diff, tolerance, abs(diff) <= tolerance
    )
