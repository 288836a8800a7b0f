"""Shared helpers for the storage tests."""

from __future__ import annotations

import itertools
import random
from typing import Any

from dcim.config import InfluxSink
from dcim.reading import Reading
from dcim.storage.influx import InfluxStore
from dcim.testing.servers import InfluxServer

_ids = itertools.count()


def influx_store(
    server: InfluxServer | str, prefix: str = "t", *, timeout_s: float = 5, **kw: object
) -> InfluxStore:
    """An InfluxStore on a fresh database of ``server`` (created on first write)."""
    url = server if isinstance(server, str) else server.url
    sink = InfluxSink(
        type="influxdb", url=url, database=f"{prefix}_{next(_ids)}", timeout_s=timeout_s
    )
    return InfluxStore(sink, **kw)  # type: ignore[arg-type]


def meter_dataset(t0: int, span: int, seed: int) -> list[Reading]:
    """Three meters (em1, em2 in room r1, em3 without a room) over ``[t0, t0 + span)``,
    irregular times distinct across series, a hole in em2 across an hour boundary, integer
    energy, float power and a string status."""
    s, h = 1_000_000_000, 3600 * 1_000_000_000
    rng = random.Random(seed)
    out = []
    for i, (dev, room) in enumerate({"em1": "r1", "em2": "r1", "em3": None}.items()):
        tags = {"site": "paris", "device": dev} | ({"room": room} if room else {})
        t, energy = t0 + i * 1_000_000, 1000 * (i + 1)
        while t < t0 + span - 60 * s:
            t += rng.choice([20, 30, 45, 60]) * s + rng.randrange(1000)
            if dev == "em2" and t0 + h + 600 * s < t < t0 + 2 * h + 300 * s:
                continue
            energy += rng.randrange(0, 50)
            fields: dict[str, Any] = {
                "power_w": round(rng.uniform(-50, 5000), 3),
                "energy_wh_total": energy,
                "status": "ok",
            }
            out.append(Reading("energy_meter", dict(tags), fields, t))
    return out


def lone_power(t0: int) -> Reading:
    """em1's power alone (no energy) in a minute of its own, 30 s after ``t0``: a window one
    field has and the other has not."""
    tags = {"site": "paris", "device": "em1", "room": "r1"}
    return Reading("energy_meter", tags, {"power_w": 123.25}, t0 + 30 * 1_000_000_000)


def means_by_field(
    store: Any, fields: tuple[str, ...], **kw: Any
) -> tuple[list[int], list[list[float]]]:
    """What ``window_means`` must give: ``aggregate(fn="mean")`` per field, the windows all
    fields have, ascending."""
    per = [
        {
            r.time_ns: r.value
            for r in store.aggregate(field=f, fn="mean", **kw)
            if r.value is not None
        }
        for f in fields
    ]
    times = sorted(set(per[0]).intersection(*per[1:]))
    return times, [[float(p[t]) for t in times] for p in per]
