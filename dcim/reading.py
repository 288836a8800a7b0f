"""The unit of data that flows from collectors through the spool to the sinks."""

from __future__ import annotations

from dataclasses import dataclass

FieldValue = float | int | bool | str


@dataclass(slots=True)
class Reading:
    """One timestamped sample of one device.

    measurement: e.g. ``energy_meter``; tags: site, room, rack, device, ...;
    fields: canonical names with a unit suffix (``power_w``, ``energy_wh_total``);
    time_ns: UNIX time in nanoseconds (UTC), always explicit so replays are idempotent.
    """

    measurement: str
    tags: dict[str, str]
    fields: dict[str, FieldValue]
    time_ns: int
