"""The query interface every store implements (embedded SQLite, InfluxDB), and its errors.

Semantics follow InfluxQL so both stores answer the same:

- time range ``start_ns <= t < end_ns``; ``where`` is tag equality (``""`` = tag absent);
- ``group_by`` tag keys give one group per tag combination; ``Row.tags`` holds every
  ``group_by`` key (``""`` when a series lacks the tag);
- ``every_s`` = ``GROUP BY time(every_s)`` windows aligned to the epoch, ``Row.time_ns`` is
  the window start, empty windows are omitted (``fill(none)``);
- without ``every_s``, ``first``/``last`` return the time of the selected point, the other
  aggregates return ``start_ns``;
- ``integral`` is the trapezoidal integral of the value over time in value*seconds
  (``INTEGRAL(field, 1s)``), including InfluxDB's interpolation at window boundaries;
  use it on one series per group, on float fields (InfluxDB 1.x mis-integrates *integer*
  fields across window boundaries; the embedded store does the float arithmetic);
- ``count`` counts values of any type, the other aggregates use numeric values only;
- rows are sorted by group (tag values in ``group_by`` order), then time.

Rollups: both stores keep 1-minute and 1-hour rollups (count, sum, min, max, first, last per
series and field). ``aggregate`` answers whole rollup windows that nest in the ``every_s``
windows from them, where the store knows them complete, and the rest from the raw points
(:func:`plan_pieces`, :func:`merge_parts`); the answer is the raw one. Never for
``integral``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, NamedTuple, Protocol, get_args, runtime_checkable

from dcim.reading import Reading

Agg = Literal["mean", "min", "max", "first", "last", "count", "sum", "integral"]
AGGS: frozenset[str] = frozenset(get_args(Agg))


class StoreError(Exception):
    """A store could not answer (query failed, database missing, ...)."""


class SinkError(StoreError):
    """A write failed. ``retryable``: try the same batch again later (outage, auth, overload);
    otherwise the data itself was refused (bad point, type conflict) and retrying cannot help.
    ``retry_after_s``: the server's ``Retry-After`` when it gave one."""

    def __init__(self, *, retryable: bool, reason: str, retry_after_s: float | None = None):
        super().__init__(reason)
        self.retryable = retryable
        self.reason = reason
        self.retry_after_s = retry_after_s

    def __repr__(self) -> str:
        return f"SinkError(retryable={self.retryable}, reason={self.reason!r})"


class StoreBusyError(SinkError):
    """Another writer held the store longer than the write would wait (retryable): its
    maintenance, another process's transaction."""


class Row(NamedTuple):
    """One aggregated value: its group's tags, the window start (or point time), the value.
    (A named tuple: a year of windows is some 10^5 rows, made faster than a dataclass's.)"""

    tags: dict[str, str]
    time_ns: int
    value: float | None


class Store(Protocol):
    def write(self, readings: Sequence[Reading]) -> None:
        """Write idempotently (same series + field + time replaces). Raises SinkError."""
        ...

    def aggregate(
        self,
        *,
        measurement: str,
        field: str,
        start_ns: int,
        end_ns: int,
        fn: Agg,
        every_s: int | None = None,
        where: Mapping[str, str] | None = None,
        group_by: Sequence[str] = (),
    ) -> list[Row]: ...

    def window_means(
        self,
        *,
        measurement: str,
        fields: Sequence[str],
        start_ns: int,
        end_ns: int,
        every_s: int,
        where: Mapping[str, str],
    ) -> tuple[list[int], list[list[float]]]:
        """The ``every_s`` windows (starts, ascending) where every one of ``fields`` has a
        mean, and those means, one list per field: the same floats as ``aggregate`` (mean)
        per field, kept where all have a window. A store without a faster way answers with
        :func:`means_by_field`."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class LineWriter(Protocol):
    """A store that also takes line protocol as is (the InfluxDB store): the forwarder then
    sends the spool's line protocol without decoding it into readings."""

    def write_lines(self, body: bytes, spans: Sequence[tuple[int, int]]) -> None:
        """Write a line protocol body: UTF-8, a point per line, each line ending with a
        newline, timestamps in nanoseconds (converted to the store's precision here).
        ``spans``: (oldest, newest) time of the points, in parts that together cover them
        all (which hours late points touch). Idempotent, raises SinkError like ``write``."""
        ...


