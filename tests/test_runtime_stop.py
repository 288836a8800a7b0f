"""``dcim run``'s stop (dcim/runtime.py ``Collector.stop``): bounded by
``storage.stop_timeout_s`` even when the sink hangs, what is not forwarded stays spooled.
(The figure with a 300,000-reading backlog and a real InfluxDB: benchmarks/stop.py.)"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

from dcim.config import SiteConfig
from dcim.reading import Reading
from dcim.runtime import Collector
from dcim.spool import Spool

T = time.time_ns() - 3600 * 1_000_000_000


def test_stop_within_the_bound_when_the_sink_hangs(tmp_path: Path) -> None:
    """A sink that accepts connections and never answers (writes hang for the sink's 30 s
    timeout): stop returns within the bound, every reading still in the spool."""
    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(16)
    url = f"http://127.0.0.1:{hang.getsockname()[1]}"
    cfg = SiteConfig.model_validate(
        {
            "site": {"name": "s"},
            "storage": {
                "spool_dir": str(tmp_path / "spool"),
                "sink": {"type": "influxdb", "url": url, "timeout_s": 30},
                "stop_timeout_s": 1.5,
                "batch_size": 500,
            },
        }
    )
    assert SiteConfig.model_validate({"site": {"name": "s"}}).storage.stop_timeout_s == 8.0
    readings = [
        Reading("pdu", {"device": f"p{i % 7}"}, {"power_w": 1.0}, T + i) for i in range(5000)
    ]

    async def run() -> float:
        col = Collector(cfg)
        col.pipeline.accept(readings)
        await col.start()
        await asyncio.sleep(0.3)  # a write is in flight, hanging
        t = time.monotonic()
        await col.stop()
        return time.monotonic() - t

    try:
        took = asyncio.run(run())
    finally:
        hang.close()
    assert took < 1.5 + 0.5, took
    with Spool(tmp_path / "spool") as sp:
        kept = [r for r in sp.peek(10**6).readings if r.measurement == "pdu"]
    assert kept == readings
