"""The ``dcim`` command.

Exit status: 0 done, 2 a mistake on the command line or in the site config (nothing was
done), 1 a failure while running (a store or device unreachable, a file not written). A
user's mistake gets a one-line message naming what and where; an unexpected error (a bug)
gets a one-line message too, and its traceback with ``--debug``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time

from dcim.cmdline import UsageError, writable_file
from dcim.cmdline import load_or_exit as _load
from dcim.timeutil import NS, TimeInputError, parse_duration, parse_period, parse_time

log = logging.getLogger("dcim")


def cmd_check_config(args: argparse.Namespace) -> int:
    from dcim.alerts.loader import check_site_alerts
    from dcim.config import ConfigError, inline_secrets, load_config
    from dcim.sitecheck import credential_issues

    errors, warnings = credential_issues(args.config)
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        errors = exc.issues + errors
        cfg = None
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    rule_errors = check_site_alerts(args.config, cfg)  # the rule files' errors with the site's
    if errors or rule_errors:
        print(f"{len(errors) + len(rule_errors)} error(s) in the configuration:", file=sys.stderr)
        for issue in sorted(errors, key=lambda i: i.line or 0) + rule_errors:  # file order
            print(f"  {issue}", file=sys.stderr)
        return 2
    assert cfg is not None
    counts: dict[str, int] = {}
    for d in cfg.devices:
        counts[d.protocol] = counts.get(d.protocol, 0) + 1
    summary = ", ".join(f"{n} {p}" for p, n in sorted(counts.items()))
    for warning in inline_secrets(cfg):
        print(f"warning: {args.config}: {warning}", file=sys.stderr)
    from dcim.alerts.loader import load_rules

    rules = len(load_rules(cfg, args.config))  # checked above: counted here
    print(
        f"{args.config}: OK, site {cfg.site.name}: {len(cfg.devices)} devices ({summary}), "
        f"{rules} alert rules"
    )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    # The site file is validated by a child process (dcim.runconfig): the collector's own
    # process, which runs for months, imports neither pydantic nor (without TLS) ssl.
    from dcim.runconfig import load_for_run

    cfg, rules = load_for_run(args.config, debug=args.debug)
    import asyncio  # only here, after ssl may have been left out

    from dcim.configerror import ConfigError
    from dcim.runtime import run_forever

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run_forever(cfg, rules))
    except ConfigError as exc:  # what only the start can tell: a secret not set
        for issue in exc.issues:
            print(f"{args.config}: {issue}", file=sys.stderr)
        return 2
    return 0


def _kpi_period(args: argparse.Namespace, tz: str) -> tuple[int, int]:
    """[start, end) in UNIX ns from --period, --from/--to or --last (one of them; argparse
    refuses two); :class:`UsageError` if none or a half."""
    if args.end and not args.start:
        raise UsageError("--to goes with --from: give both (--period and --last end by themselves)")
    if args.last:
        end_ns = time.time_ns()
        return end_ns - parse_duration(args.last) * NS, end_ns
    if args.period:
        return parse_period(args.period, tz)
    if args.start or args.end:
        if not (args.start and args.end):
            raise UsageError("--from and --to go together: give both")
        start_ns, end_ns = parse_time(args.start, tz), parse_time(args.end, tz)
        if end_ns <= start_ns:
            raise UsageError("--to must be after --from")
        return start_ns, end_ns
    raise UsageError(
        "give --period (2026-10, 2026-10-05, 2026), --from and --to, or --last (15m, 2h, 7d)"
    )


def cmd_kpi(args: argparse.Namespace) -> int:
    from dcim.kpi.period import compute_kpis
    from dcim.kpi.render import render_table
    from dcim.storage import StoreError, make_store

    cfg = _load(args.config)
    tz = cfg.site.timezone
    start_ns, end_ns = _kpi_period(args, tz)
    json_out = writable_file(args.json, "--json") if args.json else None  # before the work
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
    if json_out is not None:
        json_out.write_text(json.dumps(rep.to_dict(), indent=2))
        print(f"written to {json_out}")
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


CONFIG_HELP = "the site's YAML file (see examples/paris-chapelle.yaml)"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"dcim {version('dcim-heat')}"
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "dcim (not installed: no version)"


class _VersionAction(argparse.Action):
    """argparse's ``version`` action, the version read only when asked (importlib.metadata
    and the email package it reads with: 2.5 MB that ``dcim run`` would hold)."""

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(_version())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dcim",
        description="Datacenter monitoring with heat-recovery telemetry: collect SNMP, Modbus "
        "TCP and MQTT readings into InfluxDB or the embedded store; PUE, heat delivered, ERF. "
        "Exit status: 0 done, 2 a mistake in the command line or the site config, 1 a failure "
        "while running.",
    )
    p.add_argument("--version", action=_VersionAction, nargs=0, help="show the version and exit")
    p.add_argument(
        "-v", "--verbose", action="store_true", help="log dcim's own debug lines (not packets)"
    )
    p.add_argument(
        "--debug",
        action="store_true",
        help="show the traceback of an unexpected error (for a bug report)",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser(
        "check-config",
        help="validate a site config; every error with its place",
        description="Validate a site config: schema, references between its parts (profiles, "
        "rooms, racks, meters), time zone, credentials and poll timing; every error at once, "
        "with file:line. Exit status 2 if any.",
    )
    c.add_argument("config", help=CONFIG_HELP)
    c.set_defaults(func=cmd_check_config)

    r = sub.add_parser("run", help="run the collector for a site (production entry point)")
    r.add_argument("config", help=CONFIG_HELP)
    r.set_defaults(func=cmd_run)

    k = sub.add_parser(
        "kpi",
        help="PUE, heat delivered, ... over a period, with completeness",
        description="Energy-based KPIs over one period (give --period, --from/--to or --last), "
        "each with the share of expected samples present; a figure the data cannot support "
        "prints as n/a.",
    )
    k.add_argument("config", help=CONFIG_HELP)
    when = k.add_mutually_exclusive_group()
    when.add_argument("--period", help="2026-10 (month), 2026-10-05 (day) or 2026 (year)")
    when.add_argument(
        "--from", dest="start", help="start, ISO date/time (site time zone unless given)"
    )
    when.add_argument("--last", help="the period up to now: 90s, 15m, 2h, 7d")
    k.add_argument("--to", dest="end", help="end (with --from), ISO date/time, excluded")
    k.add_argument("--category", type=int, choices=(1, 2, 3), help="PUE measurement category")
    k.add_argument("--json", help="also write the report as JSON to this file")
    k.add_argument(
        "--series",
        choices=("hourly", "daily"),
        help="also write hourly or daily KPI points (measurement 'kpi') to the store",
    )
    k.set_defaults(func=cmd_kpi)

    pr = sub.add_parser("probe", help="read one device once and print what would be stored")
    pr.add_argument("config", help=CONFIG_HELP)
    pr.add_argument("device", help="the device's name in the site config")
    pr.add_argument(
        "--timeout", type=float, default=None, help="MQTT: seconds to wait for a message"
    )
    pr.set_defaults(func=cmd_probe)

    from dcim.alerts.cli import add_parser as add_alerts
    from dcim.quarantine import add_parser as add_quarantine

    add_alerts(sub)

    add_quarantine(sub)

    db = sub.add_parser("db", help="set up the store").add_subparsers(
        dest="db", required=True, metavar="ACTION"
    )
    di = db.add_parser("init", help="create database, retention policies and rollups (idempotent)")
    di.add_argument("config", help=CONFIG_HELP)
    di.set_defaults(func=cmd_db_init)

    d = sub.add_parser("demo", help="twin + collectors on the embedded store, live view")
    d.add_argument("--dir", default="var/demo", help="where the demo keeps config, spool, store")
    d.add_argument("--racks", type=int, default=30, help="racks in the twin (default 30)")
    d.add_argument("--servers-per-rack", type=int, default=10, help="servers per rack (default 10)")
    d.add_argument("--interval", type=float, default=10.0, help="poll interval, seconds")
    d.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    d.add_argument("--no-view", action="store_true", help="log lines instead of the live view")
    d.set_defaults(func=cmd_demo)

    from dcim.reports.cli import add_parser as add_report

    add_report(sub)

    from dcim.twin.cli import add_parser as add_twin

    add_twin(sub)
    return p


def _run(args: argparse.Namespace) -> int:
    """Run the sub-command; a user's mistake or a failure the user can act on becomes a
    one-line message and an exit status, not a traceback."""
    from dcim.configerror import ConfigError  # not dcim.config: the models (dcim.runconfig)
    from dcim.storage.base import StoreError

    name = f"dcim {args.command}"
    try:
        return int(args.func(args) or 0)
    except (UsageError, TimeInputError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:  # found while running: a secret's variable unset, say
        for i in exc.issues:
            print(f"{name}: {i if i.file else f'{i.path}: {i.message}'}", file=sys.stderr)
        return 2
    except StoreError as exc:  # the store unreachable, or nothing collected yet
        if args.debug:
            raise
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a file or folder the command reads or writes, a port in use
        if args.debug:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"{name}: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.verbose:  # our own debug lines, not the protocol libraries' packet dumps
        for name in ("dcim", "collectors"):
            logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        return _run(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug: one line here, the traceback with --debug
        if args.debug:
            raise
        print(
            f"dcim {args.command}: unexpected error {type(exc).__name__}: {exc}\n"
            "(a bug: run it again with --debug for the traceback and report it)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
