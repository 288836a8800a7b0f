"""Shared helpers for the storage tests."""

from __future__ import annotations

import itertools

from dcim.config import InfluxSink
from dcim.storage.influx import InfluxStore
from tests.servers import InfluxServer

_ids = itertools.count()


def influx_store(server: InfluxServer | str, prefix: str = "t", **kw: object) -> InfluxStore:
    """An InfluxStore on a fresh database of ``server`` (created on first write)."""
    url = server if isinstance(server, str) else server.url
    sink = InfluxSink(type="influxdb", url=url, database=f"{prefix}_{next(_ids)}", timeout_s=5)
    return InfluxStore(sink, **kw)  # type: ignore[arg-type]
