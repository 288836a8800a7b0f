"""An in-memory Store answering ``aggregate`` (first, last, count, min) with InfluxQL semantics,
for pure-logic tests of the KPI computation."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

from dcim.reading import Reading
from dcim.storage.base import Agg, Row, check_query, means_by_field, sort_rows

S = 1_000_000_000


class FakeStore:
    def __init__(self) -> None:
        # (measurement, field) -> [(tags, time_ns, value)]
        self.points: dict[tuple[str, str], list[tuple[dict[str, str], int, float]]] = defaultdict(
            list
        )

    def write(self, readings: Sequence[Reading]) -> None:
        for r in readings:
            for f, v in r.fields.items():
                if isinstance(v, int | float):
                    self.points[(r.measurement, f)].append((dict(r.tags), r.time_ns, float(v)))

    def counter(
        self,
        measurement: str,
        tags: dict[str, str],
        field: str,
        *,
        power: float,
        start_index: float = 1_000_000.0,
        times_s: Iterable[float],
        wrap_at: float | None = None,
    ) -> None:
        """A counter rising at ``power`` per hour (W -> Wh, m3/h -> m3), sampled at ``times_s``."""
        for t in times_s:
            v = start_index + power * t / 3600.0
            if wrap_at is not None:
                v %= wrap_at
            self.points[(measurement, field)].append((dict(tags), int(t * S), v))

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
        return means_by_field(
            self, measurement=measurement, fields=fields, start_ns=start_ns, end_ns=end_ns,
            every_s=every_s, where=where,
        )  # fmt: skip

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
        check_query(fn, start_ns, end_ns, every_s)
        assert fn in ("first", "last", "count", "min", "mean"), fn
        groups: dict[tuple[tuple[str, ...], int], list[tuple[int, float]]] = defaultdict(list)
        keyed: dict[tuple[tuple[str, ...], int], dict[str, str]] = {}
        for tags, t, v in self.points.get((measurement, field), []):
            if not start_ns <= t < end_ns:
                continue
            if any(tags.get(k, "") != want for k, want in (where or {}).items()):
                continue
            gtags = {k: tags.get(k, "") for k in group_by}
            window = (t // (every_s * S)) * every_s * S if every_s else 0
            key = (tuple(gtags[k] for k in group_by), window)
            groups[key].append((t, v))
            keyed[key] = gtags
        rows: list[Row] = []
        for key, pts in groups.items():
            pts.sort()
            window = key[1]
            if fn == "count":
                rows.append(Row(keyed[key], window if every_s else start_ns, float(len(pts))))
            elif fn in ("min", "mean"):
                vals = [v for _, v in pts]
                agg = min(vals) if fn == "min" else sum(vals) / len(vals)
                rows.append(Row(keyed[key], window if every_s else start_ns, agg))
            else:
                t, v = pts[0] if fn == "first" else pts[-1]
                rows.append(Row(keyed[key], window if every_s else t, v))
        return sort_rows(rows, group_by)

    def close(self) -> None:
        pass
