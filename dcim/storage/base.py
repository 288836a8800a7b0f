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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, get_args

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


@dataclass(frozen=True)
class Row:
    """One aggregated value: its group's tags, the window start (or point time), the value."""

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

    def close(self) -> None: ...


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
