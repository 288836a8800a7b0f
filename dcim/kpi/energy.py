"""Meter energies over a period: the increase of each meter's cumulative register, from the
store's per-window aggregates (last value and minimum per window, counts), chained across
counter wraps, resets and declared meter replacements (:mod:`dcim.kpi.counters`).

The database aggregates; Python only chains the per-window indexes of each meter, so a year
is a few thousand rows per meter, not millions of points.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple
from zoneinfo import ZoneInfo

from dcim.config import ROLE_FIELD, Device, SiteConfig
from dcim.kpi.counters import Replacement, Sample, counter_increase
from dcim.profiles import Profile
from dcim.storage.base import Store

NS = 1_000_000_000
# Window for the per-window indexes: about 500 windows over the period, at least 10 s.
_WINDOWS = (10, 60, 300, 900, 3600, 6 * 3600, 86400)
# A boundary index is searched for this many poll intervals around the boundary, and at
# least _SEARCH_MIN_NS: two whole minutes, so that a boundary older than InfluxDB's raw
# retention is answered from the 1-minute rollups (which hold no partial minutes).
_SEARCH_INTERVALS = 3.0
_SEARCH_MIN_NS = 120 * NS
PARALLEL_QUERIES = 4  # queries sent to the store side by side


@dataclass(frozen=True)
class MeterEnergy:
    device: str
    role: str  # topology role, or what the counter is used for ("heat_pump", "ups_input")
    field: str
    value: float | None  # increase over the period, in the counter's unit (Wh, m3)
    samples: int
    expected: int
    completeness: float
    interpolated: bool
    extrapolated: bool
    resets: int
    glitches: int = 0  # small register steps down ignored (:mod:`dcim.kpi.counters`)


class Energy(NamedTuple):
    """A sum of counter increases: value (counter unit), completeness 0..1, estimated, and
    the meters whose register glitched ("name: n step(s) down ignored")."""

    value: float | None
    completeness: float
    estimated: bool
    glitches: tuple[str, ...] = ()

    def glitch_note(self) -> str:
        """ "; register glitches ignored: ..." or ""."""
        return f"; register glitches ignored: {', '.join(self.glitches)}" if self.glitches else ""


def _window_s(period_ns: int, interval_s: float) -> int:
    target = period_ns / NS / 500
    for w in _WINDOWS:
        if w >= max(target, interval_s):
            return w
    return _WINDOWS[-1]


def _wrap_at(profile: Profile, field_name: str) -> float | None:
    if field_name not in profile.field_names:
        return None
    return profile.field(field_name).wrap_at


def replacements_of(cfg: SiteConfig, dev: Device, field_name: str) -> list[Replacement]:
    """The meter swaps declared on ``dev`` for its counter ``field_name`` (``field:`` defaults
    to the counter of the device's role); a time without an offset is local at the site."""
    out: list[Replacement] = []
    for r in dev.replacements:
        fld = r.field or (ROLE_FIELD[dev.role] if dev.role else None)
        if fld != field_name:
            continue
        at = r.at if r.at.tzinfo is not None else r.at.replace(tzinfo=ZoneInfo(cfg.site.timezone))
        out.append(Replacement(round(at.timestamp() * NS), r.old_last_index, r.new_first_index))
    return out


def counter_energies(
    store: Store,
    cfg: SiteConfig,
    devices: Sequence[Device],
    field_name: str,
    start_ns: int,
    end_ns: int,
    *,
    role: str | None = None,
    label: str | None = None,
) -> list[MeterEnergy]:
    """Increase of the counter ``field_name`` of each of ``devices`` over [start, end).

    ``role``: count only readings tagged with this topology role (as E_DC/E_IT meters are).
    ``label``: what :attr:`MeterEnergy.role` says (default: ``role``). A boundary index is
    extrapolated at most ``kpi.max_gap_extrapolation_intervals`` poll intervals; counters of
    16/32-bit registers are unwrapped at their modulus; declared meter replacements are
    chained (:func:`replacements_of`).
    """
    if not devices:
        return []
    profiles = cfg.profiles()
    by_measurement: dict[str, list[Device]] = defaultdict(list)
    for d in devices:
        by_measurement[profiles[d.profile].measurement].append(d)
    max_gap = cfg.kpi.max_gap_extrapolation_intervals
    out: list[MeterEnergy] = []
    for measurement, devs in by_measurement.items():
        interval = max(cfg.interval_of(d) for d in devs)
        look = max(_SEARCH_MIN_NS, int(max(max_gap, _SEARCH_INTERVALS) * interval * NS))
        extrapolation = int(max_gap * interval * NS)
        window = _window_s(end_ns - start_ns, interval)
        where = {"site": cfg.site.name}
        if role is not None:
            where["role"] = role

        def q(
            fn: str,
            a: int,
            b: int,
            every: int | None = None,
            measurement: str = measurement,
            where: dict[str, str] = where,
        ) -> dict[str, list[Sample]]:
            rows = store.aggregate(
                measurement=measurement,
                field=field_name,
                start_ns=a,
                end_ns=b,
                fn=fn,  # type: ignore[arg-type]
                every_s=every,
                where=where,
                group_by=("device",),
            )
            res: dict[str, list[Sample]] = defaultdict(list)
            for r in rows:
                if r.value is not None:
                    res[r.tags.get("device", "")].append(Sample(r.time_ns, float(r.value)))
            return res

        # Per-window last values, queried per segment between declared meter replacements so
        # that no window mixes the old meter's index with the new one's.
        reps = {d.name: replacements_of(cfg, d, field_name) for d in devs}
        cuts = sorted(
            {r.time_ns for rs in reps.values() for r in rs if start_ns < r.time_ns < end_ns}
        )
        bounds = [start_ns, *cuts, end_ns]
        # A window whose minimum is below the index before it holds a reset or wrap: its
        # samples are then read one by one, so the index just before the step is not lost.
        fine = max(1, int(interval // 2))
        # The queries do not depend on each other: a database answers them side by side.
        with ThreadPoolExecutor(max_workers=PARALLEL_QUERIES) as pool:
            before_start_f = pool.submit(q, "last", start_ns - look, start_ns)
            after_start_f = pool.submit(q, "first", start_ns, min(end_ns, start_ns + look))
            before_end_f = pool.submit(q, "last", max(start_ns, end_ns - look), end_ns)
            after_end_f = pool.submit(q, "first", end_ns, end_ns + look)
            counts_f = pool.submit(q, "count", start_ns, end_ns)
            segs = [
                (a, b, pool.submit(q, "last", a, b, window),
                 pool.submit(q, "min", a, b, window) if window > fine else None)
                for a, b in zip(bounds, bounds[1:], strict=False)
            ]  # fmt: skip
        before_start, after_start = before_start_f.result(), after_start_f.result()
        before_end, after_end = before_end_f.result(), after_end_f.result()
        counts = counts_f.result()
        windows: dict[str, list[Sample]] = defaultdict(list)
        for a, b, lasts_f, lows_f in segs:
            lasts = lasts_f.result()
            lows = lows_f.result() if lows_f is not None else {}
            for dev, rows in lasts.items():
                low = {s.time_ns: s.value for s in lows.get(dev, [])}
                first = after_start.get(dev) if a == start_ns else None
                prev = first[0].value if first else None
                for r in rows:
                    if prev is not None and low.get(r.time_ns, r.value) < prev:
                        detail = q(
                            "last",
                            max(r.time_ns, a),
                            min(r.time_ns + window * NS, b),
                            fine,
                            where={**where, "device": dev},
                        ).get(dev, [])
                        windows[dev].extend(Sample(max(x.time_ns, a), x.value) for x in detail)
                    else:
                        windows[dev].append(Sample(max(r.time_ns, a), r.value))
                    prev = r.value
        for d in devs:
            n = d.name
            first_in = after_start.get(n, [])
            last_in = before_end.get(n, [])
            # Interior indexes: per-window last values, in order, placed after the first real
            # sample inside the period and not after the last one; a window's time is its
            # start (or its segment's), so each stays on its side of a meter replacement.
            interior: list[Sample] = []
            if first_in and last_in:
                t0, t1 = first_in[0].time_ns, last_in[-1].time_ns
                interior = [
                    Sample(min(max(w.time_ns, t0 + 1 + i), max(t1, t0 + 1 + i)), w.value)
                    for i, w in enumerate(windows.get(n, []))
                ]
            samples = before_start.get(n, []) + first_in + interior + last_in + after_end.get(n, [])
            inc = counter_increase(
                samples,
                start_ns,
                end_ns,
                wrap_at=_wrap_at(profiles[d.profile], field_name),
                max_extrapolation_ns=extrapolation,
                replacements=reps[n],
            )
            got = int(counts[n][0].value) if counts.get(n) else 0
            expected = max(1, round((end_ns - start_ns) / NS / cfg.interval_of(d)))
            out.append(
                MeterEnergy(
                    device=n,
                    role=label if label is not None else (role or ""),
                    field=field_name,
                    value=inc.value,
                    samples=got,
                    expected=expected,
                    completeness=min(1.0, got / expected),
                    interpolated=inc.interpolated,
                    extrapolated=inc.extrapolated,
                    resets=inc.resets,
                    glitches=inc.glitches,
                )
            )
    return out


def meter_energies(
    store: Store, cfg: SiteConfig, role: str, start_ns: int, end_ns: int
) -> list[MeterEnergy]:
    """Counter increase of every enabled device with ``role`` over [start, end)."""
    return counter_energies(
        store, cfg, cfg.devices_with_role(role), ROLE_FIELD[role], start_ns, end_ns, role=role
    )


def sum_energy(meters: list[MeterEnergy]) -> Energy:
    """Sum over meters; None if any meter has no value (or there is no meter)."""
    if not meters:
        return Energy(None, 0.0, False)
    vals = [m.value for m in meters]
    total = None if any(v is None for v in vals) else sum(v for v in vals if v is not None)
    completeness = sum(m.completeness for m in meters) / len(meters)
    glitches = tuple(f"{m.device}: {m.glitches} step(s) down" for m in meters if m.glitches)
    return Energy(total, completeness, any(m.extrapolated for m in meters), glitches)
