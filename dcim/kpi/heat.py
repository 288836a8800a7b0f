"""Heat energy integrated from a heat meter's flow and temperatures (EN 1434), to reconcile
with the meter's own energy register.

The store aggregates: per window, the mean flow and the mean supply and return temperatures
of the meter; the power of each window is k(theta_f, theta_r) * (theta_f - theta_r) * flow
(:mod:`dcim.kpi.water`), times the part of the window inside the period. A window missing
any of the three is a gap: it adds nothing and lowers the completeness; it is never filled.
A window whose mean temperature is not liquid water (a sensor's fault value such as
-327.68 degC) is not usable either: it is listed in :attr:`IntegratedHeat.invalid` (field, time
range, values, why) so that the figure built on it can say so instead of failing the report.

The three means come from the store's ``window_means`` (:class:`dcim.storage.base.Store`):
the embedded and InfluxDB stores read them together where they can (one statement, the
rollups as stored), else one ``aggregate`` per field; the same floats either way. Pure
Python (:func:`dcim.kpi.water.window_powers` for all the windows in one loop, ``math.fsum``
over them): the production path does not need numpy; ``benchmarks/heat_integration.py``
times it against the numpy arithmetic it replaced.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

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
class Invalid:
    """Consecutive windows whose mean ``field`` is not usable, and why."""

    field: str
    start_ns: int  # start of the first bad window (or of the period)
    end_ns: int  # end of the last bad window (or of the period)
    windows: int
    low: float  # lowest and highest bad value
    high: float
    why: str

    def describe(self, device: str, window_s: int) -> str:
        def utc(ns: int) -> str:
            return datetime.fromtimestamp(ns / NS, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

        lo, hi = f"{self.low:.2f}", f"{self.high:.2f}"
        vals = lo if lo == hi else f"{lo} to {hi}"
        return (
            f"{device} {self.field}, window means {vals}, from {utc(self.start_ns)} to "
            f"{utc(self.end_ns)} ({self.windows} window(s) of {window_s} s): {self.why}"
        )


@dataclass(frozen=True)
class WindowEnergy:
    wh: float  # over the usable windows
    usable: int
    invalid: tuple[Invalid, ...]


@dataclass(frozen=True)
class IntegratedHeat:
    device: str
    value_wh: float | None  # over the usable windows; None: no usable window
    windows: int  # usable windows: flow and both temperatures, all valid
    expected: int
    completeness: float
    invalid: tuple[Invalid, ...] = ()  # windows with values that are not water
    window_s: int = 60


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

    times, (flow, tf, tr) = _window_means(store, measurement, start_ns, end_ns, window, where)
    first = start_ns // step * step
    expected = max(1, -(-(end_ns - first) // step))
    got = window_energy_wh(times, flow, tf, tr, dev.flow_sensor, step, start_ns, end_ns)
    return IntegratedHeat(
        dev.name,
        got.wh if got.usable else None,
        got.usable,
        expected,
        min(1.0, got.usable / expected),
        got.invalid,
        window,
    )


def _window_means(
    store: Store, measurement: str, start_ns: int, end_ns: int, window: int, where: dict[str, str]
) -> tuple[list[int], list[list[float]]]:
    """The windows with a mean of each of :data:`FIELDS`, and those means (the store's
    ``window_means``: the three fields read together where it can)."""
    return store.window_means(
        measurement=measurement, fields=FIELDS, start_ns=start_ns, end_ns=end_ns,
        every_s=window, where=where,
    )  # fmt: skip


def window_energy_wh(
    times: Sequence[int],
    flow: Sequence[float],
    t_supply: Sequence[float],
    t_return: Sequence[float],
    sensor: water.SensorPosition,
    step_ns: int,
    start_ns: int,
    end_ns: int,
) -> WindowEnergy:
    """Wh from per-window means (window starts ``times``, ``step_ns`` long), each window's
    power times its part inside [start, end); windows whose temperatures are not liquid water
    are left out and returned as :class:`Invalid` spans."""
    lo, hi = water.liquid_range()
    powers = water.window_powers(flow, t_supply, t_return, sensor=sensor)
    full = step_ns / NS  # a window wholly inside the period
    first, last = start_ns, end_ns - step_ns  # windows starting in [first, last] are whole

    def part(t: int) -> float:
        return full if first <= t <= last else (min(t + step_ns, end_ns) - max(t, start_ns)) / NS

    if None not in powers and all(q >= 0.0 for q in flow):  # the usual case: all usable
        ok = cast(list[float], powers)
        parts = [
            p * full if first <= t <= last else p * part(t) for t, p in zip(times, ok, strict=True)
        ]
        return WindowEnergy(math.fsum(parts) / 3600.0, len(parts), ())
    parts = []
    bad: list[tuple[str, int, float]] = []  # field, window start, value
    bad_flow: list[tuple[str, int, float]] = []
    for t, q, a, b, power in zip(times, flow, t_supply, t_return, powers, strict=True):
        if not q >= 0.0:  # also NaN: a meter counts forward flow only
            bad_flow.append(("flow_m3_per_h", t, q))
            continue
        if power is None:
            field, value = ("return_temp_c", b) if not lo <= b <= hi else ("supply_temp_c", a)
            bad.append((field, t, value))
            continue
        parts.append(power * part(t))
    why = f"outside {lo:g}-{hi:g} degC, not liquid water (a sensor fault value?); left out"
    invalid = _spans(bad_flow, step_ns, "negative flow (a sensor fault value?); left out")
    invalid += _spans(bad, step_ns, why)
    return WindowEnergy(math.fsum(parts) / 3600.0, len(parts), invalid)


def _spans(bad: list[tuple[str, int, float]], step_ns: int, why: str) -> tuple[Invalid, ...]:
    """Bad windows grouped per field into runs of consecutive windows."""
    out: list[Invalid] = []
    for field in sorted({f for f, _, _ in bad}):
        runs: list[list[tuple[int, float]]] = []
        for f, t, v in bad:
            if f != field:
                continue
            if runs and t == runs[-1][-1][0] + step_ns:
                runs[-1].append((t, v))
            else:
                runs.append([(t, v)])
        for run in runs:
            vals = [v for _, v in run]
            out.append(Invalid(field, run[0][0], run[-1][0] + step_ns, len(run),
                               min(vals), max(vals), why))  # fmt: skip
    return tuple(out)


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
