"""Per-device poll state from the ``dcim_poll`` readings (:class:`PollMetrics`), kept by every
collector: its ``dcim_collector`` health reading counts the devices down from it, and the
``/metrics`` endpoint (dcim.metrics) shows it. Apart from dcim.metrics so that a collector
without a ``metrics:`` section does not import prometheus_client and its HTTP modules."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from dcim.reading import Reading

NS = 1_000_000_000


@dataclass(slots=True)
class DeviceState:
    protocol: str
    up: float = 0.0
    duration_s: float = 0.0
    values_read: float = 0.0
    late_s: float = 0.0
    last_ok_s: float | None = None
    polls: int = 0
    errors: Counter[str] = field(default_factory=Counter)


class PollMetrics:
    """Per-device state from the ``dcim_poll`` readings; ``observe`` is thread-safe (called
    from the event loop and from MQTT's network thread) and cheap."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._devices: dict[str, DeviceState] = {}

    def observe(self, readings: Iterable[Reading]) -> None:
        for r in readings:
            if r.measurement != "dcim_poll":
                continue
            name, f = r.tags.get("device", ""), r.fields
            with self._lock:
                d = self._devices.get(name)
                if d is None:
                    d = self._devices[name] = DeviceState(r.tags.get("protocol", ""))
                d.polls += 1
                d.up = float(f.get("up", 0))
                d.duration_s = float(f.get("duration_s", 0.0))
                d.values_read = float(f.get("values_read", 0))
                d.late_s = float(f.get("late_s", 0.0))
                error = str(f.get("error", ""))
                if error:
                    d.errors[error] += 1
                else:
                    d.last_ok_s = r.time_ns / NS

    def snapshot(self) -> dict[str, DeviceState]:
        with self._lock:
            return {
                k: DeviceState(
                    v.protocol,
                    v.up,
                    v.duration_s,
                    v.values_read,
                    v.late_s,
                    v.last_ok_s,
                    v.polls,
                    Counter(v.errors),
                )  # fmt: skip
                for k, v in self._devices.items()
            }
