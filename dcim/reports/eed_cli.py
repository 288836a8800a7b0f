"""``dcim report eed CONFIG --year YYYY``: the yearly EU data-centre report as JSON, CSV and a
one-page PDF in ``--out``. Nothing is written unless the three are ready; a year with no data
is a failure (exit status 1), not an empty report."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from dcim.cmdline import UsageError
from dcim.cmdline import load_or_exit as _load

MIN_YEAR, MAX_YEAR = 2000, 2100


def add_parser(report_sub: Any, config_help: str) -> None:
    e = report_sub.add_parser(
        "eed",
        help="the yearly EU data-centre report (Delegated Regulation (EU) 2024/1364)",
        description="The information and key performance indicators of Delegated Regulation "
        "(EU) 2024/1364 (Annexes I-III) for one calendar year: JSON and CSV in the annexes' "
        "structure and a one-page PDF summary, in --out. Metered figures are the KPI report's "
        "of the same year, each with its completeness; what meters cannot know comes from "
        "the site file's reports.eed section, else it is 'not declared'.",
    )
    e.add_argument("config", help=config_help)
    e.add_argument("--year", type=int, required=True, help="calendar year, e.g. 2025")
    e.add_argument("--out", default=".", help="folder for the three files (default: here)")
    e.add_argument("--lang", choices=("fr", "en"), default="fr", help="PDF language (fr)")
    e.set_defaults(func=cmd_report_eed)


def _out_dir(path: str) -> Path:
    out = Path(path)
    if not out.is_dir():
        raise UsageError(f"--out {path}: not a folder (create it first)")
    if not os.access(out, os.W_OK):
        raise UsageError(f"--out {path}: not writable by this user")
    return out


def cmd_report_eed(args: argparse.Namespace) -> int:
    if not MIN_YEAR <= args.year <= MAX_YEAR:
        raise UsageError(f"--year {args.year}: give a calendar year such as 2025")
    out = _out_dir(args.out)  # checked before the work
    cfg = _load(args.config)
    from dcim.reports import missing_extra

    message = missing_extra()
    if message:
        print(message, file=sys.stderr)
        return 2
    from dcim.reports.eed import NoDataError, compute_eed
    from dcim.reports.eed_output import fmt_value, to_csv, to_json, to_pdf
    from dcim.storage import make_store

    store = make_store(cfg.storage, read_only=True, owns_spool=False)
    try:
        rep = compute_eed(store, cfg, args.year)
    except NoDataError as exc:
        print(f"dcim report eed: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    files = {
        "json": to_json(rep).encode(),
        "csv": to_csv(rep).encode(),
        "pdf": to_pdf(rep, args.lang),
    }
    stem = out / f"eed-{cfg.site.name}-{args.year}"
    for ext, blob in files.items():
        Path(f"{stem}.{ext}").write_bytes(blob)
    for e in rep.entries:
        if e.section in ("II.1", "III"):
            c = "" if e.completeness is None else f", {e.completeness:.1%} complete"
            print(f"  {e.key:<9} {fmt_value(e, 'en'):>18}  {e.status}{c}")
    print(f"written: {stem}.json, {stem}.csv, {stem}.pdf")
    return 0
