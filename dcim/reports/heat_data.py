"""The figures of a monthly heat-delivery statement, as plain numbers (MWh, m3, degC, kW,
hours, UTC ns): read from the store through the KPI code, formatted nowhere.

The register energy is the billed figure: the increase of the meter's energy register over
the period (:func:`dcim.kpi.energy.counter_energies`: boundary indexes read or interpolated
in time, declared meter swaps chained). The check is the same energy integrated from the
meter's flow and temperatures per EN 1434 (:func:`dcim.kpi.heat.window_energy_wh` over the
store's 1-minute means, k from IAPWS-IF97 at the flow sensor's pipe), compared with the
meter's maximum permissible error (EN 1434-1: flow sensor of its class, temperature pair,
calculator). Hours, temperatures and power come from the same 1-minute windows; a window
without data is a gap, never filled.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from dcim.config import Device, SiteConfig
from dcim.kpi import heat as kheat
from dcim.kpi.counters import Sample, counter_increase
from dcim.kpi.energy import MeterEnergy, counter_energies, replacements_of
from dcim.plausible import POLL
from dcim.reports.recording import RecordingStore
from dcim.reports.settings import DeliveryPoint, MeterIdentity
from dcim.storage.base import Store

NS = 1_000_000_000
HOUR = 3600 * NS
ENERGY, VOLUME = "heat_energy_wh_total", "volume_m3_total"
SERIAL = "meter_serial"
# EN 1434-1 maximum permissible errors (%), flow sensor per class: a + b * qp / q, capped.
_FLOW_MPE = {1: (1.0, 0.01, 3.5), 2: (2.0, 0.02, 5.0), 3: (3.0, 0.05, 5.0)}


class NoData(Exception):
    """The period has no reading of the delivery point's meter: no statement."""


@dataclass(frozen=True)
class Windows:
    """The period's 1-minute means of the meter (window starts, ns), windows with all three."""

    step_ns: int
    times: list[int]
    flow: list[float]
    supply: list[float]
    ret: list[float]


def mpe_percent(cls: int, qp: float, q: float, dtheta: float, dtheta_min: float) -> float:
    """EN 1434-1 maximum permissible error of a complete heat meter, %, at flow ``q`` (m3/h)
    and temperature difference ``dtheta`` (K): flow sensor + temperature pair + calculator."""
    a, b, cap = _FLOW_MPE[cls]
    ef = min(cap, a + b * qp / max(q, 1e-9))
    et = 0.5 + 3.0 * dtheta_min / dtheta
    ec = 0.5 + dtheta_min / dtheta
    return ef + et + ec


def day_bounds(start_ns: int, end_ns: int, tz: str) -> list[int]:
    """Local midnights from start to end (both included): 23 h and 25 h days stay whole."""
    zone = ZoneInfo(tz)
    d = datetime.fromtimestamp(start_ns / NS, zone).date()
    out = []
    while True:
        t = int(datetime(d.year, d.month, d.day, tzinfo=zone).timestamp()) * NS
        if t >= end_ns:
            out.append(end_ns)
            return out
        out.append(max(t, start_ns))
        d += timedelta(days=1)


def meter_spans(point: DeliveryPoint, tz: str) -> list[tuple[MeterIdentity, int, int | None]]:
    """Each declared meter with the time it was installed and the next one's (None: still
    there), UTC ns; a time without an offset is local at the site."""
    zone = ZoneInfo(tz)

    def ns(m: MeterIdentity) -> int:
        at = m.installed if m.installed.tzinfo else m.installed.replace(tzinfo=zone)
        return int(at.timestamp() * NS)

    starts = [ns(m) for m in point.meters]
    return [(m, a, starts[i + 1] if i + 1 < len(starts) else None)
            for i, (m, a) in enumerate(zip(point.meters, starts, strict=True))]  # fmt: skip


def meters_of_period(
    point: DeliveryPoint, start_ns: int, end_ns: int, tz: str
) -> list[MeterIdentity]:
    return [m for m, a, z in meter_spans(point, tz) if a < end_ns and (z is None or z > start_ns)]


