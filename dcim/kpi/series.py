"""Hourly and daily KPI series, written back to the store for dashboards (measurement ``kpi``).

Each hour (or local day) of the period gets one ``kpi`` point at its start: tags ``site`` and
``resolution`` (``hourly``/``daily``); a field per figure that has a value (figure names,
with any character outside ``[a-z0-9_]`` as ``_``) and ``<figure>_completeness`` for every
figure, so a dashboard shows a gap as a gap and can say how complete each point was.
Rewriting a period replaces its points (same series and times).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from dcim.config import SiteConfig
from dcim.kpi.period import NS, compute_kpis
from dcim.reading import FieldValue, Reading
from dcim.storage.base import Store

Resolution = Literal["hourly", "daily"]
_NOT_NAME = re.compile(r"[^a-z0-9_]")


def periods(start_ns: int, end_ns: int, resolution: Resolution, tz: str) -> list[tuple[int, int]]:
    """Whole hours (UTC-aligned) or local days that start in [start_ns, end_ns)."""
    zone = ZoneInfo(tz)
    t = datetime.fromtimestamp(start_ns / NS, zone)
    if resolution == "hourly":
        t = t.replace(minute=0, second=0, microsecond=0)
    else:
        t = t.replace(hour=0, minute=0, second=0, microsecond=0)
    if t.timestamp() * NS < start_ns:
        t = _next(t, resolution, zone)
    out = []
    while (a := round(t.timestamp() * NS)) < end_ns:
        t = _next(t, resolution, zone)
        out.append((a, min(end_ns, round(t.timestamp() * NS))))
    return out


def _next(t: datetime, resolution: Resolution, zone: ZoneInfo) -> datetime:
    if resolution == "hourly":  # in UTC, so a DST change gives a 23 or 25 hour day
        return datetime.fromtimestamp(t.timestamp() + 3600, zone)
    return (t.replace(tzinfo=None) + timedelta(days=1)).replace(tzinfo=zone)


def kpi_series(
    store: Store, cfg: SiteConfig, start_ns: int, end_ns: int, resolution: Resolution
) -> list[Reading]:
    """One ``kpi`` reading per hour or day of the period (see the module doc)."""
    out = []
    for a, b in periods(start_ns, end_ns, resolution, cfg.site.timezone):
        rep = compute_kpis(store, cfg, a, b)
        fields: dict[str, FieldValue] = {}
        for f in rep.figures:
            name = _NOT_NAME.sub("_", f.name.lower())
            if f.value is not None:
                fields[name] = float(f.value)
            fields[f"{name}_completeness"] = float(f.completeness)
        if fields:
            tags = {"site": cfg.site.name, "resolution": resolution}
            out.append(Reading("kpi", tags, fields, a))
    return out
