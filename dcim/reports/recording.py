"""A store wrapper that keeps every query a statement asked and the rows it got, so the
statement's inputs can be fingerprinted (SHA-256 over their canonical JSON): the same data
and settings give the same fingerprint, on any machine, whatever order the queries ran in."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dcim.reading import Reading
from dcim.storage.base import Agg, Row, Store, means_by_field


def _canon(v: float | None) -> float | None:
    """12 significant digits: a store that re-sums a rollup in another order (an hour redone
    after a late point of another meter) gives the same inputs the same fingerprint; any
    reading that changes a value changes it far above that."""
    return None if v is None else float(f"{v:.12g}")


class RecordingStore:
    """Answers from ``store``; remembers (query, rows) pairs, the rows of ``devices`` only
    where a query is grouped by device (None: all). Read-only: ``write`` refuses."""

    def __init__(self, store: Store, devices: frozenset[str] | None = None) -> None:
        self._store = store
        # rows grouped by device for other devices (a query of the KPI code asks for the
        # site's meters at once) are not this statement's inputs: not fingerprinted
        self._devices = devices
        self._lock = threading.Lock()
        self._seen: dict[str, list[list[Any]]] = {}

    def write(self, readings: Sequence[Reading]) -> None:
        raise RuntimeError("a statement reads the store, it never writes")

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
    ) -> list[Row]:
        rows = self._store.aggregate(
            measurement=measurement,
            field=field,
            start_ns=start_ns,
            end_ns=end_ns,
            fn=fn,
            every_s=every_s,
            where=where,
            group_by=group_by,
        )
        key = json.dumps(
            [measurement, field, start_ns, end_ns, fn, every_s, sorted((where or {}).items()),
             list(group_by)]
        )  # fmt: skip
        mine = self._devices
        got = [
            [sorted(r.tags.items()), r.time_ns, _canon(r.value)]
            for r in rows
            if mine is None or r.tags.get("device", "") in mine or "device" not in r.tags
        ]
        with self._lock:
            self._seen[key] = got
        return rows

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
        # One recorded ``aggregate`` per field, not the wrapped store's ``window_means``:
        # the statements rendered so far were fingerprinted from these queries, and the same
        # inputs must keep their fingerprint (else every statement gets a new revision).
        with ThreadPoolExecutor(max_workers=len(fields)) as pool:  # the database in parallel
            return means_by_field(
                self, measurement=measurement, fields=fields, start_ns=start_ns,
                end_ns=end_ns, every_s=every_s, where=where, map_fields=pool.map,
            )  # fmt: skip

    def close(self) -> None:  # the wrapped store is closed by its owner
        pass

    def queries(self) -> int:
        return len(self._seen)

    def fingerprint(self, settings: Mapping[str, Any]) -> str:
        """SHA-256 (hex) of every (query, rows) pair, sorted, and ``settings``."""
        doc = {"settings": settings, "inputs": sorted(self._seen.items())}
        canon = json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=True)
        return hashlib.sha256(canon.encode()).hexdigest()
