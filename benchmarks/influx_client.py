"""Which HTTP client posts the forwarder's writes: the standard library's ``http.client`` (what
``dcim.storage.influx`` uses) against ``influxdb-client`` (InfluxData's client package).

(1) Client CPU per batch: both post the same 5,000 lines of line protocol, gzip-compressed, on
    a keep-alive connection to a local HTTP server that answers 204 at once (so only the
    client's work is measured: compression, request, response), in the calling thread.
(2) Whether ``influxdb-client`` writes to InfluxDB 1.6.7 (Debian's, the tests' server) at all.

    .venv/bin/pip install influxdb-client   # not a dependency of the product
    .venv/bin/python benchmarks/influx_client.py [--batches 200]
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from dcim.storage.influx import write_body
from dcim.testing.servers import start_influxdb

LINES = 5000  # the forwarder's default batch


def body() -> bytes:
    """5,000 lines shaped like the collector's (reference-site tags, three fields)."""
    return b"".join(
        b"pdu,site=paris-chapelle,room=salle-a,rack=R%02d,device=pdu-R%02d-A,role=pdu_output "
        b"power_w=%d.25,energy_wh_total=%di,current_a=%d.5 %d\n"
        % (i % 30, i % 30, i, i * 7, i % 16, 1_700_000_000_000_000_000 + i)
        for i in range(LINES)
    )


class _NoContent(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def thread_cpu(work: Callable[[], None]) -> float:
    """CPU seconds ``work`` takes in a thread of its own (the server's threads not counted)."""
    out: list[float] = []

    def run() -> None:
        t = time.thread_time()
        work()
        out.append(time.thread_time() - t)

    th = threading.Thread(target=run)
    th.start()
    th.join()
    return out[0]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batches", type=int, default=200)
    args = p.parse_args()
    try:
        from influxdb_client import InfluxDBClient  # type: ignore[import-not-found]
        from influxdb_client.client.write_api import SYNCHRONOUS  # type: ignore[import-not-found]
    except ImportError:
        print("influxdb-client is not installed: .venv/bin/pip install influxdb-client")
        return 2
    lines = body()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NoContent)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    port = srv.server_address[1]

    def stdlib() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for _ in range(args.batches):
            data, headers = write_body(lines, gzip=True)
            conn.request("POST", "/write?db=x&precision=ns", data, headers)
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 204
        conn.close()

    client = InfluxDBClient(url=f"http://127.0.0.1:{port}", token="t", org="o", enable_gzip=True)
    writer = client.write_api(write_options=SYNCHRONOUS)

    def package() -> None:
        for _ in range(args.batches):
            writer.write(bucket="b", org="o", record=lines, write_precision="ns")

    print(f"(1) client CPU per batch of {LINES:,} lines, gzip, {args.batches} batches each:")
    for name, work in (("http.client (the sink's)", stdlib), ("influxdb-client", package)) * 2:
        cpu = thread_cpu(work) / args.batches
        print(f"    {name}: {cpu * 1e3:.2f} ms ({cpu / LINES * 1e6:.2f} us a line)")
    client.close()
    srv.shutdown()
    with tempfile.TemporaryDirectory() as d:
        influxd = start_influxdb(Path(d))
        try:
            c = InfluxDBClient(url=influxd.url, token="", org="-")
            try:
                c.write_api(write_options=SYNCHRONOUS).write(
                    bucket="dcim/autogen", org="-", record=lines[:1000]
                )
                print("(2) influxdb-client -> InfluxDB 1.6.7: written")
            except Exception as exc:  # noqa: BLE001 - what it answers is the figure
                status = getattr(exc, "status", None)
                body_ = (getattr(exc, "body", None) or str(exc)).strip()[:120]
                print(f"(2) influxdb-client -> InfluxDB 1.6.7: refused, HTTP {status}: {body_}")
            c.close()
        finally:
            influxd.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
