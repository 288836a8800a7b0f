"""History older than InfluxDB's raw retention (``dcim twin backfill`` of a past year).

After ``dcim db init`` the raw points go to the ``raw`` policy (30 days by default): InfluxDB
refuses older ones ("points beyond retention policy"). What a site that had run the collector
for that year would hold is the rollups the continuous queries wrote while the raw points
existed: ``rp_1m`` (``retention_1m``, 400 days by default) and ``rp_1h`` (forever). So the
backfill writes those for the part of the period before the raw horizon (:class:`OldHistory`:
the readings, validated as the pipeline does, rolled up by
:class:`dcim.storage.rollupcalc.Rollups`, the same points as :func:`dcim.storage.influx.
rollup_select` makes from raw points) and raw points (through the spool) after it.

The cut is the hour from which the InfluxDB store reads raw points (``_rollup_before``:
before it, it answers from the rollups), so every hour reads back whole. While a long
backfill runs, the raw horizon moves on: readings that InfluxDB would refuse by the time they
are written (:data:`RAW_MARGIN_NS`) go to the raw part's rollups only
(:meth:`OldHistory.split`). A window older than its rollup policy keeps is left out (and
counted). Rollup levels are ``ROLLUP_RP``'s: a daily policy added there is written too, from
the same readings, except that the day the cut falls in then holds only the part before it
(the raw part's rollups, :class:`~dcim.storage.rollupcalc.SuppliedRollups`, are minutes and
hours).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dcim.pipeline import Pipeline
from dcim.reading import Reading
from dcim.storage.rollupcalc import Rollups

NS = 1_000_000_000
HOUR = 3600 * NS
RAW_MARGIN_NS = 300 * NS  # raw points this close to the horizon may be refused when written
ROLLUP_MARGIN_NS = HOUR  # rollup windows this close to their policy's horizon are left out
WRITE_POINTS = 5000  # rollup points per request


class BeyondRetention(Exception):
    """Old history the database cannot keep as it is set up (no rollup policies)."""


@dataclass
class Horizons:
    """``cut_ns``: readings before it go to the rollups only (an hour: where the store starts
    reading raw points). ``raw_s``: the raw policy's duration. ``keep_from``: per rollup
    level (s), the oldest window its policy keeps (None: forever)."""

    cut_ns: int
    raw_policy: str
    raw_s: int
    keep_from: dict[int, int | None] = field(default_factory=dict)


def horizons(store: Any, start_ns: int, now_ns: int) -> Horizons | None:
    """Where ``store`` (an InfluxDB store, v1 API) stops taking raw points, if a backfill from
    ``start_ns`` reaches before it; None when every point of the period can be written raw
    (another store, a raw policy kept forever, a period inside it). Raises
    :class:`BeyondRetention` when the database has a finite raw policy and no rollup policies
    to keep the older part in."""
    from dcim.storage.influx import ROLLUP_RP, InfluxStore, raw_horizon

    if not isinstance(store, InfluxStore) or store.sink.api != "v1":
        return None
    pol = store.policies()
    name = store.sink.retention_policy or next((n for n, (_, d) in pol.items() if d), None)
    if name is None or name not in pol or pol[name][0] is None:
        return None
    raw_s = int(pol[name][0] or 0)
    cut = raw_horizon(now_ns, raw_s)  # before this hour the store answers from the rollups
    ready = store.rollups_ready()
    if start_ns < cut and not ready:
        raise BeyondRetention(
            f"InfluxDB database {store.sink.database}: its raw retention policy {name} keeps "
            f"{raw_s // 86400} days and it has no rollup policies ({', '.join(ROLLUP_RP.values())}"
            f") for older history: run `dcim db init` on the site file first (the backfill "
            f"then writes the older part as 1-minute and 1-hour rollups), or start --from at "
            f"or after {_iso(cut)}"
        )
    if not ready:
        return None
    keep: dict[int, int | None] = {}
    for level, rp in ROLLUP_RP.items():
        if rp not in pol:  # a database initialised before this policy existed (rp_1d)
            continue
        dur = pol[rp][0]
        keep[level] = None if dur is None else now_ns - dur * NS + ROLLUP_MARGIN_NS
    return Horizons(cut, name, raw_s, keep)


def _iso(ns: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ns / NS, UTC).strftime("%Y-%m-%dT%H:%MZ")


class _Discard:
    """The validating pipeline's spool for the rollups-only part: nothing is spooled."""

    def append(self, readings: list[Reading]) -> None:
        pass


