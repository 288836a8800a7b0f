"""The collector process: pollers and push sources -> pipeline -> durable spool -> forwarder ->
sink, and its own metrics on ``/metrics`` when the site file has a ``metrics:`` section
(dcim.metrics). Protocols come from the registry (dcim.protocols): polled ones through the
scheduler, pushed ones (MQTT) as sources started and stopped here."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sqlite3
import time
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, cast

from dcim.alerts.engine import build_engine
from dcim.config import SiteConfig
from dcim.forwarder import Forwarder
from dcim.pipeline import Pipeline
from dcim.plausible import Screen
from dcim.pollstate import PollMetrics
from dcim.protocols import PushSource, build_pollers, build_sources
from dcim.reading import FieldValue, Reading
from dcim.scheduler import Scheduler
from dcim.spool import Spool, SpoolFullError
from dcim.spool_commit import Committer
from dcim.spool_through import WAIT_S as THROUGH_WAIT_S
from dcim.spool_through import WriteThrough
from dcim.storage import make_store

if TYPE_CHECKING:  # imported when used: a site without them does not load their modules
    from dcim.alerts.rules import Rule
    from dcim.kpi.writer import KpiWriter
    from dcim.metrics import MetricsServer
    from dcim.storage.sqlite import SqliteStore

log = logging.getLogger(__name__)
MAINTAIN_EVERY_S = 300.0
# How long a spool commit waits for more polls to join its transaction (dcim.spool_commit);
# at most a quarter of the shortest poll interval: a fast device's readings are not held
# in memory for a good part of its interval. 1 s (was 0.25): 50 PDUs polled every 10 s
# commit once a second rather than about four times (each commit a transaction and an
# fsync): 31.5 -> 26.1 µs of CPU per stored value side by side, a quarter of the fsyncs.
COMMIT_WINDOW_S = 1.0
KPI_EVERY_S = 60.0
# SQLite's memory, all connections of the process (spool, store, alert state): their page
# caches (2 MB each at most) held 2.6 MB after 4 minutes on the reference site, 1.0 with this
# soft limit, past which SQLite reuses its pages rather than allocating (issue #15); what it
# gives back is read again from the OS's file cache.
SQLITE_SOFT_HEAP_LIMIT = 1 << 20
# The cyclic garbage collector's first threshold for a running collector (Python's default:
# 700). Each poll allocates hundreds of tuples and dicts (var-binds, readings) that reference
# counting frees; the collector ran after every 700 allocations all the same, from whatever
# line allocated (half the time of the SNMP decoder's conversion in a profile). Freezing what
# the start built (modules, configuration, pollers) keeps it out of every later collection.
# Only cycles wait longer to be freed: the same RSS after 60 s (35.4 MB, 50 PDUs); CPU per
# value 18.5 -> 17.3-18.1 µs side by side (benchmarks/profile_collect.py --cases pdu).
GC_THRESHOLD = (20_000, 20, 20)


def settle_gc(threshold: tuple[int, int, int] = GC_THRESHOLD) -> None:
    """Once the collector is built: collect, freeze what survives (the garbage collector no
    longer traverses it), and collect less often (``GC_THRESHOLD``)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*threshold)


def limit_sqlite_heap(limit: int = SQLITE_SOFT_HEAP_LIMIT) -> None:
    """Set SQLite's process-wide soft heap limit (``PRAGMA soft_heap_limit``)."""
    con = sqlite3.connect(":memory:")
    try:
        con.execute(f"PRAGMA soft_heap_limit={int(limit)}")
    finally:
        con.close()