def serial_number(text: str) -> int | None:
    """The number a declared serial stands for: its digits (``"HM-0071234567"`` ->
    71234567), as the meter's register holds it; None when it has no digit."""
    digits = re.sub(r"\D", "", text)
    return int(digits) if digits else None


def serial_hours(
    rd: Reader, point: DeliveryPoint, start_ns: int, end_ns: int, tz: str
) -> list[dict[str, Any]]:
    """The hours in which the meter's ``meter_serial`` was read: the serials read (the
    hour's lowest and highest), the serials the site file declares for that hour (the meter
    installed then; both in the hour of a swap) and whether the ones read are among them."""
    rows = {
        fn: rd.store.aggregate(
            measurement=rd.measurement,
            field=SERIAL,
            start_ns=start_ns,
            end_ns=end_ns,
            fn=fn,
            every_s=3600,
            where=rd.where,  # type: ignore[arg-type]
        )  # fmt: skip
        for fn in ("min", "max")
    }
    hi = {r.time_ns: r.value for r in rows["max"] if r.value is not None}
    spans = meter_spans(point, tz)
    out = []
    for r in rows["min"]:
        if r.value is None:
            continue
        a, z = max(r.time_ns, start_ns), min(r.time_ns + HOUR, end_ns)
        read = sorted({round(r.value), round(hi.get(r.time_ns, r.value))})
        declared = [m.serial for m, f, u in spans if f < z and (u is None or u > a)]
        numbers = {serial_number(x) for x in declared}
        out.append({"start_ns": a, "end_ns": z, "read": read, "declared": declared,
                    "ok": all(x in numbers for x in read)})  # fmt: skip
    return out


