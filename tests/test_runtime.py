"""The collector runs the kpi writer (dcim.kpi.writer) when the site has a grid incomer to
compute KPIs from, on its own store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dcim.config import SiteConfig
from dcim.kpi.writer import KpiWriter
from dcim.runtime import Collector
from dcim.twin.site import paris_chapelle


def _doc(tmp_path: Path, *, metered: bool) -> dict[str, Any]:
    doc = paris_chapelle(racks=1, servers_per_rack=1, spool_dir=str(tmp_path / "spool"),
                         sink={"type": "embedded", "path": str(tmp_path / "s.sqlite")})  # fmt: skip
    if not metered:
        doc["devices"] = [d for d in doc["devices"] if d.get("role") != "grid_incomer"]
    return doc


def _cfg(tmp_path: Path, *, metered: bool) -> SiteConfig:
    return SiteConfig.model_validate(_doc(tmp_path, metered=metered))


def test_collector_writes_kpis_when_metered(tmp_path: Path) -> None:
    col = Collector(_cfg(tmp_path, metered=True))
    try:
        assert isinstance(col.kpi_writer, KpiWriter) and col.kpi_writer.store is col.store
        assert ("energy_meter", "energy_wh_total") in col.kpi_writer.inputs
    finally:
        col.spool.close()
        col.store.close()


def test_no_kpi_writer_without_a_grid_incomer(tmp_path: Path) -> None:
    col = Collector(_cfg(tmp_path / "x", metered=False))
    try:
        assert col.kpi_writer is None
    finally:
        col.spool.close()
        col.store.close()


def test_spool_health_counts_the_quarantine(tmp_path: Path) -> None:
    from dcim.reading import Reading

    col = Collector(_cfg(tmp_path, metered=False))
    try:
        assert col.spool_health().fields["quarantined"] == 0
        bad = [Reading("m", {"site": "s"}, {"v": float(i)}, i + 1) for i in range(3)]
        col.spool.append(bad)
        batch = col.spool.peek(10)
        col.spool.ack(batch, rejected=[(bad, "field type conflict")])  # refused for good
        assert col.spool_health().fields["quarantined"] == 3
    finally:
        col.spool.close()
        col.store.close()


def test_collector_health_counts_devices_whose_last_poll_failed(tmp_path: Path) -> None:
    from dcim.reading import Reading

    def poll(device: str, up: int, t: int) -> Reading:
        fields = {"up": up, "duration_s": 0.1, "values_read": 3 * up, "late_s": 0.0}
        error = "" if up else "timeout"
        return Reading("dcim_poll", {"device": device, "protocol": "snmp"},
                       {**fields, "error": error}, t)  # fmt: skip

    col = Collector(_cfg(tmp_path, metered=False))
    try:
        assert col.collector_health().fields == {"devices": 0, "devices_down": 0}
        col.poll_metrics.observe([poll("a", 1, 1), poll("b", 0, 1), poll("c", 0, 1)])
        col.poll_metrics.observe([poll("b", 1, 2)])  # b answered again: no longer down
        r = col.collector_health()
        assert r.measurement == "dcim_collector" and r.tags == {"site": col.cfg.site.name}
        assert r.fields == {"devices": 3, "devices_down": 1}
        assert col.pipeline.accept([r]) == 1 and col.pipeline.rejected == 0
    finally:
        col.spool.close()
        col.store.close()


def test_run_forever_settles_the_garbage_collector(tmp_path: Path) -> None:
    """A running collector has frozen what its start built and collects less often; checked
    in a process of its own (the suite's own collector thresholds stay as they are)."""
    import json
    import subprocess
    import sys
    import textwrap

    doc = _doc(tmp_path, metered=False)
    doc["devices"] = []
    code = textwrap.dedent(f"""
        import asyncio, gc, json, os, signal
        from dcim.config import SiteConfig
        from dcim.runtime import GC_THRESHOLD, run_forever

        cfg = SiteConfig.model_validate(json.loads({json.dumps(doc)!r}))
        async def main():
            async def check():
                for _ in range(100):
                    if gc.get_freeze_count():
                        break
                    await asyncio.sleep(0.05)
                print(gc.get_threshold()[0], gc.get_freeze_count() > 1000, GC_THRESHOLD[0])
                os.kill(os.getpid(), signal.SIGTERM)
            t = asyncio.create_task(check())
            await run_forever(cfg)
            await t

        asyncio.run(main())
    """)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout.split("\n")[0]
    assert out == "20000 True 20000", out
