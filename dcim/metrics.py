"""The collector's own metrics in Prometheus text exposition format (``GET /metrics``).

Off by default; a ``metrics:`` section in the site file turns it on (``metrics: {}``: on
127.0.0.1:9108, the port next to node_exporter's 9100 that exporters of this kind use). The
endpoint has no authentication: keep it on loopback, or behind a proxy that adds some.

Where the values come from:

- every ``dcim_poll`` health reading the collector emits (the scheduler's per poll, MQTT's
  per message and per gap) is observed on its way to the pipeline (:meth:`PollMetrics.observe`),
  so the endpoint shows exactly what the database gets;
- spool, pipeline, forwarder and MQTT client counters are read when Prometheus scrapes.

Metrics (labels in braces):

======================================================  ======================================
``dcim_poll_up{device,protocol}``                       1 if the last cycle read values
``dcim_poll_duration_seconds{device,protocol}``         duration of the last poll
``dcim_poll_values_read{device,protocol}``              values read by the last poll
``dcim_poll_late_seconds{device,protocol}``             start delay of the last poll
``dcim_poll_last_success_timestamp_seconds{...}``       UNIX time of the last good cycle
``dcim_polls_total{device,protocol}``                   cycles (good, failed, missed, gaps)
``dcim_poll_errors_total{device,protocol,kind}``        failed cycles by kind (timeout, refused,
                                                        protocol, deadline, missed, gap, ...)
``dcim_spool_pending_readings``, ``dcim_spool_bytes``,  spool backlog and disk use
``dcim_spool_max_bytes``, ``dcim_spool_quarantined_readings``
``dcim_spool_refused_total``, ``dcim_spool_dropped_total``  readings refused / dropped when full
``dcim_pipeline_accepted_total``,                       readings committed, values refused
``dcim_pipeline_rejected_values_total``
``dcim_values_refused_total{device,field,reason}``     values that cannot be true, left out
                                                        (dcim.plausible: no_value, below_range,
                                                        above_range, absent, not_a_number)
``dcim_forwarder_sent_total``,                          readings delivered to the sink, refused
``dcim_forwarder_quarantined_total``                    by it for good
``dcim_forwarder_consecutive_failures``                 failed sink writes in a row (0: healthy)
``dcim_forwarder_lag_seconds``                          age of the oldest reading being
                                                        delivered (0: spool drained)
``dcim_mqtt_connected``                                 1 while connected to the broker
``dcim_mqtt_messages_total{device}``,                   messages received, and those with a
``dcim_mqtt_malformed_total{device}``                   malformed payload
``dcim_mqtt_holding``, ``dcim_mqtt_held_total``         1 while a message waits unacknowledged
                                                        for room in the spool; such messages
``dcim_collector_info{site,version}``                   1
``process_*``                                           CPU, memory, open files (Linux)
======================================================  ======================================
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import socket
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector as _PromCollector

from dcim import __version__
from dcim.pollstate import PollMetrics
from dcim.protocols import MetricsSource
from dcim.urls import redact_url

if TYPE_CHECKING:
    from dcim.runtime import Collector

log = logging.getLogger(__name__)


class CollectorMetrics(_PromCollector):
    """A prometheus_client collector reading the state of a running :class:`Collector`."""

    def __init__(self, collector: Collector, polls: PollMetrics) -> None:
        self.collector = collector
        self.polls = polls

    def collect(self) -> Iterator[Metric]:
        yield from self._polls()
        for source in (self._spool, self._pipeline, self._forwarder, self._sources):
            try:
                yield from source()
            except Exception:  # noqa: BLE001 - one failing source must not break the scrape
                log.debug("metrics source %s failed", source.__name__, exc_info=True)
        info = GaugeMetricFamily(
            "dcim_collector_info", "The collector's site and version", labels=["site", "version"]
        )
        info.add_metric([self.collector.cfg.site.name, __version__], 1)
        yield info

    def _polls(self) -> Iterator[Metric]:
        labels = ["device", "protocol"]
        up = GaugeMetricFamily("dcim_poll_up", "1 if the last cycle read values", labels=labels)
        dur = GaugeMetricFamily(
            "dcim_poll_duration_seconds", "Duration of the last poll", labels=labels
        )
        vals = GaugeMetricFamily(
            "dcim_poll_values_read", "Values read by the last poll", labels=labels
        )
        late = GaugeMetricFamily(
            "dcim_poll_late_seconds", "Start delay of the last poll", labels=labels
        )
        last_ok = GaugeMetricFamily(
            "dcim_poll_last_success_timestamp_seconds",
            "UNIX time of the last cycle that read values",
            labels=labels,
        )
        polls = CounterMetricFamily(
            "dcim_polls", "Poll cycles (good, failed, missed, MQTT gaps)", labels=labels
        )
        errors = CounterMetricFamily(
            "dcim_poll_errors", "Failed cycles by error kind", labels=[*labels, "kind"]
        )
        for name, d in sorted(self.polls.snapshot().items()):
            key = [name, d.protocol]
            up.add_metric(key, d.up)
            dur.add_metric(key, d.duration_s)
            vals.add_metric(key, d.values_read)
            late.add_metric(key, d.late_s)
            if d.last_ok_s is not None:
                last_ok.add_metric(key, d.last_ok_s)
            polls.add_metric(key, d.polls)
            for kind, n in sorted(d.errors.items()):
                errors.add_metric([*key, kind], n)
        yield from (up, dur, vals, late, last_ok, polls, errors)

    def _spool(self) -> Iterator[Metric]:
        spool = self.collector.spool
        s = spool.stats()
        quarantined = sum(q.count for q in spool.quarantined())
        yield GaugeMetricFamily(
            "dcim_spool_pending_readings", "Readings in the spool not yet forwarded", s.pending
        )
        yield GaugeMetricFamily("dcim_spool_bytes", "Spool disk use (data + WAL)", s.bytes)
        yield GaugeMetricFamily("dcim_spool_max_bytes", "Spool disk budget (0: none)", s.max_bytes)
        yield GaugeMetricFamily(
            "dcim_spool_quarantined_readings",
            "Readings the sink refused for good, kept in the quarantine",
            quarantined,
        )
        yield CounterMetricFamily(
            "dcim_spool_refused", "Readings refused: spool at its budget", s.refused_total
        )
        yield CounterMetricFamily(
            "dcim_spool_dropped", "Oldest readings dropped to make room", s.dropped_total
        )

    def _pipeline(self) -> Iterator[Metric]:
        p = self.collector.pipeline
        yield CounterMetricFamily(
            "dcim_pipeline_accepted",
            "Readings committed (to the spool, or straight to the embedded store)",
            p.accepted,
        )
        yield CounterMetricFamily(
            "dcim_pipeline_rejected_values", "Values refused by validation", p.rejected
        )
        refused = CounterMetricFamily(
            "dcim_values_refused",
            "Values that cannot be true, left out (vendor no-value code, outside the field's "
            "physical range, a line the device does not have)",
            labels=["device", "field", "reason"],
        )
        if p.screen is not None:
            for (device, name, reason), n in sorted(p.screen.totals().items()):
                refused.add_metric([device, name, reason], n)
        yield refused

    def _forwarder(self) -> Iterator[Metric]:
        f = self.collector.forwarder.stats()
        yield CounterMetricFamily("dcim_forwarder_sent", "Readings delivered to the sink", f.sent)
        yield CounterMetricFamily(
            "dcim_forwarder_quarantined", "Readings the sink refused for good", f.quarantined
        )
        yield GaugeMetricFamily(
            "dcim_forwarder_consecutive_failures",
            "Failed sink writes in a row (0: the last write succeeded)",
            f.failures,
        )
        yield GaugeMetricFamily(
            "dcim_forwarder_lag_seconds",
            "Age of the oldest reading being delivered to the sink (0: spool drained)",
            f.lag_s,
        )

    def _sources(self) -> Iterator[Metric]:
        """Metrics of the protocols' own (MQTT: dcim_mqtt_*), from the sources that have them."""
        for source in self.collector.sources.values():
            if isinstance(source, MetricsSource):
                yield from source.metrics()


