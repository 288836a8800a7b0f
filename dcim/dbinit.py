"""``dcim db init``: create what the configured sink needs; idempotent, says what it did.

InfluxDB (1.x, v1 API): the database; the raw retention policy (``retention_policy``, else
``raw``), made the DEFAULT one so Grafana and writes without ``rp`` use it, and ``rp_1m`` /
``rp_1h`` for the rollups, each created or ALTERed to the configured duration; the
continuous queries ``cq_1m``/``cq_1h`` that fill them (replaced when their definition
changed). Embedded: the SQLite file and its tables; its rollups and retention are kept by
``SqliteStore.maintain()``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from dcim.config import EmbeddedSink, InfluxSink
from dcim.reading import Reading
from dcim.storage.base import NS, StoreError, ceil_to
from dcim.storage.influx import (
    MARKER,
    MARKER_FIELD,
    ROLLUP_FNS,
    ROLLUP_RP,
    InfluxStore,
    quote_ident,
    rollup_select,
)
from dcim.storage.lineprotocol import encode
from dcim.storage.sqlite import SqliteStore

# The CQs recompute this much every run, so points up to a few minutes late still count
# (later ones are rolled up by InfluxStore.write).
CQS = {60: ("cq_1m", "5m"), 3600: ("cq_1h", "2h")}


def cq_statement(sink: InfluxSink, level: int) -> str:
    name, resample = CQS[level]
    return (
        f"CREATE CONTINUOUS QUERY {quote_ident(name)} ON {quote_ident(sink.database)} "
        f"RESAMPLE FOR {resample} BEGIN {rollup_select(sink, level)} END"
    )


def init_sink(sink: EmbeddedSink | InfluxSink) -> list[str]:
    """Set up ``sink``; one line per thing created, changed or found as it should be.
    Raises StoreError."""
    if isinstance(sink, InfluxSink):
        return init_influx(sink)
    return init_embedded(sink)


def _show(dur: int | None) -> str:
    if dur is None:
        return "INF"
    for unit, secs in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if dur % secs == 0:
            return f"{dur // secs}{unit}"
    return f"{dur}s"


def init_influx(sink: InfluxSink) -> list[str]:
    if sink.api != "v1":
        raise StoreError(
            "dcim db init sets up InfluxDB 1.x (api: v1); on 2.x give the bucket its "
            "retention and create downsampling tasks instead"
        )
    st = InfluxStore(sink, create_database=False)
    db, qdb = sink.database, quote_ident(sink.database)
    out: list[str] = []
    dbs = {str(r[0]) for s in st.query("SHOW DATABASES", write=True) for r in s.get("values", [])}
    if db not in dbs:
        st.query(f"CREATE DATABASE {qdb}", write=True)
    out.append(f"database {db}: {'exists' if db in dbs else 'created'}")

    have = st.policies()
    old_default = next((name for name, (_, dflt) in have.items() if dflt), None)
    wanted = [
        (sink.raw_policy, sink.retention_raw, True, "raw points"),
        (ROLLUP_RP[60], sink.retention_1m, False, "1-minute rollups"),
        (ROLLUP_RP[3600], sink.retention_1h, False, "1-hour rollups"),
    ]
    for name, duration, default, what in wanted:
        secs = InfluxSink.duration_s(duration)
        tail = " DEFAULT" if default else ""
        label = f"retention policy {name} ({what}{', default' if default else ''})"
        if name not in have:
            st.query(
                f"CREATE RETENTION POLICY {quote_ident(name)} ON {qdb} DURATION {duration} "
                f"REPLICATION 1{tail}",
                write=True,
            )
            out.append(f"{label}: created, keeps {duration}")
        elif have[name][0] != secs or (default and not have[name][1]):
            st.query(
                f"ALTER RETENTION POLICY {quote_ident(name)} ON {qdb} DURATION {duration}{tail}",
                write=True,
            )
            was = _show(have[name][0]) + (", default" if have[name][1] else "")
            out.append(f"{label}: altered, keeps {duration} (was {was})")
        else:
            out.append(f"{label}: unchanged, keeps {duration}")
    if db in dbs and old_default is not None and old_default != sink.raw_policy:
        out.append(
            f"note: the default policy was {old_default}; points already written there "
            f"stay there and are no longer queried (copy them with SELECT * INTO "
            f"{qdb}.{quote_ident(sink.raw_policy)}.:MEASUREMENT FROM "
            f"{qdb}.{quote_ident(old_default)}./.*/ GROUP BY *)"
        )

    existing = {
        str(r[0])
        for s in st.query("SHOW CONTINUOUS QUERIES", write=True)
        if s.get("name") == db
        for r in s.get("values", [])
    }
    fields = ", ".join(f"{fn}_<field>" for fn in ROLLUP_FNS)
    changed = False
    for level, (name, resample) in CQS.items():
        stmt = cq_statement(sink, level)
        state = "created"
        try:
            st.query(stmt, write=True)  # the same definition again is a no-op
            if name in existing:
                state = "unchanged"
        except StoreError as exc:
            if "already exists" not in str(exc):
                raise
            st.query(f"DROP CONTINUOUS QUERY {quote_ident(name)} ON {qdb}", write=True)
            st.query(stmt, write=True)
            state = "replaced (its definition changed)"
        out.append(
            f"continuous query {name}: {state}; every {_show(level)} (recomputing the last "
            f"{resample}) {sink.raw_policy} -> {ROLLUP_RP[level]}: {fields}"
        )
        changed = changed or state != "unchanged"
    frm = st.complete_from()
    marker = "unchanged"
    if changed or frm is None:
        marker = "set"
        # The CQs fill whole hours from the next one on; earlier hours are answered from the
        # raw points until the raw retention has passed them.
        frm = ceil_to(time.time_ns(), 3600)
        line = encode(Reading(MARKER, {"rp": sink.raw_policy}, {MARKER_FIELD: frm}, time.time_ns()))
        params = {"db": db, "rp": ROLLUP_RP[3600], "precision": "ns"}
        status, text, _ = st._request("POST", "/write", params, line.encode())
        if status not in (200, 204):
            raise StoreError(f"writing the rollup marker failed ({status}): {text!r}")
    out.append(
        "rollups complete from "
        + datetime.fromtimestamp(frm / NS, UTC).strftime("%Y-%m-%d %H:%M UTC")
        + f" (marker {MARKER} in {ROLLUP_RP[3600]}: {marker}); queries use them for closed "
        "hours since then, and before the raw retention"
    )
    st.close()
    return out


def init_embedded(sink: EmbeddedSink) -> list[str]:
    existed = sink.path.exists()
    st = SqliteStore(sink.path, retention_raw_days=sink.retention_raw_days)
    try:
        status = st.rollup_status()
    finally:
        st.close()
    keep = "forever" if sink.retention_raw_days is None else f"{sink.retention_raw_days} days"
    rolled = status["rolled_to_ns"]
    upto = (
        "none yet"
        if rolled is None
        else datetime.fromtimestamp(rolled / NS, UTC).strftime("up to %Y-%m-%d %H:%M UTC")
    )
    return [
        f"embedded store {sink.path}: {'schema checked' if existed else 'created'} "
        "(tables series, field_key, point, rollup_1m, rollup_1h, rollup_state, rollup_dirty)",
        f"raw points kept {keep}; 1-minute and 1-hour rollups kept ({upto}); "
        "both maintained by SqliteStore.maintain(), run periodically by the writing process",
    ]