@runtime_checkable
class PreparingWriter(LineWriter, Protocol):
    """A line writer whose work before the POST (compression, ...) can be done apart: the
    forwarder has it done for the next batch of a backlog while one is being written."""

    def prepare_lines(self, body: bytes, spans: Sequence[tuple[int, int]]) -> Any:
        """``write_lines``'s work before the request; what ``write_prepared`` takes."""
        ...

    def write_prepared(self, prepared: Any) -> None:
        """Write what ``prepare_lines`` made: ``write_lines`` in two steps."""
        ...


def check_query(fn: str, start_ns: int, end_ns: int, every_s: int | None) -> None:
    """Argument checks shared by the stores (a programming error, so ValueError)."""
    if fn not in AGGS:
        raise ValueError(f"unknown aggregate {fn!r}; one of {sorted(AGGS)}")
    if every_s is not None and (not isinstance(every_s, int) or every_s <= 0):
        raise ValueError(f"every_s must be a positive integer number of seconds, got {every_s!r}")
    if end_ns < start_ns:
        raise ValueError(f"end_ns {end_ns} is before start_ns {start_ns}")


def sort_rows(rows: list[Row], group_by: Sequence[str]) -> list[Row]:
    rows.sort(key=lambda r: (tuple(r.tags.get(k, "") for k in group_by), r.time_ns))
    return rows


NS = 1_000_000_000
ROLLUP_LEVELS = (3600, 60)  # seconds, coarsest first
# One partial answer: group (tag values in group_by order), time, value, weight (mean: the
# count of the values summed in ``value``; else unused).
Part = tuple[tuple[str, ...], int, float, float]


def floor_to(t_ns: int, step_s: int) -> int:
    return t_ns - t_ns % (step_s * NS)


def ceil_to(t_ns: int, step_s: int) -> int:
    return -floor_to(-t_ns, step_s)


def plan_pieces(
    fn: str,
    start_ns: int,
    end_ns: int,
    every_s: int | None,
    rollup_before_ns: int | None,
    rollup_levels: Sequence[int] = ROLLUP_LEVELS,
) -> list[tuple[int, int, int]]:
    """Split ``[start_ns, end_ns)`` into time-ordered pieces ``(lo, hi, level)``: level 0 is
    the raw points, another the rollups of that many seconds (``rollup_levels``, coarsest
    first), used for whole rollup windows before ``rollup_before_ns`` that nest in the
    ``every_s`` windows (``None``: raw only)."""
    pieces: list[tuple[int, int, int]] = []

    def add(lo: int, hi: int, level: int) -> None:
        if lo >= hi:
            return
        if pieces and pieces[-1][2] == level == 0 and pieces[-1][1] == lo:
            lo = pieces.pop()[0]
        pieces.append((lo, hi, level))

    def fill(lo: int, hi: int, levels: tuple[int, ...]) -> None:
        if not levels:
            add(lo, hi, 0)
            return
        a, b = ceil_to(lo, levels[0]), floor_to(hi, levels[0])
        if a >= b:
            fill(lo, hi, levels[1:])
            return
        fill(lo, a, levels[1:])
        add(a, b, levels[0])
        fill(b, hi, levels[1:])

    levels = tuple(lv for lv in rollup_levels if every_s is None or every_s % lv == 0)
    if fn == "integral" or rollup_before_ns is None:
        levels = ()
    split = end_ns if rollup_before_ns is None else max(start_ns, min(end_ns, rollup_before_ns))
    fill(start_ns, split, levels)
    add(split, end_ns, 0)
    return pieces


