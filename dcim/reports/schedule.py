"""Scheduled statements: the collector renders last month's heat-delivery statements from the
configured day of the month on (``reports.heat.schedule``), checks again every
``check_every_s``, and renders a new revision when late data changed a statement's inputs
(its fingerprint). Each new statement is announced: a log line, and a JSON POST to
``webhook_url`` when one is configured (a failed POST is logged; the files are written)."""

from __future__ import annotations

import json
import logging
import urllib.request
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from dcim.config import SiteConfig
from dcim.storage.base import Store

log = logging.getLogger(__name__)
NS = 1_000_000_000


def due_month(now_ns: int, tz: str, day: int) -> str | None:
    """The month whose statements are due at ``now_ns``: the previous local month from
    ``day`` of this one on, else None."""
    now = datetime.fromtimestamp(now_ns / NS, ZoneInfo(tz))
    if now.day < day:
        return None
    y, m = (now.year - 1, 12) if now.month == 1 else (now.year, now.month - 1)
    return f"{y}-{m:02d}"


def run_due(store: Store, cfg: SiteConfig, now_ns: int) -> list[dict[str, Any]]:
    """Render the due statements whose inputs have no statement yet; the announcements made
    (one per new statement)."""
    from dcim.reports.heat_data import NoData
    from dcim.reports.heat_render import revision, write
    from dcim.reports.heat_statement import compute

    heat = cfg.reports.heat
    if heat is None or heat.schedule is None:
        return []
    sch = heat.schedule
    month = due_month(now_ns, cfg.site.timezone, sch.day)
    if month is None:
        return []
    sch.folder.mkdir(parents=True, exist_ok=True)
    made = []
    for point in heat.points:
        try:
            doc = compute(store, cfg, point, month)
        except NoData as exc:
            log.warning("statement not rendered: %s", exc)
            continue
        rev = revision(sch.folder, point.name, month, doc["fingerprint"])
        if (sch.folder / f"heat-{point.name}-{month}-r{rev}.json").exists():
            continue  # these inputs have their statement already
        paths = write(doc, sch.folder, sch.lang)
        note = {
            "event": "heat_statement_ready",
            "site": cfg.site.name,
            "point": point.name,
            "month": month,
            "number": doc["number"],
            "revision": rev,
            "replaces": None if rev == 1 else f"{point.name.upper()}-{month}-R{rev - 1}",
            "fingerprint": doc["fingerprint"],
            "energy_mwh": doc["totals"]["energy_mwh"],
            "completeness": doc["totals"]["completeness"],
            "files": [str(p) for p in paths],
        }
        log.info("heat statement %s ready: %s", doc["number"], ", ".join(note["files"]))
        if sch.webhook_url:
            announce(sch.webhook_url, note)
        made.append(note)
    return made


def announce(url: str, note: dict[str, Any], timeout_s: float = 10.0) -> bool:
    """POST ``note`` as JSON to ``url``; False (logged) if it failed."""
    body = json.dumps(note).encode()
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as r:
            r.read()
        return True
    except OSError as exc:  # URLError, HTTPError, timeout: the files are there anyway
        log.warning("statement %s not announced to %s: %s", note["number"], url, exc)
        return False
