"""``dcim db init``: create what the configured sink needs; idempotent, says what it did.

InfluxDB (1.x, v1 API): the database; the raw retention policy (``retention_policy``, else
``raw``), made the DEFAULT one so Grafana and writes without ``rp`` use it, and ``rp_1m`` /
``rp_1h`` / ``rp_1d`` for the rollups, each created or ALTERed to the configured duration and
to the shard group duration of :data:`SHARDS` (a query opens every shard its range touches:
a year of ``rp_1h`` in InfluxDB's default 1-week groups is 52 shards to open per series, in
52-week groups one or two; an ALTER applies to the shard groups created afterwards); the
continuous queries ``cq_1m``/``cq_1h``/``cq_1d`` that fill them (replaced when their definition
changed); on a database whose ``rp_1d`` it creates beside an existing ``rp_1h``, the past days
of ``rp_1d`` from the hourly rollups (:func:`days_from_hours`). Embedded: the SQLite file and
its tables; its rollups and retention are kept by ``SqliteStore.maintain()``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from dcim.config import EmbeddedSink, InfluxSink
from dcim.reading import Reading
from dcim.storage.base import NS, StoreError, ceil_to, floor_to
from dcim.storage.influx import (
    MARKER,
    MARKER_FIELD,
    ROLLUP_FNS,
    ROLLUP_RP,
    InfluxStore,
    go_duration_s,
    quote_ident,
    quote_string,
    rollup_select,
)
from dcim.storage.lineprotocol import encode
from dcim.storage.sqlite import SqliteStore

# The CQs recompute this much every run, so points up to a few minutes late still count
# (later ones are rolled up by InfluxStore.write). cq_1d runs at midnight UTC over the last two
# days: the day just ended, and the one before again (as cq_1h recomputes the hour before).
CQS = {60: ("cq_1m", "5m"), 3600: ("cq_1h", "2h"), 86400: ("cq_1d", "2d")}

# Shard group duration per kind of policy (s): raw points by the day (InfluxDB's default for a
# retention of 2 days to 6 months: expired a day at a time; the dashboards read raw points
# over 12 h at most), 1-minute rollups by the week (read over 12 h to 17 days), 1-hour rollups
# by the year (read over weeks to years: a year's range opens one or two shards, not 52), 1-day
# rollups by the year too (read over months to years). Never longer than the policy's retention
# (InfluxDB refuses that).
SHARDS = {"raw": 86400, "rp_1m": 7 * 86400, "rp_1h": 52 * 7 * 86400, "rp_1d": 52 * 7 * 86400}


def shard_duration(kind: str, retention_s: int | None) -> int:
    """Shard group duration (s) of a policy of ``kind`` (raw, rp_1m, rp_1h, rp_1d) kept
    ``retention_s`` (None: forever)."""
    want = SHARDS[kind]
    if retention_s is not None and retention_s < want:
        return max(3600, retention_s // 3600 * 3600)
    return want


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
    shards = _shard_durations(st, db)
    old_default = next((name for name, (_, dflt) in have.items() if dflt), None)
    wanted = [
        (sink.raw_policy, sink.retention_raw, True, "raw points", "raw"),
        (ROLLUP_RP[60], sink.retention_1m, False, "1-minute rollups", "rp_1m"),
        (ROLLUP_RP[3600], sink.retention_1h, False, "1-hour rollups", "rp_1h"),
        (ROLLUP_RP[86400], sink.retention_1d, False, "1-day rollups", "rp_1d"),
    ]
    for name, duration, default, what, kind in wanted:
        secs = InfluxSink.duration_s(duration)
        shard = shard_duration(kind, secs)
        tail = f" SHARD DURATION {_show(shard)}" + (" DEFAULT" if default else "")
        label = f"retention policy {name} ({what}{', default' if default else ''})"
        keeps = f"keeps {duration} in shard groups of {_show(shard)}"
        if name not in have:
            st.query(
                f"CREATE RETENTION POLICY {quote_ident(name)} ON {qdb} DURATION {duration} "
                f"REPLICATION 1{tail}",
                write=True,
            )
            out.append(f"{label}: created, {keeps}")
        elif have[name][0] != secs or (default and not have[name][1]) or shards[name] != shard:
            st.query(
                f"ALTER RETENTION POLICY {quote_ident(name)} ON {qdb} DURATION {duration}{tail}",
                write=True,
            )
            was = f"{_show(have[name][0])} in {_show(shards[name])}" + (
                ", default" if have[name][1] else ""
            )
            out.append(f"{label}: altered, {keeps} (was {was}; new shard groups only)")
        else:
            out.append(f"{label}: unchanged, {keeps}")
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
        # the marker says since when the rollups the store reads (1m, 1h) are complete
        changed = changed or (state != "unchanged" and level != 86400)
    out.append(days_from_hours(sink))
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


# Each rollup of a day from the same rollup of its hours: the aggregate over the hours.
_FROM_HOURS = {"sum": "SUM", "count": "SUM", "min": "MIN", "max": "MAX", "first": "FIRST",
               "last": "LAST"}  # fmt: skip
FILL_DAYS_PER_STATEMENT = 7
FILL_TIMEOUT_S = 300.0


def days_from_hours(sink: InfluxSink) -> str:
    """Fill ``rp_1d`` from ``rp_1h`` once (for a database that had hourly rollups before
    ``rp_1d`` existed, so that a year's view is not blank before it): per measurement and UTC
    day the sums, counts, minima, maxima, first and last of its hours, the mean as sum /
    count, which is what ``cq_1d`` computes from the raw points. Up to the start of today
    (``cq_1d``, at its first run, computes today and recomputes yesterday from the raw
    points). Done when ``rp_1d`` holds the ``dcim_rollups`` marker (field ``filled_to_ns``),
    written once every statement has succeeded: an interrupted or partly refused fill is
    done again by the next ``dcim db init``. ``FILL_DAYS_PER_STATEMENT`` days a statement,
    each given at least ``FILL_TIMEOUT_S`` (a week of the reference site's servers: seconds).
    Returns what it did."""
    st = InfluxStore(
        sink.model_copy(update={"timeout_s": max(sink.timeout_s, FILL_TIMEOUT_S)}),
        create_database=False,
    )
    mark = f"{quote_ident(ROLLUP_RP[86400])}.{quote_ident(MARKER)}"
    q = f'SELECT LAST("filled_to_ns") FROM {mark} WHERE "rp" = {quote_string(sink.raw_policy)}'
    if any(s.get("values") for s in st.query(q, write=True)):
        st.close()
        return (
            f"{ROLLUP_RP[86400]}: unchanged, filled from {ROLLUP_RP[3600]} before (marker {MARKER})"
        )
    end = floor_to(time.time_ns(), 86400)
    points, failed = days_from_hours_between(st, sink, None, end)
    done = f"{ROLLUP_RP[86400]} filled from {ROLLUP_RP[3600]} up to today: {points} points"
    if failed:
        st.close()
        return done + f"; NOT filled (run dcim db init again): {'; '.join(failed)}"
    line = encode(Reading(MARKER, {"rp": sink.raw_policy}, {"filled_to_ns": end}, time.time_ns()))
    params = {"db": sink.database, "rp": ROLLUP_RP[86400], "precision": "ns"}
    status, text, _ = st._request("POST", "/write", params, line.encode())
    st.close()
    if status not in (200, 204):
        raise StoreError(f"writing the rp_1d fill marker failed ({status}): {text!r}")
    return done


def days_from_hours_between(
    st: InfluxStore, sink: InfluxSink, start_ns: int | None, end_ns: int
) -> tuple[int, list[str]]:
    """Write ``rp_1d``'s points of the UTC days from ``start_ns`` (None: each measurement's
    first hour in ``rp_1h``) to ``end_ns`` (both whole days) from the hours ``rp_1h`` holds,
    as :func:`days_from_hours` describes. Returns the points written and, per measurement a
    statement failed for, what failed (the rest of it is not written)."""
    db = quote_ident(sink.database)
    src, dst = quote_ident(ROLLUP_RP[3600]), quote_ident(ROLLUP_RP[86400])
    fields: dict[str, set[str]] = {}
    for s in st.query(f"SHOW FIELD KEYS FROM {src}./.*/", write=True):
        if s.get("name") != MARKER:
            fields[str(s["name"])] = {str(v[0]) for v in s.get("values", [])}
    day = 86400 * NS
    points, failed = 0, []
    for meas, keys in sorted(fields.items()):
        cols = []
        for key in sorted(keys):
            kind, _, f = key.partition("_")
            if kind in _FROM_HOURS and f:
                cols.append(f"{_FROM_HOURS[kind]}({quote_ident(key)}) AS {quote_ident(key)}")
            elif kind == "mean" and f"sum_{f}" in keys and f"count_{f}" in keys:
                sf, cf = quote_ident(f"sum_{f}"), quote_ident(f"count_{f}")
                cols.append(f"SUM({sf}) / SUM({cf}) AS {quote_ident(key)}")
        q = f"SELECT FIRST({quote_ident(sorted(keys)[0])}) FROM {src}.{quote_ident(meas)}"
        first = [int(v[0]) for s in st.query(q, write=True) for v in s.get("values", [])]
        if not cols or not first:
            continue
        lo = floor_to(min(first), 86400) if start_ns is None else start_ns
        for a in range(lo, end_ns, FILL_DAYS_PER_STATEMENT * day):
            b = min(end_ns, a + FILL_DAYS_PER_STATEMENT * day)
            stmt = (
                f"SELECT {', '.join(cols)} INTO {db}.{dst}.{quote_ident(meas)} FROM "
                f"{db}.{src}.{quote_ident(meas)} WHERE time >= {a} AND time < {b} "
                "GROUP BY time(1d), *"
            )
            try:
                points += sum(int(v[1]) for r in st.query(stmt, write=True) for v in r["values"])
            except StoreError as exc:  # refused, or timed out: the next db init does it again
                failed.append(f"{meas}: {exc}")
                break
    return points, failed


def _shard_durations(st: InfluxStore, db: str) -> dict[str, int | None]:
    """Shard group duration (s) of each retention policy of ``db``."""
    out: dict[str, int | None] = {}
    for s in st.query(f"SHOW RETENTION POLICIES ON {quote_ident(db)}", write=True):
        for row in s.get("values", []):
            rp = dict(zip(s["columns"], row, strict=True))
            out[str(rp["name"])] = go_duration_s(str(rp["shardGroupDuration"]))
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
