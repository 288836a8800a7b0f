"""``dcim demo``: the twin of the reference site, the collectors, the embedded store, a live view.

The twin runs in a child process (``dcim twin serve``) so it is a separate program on the
network, as real devices are; the collector runs here exactly as ``dcim run`` does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from collectors.mqtt.source import MqttCollector
from dcim.alerts.view import alert_lines
from dcim.config import SiteConfig
from dcim.kpi.period import KpiReport, compute_kpis, instantaneous
from dcim.runtime import Collector
from dcim.timeutil import fmt_ns
from dcim.twin.site import paris_chapelle
from dcim.urls import redact_url

NS = 1_000_000_000
DEMO_MQTT_PORT = 18830
# The energy PUE covers [start + SETTLE_S, now - LAG_S]: the first polls and the spool's last
# batch left out, so both ends have a reading on each side (no extrapolation); it needs two
# readings per meter past the settle time, hence the first figure after FIRST_FIGURE_AFTER_S.
SETTLE_S = 30
LAG_S = 20
FIRST_FIGURE_AFTER_S = 90


def demo_config(args: argparse.Namespace) -> tuple[SiteConfig, Path]:
    base = Path(args.dir).resolve()
    base.mkdir(parents=True, exist_ok=True)
    doc = paris_chapelle(
        racks=args.racks,
        servers_per_rack=args.servers_per_rack,
        interval_s=args.interval,
        mqtt_port=DEMO_MQTT_PORT,
        spool_dir=str(base / "spool"),
        sink={"type": "embedded", "path": str(base / "dcim.sqlite")},
    )
    path = base / "paris-chapelle.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return SiteConfig.model_validate(doc), path


def _kw(w: float | None) -> str:
    return "    n/a" if w is None else f"{w / 1000:7.1f} kW"


def render(cfg: SiteConfig, col: Collector, started_ns: int) -> str:
    now = time.time_ns()
    p = instantaneous(col.store, cfg, now)
    status = col.scheduler.status()
    up = sum(1 for s in status.values() if s.up)
    down = sorted(n for n, s in status.items() if not s.up and s.last_poll is not None)
    mqtt_up = mqtt_n = 0
    mqtt = col.sources.get("mqtt")
    if isinstance(mqtt, MqttCollector):
        last = mqtt.last_message()
        mqtt_n = len(last)
        mqtt_up = sum(1 for t in last.values() if t and now / NS - t < 3 * cfg.defaults.interval_s)
    lates = sorted(s.late_s for s in status.values() if s.late_s is not None)
    p99 = lates[int(0.99 * (len(lates) - 1))] if lates else 0.0
    stats = col.forwarder.stats()
    pue = p.get("pue_instantaneous")
    lines = [
        f"DCIM demo: {cfg.site.name} (digital twin)   "
        f"{fmt_ns(now, cfg.site.timezone)} ({cfg.site.timezone})   Ctrl-C stops",
        "",
        f"  IT power (UPS output)        {_kw(p.get('it_w'))}",
        f"  Facility power (E_DC scope)  {_kw(p.get('facility_w'))}   "
        f"heat pumps {_kw(p.get('heat_pump_board'))} (outside E_DC)",
        f"  PUE, instantaneous           {'   n/a' if pue is None else f'{pue:7.3f}'}      "
        "(power based, dashboards only)",
        f"  Heat exported to CPCU        {_kw(p.get('heat_export_cpcu'))}",
        f"  Heat to the greenhouses      {_kw(p.get('heat_export_greenhouse'))}",
        "",
        f"  Devices polled: {up} up, {len(down)} down"
        + (f" ({', '.join(down[:5])}...)" if down else "")
        + f"; MQTT sensors {mqtt_up}/{mqtt_n} reporting",
        f"  Poll start delay p99: {p99 * 1000:.0f} ms; "
        f"spool pending {stats.pending}, forwarded {stats.sent}",
        *alert_lines(col.alerts),
    ]
    first = started_ns + FIRST_FIGURE_AFTER_S * NS
    if now < first:
        lines.append(f"  PUE (energy) since start: first figure in {(first - now) / NS:.0f} s")
    else:
        # as 'dcim kpi --from START --to END' computes it: the same category rule and clock
        start, end = started_ns + SETTLE_S * NS, now - LAG_S * NS
        lines.append("  " + energy_pue_line(compute_kpis(col.store, cfg, start, end), cfg))
    return "\n".join(lines)


def energy_pue_line(rep: KpiReport, cfg: SiteConfig) -> str:
    """The report's ``pue`` as one line: its category, period (site time) and completeness,
    or n/a and why."""
    tz = cfg.site.timezone
    when = f"{fmt_ns(rep.start_ns, tz)[11:19]}..{fmt_ns(rep.end_ns, tz)[11:19]}"
    try:
        f = rep.figure("pue")
    except KeyError:
        return f"PUE (energy) {when}: n/a (no IT energy meter)"
    head = f"PUE (energy, category {rep.pue_category}) {when}:"
    if f.value is None:
        return f"{head} n/a ({f.note.split(';')[0].removeprefix('n/a: ')})"
    return f"{head} {f.value:.3f}, data {f.completeness:.0%} complete"


async def _demo(cfg: SiteConfig, args: argparse.Namespace) -> None:
    col = Collector(cfg)
    await col.start()
    started = time.time_ns()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=2.0)
            if args.duration and time.time_ns() - started > args.duration * NS:
                break
            text = render(cfg, col, started)
            if args.no_view:  # one line per refresh, for logs and pipes
                print(
                    " | ".join(
                        " ".join(line.split()) for line in text.splitlines()[2:] if line.strip()
                    ),
                    flush=True,
                )
            else:
                sys.stdout.write("\x1b[H\x1b[2J" + text + "\n")
                sys.stdout.flush()
    finally:
        print("\nstopping: forwarding what the spool holds...", flush=True)
        await col.stop()
        sink = cfg.storage.sink
        where = sink.path if sink.type == "embedded" else redact_url(sink.url)
        print(f"stopped; the data is in {where}", flush=True)


def _die_with_parent() -> None:
    """In the twin's process (Linux): SIGTERM when the demo dies, even by ``kill -9``, so that
    no orphan twin keeps the demo's ports and a new ``dcim demo`` can start."""
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def run_demo(args: argparse.Namespace) -> int:
    cfg, path = demo_config(args)
    twin = subprocess.Popen(
        [sys.executable, "-m", "dcim.cli", "twin", "serve", str(path), "--embedded-broker"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # Ctrl-C goes to us; we stop the twin after the collector
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
    )
    try:
        assert twin.stdout is not None
        line = twin.stdout.readline()
        if "twin serving" not in line:
            print(
                "dcim demo: the twin did not start (its message is above); another demo "
                f"running? It uses 127.0.0.1: SNMP UDP 16100+, Modbus TCP 15020+, MQTT "
                f"{DEMO_MQTT_PORT}",
                file=sys.stderr,
            )
            return 1
        print(line.strip(), flush=True)
        asyncio.run(_demo(cfg, args))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(twin.pid, signal.SIGTERM)
        twin.wait(10)
    return 0
