"""Durable alert state: SQLite in WAL mode (``synchronous=NORMAL``) beside the spool
(``alerts.sqlite``).

Every transition is one transaction: the alert's row and its history line together, so a
kill -9 leaves either the state before or the state after, never half. The notifiers read
what to send from the same rows (``delivery`` records, per receiver, what was last delivered
for which firing), so the state table *is* the durable outbox: a notification that could not
be delivered stays due and is retried, and a restart re-sends only what is due, not a burst.

Values that change every poll (last value, last seen, a counter's last index) are written in
batches by :meth:`AlertState.save_values`, not per reading.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcim.alerts.evaluator import FIRING, INACTIVE, PENDING, RESOLVED, Instance, Transition

SCHEMA = """
CREATE TABLE IF NOT EXISTS alert (
  key TEXT PRIMARY KEY, rule TEXT NOT NULL, labels TEXT NOT NULL, annotations TEXT NOT NULL,
  state TEXT NOT NULL, active_ns INTEGER NOT NULL, fired_ns INTEGER NOT NULL,
  resolved_ns INTEGER NOT NULL, value REAL, seen_ns INTEGER NOT NULL, detail TEXT NOT NULL,
  samples TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS delivery (
  receiver TEXT NOT NULL, key TEXT NOT NULL, state TEXT NOT NULL, fired_ns INTEGER NOT NULL,
  sent_ns INTEGER NOT NULL, PRIMARY KEY (receiver, key));
CREATE TABLE IF NOT EXISTS history (
  id INTEGER PRIMARY KEY, key TEXT NOT NULL, rule TEXT NOT NULL, labels TEXT NOT NULL,
  annotations TEXT NOT NULL, state TEXT NOT NULL, at_ns INTEGER NOT NULL, value REAL);
CREATE INDEX IF NOT EXISTS history_at ON history (at_ns);
"""


@dataclass(frozen=True)
class Due:
    """An alert a receiver should be sent: firing (again) or resolved."""

    key: str
    labels: dict[str, str]
    annotations: dict[str, str]
    state: str
    fired_ns: int
    resolved_ns: int
    value: float | None


class AlertState:
    """Thread-safe: one connection, one lock (transitions are rare, reads are small)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a committed transition survives the process being killed (the
        # WAL is in the OS's hands); power loss may lose the last ones, which the live data
        # raises again after the restart. FULL would fsync on the collector's event loop
        # for every transition (an alert storm: one per device).
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- the evaluator's side -------------------------------------------------------------
    def load(self) -> list[Instance]:
        """Instances as they were: pending and firing ones, and the last seen times and
        samples of stale and counter rules."""
        with self._lock:
            rows = self._db.execute(
                "SELECT key, rule, labels, state, active_ns, fired_ns, resolved_ns, value, "
                "seen_ns, detail, samples FROM alert"
            ).fetchall()
        out = []
        for key, rule, labels, state, act, fired, res, value, seen, detail, samples in rows:
            out.append(
                Instance(
                    key,
                    rule,
                    json.loads(labels),
                    state=INACTIVE if state == RESOLVED else state,
                    active_ns=act,
                    fired_ns=fired,
                    resolved_ns=res,
                    value=value,
                    seen_ns=seen,
                    detail=detail,
                    samples=[tuple(s) for s in json.loads(samples)],
                )
            )
        return out

    def record(self, transitions: Iterable[tuple[Transition, dict[str, str]]]) -> None:
        """Transitions with their rendered annotations, in one transaction."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                for tr, ann in transitions:
                    self._upsert(tr.instance, tr.new, ann)
                    if tr.new in (FIRING, RESOLVED):
                        db.execute(
                            "INSERT INTO history (key, rule, labels, annotations, state, at_ns,"
                            " value) VALUES (?,?,?,?,?,?,?)",
                            (
                                tr.instance.key,
                                tr.instance.rule,
                                json.dumps(tr.instance.labels),
                                json.dumps(ann),
                                tr.new,
                                tr.at_ns,
                                tr.instance.value,
                            ),
                        )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def _upsert(self, inst: Instance, state: str, ann: dict[str, str] | None) -> None:
        self._db.execute(
            "INSERT INTO alert (key, rule, labels, annotations, state, active_ns, fired_ns, "
            "resolved_ns, value, seen_ns, detail, samples) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT(key) DO UPDATE SET state=excluded.state, active_ns=excluded.active_ns,"
            " fired_ns=excluded.fired_ns, resolved_ns=excluded.resolved_ns,"
            " value=excluded.value, seen_ns=excluded.seen_ns, detail=excluded.detail,"
            " samples=excluded.samples"
            + (", annotations=excluded.annotations" if ann is not None else ""),
            (
                inst.key,
                inst.rule,
                json.dumps(inst.labels),
                json.dumps(ann or {}),
                state,
                inst.active_ns,
                inst.fired_ns,
                inst.resolved_ns,
                inst.value,
                inst.seen_ns,
                inst.detail,
                json.dumps(list(inst.samples)[-8:]),
            ),
        )

    def save_values(self, instances: Iterable[Instance]) -> None:
        """Last values, seen times and samples, batched in one transaction; the state is
        left as :meth:`record` wrote it (an instance seen for the first time gets a row, so
        that a restart still knows when its device was last seen)."""
        rows = [
            (
                inst.value,
                inst.seen_ns,
                inst.active_ns,
                inst.detail,
                json.dumps(list(inst.samples)[-8:]),
                inst.key,
            )
            for inst in instances
        ]
        new = [
            (inst.key, inst.rule, json.dumps(inst.labels), inst.state, inst.seen_ns)
            for inst in instances
        ]
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(
                    "INSERT OR IGNORE INTO alert (key, rule, labels, annotations, state,"
                    " active_ns, fired_ns, resolved_ns, value, seen_ns, detail, samples)"
                    " VALUES (?, ?, ?, '{}', ?, 0, 0, 0, NULL, ?, '', '[]')",
                    new,
                )
                db.executemany(
                    "UPDATE alert SET value=?, seen_ns=?, active_ns=?, detail=?, samples=?"
                    " WHERE key=?",
                    rows,
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    # -- the notifiers' side --------------------------------------------------------------
    def due(self, receiver: str, now_ns: int, resend_ns: int | None) -> list[Due]:
        """Alerts ``receiver`` should be sent now: firing ones not yet delivered for this
        firing (or, with ``resend_ns``, last sent that long ago) and resolved ones whose
        resolve it has not had."""
        with self._lock:
            rows = self._db.execute(
                "SELECT a.key, a.labels, a.annotations, a.state, a.fired_ns, a.resolved_ns,"
                " a.value, d.state, d.fired_ns, d.sent_ns FROM alert a LEFT JOIN delivery d"
                " ON d.key = a.key AND d.receiver = ? WHERE a.state IN (?, ?)",
                (receiver, FIRING, RESOLVED),
            ).fetchall()
        out = []
        for key, labels, ann, state, fired, res, value, dstate, dfired, dsent in rows:
            fresh = dstate != state or dfired != fired
            if state == RESOLVED and dstate is None:
                fresh = True  # fired and resolved before it could be delivered: say both
            stale = resend_ns is not None and dsent is not None and now_ns - dsent >= resend_ns
            if fresh or (state == FIRING and stale):
                out.append(Due(key, json.loads(labels), json.loads(ann), state, fired, res, value))
        return out

    def delivered(self, receiver: str, sent: Iterable[Due], now_ns: int, receivers: int) -> None:
        """Record a delivery; a resolved alert every receiver has had is done with (its
        history stays)."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                for d in sent:
                    db.execute(
                        "INSERT OR REPLACE INTO delivery (receiver, key, state, fired_ns, sent_ns)"
                        " VALUES (?,?,?,?,?)",
                        (receiver, d.key, d.state, d.fired_ns, now_ns),
                    )
                    if d.state == RESOLVED:
                        n = db.execute(
                            "SELECT COUNT(*) FROM delivery d JOIN alert a ON a.key=d.key"
                            " WHERE d.key=? AND d.state=? AND d.fired_ns=a.fired_ns"
                            " AND a.state=?",
                            (d.key, RESOLVED, RESOLVED),
                        ).fetchone()[0]
                        if n >= receivers:
                            db.execute(
                                "UPDATE alert SET state=? WHERE key=? AND state=?",
                                (INACTIVE, d.key, RESOLVED),
                            )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    # -- `dcim alerts` --------------------------------------------------------------------
    def current(self) -> list[dict[str, Any]]:
        return self._records(
            "SELECT key, rule, labels, annotations, state, active_ns, fired_ns, value FROM"
            " alert WHERE state IN (?, ?) ORDER BY fired_ns",
            (FIRING, PENDING),
        )

    def history(self, since_ns: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        return self._records(
            "SELECT key, rule, labels, annotations, state, at_ns, value FROM history"
            " WHERE at_ns >= ? ORDER BY at_ns DESC, id DESC LIMIT ?",
            (since_ns, limit),
        )

    def _records(self, sql: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
        """The rows of ``sql`` as dicts keyed by column name, labels and annotations decoded."""
        with self._lock:
            cur = self._db.execute(sql, args)
            names = [d[0] for d in cur.description]
            rows = cur.fetchall()
        out = []
        for row in rows:
            rec = dict(zip(names, row, strict=True))
            rec["labels"], rec["annotations"] = (
                json.loads(rec["labels"]),
                json.loads(rec["annotations"]),
            )
            out.append(rec)
        return out
