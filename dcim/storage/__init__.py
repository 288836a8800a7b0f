"""Sinks and the query interface: ``make_store(storage)`` gives the configured store."""

from __future__ import annotations

from dcim.config import Storage
from dcim.storage.base import AGGS, Agg, Row, SinkError, Store, StoreError

__all__ = ["AGGS", "Agg", "Row", "SinkError", "Store", "StoreError", "make_store"]
ROLLUPS_DUE_FILE = "influxdb-rollups-due.json"


def make_store(storage: Storage, *, read_only: bool = False) -> Store:
    """The store for ``storage.sink``: embedded -> SqliteStore, influxdb -> InfluxStore.

    ``read_only``: for readers (``dcim kpi``, reports) next to a running collector.
    The embedded store's writer should call ``SqliteStore.maintain()`` every few minutes
    (rollups, raw retention); InfluxDB does both itself once ``dcim db init`` ran.
    """
    sink = storage.sink
    if sink.type == "embedded":
        from dcim.storage.sqlite import SqliteStore

        return SqliteStore(
            sink.path, read_only=read_only, retention_raw_days=sink.retention_raw_days
        )
    from dcim.storage.influx import InfluxStore

    # The writer keeps the hours due for rollup beside its spool (see InfluxStore).
    due = None if read_only else storage.spool_dir / ROLLUPS_DUE_FILE
    return InfluxStore(sink, due_file=due)
