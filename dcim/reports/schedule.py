"""Scheduled statements: the collector renders last month's heat-delivery statements from the
configured day of the month on (``reports.heat.schedule``), checks again every
``check_every_s``, and renders a new revision when late data changed a statement's inputs
(its fingerprint). Each new statement is announced: a log line, and, when ``webhook_url`` is
configured, a JSON POST delivered durably (:mod:`dcim.reports.announce`: an outbox on disk,
retried with backoff until the receiver takes it, across restarts)."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from dcim.config import SiteConfig
from dcim.storage.base import Store

if TYPE_CHECKING:
    from dcim.reports.announce import Outbox

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


def run_due(
    store: Store, cfg: SiteConfig, now_ns: int, outbox: Outbox | None = None
) -> list[dict[str, Any]]:
    """Render the due statements whose inputs have no statement yet; the announcements made
    (one per new statement). With ``outbox`` and a ``webhook_url``, each announcement is
    queued there for :class:`~dcim.reports.announce.StatementWebhook` (also one of a statement
    written by a round that stopped before queueing it)."""
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
    url = sch.webhook_url if outbox is not None else None
    made = []
    for point in heat.points:
        try:
            doc = compute(store, cfg, point, month)
        except NoData as exc:
            log.warning("statement not rendered: %s", exc)
            continue
        rev = revision(sch.folder, point.name, month, doc["fingerprint"])
        base = sch.folder / f"heat-{point.name}-{month}-r{rev}"
        if base.with_suffix(".json").exists():  # these inputs have their statement already
            if url and outbox is not None:  # queued already: add() leaves it as it is
                paths = [base.with_suffix(x) for x in (".pdf", ".csv", ".json")]  # as written
                outbox.add(url, note_of(cfg, point.name, month, doc, rev, paths), now_ns)
            continue
        paths = write(doc, sch.folder, sch.lang)
        note = note_of(cfg, point.name, month, doc, rev, paths)
        log.info("heat statement %s ready: %s", doc["number"], ", ".join(note["files"]))
        if url and outbox is not None:
            outbox.add(url, note, now_ns)
        made.append(note)
    return made


def note_of(
    cfg: SiteConfig, point: str, month: str, doc: dict[str, Any], rev: int, paths: list[Path]
) -> dict[str, Any]:
    """The announcement of one statement (the webhook's JSON body)."""
    from dcim.reports.heat_render import statement_number as number

    return {
        "event": "heat_statement_ready",
        "site": cfg.site.name,
        "point": point,
        "month": month,
        "number": number(point, month, rev),
        "revision": rev,
        "replaces": None if rev == 1 else number(point, month, rev - 1),
        "fingerprint": doc["fingerprint"],
        "energy_mwh": doc["totals"]["energy_mwh"],
        "completeness": doc["totals"]["completeness"],
        "files": [str(p) for p in paths],
    }


class ScheduledStatements:
    """What the collector runs: :func:`run_due` each round, and, with a ``webhook_url``, the
    outbox (``announcements.sqlite`` in the statements' folder) and its delivery thread."""

    def __init__(self, store: Store, cfg: SiteConfig, *, retry_max_s: float = 60.0):
        from dcim.reports.announce import Outbox, StatementWebhook

        assert cfg.reports.heat is not None and cfg.reports.heat.schedule is not None
        sch = cfg.reports.heat.schedule
        self.store, self.cfg = store, cfg
        self.outbox: Outbox | None = None
        self.webhook: StatementWebhook | None = None
        if sch.webhook_url:
            self.outbox = Outbox(sch.folder / "announcements.sqlite")
            self.webhook = StatementWebhook(sch.webhook_url, self.outbox, retry_max_s=retry_max_s)

    def start(self) -> None:
        if self.webhook is not None:
            self.webhook.start()

    def stop(self) -> None:
        if self.webhook is not None:
            self.webhook.stop()
        if self.outbox is not None:
            self.outbox.close()

    def run(self, now_ns: int) -> list[dict[str, Any]]:
        made = run_due(self.store, self.cfg, now_ns, self.outbox)
        if self.webhook is not None:
            self.webhook.wake()
        return made