def align_windows(
    columns: Sequence[Sequence[tuple[int, float]]],
) -> tuple[list[int], list[list[float]]]:
    """(window start, value) per field -> the starts every field has, ascending, and each
    field's values there (``window_means``: a window missing a field is left out)."""
    if not columns or not all(columns):
        return [], [[] for _ in columns]
    times = [t for t, _ in columns[0]]
    same = all(len(c) == len(times) for c in columns)
    same = same and all([t for t, _ in c] == times for c in columns[1:])
    if same and all(a < b for a, b in zip(times, times[1:], strict=False)):
        return times, [[v for _, v in c] for c in columns]  # the usual case: nothing missing
    common = sorted(set(times).intersection(*({t for t, _ in c} for c in columns[1:])))
    by_time = [dict(c) for c in columns]
    return common, [[d[t] for t in common] for d in by_time]


def means_by_field(
    store: Store,
    *,
    measurement: str,
    fields: Sequence[str],
    start_ns: int,
    end_ns: int,
    every_s: int,
    where: Mapping[str, str],
    map_fields: Callable[..., Iterable[list[tuple[int, float]]]] = map,
) -> tuple[list[int], list[list[float]]]:
    """``window_means`` the long way: one ``aggregate`` (mean) per field, aligned on the
    windows every field has. ``map_fields``: how the per-field reads are run (a thread
    pool's ``map`` to let the database answer them side by side)."""

    def means(field: str) -> list[tuple[int, float]]:
        rows = store.aggregate(
            measurement=measurement,
            field=field,
            start_ns=start_ns,
            end_ns=end_ns,
            fn="mean",
            every_s=every_s,
            where=where,
        )
        return [(r.time_ns, float(r.value)) for r in rows if r.value is not None]

    return align_windows(list(map_fields(means, fields)))


def merge_parts(
    fn: str,
    every_s: int | None,
    start_ns: int,
    group_by: Sequence[str],
    pieces: Sequence[Sequence[Part]],
) -> list[Row]:
    """Combine the answers of time-ordered pieces into the answer over their union: counts
    and sums add, mean = sum of sums / sum of counts, first from the earliest piece, last
    from the latest. Windows are keyed by their start, and without ``every_s`` a group is
    one window. (A year of daily windows of a hundred series is some 10^5 parts: the loops
    are kept tight, one per kind of aggregate.)"""
    point_time = bool(every_s) or fn in ("first", "last")
    tags: dict[tuple[str, ...], dict[str, str]] = {}

    def row(group: tuple[str, ...], at: float, value: float) -> Row:
        gt = tags.get(group)
        if gt is None:
            gt = tags[group] = dict(zip(group_by, group, strict=True))
        return Row(gt, int(at) if point_time else start_ns, float(value))

    nonempty = [p for p in pieces if p]
    if len(nonempty) <= 1:  # one piece answered (a group or window per part): nothing to merge
        rows = []
        for g, t, v, n in sorted(nonempty[0]) if nonempty else ():
            if fn == "mean":
                if not n:
                    continue
                v = v / n
            rows.append(row(g, t, v))
        return rows
    acc: dict[tuple[tuple[str, ...], int], list[float]] = {}
    get = acc.get
    for part in pieces:
        for g, t, v, n in part:
            key = (g, t if every_s else 0)
            cur = get(key)
            if cur is None:
                acc[key] = [t, v, n]
            elif fn in ("count", "sum", "mean"):
                cur[1] += v
                cur[2] += n
            elif fn == "min":
                if v < cur[1]:
                    cur[1] = v
            elif fn == "max":
                if v > cur[1]:
                    cur[1] = v
            elif fn == "last":
                cur[0], cur[1] = t, v
    rows = []
    for (group, _), (at, value, weight) in sorted(acc.items(), key=_by_key):
        if fn == "mean":
            if not weight:
                continue
            value = value / weight
        rows.append(row(group, at, value))
    return rows  # sorted by group, then time (sort_rows' order)


def _by_key(item: tuple[tuple[tuple[str, ...], int], list[float]]) -> tuple[tuple[str, ...], int]:
    return item[0]