def serial_check(hours: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The month's verdict: ``ok`` (every serial read is the declared one), ``mismatch``
    (with each run of hours that read another: from, to, read, declared) or ``not_read``
    (the meter gave no serial: nothing checked, and the statement says so)."""
    read: list[int] = []
    runs: list[dict[str, Any]] = []
    for h in hours:
        read += [x for x in h["read"] if x not in read]
        if h["ok"]:
            continue
        last = runs[-1] if runs else None
        if last and last["end_ns"] == h["start_ns"] and last["declared"] == h["declared"]:
            last["end_ns"] = h["end_ns"]
            last["read"] = sorted(set(last["read"]) | set(h["read"]))
        else:
            runs.append({k: h[k] for k in ("start_ns", "end_ns", "read", "declared")})
    status = "not_read" if not hours else "mismatch" if runs else "ok"
    return {"status": status, "read": [str(x) for x in read], "hours_read": len(hours),
            "hours_mismatch": sum(1 for h in hours if not h["ok"]),
            "mismatches": [{**r, "read": [str(x) for x in r["read"]]} for r in runs]}  # fmt: skip


def _one(rows: Sequence[Any]) -> Sample | None:
    for r in rows:
        if r.value is not None:
            return Sample(r.time_ns, float(r.value))
    return None


class Reader:
    """The queries of one statement, all through a :class:`RecordingStore`."""

    def __init__(self, store: RecordingStore, cfg: SiteConfig, dev: Device) -> None:
        self.store, self.cfg, self.dev = store, cfg, dev
        self.measurement = cfg.profiles()[dev.profile].measurement
        self.interval_ns = int(cfg.interval_of(dev) * NS)
        self.where = {"site": cfg.site.name, "device": dev.name}
        self.look_ns = max(120 * NS, 3 * self.interval_ns)

    def point(self, fn: str, fld: str, a: int, b: int) -> Sample | None:
        rows = self.store.aggregate(
            measurement=self.measurement, field=fld, start_ns=a, end_ns=b,
            fn=fn, where=self.where,  # type: ignore[arg-type]
        )  # fmt: skip
        return _one(rows)

    def energy(self, fld: str, a: int, b: int) -> MeterEnergy:
        return counter_energies(self.store, self.cfg, [self.dev], fld, a, b)[0]

    def windows(self, start_ns: int, end_ns: int) -> Windows:
        w = kheat.window_for((end_ns - start_ns) / NS, self.cfg.interval_of(self.dev))

        def means(fld: str) -> dict[int, float]:
            rows = self.store.aggregate(
                measurement=self.measurement, field=fld, start_ns=start_ns, end_ns=end_ns,
                fn="mean", every_s=w, where=self.where,
            )  # fmt: skip
            return {r.time_ns: float(r.value) for r in rows if r.value is not None}

        f, s, r = means("flow_m3_per_h"), means("supply_temp_c"), means("return_temp_c")
        times = sorted(set(f) & set(s) & set(r))
        return Windows(w * NS, times, [f[t] for t in times], [s[t] for t in times],
                       [r[t] for t in times])  # fmt: skip


def day_registers(rd: Reader, fld: str, bounds: list[int]) -> list[float | None]:
    """The register's increase over each [bounds[i], bounds[i+1]): the readings just before
    and after each boundary, chained by :func:`dcim.kpi.counters.counter_increase` (boundary
    indexes interpolated in time, wraps, resets and declared swaps as for the month), so the
    days add up to the month. 4 small queries per boundary instead of a month's each day."""
    from concurrent.futures import ThreadPoolExecutor

    from dcim.kpi.energy import PARALLEL_QUERIES, _wrap_at

    def around(t: int) -> list[Sample]:
        got = [rd.point("last", fld, t - rd.look_ns, t), rd.point("first", fld, t, t + rd.look_ns)]
        return [s for s in got if s is not None]

    with ThreadPoolExecutor(max_workers=PARALLEL_QUERIES) as pool:
        near = list(pool.map(around, bounds))
    samples = sorted({s for ss in near for s in ss})
    reps = replacements_of(rd.cfg, rd.dev, fld)
    wrap = _wrap_at(rd.cfg.profiles()[rd.dev.profile], fld)
    return [
        counter_increase(samples, a, z, wrap_at=wrap, replacements=reps).value
        for a, z in zip(bounds, bounds[1:], strict=False)
    ]


def boundary(rd: Reader, fld: str, t: int, shift: float) -> dict[str, Any]:
    """The meter index at ``t``: read at it, or interpolated linearly in time between the
    last reading before and the first after (both shown). ``shift``: what the declared swaps
    before ``t`` add to put the new meter's reading on the old one's scale (0 before any)."""
    before = rd.point("last", fld, t - rd.look_ns, t)
    after = rd.point("first", fld, t, t + rd.look_ns)
    out: dict[str, Any] = {
        "at_ns": t,
        "before": None if before is None else {"time_ns": before.time_ns, "index": before.value},
        "after": None if after is None else {"time_ns": after.time_ns, "index": after.value},
    }
    if after is not None and after.time_ns == t:
        out.update(index=after.value, how="read")
    elif before is not None and after is not None:
        inc = counter_increase([before, after], before.time_ns, t).value
        out.update(index=None if inc is None else before.value + inc, how="interpolated")
    else:
        out.update(index=None, how="missing")
    out["continuous_index"] = None if out["index"] is None else out["index"] + shift
    return out


def integrate(win: Windows, sensor: Any, a: int, b: int) -> dict[str, Any]:
    """Integrated energy (Wh), volume-weighted temperatures and coverage over [a, b)."""
    i, j = bisect_left(win.times, a), bisect_left(win.times, b)
    t, q, ts, tr = win.times[i:j], win.flow[i:j], win.supply[i:j], win.ret[i:j]
    got = kheat.window_energy_wh(t, q, ts, tr, sensor, win.step_ns, a, b)
    sums = {
        "wh": got.wh if got.usable else None,
        "invalid": len(got.invalid),
        "vol": math.fsum(q),
        "qts": math.fsum(x * y for x, y in zip(q, ts, strict=True)),
        "qtr": math.fsum(x * y for x, y in zip(q, tr, strict=True)),
        "windows": len(t),
        "expected": max(1, -(-(b - a) // win.step_ns)),
    }
    return _means(sums)


def combine(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The figures of consecutive spans (hours) over their union (a day, the month)."""
    whs = [p["wh"] for p in parts if p["wh"] is not None]
    sums = {
        "wh": math.fsum(whs) if whs else None,
        **{k: sum(p[k] for p in parts) for k in ("invalid", "windows", "expected")},
        **{k: math.fsum(p[k] for p in parts) for k in ("vol", "qts", "qtr")},
    }
    return _means(sums)


def _means(s: dict[str, Any]) -> dict[str, Any]:
    vol, n = s["vol"], s["windows"]
    return {
        **s,
        "supply_c": s["qts"] / vol if vol else None,
        "return_c": s["qtr"] / vol if vol else None,
        "flow_m3_per_h": vol / n if n else None,
        "coverage": min(1.0, n / s["expected"]),
    }


def gaps(rd: Reader, win: Windows, start_ns: int, end_ns: int) -> list[dict[str, Any]]:
    """Runs of 1-minute windows without data, each from the last reading before it to the
    first after it, with its cause where the data tell it, and the register across it."""
    present = set(win.times)
    step = win.step_ns
    first = start_ns // step * step
    runs: list[tuple[int, int]] = []
    t = first
    while t < end_ns:
        if t not in present:
            if runs and runs[-1][1] == t:
                runs[-1] = (runs[-1][0], t + step)
            else:
                runs.append((t, t + step))
        t += step
    out = []
    for a, b in runs:
        a, b = max(a, start_ns), min(b, end_ns)
        before = rd.point("last", ENERGY, a - rd.look_ns - step, a)
        after = rd.point("first", ENERGY, b, b + rd.look_ns + step)
        g0 = before.time_ns if before is not None else a
        g1 = after.time_ns if after is not None else b
        out.append(
            {
                "start_ns": g0,
                "end_ns": g1,
                "duration_s": (g1 - g0) / NS,
                "cause": cause(rd, g0 + 1, g1),
                "register_wh": None
                if before is None or after is None
                else counter_increase([before, after], g0, g1).value,
            }
        )
    return out


def cause(rd: Reader, a: int, b: int) -> str:
    """``device_down``: the collector's health rows show failed polls of the meter;
    ``collector_down``: no row at all from any device of the site; ``unknown`` otherwise."""
    # the readings of other devices at the gap's edges are not "inside" it: a poll margin
    a, b = a + rd.interval_ns, b - rd.interval_ns
    if a >= b:
        return "unknown"
    polls = rd.store.aggregate(
        measurement=POLL, field="up", start_ns=a, end_ns=b, fn="min", where=rd.where
    )
    if any(r.value is not None and r.value < 1 for r in polls):
        return "device_down"
    others = rd.store.aggregate(
        measurement=rd.measurement, field="flow_m3_per_h", start_ns=a, end_ns=b, fn="count",
        where={"site": rd.cfg.site.name},
    )  # fmt: skip
    polled = rd.store.aggregate(
        measurement=POLL, field="up", start_ns=a, end_ns=b, fn="count",
        where={"site": rd.cfg.site.name},
    )  # fmt: skip
    if not any(r.value for r in others) and not any(r.value for r in polled):
        return "collector_down"
    return "unknown"


def swaps(cfg: SiteConfig, dev: Device, start_ns: int, end_ns: int) -> list[dict[str, Any]]:
    out = []
    for fld in (ENERGY, VOLUME):
        for r in replacements_of(cfg, dev, fld):
            if start_ns <= r.time_ns < end_ns:
                out.append({"field": fld, "time_ns": r.time_ns, "old_last": r.old_last,
                            "new_first": r.new_first})  # fmt: skip
    return sorted(out, key=lambda s: (s["time_ns"], s["field"]))


def shift_before(cfg: SiteConfig, dev: Device, fld: str, t: int) -> float:
    return sum(r.old_last - r.new_first for r in replacements_of(cfg, dev, fld) if r.time_ns <= t)


def unread(store: Store) -> RecordingStore:
    return store if isinstance(store, RecordingStore) else RecordingStore(store)
