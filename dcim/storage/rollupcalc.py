"""The rollups of readings computed here, exactly as InfluxDB 1.x's rollup statement
(:func:`dcim.storage.influx.rollup_select`) computes them from the same raw points: for a
writer that has every raw point of an hour in hand (``dcim twin backfill``), so that the
InfluxDB store need not run the statement over it (1.5 s of influxd per hour of the reference
site for the 1-minute rollups, whatever the statement's shape: its cost is per window).

Per measurement, tag set and window (aligned on the epoch, as ``GROUP BY time()``), and per
field: ``mean_<f>`` (the sum in time order divided by the count, a float), ``min_<f>``,
``max_<f>``, ``first_<f>``/``last_<f>`` (the values at the earliest/latest time), ``count_<f>``
(an integer) and ``sum_<f>`` (in time order), with the field's own type; integer sums in
integers, their mean ``float(sum) / count`` (InfluxDB's integer mean reducer). Booleans get
no mean or sum (``min``: false before true), strings only ``first``/``last``/``count`` (as
InfluxDB 1.6 does). Written by hand: no library reproduces InfluxDB's reducers.
``tests/storage/test_rollupcalc.py`` compares the result with the statement's on a real server.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterable

from dcim.reading import Reading

log = logging.getLogger(__name__)

Key = tuple[str, tuple[tuple[str, str], ...], int]  # measurement, tags, window start (ns)
NS = 1_000_000_000


class Rollups:
    """Accumulates readings in time order (distinct times in a series: InfluxDB keeps one
    point of a series and time); :meth:`pop` gives the rollup points of the windows that
    start before a time, for each level (window length, s). A reading older than that time
    added afterwards is counted in :attr:`late`, not rolled up."""

    def __init__(self, levels: Iterable[int] = (60, 3600)) -> None:
        self.levels = tuple(levels)
        # per level: window key -> field -> [sum, count, min, max, first, last]
        self._acc: dict[int, dict[Key, dict[str, list[object]]]] = {lv: {} for lv in self.levels}
        self._types: dict[str, type] = {}
        # Field names of two types across measurements: InfluxDB's ``/.*/`` statement gives a
        # name one type, and rolls up only the measurements' values of that type; not this
        # class (the writer leaves such hours to the statement).
        self.conflicts: set[str] = set()
        self._popped = -(2**63)  # windows before this were popped
        self.late = 0  # readings that came after their window was popped (not in it)

    def add(self, readings: Iterable[Reading]) -> None:
        levels = [(lv, lv * NS, self._acc[lv]) for lv in self.levels]
        popped = self._popped
        for r in readings:
            t = r.time_ns
            if t < popped:
                self.late += 1
                continue
            tags = tuple(sorted(r.tags.items()))
            for _, w, acc in levels:
                key = (r.measurement, tags, t - t % w)
                fields = acc.get(key)
                if fields is None:
                    fields = acc[key] = {}
                for f, v in r.fields.items():
                    a = fields.get(f)
                    if a is None:
                        if self._types.setdefault(f, type(v)) is not type(v):
                            self.conflicts.add(f)
                        fields[f] = [v, 1, v, v, v, v]
                        continue
                    if type(v) is not str:
                        if type(v) is not bool:
                            a[0] = a[0] + v  # type: ignore[operator]
                        if v < a[2]:  # type: ignore[operator]
                            a[2] = v
                        if v > a[3]:  # type: ignore[operator]
                            a[3] = v
                    a[1] = a[1] + 1  # type: ignore[operator]
                    a[5] = v

    def pop(self, before_ns: int) -> dict[int, list[Reading]]:
        """The rollup points of the windows that start before ``before_ns`` (forgotten)."""
        out: dict[int, list[Reading]] = {}
        self._popped = max(self._popped, before_ns)
        for lv in self.levels:
            acc = self._acc[lv]
            done = [k for k in acc if k[2] < before_ns]
            out[lv] = [_point(k, acc.pop(k)) for k in sorted(done, key=lambda k: k[2])]
        return out


def _point(key: Key, fields: dict[str, list[object]]) -> Reading:
    meas, tags, start = key
    vals: dict[str, object] = {}
    for f, (total, count, lo, hi, first, last) in fields.items():
        numeric = type(first) is float or type(first) is int
        if numeric:
            vals[f"mean_{f}"] = float(total) / count  # type: ignore[arg-type,operator]
        if type(first) is not str:
            vals[f"min_{f}"] = lo
            vals[f"max_{f}"] = hi
        vals[f"first_{f}"] = first
        vals[f"last_{f}"] = last
        vals[f"count_{f}"] = count
        if numeric:
            vals[f"sum_{f}"] = total
    return Reading(meas, dict(tags), vals, start)  # type: ignore[arg-type]


class SuppliedRollups:
    """The rollups of a backfill's whole hours, written by the backfill (``dcim twin
    backfill``): the hours of [start_ns, end_ns] that the span covers whole and that the
    continuous queries no longer recompute (ended ``CQ_DONE_NS`` ago), when ``store`` is an
    InfluxDB store with rollups (the daily ones, ``rp_1d``, by the store's statement over
    those hours' days on :meth:`close`). Feed it every reading committed, in time order
    (:meth:`add`); each hour's rollups are written when the readings have passed it, the rest
    on :meth:`close`. Those hours are not rolled up by the store again (its late points are
    the backfill's own); the other hours of the span are, as any late point's. A field name
    of two types (:attr:`Rollups.conflicts`) hands the hours back to the store's statement.

    The hours must be the backfill's own: other raw points in them (another backfill at
    another interval) would be missing from the rollups written here."""

    def __init__(self, store: object, start_ns: int, end_ns: int) -> None:
        from dcim.storage.influx import CQ_DONE_NS, InfluxStore, StoreUnavailable

        self.store: InfluxStore | None = None
        try:
            if isinstance(store, InfluxStore) and store.rollups_ready():
                self.store = store
        except StoreUnavailable as exc:  # the store's statement then, once the server is back
            log.warning("InfluxDB does not answer (%s): the rollups left to its statement", exc)
        hour = 3600 * NS
        self.lo = -(-start_ns // hour) * hour
        self.hi = max(self.lo, min(end_ns // hour, (time.time_ns() - CQ_DONE_NS) // hour) * hour)
        self.calc = Rollups()
        self.written = 0  # rollup points written
        # written by a thread of their own: the backfill goes on while InfluxDB takes them
        self._queue: queue.Queue[tuple[int, list[Reading]] | None] = queue.Queue(maxsize=4)
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        if self.store is not None and self.hi > self.lo:
            self.store.supply_rollups(self.lo, self.hi)
            self._thread = threading.Thread(target=self._writer, name="rollups", daemon=True)
            self._thread.start()

    def _writer(self) -> None:
        assert self.store is not None
        while (item := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self.store.write_rollups(*item)
                except BaseException as exc:  # noqa: BLE001  (raised by close())
                    self._error = exc

    def add(self, readings: list[Reading]) -> None:
        if self.store is None or not readings:
            return
        lo, hi = self.lo, self.hi
        self.calc.add(r for r in readings if lo <= r.time_ns < hi)
        # a minute of margin: the readings of a poll tick come in device order, not time's
        done = (readings[-1].time_ns - 60 * NS) // (3600 * NS) * 3600 * NS
        if done > lo and not self.calc.conflicts:
            self._write(min(done, hi))

    def _write(self, before_ns: int) -> None:
        if self._error is not None:
            raise self._error
        for level, points in self.calc.pop(before_ns).items():
            for i in range(0, len(points), 5000):
                self._queue.put((level, points[i : i + 5000]))
            self.written += len(points)

    def _join(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Write the rollups left (after the raw points are in); with a conflict, have the
        store's statement roll the hours up instead."""
        if self.store is None or self.hi <= self.lo:
            return
        if not self.calc.conflicts:
            self._write(self.hi)
        self._join()
        if not (self.calc.conflicts or self.calc.late):
            # the daily rollups (rp_1d) of the days these hours touch: InfluxDB's statement,
            # once per day at the end (the hours' own are written above; days with hours
            # due get theirs when the store rolls those up)
            self.store.rollup_days(self.lo, self.hi)
        else:
            log.warning(
                "%s: the backfill's rollups left to InfluxDB's statement",
                f"field name(s) of two types ({', '.join(sorted(self.calc.conflicts))})"
                if self.calc.conflicts
                else f"{self.calc.late} reading(s) out of time order",
            )
            self.store.supply_rollups(0, 0)
            self.store.rollup(self.lo, self.hi)
