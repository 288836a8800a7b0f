"""Sinks and the query interface: ``make_store(storage)`` gives the configured store."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dcim.storage.base import AGGS, Agg, Row, SinkError, Store, StoreError

if TYPE_CHECKING:  # the site's models: not imported by the CLI's start (dcim.runconfig)
    from dcim.config import Storage

__all__ = ["AGGS", "Agg", "Row", "SinkError", "Store", "StoreError", "make_store"]
ROLLUPS_DUE_FILE = "influxdb-rollups-due.json"


def make_store(storage: Storage, *, read_only: bool = False, owns_spool: bool = True) -> Store:
    """The store for ``storage.sink``: embedded -> SqliteStore, influxdb -> InfluxStore.

    ``read_only``: for readers (``dcim kpi``, reports) next to a running collector.
    ``owns_spool``: the writer of ``storage.spool_dir`` (the collector, the twin's backfill):
    the InfluxDB store keeps its hours due for rollup there; a writer beside a running
    collector (``dcim kpi --series``) passes False.
    The embedded store's writer should call ``SqliteStore.maintain()`` every few minutes
    (rollups, raw retention); InfluxDB does both itself once ``dcim db init`` ran.
    """
    sink = storage.sink
    if sink.type == "embedded":
        from dcim.storage.sqlite import SqliteStore

        return SqliteStore(
            sink.path,
            read_only=read_only,
            retention_raw_days=sink.retention_raw_days,
            retention_1m_days=sink.retention_1m_days,
        )
    from dcim.storage.influx import InfluxStore

    # The writer keeps the hours due for rollup beside its spool (see InfluxStore).
    due = storage.spool_dir / ROLLUPS_DUE_FILE if owns_spool and not read_only else None
    return InfluxStore(sink, due_file=due)
