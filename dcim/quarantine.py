"""``dcim quarantine CONFIG list|show ID|requeue ID|drop ID``: the readings the database
refused, with the reason. ``list`` and ``show`` read while the collector runs; ``requeue``
(after fixing the cause) and ``drop`` change the spool, so the collector must be stopped."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from dcim.spool import QuarantineView, Spool, SpoolError, SpoolLockedError
from dcim.storage.lineprotocol import encode
from dcim.timeutil import fmt_ns

if TYPE_CHECKING:  # not imported by `dcim run` (its process has no pydantic: dcim.runconfig)
    from dcim.config import SiteConfig


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    q = sub.add_parser("quarantine", help="readings the database refused, with the reason")
    q.add_argument("config", help="the site's YAML file (its storage.spool_dir)")
    q.add_argument(
        "action",
        choices=("list", "show", "requeue", "drop"),
        nargs="?",
        default="list",
        help="list (default), show ID, requeue ID (collector stopped), drop ID",
    )
    q.add_argument("id", type=int, nargs="?", help="entry id (show, requeue, drop)")
    q.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from dcim.cmdline import load_or_exit as _load

    return run(_load(args.config), args)


def run(cfg: SiteConfig, args: argparse.Namespace) -> int:
    spool_dir = cfg.storage.spool_dir
    if args.action != "list" and args.id is None:
        print(
            f"'{args.action}' needs an entry id: see 'dcim quarantine CONFIG list'", file=sys.stderr
        )
        return 2
    try:
        if args.action in ("list", "show"):
            view = QuarantineView(spool_dir)
            try:
                return _list(view, cfg) if args.action == "list" else _show(view, args.id)
            finally:
                view.close()
        with Spool(spool_dir) as spool:
            if args.action == "requeue":
                n = spool.requeue(args.id)
                print(f"entry {args.id}: {n} reading(s) back in the spool, forwarded at next start")
            else:
                spool.drop_quarantined(args.id)
                print(f"entry {args.id} deleted")
            return 0
    except SpoolLockedError as exc:
        print(f"{exc}\n(stop the collector to {args.action} an entry)", file=sys.stderr)
    except KeyError:
        print(f"no quarantine entry {args.id} in {spool_dir}", file=sys.stderr)
    except SpoolError as exc:
        print(str(exc), file=sys.stderr)
    return 1


def _list(view: QuarantineView, cfg: SiteConfig) -> int:
    entries = view.entries()
    print(
        f"{len(entries)} quarantined batch(es) in {cfg.storage.spool_dir}; "
        f"{view.pending()} reading(s) waiting to be forwarded"
    )
    for e in entries:
        print(
            f"  {e.id:>6}  {fmt_ns(e.time_ns, cfg.site.timezone)}  {e.count:>6} reading(s)  "
            f"{e.reason}"
        )
    return 0


def _show(view: QuarantineView, qid: int) -> int:
    for r in view.readings(qid):
        try:
            print(encode(r))
        except ValueError as exc:  # the very reason it was refused, often
            print(f"# not encodable: {exc}: {r}")
    return 0
