"""The collector's hourly and daily ``kpi`` points (:mod:`dcim.kpi.series`), without a cron.

:meth:`KpiWriter.run_once` (called every minute by :class:`dcim.runtime.Collector`) writes the
point of each hour and each local day once the period has closed and ``settle_s`` has passed
(the last polls of the period are in the store by then), and writes it again when data for it
arrives late (a backlog forwarded from the spool after a database outage, a device's buffered
readings): it keeps, per period, a signature of the data the KPIs stand on (the number of
points of each metered series, per hour: one ``count`` query per measurement and field over
the look-back window), and recomputes a period whose signature changed. Periods older than
``lookback_s`` are left as written. After a restart the periods of the look-back window are
computed once more (the same points again: a rewrite replaces a point, same series and time).

On InfluxDB every ``kpi`` point is a late point (written after its period, when the continuous
queries have passed it): the store rolls up the ``kpi`` series of its hour and UTC day again,
and only that measurement (:mod:`dcim.storage.latehours`; under 10 ms of influxd's CPU at the
reference site, where the whole site's hour and day took 13-14 s: benchmarks/late_rollup.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from dcim.config import ROLE_FIELD, SiteConfig
from dcim.kpi.gather import heat_pumps
from dcim.kpi.heat import FIELDS as HEAT_FIELDS
from dcim.kpi.series import Resolution, kpi_series, periods
from dcim.storage.base import NS, Store, floor_to

log = logging.getLogger(__name__)
HOUR_NS = 3600 * NS


def kpi_inputs(cfg: SiteConfig) -> list[tuple[str, str]]:
    """(measurement, field) of the series the KPIs read."""
    profiles = cfg.profiles()
    out: set[tuple[str, str]] = set()
    for d in cfg.devices:
        if not d.enabled or d.profile not in profiles:
            continue
        prof = profiles[d.profile]
        if d.role:
            out.add((prof.measurement, ROLE_FIELD[d.role]))
            if set(HEAT_FIELDS) <= prof.field_names:
                out.update((prof.measurement, f) for f in HEAT_FIELDS)
    for d in heat_pumps(cfg):
        out.add((profiles[d.profile].measurement, "electrical_energy_wh_total"))
    return sorted(out)


@dataclass
class KpiWriter:
    store: Store
    cfg: SiteConfig
    settle_s: float = 120.0
    lookback_s: float = 2 * 86400.0
    written: dict[tuple[Resolution, int], tuple[int, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.inputs = kpi_inputs(self.cfg)

    def _hour_counts(self, start_ns: int, end_ns: int) -> dict[int, tuple[int, ...]]:
        """Per hour start: the number of points of each input series (the signature)."""
        out: dict[int, list[int]] = {}
        for i, (meas, fld) in enumerate(self.inputs):
            rows = self.store.aggregate(
                measurement=meas,
                field=fld,
                start_ns=start_ns,
                end_ns=end_ns,
                fn="count",
                every_s=3600,
                where={"site": self.cfg.site.name},
            )
            for r in rows:
                sig = out.setdefault(floor_to(r.time_ns, 3600), [0] * len(self.inputs))
                sig[i] += int(r.value or 0)
        return {h: tuple(v) for h, v in out.items()}

    def due(self, now_ns: int) -> list[tuple[Resolution, int, int, tuple[int, ...]]]:
        """Closed periods of the look-back window never written or whose data changed."""
        closed_before = now_ns - int(self.settle_s * NS)
        start = floor_to(now_ns - int(self.lookback_s * NS), 3600)
        hours = self._hour_counts(start - 86400 * NS, closed_before)
        empty = (0,) * len(self.inputs)
        out: list[tuple[Resolution, int, int, tuple[int, ...]]] = []
        for res in ("hourly", "daily"):
            ahead = closed_before + 2 * 86400 * NS  # periods() cuts the last one at its end
            for a, b in periods(start, ahead, res, self.cfg.site.timezone):
                if b > closed_before:
                    break
                sig = (
                    tuple(
                        sum(col)
                        for col in zip(
                            *(hours.get(h, empty) for h in range(floor_to(a, 3600), b, HOUR_NS)),
                            strict=True,
                        )
                    )
                    or empty
                )
                if not any(sig):
                    continue  # nothing metered: no point (a gap stays a gap)
                if self.written.get((res, a)) != sig:
                    out.append((res, a, b, sig))
        return out

    def run_once(self, now_ns: int) -> list[tuple[Resolution, int]]:
        """Write the due periods; returns (resolution, start) of each point written."""
        due = self.due(now_ns)
        points = [p for res, a, b, _ in due for p in kpi_series(self.store, self.cfg, a, b, res)]
        self.store.write(points)  # one write: InfluxDB rolls the late hours up once
        done: list[tuple[Resolution, int]] = []
        for res, a, _, sig in due:
            rewrite = (res, a) in self.written
            self.written[(res, a)] = sig
            done.append((res, a))
            log.debug("kpi %s point at %d %s", res, a, "rewritten" if rewrite else "written")
        horizon = now_ns - int(self.lookback_s * NS) - 2 * 86400 * NS
        self.written = {k: v for k, v in self.written.items() if k[1] >= horizon}
        return done