class MetricsServer:
    """``/metrics`` over HTTP on a thread of its own running an asyncio loop: a connection
    costs no thread, whatever it does. Each has ``idle_timeout_s`` to send its request (then
    it is closed); at most ``max_connections`` are open: a new one beyond that closes the
    oldest that has not sent its request yet (or is refused when all are answering), so idle
    or slow clients cannot keep a scrape out. Answers ``GET /metrics`` (and ``/``), one
    request per connection (``Connection: close``).

    (prometheus_client's own server starts a thread per connection and has no timeout: 200
    idle connections were 200 threads; its exposition is used as is.)"""

    def __init__(
        self,
        collector: Collector,
        polls: PollMetrics,
        host: str,
        port: int,
        *,
        idle_timeout_s: float = 10.0,
        max_connections: int = 64,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(CollectorMetrics(collector, polls))
        self.registry.register(ProcessCollector(registry=None))
        self.idle_timeout_s = idle_timeout_s
        self.max_connections = max_connections
        # Bound here: a port in use fails the collector's start, not later.
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.create_server((host, port), family=family)
        self.host, self.port = host, int(self._sock.getsockname()[1])
        self._idle: dict[asyncio.StreamWriter, None] = {}  # waiting for their request, oldest first
        self._open = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dcim-metrics", daemon=True)
        self._thread.start()
        self._ready.wait(5)
        log.info("metrics on %s", redact_url(f"http://{self.host}:{self.port}/metrics"))

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def serve() -> asyncio.Server:
            return await asyncio.start_server(self._handle, sock=self._sock, limit=16384)

        self._server = self._loop.run_until_complete(serve())
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        self._loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._open >= self.max_connections:
            if not self._idle:  # every slot is answering a request: come back later
                writer.close()
                return
            oldest = next(iter(self._idle))
            self._idle.pop(oldest)
            oldest.close()
        self._open += 1
        self._idle[writer] = None
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.idle_timeout_s)
            except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
                return
            finally:
                self._idle.pop(writer, None)
            writer.write(self._answer(head))
            with contextlib.suppress(OSError):
                await asyncio.wait_for(writer.drain(), self.idle_timeout_s)
        except TimeoutError:
            pass
        finally:
            self._open -= 1
            writer.close()

    def _answer(self, head: bytes) -> bytes:
        parts = head.split(b"\r\n", 1)[0].split()
        if len(parts) != 3 or parts[0] not in (b"GET", b"HEAD"):
            return _response(405, b"text/plain", b"only GET /metrics\n")
        path = parts[1].split(b"?", 1)[0]
        if path not in (b"/metrics", b"/"):
            return _response(404, b"text/plain", b"not found: GET /metrics\n")
        headers = {}
        for line in head.decode("latin-1").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        # The format and compression the scraper asks for, as prometheus_client's own server.
        encoder, ctype = choose_encoder(headers.get("accept", ""))
        try:
            body = encoder(self.registry)
        except Exception:  # noqa: BLE001 - a broken metric must not kill the endpoint
            log.exception("generating /metrics failed")
            return _response(500, b"text/plain", b"generating the metrics failed\n")
        extra = b""
        if "gzip" in headers.get("accept-encoding", ""):
            body, extra = gzip.compress(body, compresslevel=1), b"Content-Encoding: gzip\r\n"
        if parts[0] == b"HEAD":
            body = b""
        return _response(200, ctype.encode(), body, extra)

    def close(self) -> None:
        def stop() -> None:
            self._server.close()
            self._loop.stop()

        if self._loop.is_running():
            self._loop.call_soon_threadsafe(stop)
        self._thread.join(5)
        self._sock.close()


_REASONS = {200: b"OK", 404: b"Not Found", 405: b"Method Not Allowed", 500: b"Server Error"}


def _response(status: int, ctype: bytes, body: bytes, extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s"
        b"Connection: close\r\n\r\n" % (status, _REASONS[status], ctype, len(body), extra)
    ) + body