@dataclass
class Collector:
    """One site's collector. ``start``/``stop`` on a running asyncio loop."""

    cfg: SiteConfig
    # The alert rules, loaded already (dcim.runconfig's child process); None: from ``cfg``.
    rules: list[Rule] | None = None

    def __post_init__(self) -> None:
        limit_sqlite_heap()
        st = self.cfg.storage
        self.spool = Spool(
            st.spool_dir,
            max_bytes=int(st.spool_max_mb * 2**20),
            on_full=st.spool_on_full,
            warn_pct=st.spool_warn_pct,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self.store = make_store(self.cfg.storage)
        self.forwarder = Forwarder(
            self.spool,
            self.store,
            batch_size=self.cfg.storage.batch_size,
            flush_interval_s=self.cfg.storage.flush_interval_s,
            backoff_max_s=self.cfg.storage.retry_max_s,
        )
        # The embedded store takes the committed readings straight, the spool what it cannot
        # (dcim.spool_through); InfluxDB is written from the spool only.
        self.through: WriteThrough | None = None
        if self.cfg.storage.sink.type == "embedded":
            write = partial(cast("SqliteStore", self.store).write, wait_s=THROUGH_WAIT_S)
            self.through = WriteThrough(self.spool, self.forwarder, write)
        self.pipeline = Pipeline(self.through or self.spool, screen=Screen.of(self.cfg))
        # the durable commit off the loop, polls ending within a window together
        shortest = min((self.cfg.interval_of(d) for d in self.cfg.devices), default=1.0)
        self.committer = Committer(
            self.pipeline.accept, window_s=min(COMMIT_WINDOW_S, shortest / 4)
        )
        self.poll_metrics = PollMetrics()
        self.metrics_server: MetricsServer | None = None
        self.pollers = build_pollers(self.cfg)
        self.alerts = build_engine(
            self.cfg, self.committer.submit, rules=self.rules
        )  # None: no rules
        self.scheduler = Scheduler(self.cfg, self.pollers, self.emit)
        # Push protocols (MQTT): one source per protocol with enabled devices.
        self.sources: dict[str, PushSource] = build_sources(self.cfg, self.emit, offer=self.offer)
        # The hourly and daily `kpi` points, written as their periods close (no cron).
        metered = self.cfg.devices_with_role("grid_incomer")
        self.kpi_writer: KpiWriter | None = None
        if metered:
            from dcim.kpi.writer import KpiWriter

            self.kpi_writer = KpiWriter(self.store, self.cfg)

    def emit(self, readings: list[Reading]) -> None:
        self.poll_metrics.observe(readings)
        if self.alerts is not None:  # on live readings, before (and whatever) the spool
            self.alerts.observe(readings)
        self.committer.submit(readings)

    def offer(self, readings: list[Reading]) -> bool:
        """Readings their source keeps until they are taken (e.g. an MQTT QoS 1 message,
        which the broker keeps until it is acknowledged): False, nothing written, while the spool
        is full (``spool_on_full: refuse_new``)."""
        try:
            self.pipeline.accept(readings, hold=True)
        except SpoolFullError:
            return False
        if self.alerts is not None:
            self.alerts.observe(readings)
        self.poll_metrics.observe(readings)
        return True

    def spool_health(self) -> Reading:
        """The ``dcim_spool`` reading: disk use of the spool against its budget."""
        s = self.spool.stats()
        fields: dict[str, FieldValue] = {
            "bytes": s.bytes,
            "max_bytes": s.max_bytes,
            "used_pct": s.used_pct,
            "pending": s.pending,
            "refused_total": s.refused_total,
            "dropped_total": s.dropped_total,
            "quarantined": sum(q.count for q in self.spool.quarantined()),
            "full": int(s.full),
            "warn": int(s.warn),
            "forward_lag_s": self.forwarder.stats().lag_s,
        }
        return Reading("dcim_spool", {"site": self.cfg.site.name}, fields, time.time_ns())

    def collector_health(self) -> Reading:
        """The ``dcim_collector`` reading: the devices this collector has heard from and how
        many of them are down now (their last poll failed). One series per site, so a year of
        "devices down" is one small series to chart, not every device's polls."""
        devices = self.poll_metrics.snapshot()
        fields: dict[str, FieldValue] = {
            "devices": len(devices),
            "devices_down": sum(1 for d in devices.values() if not d.up),
        }
        return Reading("dcim_collector", {"site": self.cfg.site.name}, fields, time.time_ns())

    async def _spool_health_loop(self) -> None:
        # Through the pipeline like any reading: when the spool is full it is refused, and
        # the pipeline's (rate-limited) error log says so.
        every = self.cfg.defaults.interval_s  # as often as the devices are polled
        while True:
            await asyncio.sleep(every)
            try:
                # Off the loop: the spool's stats wait for a commit in progress (a slow disk).
                health = [await asyncio.to_thread(self.spool_health), self.collector_health()]
                if self.alerts is not None:
                    self.alerts.observe(health)
                self.committer.submit(health)
            except Exception:  # noqa: BLE001 - health must not stop the collector
                log.exception("emitting the dcim_spool/dcim_collector health readings failed")

    async def _maintain_loop(self) -> None:
        # The embedded store rolls up closed hours and applies its raw retention itself
        # (InfluxDB does both in the server, with the continuous queries of `dcim db init`).
        maintain = getattr(self.store, "maintain", None)
        if maintain is None:
            return
        while True:
            try:
                done = await asyncio.to_thread(maintain)
                if any(done.values()):
                    log.info("embedded store maintenance: %s", done)
            except Exception:  # noqa: BLE001 - retried at the next round
                log.exception("embedded store maintenance failed")
            await asyncio.sleep(MAINTAIN_EVERY_S)

    async def _kpi_loop(self) -> None:
        if self.kpi_writer is None:
            return
        while True:
            await asyncio.sleep(KPI_EVERY_S)
            try:
                await asyncio.to_thread(self.kpi_writer.run_once, time.time_ns())
            except Exception:  # noqa: BLE001 - retried at the next round (the store may be down)
                log.warning("writing the kpi points failed; retried in a minute", exc_info=True)

    async def _report_loop(self) -> None:
        # Last month's statements from the configured day on, and a new revision when late
        # data change one (dcim.reports.schedule); the report extra is imported only here.
        heat = self.cfg.reports.heat
        if heat is None or heat.schedule is None:
            return
        try:
            from dcim.reports.schedule import ScheduledStatements
        except ImportError as exc:
            log.error("scheduled statements off: %s (pip install 'dcim-heat[report]')", exc)
            return
        try:
            statements = ScheduledStatements(self.store, self.cfg)
        except Exception:  # noqa: BLE001 - e.g. the folder is not writable: say so, collect on
            log.error("scheduled statements off: their outbox cannot be opened", exc_info=True)
            return
        statements.start()  # the announcements' delivery thread (webhook_url), retried
        try:
            while True:
                try:
                    await asyncio.to_thread(statements.run, time.time_ns())
                except Exception:  # noqa: BLE001 - retried at the next round (store down?)
                    log.warning("rendering the statements failed; retried later", exc_info=True)
                await asyncio.sleep(heat.schedule.check_every_s)
        finally:
            statements.stop()

    async def start(self) -> None:
        if self.cfg.metrics is not None:  # first: a port in use fails the start, not later
            from dcim.metrics import MetricsServer  # prometheus_client: only with ``metrics:``

            m = self.cfg.metrics
            self.metrics_server = MetricsServer(self, self.poll_metrics, m.host, m.port)
        self.forwarder.start()
        if self.alerts is not None:
            self.alerts.start()
        self._tasks = [
            asyncio.create_task(self._spool_health_loop()),
            asyncio.create_task(self._maintain_loop()),
            asyncio.create_task(self._kpi_loop()),
            asyncio.create_task(self._report_loop()),
        ]
        for source in self.sources.values():
            source.start()
        await self.scheduler.start()
        log.info(
            "collecting %d devices of site %s into %s",
            len(self.cfg.devices),
            self.cfg.site.name,
            self.cfg.storage.sink.type,
        )

    async def stop(self, *, flush_timeout_s: float | None = None) -> None:
        """Stop polling, then forward what the spool holds, all within ``flush_timeout_s``
        (default: ``storage.stop_timeout_s``); nothing is lost either way: what is not
        forwarded stays in the spool for the next start."""
        bound = self.cfg.storage.stop_timeout_s if flush_timeout_s is None else flush_timeout_s
        deadline = time.monotonic() + bound * 0.9  # the rest: the process's exit

        def left() -> float:
            return max(0.0, deadline - time.monotonic())

        await self.scheduler.stop()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for name, source in self.sources.items():
            try:
                source.stop()
            except Exception:  # noqa: BLE001 - stopping is best effort; the spool is next
                log.warning("stopping the %s source failed", name, exc_info=True)
        for p in self.pollers:
            try:
                await p.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                log.debug("closing %s failed", p.device.name, exc_info=True)
        if self.alerts is not None:
            self.alerts.stop()
        await asyncio.to_thread(self.committer.close, left())
        await asyncio.to_thread(self.forwarder.flush, max(0.0, left() - 0.5))
        # A write in flight ends within a second; rollups of late hours after the spool was
        # drained need no wait (the InfluxDB store keeps them due for the next start).
        self.forwarder.stop(timeout=min(left(), 1.0))
        if self.metrics_server is not None:
            self.metrics_server.close()
            self.metrics_server = None
        self.spool.close()
        close = getattr(self.store, "close_within", None)
        if close is not None:
            close(left())  # the InfluxDB store's due rollups: as far as the bound allows
        else:
            self.store.close()


async def run_forever(cfg: SiteConfig, rules: list[Rule] | None = None) -> None:
    """Collect until SIGINT or SIGTERM (systemd, docker stop), then stop cleanly. The handlers
    are installed explicitly: a process started in the background by a shell inherits SIGINT
    ignored, and Python's default SIGTERM action would skip the final flush."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    col = Collector(cfg, rules)
    settle_gc()  # before the start: not in the first polls' way
    await col.start()
    try:
        await stop.wait()
        log.info("stopping: polls end, the spool is forwarded (what is left stays spooled)")
    finally:
        await col.stop()
        log.info("stopped")
