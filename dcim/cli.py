"""The ``dcim`` command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
import time
from pathlib import Path

from dcim.cmdline import load_or_exit as _load
from dcim.config import inline_secrets
from dcim.timeutil import NS, parse_duration, parse_period, parse_time

log = logging.getLogger("dcim")


def cmd_check_config(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    counts: dict[str, int] = {}
    for d in cfg.devices:
        counts[d.protocol] = counts.get(d.protocol, 0) + 1
    summary = ", ".join(f"{n} {p}" for p, n in sorted(counts.items()))
    for warning in inline_secrets(cfg):
        print(f"warning: {args.config}: {warning}", file=sys.stderr)
    print(f"{args.config}: OK, site {cfg.site.name}: {len(cfg.devices)} devices ({summary})")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from dcim.runtime import run_forever

    cfg = _load(args.config)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_forever(cfg))
    return 0


def cmd_kpi(args: argparse.Namespace) -> int:
    from dcim.kpi.period import compute_kpis
    from dcim.kpi.render import render_table
    from dcim.storage import StoreError, make_store

    cfg = _load(args.config)
    tz = cfg.site.timezone
    if args.last:
        end_ns = time.time_ns()
        start_ns = end_ns - parse_duration(args.last) * NS
    elif args.period:
        start_ns, end_ns = parse_period(args.period, tz)
    elif args.start and args.end:
        start_ns, end_ns = parse_time(args.start, tz), parse_time(args.end, tz)
    else:
        print(
            "give --period (2026-10, 2026-10-05, 2026), --from and --to, or --last (15m, 2h, 7d)",
            file=sys.stderr,
        )
        return 2
    if end_ns <= start_ns:
        print("--to must be after --from", file=sys.stderr)
        return 2
    store = make_store(cfg.storage, read_only=not args.series, owns_spool=False)
    try:
        rep = compute_kpis(store, cfg, start_ns, end_ns, category=args.category)
        if args.series:
            from dcim.kpi.series import kpi_series

            points = kpi_series(store, cfg, start_ns, end_ns, args.series)
            try:
                store.write(points)
            except StoreError as exc:
                print(f"the {args.series} KPI series was not written: {exc}", file=sys.stderr)
                return 1
            print(f"{len(points)} {args.series} 'kpi' point(s) written to the store")
    finally:
        store.close()
    print(render_table(rep, tz))
    if args.json:
        Path(args.json).write_text(json.dumps(rep.to_dict(), indent=2))
        print(f"written to {args.json}")
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    """Read one device through its profile, once, and print what would be stored."""
    from dcim.probe import probe

    cfg = _load(args.config)
    try:
        dev = cfg.device(args.device)
    except KeyError:
        names = ", ".join(d.name for d in cfg.devices[:10])
        print(f"no device {args.device!r} in {args.config} (e.g. {names})", file=sys.stderr)
        return 2
    return probe(cfg, dev, timeout_s=args.timeout)


def cmd_db_init(args: argparse.Namespace) -> int:
    from dcim.dbinit import init_sink
    from dcim.storage import StoreError

    cfg = _load(args.config)
    try:
        for line in init_sink(cfg.storage.sink):
            print(line)
    except StoreError as exc:
        print(f"dcim db init: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from dcim.twin import missing_extra

    message = missing_extra("dcim demo")
    if message:
        print(message, file=sys.stderr)
        return 2
    from dcim.demo import run_demo

    return run_demo(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dcim", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("check-config", help="validate a site config; every error with its place")
    c.add_argument("config")
    c.set_defaults(func=cmd_check_config)

    r = sub.add_parser("run", help="run the collector for a site (production entry point)")
    r.add_argument("config")
    r.set_defaults(func=cmd_run)

    k = sub.add_parser("kpi", help="PUE, heat delivered, ... over a period, with completeness")
    k.add_argument("config")
    k.add_argument("--period", help="2026-10 (month), 2026-10-05 (day) or 2026 (year)")
    k.add_argument("--from", dest="start", help="ISO date/time (site time zone unless given)")
    k.add_argument("--to", dest="end")
    k.add_argument("--last", help="the period up to now: 90s, 15m, 2h, 7d")
    k.add_argument("--category", type=int, choices=(1, 2, 3), help="PUE measurement category")
    k.add_argument("--json", help="also write the report as JSON to this file")
    k.add_argument(
        "--series",
        choices=("hourly", "daily"),
        help="also write hourly or daily KPI points (measurement 'kpi') to the store",
    )
    k.set_defaults(func=cmd_kpi)

    pr = sub.add_parser("probe", help="read one device once and print what would be stored")
    pr.add_argument("config")
    pr.add_argument("device")
    pr.add_argument("--timeout", type=float, default=None, help="MQTT: seconds to wait")
    pr.set_defaults(func=cmd_probe)

    from dcim.quarantine import add_parser as add_quarantine

    add_quarantine(sub)

    db = sub.add_parser("db", help="set up the store").add_subparsers(dest="db", required=True)
    di = db.add_parser("init", help="create database, retention policies and rollups (idempotent)")
    di.add_argument("config")
    di.set_defaults(func=cmd_db_init)

    d = sub.add_parser("demo", help="twin + collectors on the embedded store, live view")
    d.add_argument("--dir", default="var/demo", help="where the demo keeps config, spool, store")
    d.add_argument("--racks", type=int, default=30)
    d.add_argument("--servers-per-rack", type=int, default=10)
    d.add_argument("--interval", type=float, default=10.0, help="poll interval, seconds")
    d.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    d.add_argument("--no-view", action="store_true", help="log lines instead of the live view")
    d.set_defaults(func=cmd_demo)

    from dcim.twin.cli import add_parser as add_twin

    add_twin(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.verbose:  # our own debug lines, not the protocol libraries' packet dumps
        for name in ("dcim", "collectors"):
            logging.getLogger(name).setLevel(logging.DEBUG)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
