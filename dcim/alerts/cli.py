"""``dcim alerts CONFIG``: the alerts firing now and the recent history, from the collector's
alert state (read-only; works while the collector runs, and while the database is down)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

NS = 1_000_000_000


def add_parser(sub: Any) -> None:
    a = sub.add_parser("alerts", help="alerts firing now and their history (--json)")
    a.add_argument("config", help="the site's YAML file (see examples/paris-chapelle.yaml)")
    a.add_argument("--history", default="24h", help="how far back: 90m, 24h, 7d (default 24h)")
    a.add_argument("--json", action="store_true", help="print JSON instead of tables")
    a.set_defaults(func=cmd_alerts)


def _when(ns: int, tz: str) -> str:
    return datetime.fromtimestamp(ns / NS, ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M:%S")


def _ago(ns: int, now: int) -> str:
    s = max(0, (now - ns) // NS)
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def cmd_alerts(args: argparse.Namespace) -> int:
    from dcim.alerts.rules import AlertsSettings
    from dcim.alerts.state import AlertState
    from dcim.cmdline import load_or_exit as _load
    from dcim.timeutil import parse_duration

    cfg = _load(args.config)
    settings = cfg.alerts or AlertsSettings()
    path = settings.state_path or (cfg.storage.spool_dir / "alerts.sqlite")
    if not path.exists():
        print(
            f"no alert state at {path}: the collector has not run with alerts yet", file=sys.stderr
        )
        return 1
    now = time.time_ns()
    since = now - parse_duration(args.history) * NS  # exits with the accepted forms
    state = AlertState(path)
    try:
        current, history = state.current(), state.history(since)
    finally:
        state.close()
    if args.json:
        print(json.dumps({"now": current, "history": history}, indent=2))
        return 0
    tz = cfg.site.timezone
    firing = [a for a in current if a["state"] == "firing"]
    pending = [a for a in current if a["state"] == "pending"]
    print(f"{len(firing)} alert(s) firing" + (f", {len(pending)} pending" if pending else ""))
    for a in firing + pending:
        labels, ann = a["labels"], a["annotations"]
        since_ns = int(a["fired_ns"] if a["state"] == "firing" else a["active_ns"])
        print(
            f"  {labels.get('severity', ''):8} {a['state']:7} {labels['alertname']:32} "
            f"{labels.get('device', ''):16} since {_when(since_ns, tz)} ({_ago(since_ns, now)})"
        )
        if ann.get("summary"):
            print(f"           {ann['summary']}")
    print(f"\nhistory, last {args.history} ({len(history)} events, newest first):")
    for h in history:
        labels, ann = h["labels"], h["annotations"]
        print(
            f"  {_when(int(h['at_ns']), tz)}  {h['state']:8} {labels.get('severity', ''):8} "
            f"{labels['alertname']:32} {labels.get('device', ''):16} {ann.get('summary', '')}"
        )
    return 0