class OldHistory:
    """Readings before ``h.cut_ns`` in, in time order (:meth:`add`): validated (the
    pipeline's checks, a refused value is counted as the collector counts it), rolled up per
    window, each hour's rollups written once the readings have passed it, the rest on
    :meth:`close`."""

    def __init__(self, store: Any, h: Horizons) -> None:
        from dcim.storage.influx import ROLLUP_RP

        self.store, self.h = store, h
        self.pipeline = Pipeline(_Discard())
        levels = sorted(lv for lv in ROLLUP_RP if lv in h.keep_from)  # the policies there
        self.calc = Rollups(levels)
        self.written = dict.fromkeys(levels, 0)  # rollup points per level
        self.too_old = dict.fromkeys(levels, 0)  # left out: older than the policy keeps
        self.readings = 0  # validated readings kept as rollups only
        self.late_raw = 0  # of which after the cut (too old for raw by the time written)

    def validate(self, readings: Sequence[Reading]) -> list[Reading]:
        """The readings the pipeline would keep (a refused value counted as it counts it)."""
        kept: list[Reading] = []
        self.pipeline.accept(list(readings), kept=kept)
        self.readings += len(kept)
        return kept

    def split(self, batch: list[Reading], raw_rollups: Any) -> list[Reading]:
        """The part of a time-ordered ``batch`` to write raw. Before the cut: rolled up here.
        After it but already too close to the raw horizon to be taken raw: validated and
        given to ``raw_rollups`` (the raw part's :class:`~dcim.storage.rollupcalc.
        SuppliedRollups`, whose hours they are in) only."""
        if not batch:
            return batch
        cut = self.h.cut_ns
        if batch[0].time_ns < cut:
            self.add([r for r in batch if r.time_ns < cut])
            batch = [r for r in batch if r.time_ns >= cut]
        floor = time.time_ns() - self.h.raw_s * NS + RAW_MARGIN_NS
        if batch and batch[0].time_ns < floor:
            stale = self.validate([r for r in batch if r.time_ns < floor])
            self.late_raw += len(stale)
            raw_rollups.add(stale)
            batch = [r for r in batch if r.time_ns >= floor]
        return batch

    def add(self, readings: Sequence[Reading]) -> None:
        """Readings before the cut, in time order."""
        if not readings:
            return
        self.calc.add(self.validate(readings))
        # a minute of margin: the readings of a poll tick come in device order, not time's;
        # windows popped whole at every level (``Rollups.pop`` pops what starts before)
        step = max(self.calc.levels) * NS
        done = (readings[-1].time_ns - 60 * NS) // step * step
        self._write(min(done, self.h.cut_ns))

    def _write(self, before_ns: int) -> None:
        for level, points in self.calc.pop(before_ns).items():
            keep = self.h.keep_from[level]
            ok = [p for p in points if keep is None or p.time_ns >= keep]
            self.too_old[level] += len(points) - len(ok)
            for i in range(0, len(ok), WRITE_POINTS):
                self.store.write_rollups(level, ok[i : i + WRITE_POINTS])
            self.written[level] += len(ok)

    def close(self) -> None:
        self._write(self.h.cut_ns)

    def days_across_cut(self) -> None:
        """The daily rollups of the UTC day the cut falls in, once the raw part's hours are
        rolled up too: from the hours of ``rp_1h`` (its hours before the cut written here,
        those after it from the raw points), as ``dcim db init`` fills ``rp_1d``. Each side
        alone holds only its part of that day. A no-op without ``rp_1d``."""
        if 86400 not in self.calc.levels:
            return
        from dcim.dbinit import days_from_hours_between

        day = self.h.cut_ns // (86400 * NS) * 86400 * NS
        if day == self.h.cut_ns:  # the cut at midnight: no day on both sides
            return
        _, failed = days_from_hours_between(self.store, self.store.sink, day, day + 86400 * NS)
        if failed:
            print(f"the daily rollup of {_iso(day)} left partial: {'; '.join(failed)}")

    def summary(self) -> str:
        from dcim.storage.influx import ROLLUP_RP

        parts = []
        for level in self.calc.levels:
            rp = ROLLUP_RP[level]
            s = f"{self.written[level]} into {rp}"
            if self.too_old[level]:
                s += f" ({self.too_old[level]} windows older than {rp} keeps left out)"
            parts.append(s)
        return (
            f"before {_iso(self.h.cut_ns)} (older than the raw policy {self.h.raw_policy} "
            f"keeps, {self.h.raw_s // 86400} days): {self.readings} readings as rollups only"
            + (
                f" ({self.late_raw} just after it: too old for raw by then)"
                if self.late_raw
                else ""
            )
            + f", {', '.join(parts)} rollup points"
        )
