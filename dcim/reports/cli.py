"""``dcim report heat CONFIG --month YYYY-MM [--point NAME] [--lang fr|en] [--out DIR]``:
each delivery point's monthly heat-delivery statement as PDF, CSV and JSON.

Exit status 0: every statement written; 1: a point had no data (nothing written for it, the
others are) or the store failed; 2: a mistake on the command line or in the site file."""

from __future__ import annotations

import argparse
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    from dcim.reports.eed_cli import add_parser as add_eed

    r = sub.add_parser(
        "report", help="reports: monthly heat-delivery statements, the yearly EU report (eed)"
    )
    rsub = r.add_subparsers(dest="report", required=True, metavar="REPORT")
    h = rsub.add_parser(
        "heat",
        help="monthly heat-delivery statement per delivery point",
        description="Per delivery point of the site file's reports.heat: a PDF statement "
        "to sign, with CSV and JSON of the same figures, for one month in the site's local "
        "time. Exit status 1 if a point has no data for the month (no files for it).",
    )
    h.add_argument("config", help="the site's YAML file (see examples/paris-chapelle.yaml)")
    h.add_argument("--month", required=True, help="the month, YYYY-MM (local time at the site)")
    h.add_argument("--point", help="only this delivery point (its name in reports.heat.points)")
    h.add_argument("--lang", choices=("fr", "en"), default="fr", help="language (default fr)")
    h.add_argument("--out", default=".", help="folder of the statements (default: here)")
    h.set_defaults(func=cmd_heat)
    add_eed(rsub, "the site's YAML file (see examples/paris-chapelle.yaml)")


def cmd_heat(args: argparse.Namespace) -> int:
    from dcim.cmdline import UsageError
    from dcim.reports import missing_extra

    message = missing_extra()
    if message:
        print(message, file=sys.stderr)
        return 2
    from dcim.cmdline import load_or_exit as _load
    from dcim.reports.heat_data import NoData
    from dcim.reports.heat_render import write
    from dcim.reports.heat_statement import compute
    from dcim.storage import make_store

    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", args.month):
        raise UsageError(f"--month {args.month!r}: write the month as YYYY-MM (2026-10)")
    cfg = _load(args.config)
    heat = cfg.reports.heat
    if heat is None:
        raise UsageError(
            f"{args.config}: no 'reports: heat:' section: declare the delivery points "
            "(docs/reports.md)"
        )
    points = [p for p in heat.points if args.point in (None, p.name)]
    if not points:
        known = ", ".join(p.name for p in heat.points)
        raise UsageError(f"--point {args.point!r}: not a delivery point of the site ({known})")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    store = make_store(cfg.storage, read_only=True, owns_spool=False)
    status = 0
    try:
        # the points' figures side by side (the store answers one while Python works on the
        # other), rendered one after the other here (matplotlib's pyplot is not thread-safe)
        with ThreadPoolExecutor(max_workers=2) as pool:
            todo = [pool.submit(compute, store, cfg, p, args.month) for p in points]
            for fut in todo:
                try:
                    doc = fut.result()
                except NoData as exc:
                    print(f"dcim report heat: {exc}", file=sys.stderr)
                    status = 1
                    continue
                for path in write(doc, out, args.lang):
                    print(path)
    finally:
        store.close()
    return status
