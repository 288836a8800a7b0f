"""InfluxDB store over HTTP with the standard library only (no client package).

Writes: v1 ``POST /write?db=&rp=&precision=ns`` (InfluxDB 1.x, and 1.8+/2.x/3.x through
their v1 API), or with ``api: v2`` ``POST /api/v2/write?org=&bucket=&precision=ns``;
gzip body, ``Authorization: Token`` when a token is given, else basic auth.
Queries: InfluxQL on ``/query`` (v1 API; on 2.x it needs a DBRP mapping for ``database``).

Write responses become :class:`SinkError`: 204 ok; 400/413/422 (bad data, partial write,
field type conflict, beyond retention) not retryable; 401/403 retryable, since wrong
credentials must not drop data (fix them and it flows); 404 "database not found" creates
the database when allowed, else retryable; 429/503 retryable with ``Retry-After``; other
5xx, connection errors and timeouts retryable.
"""

from __future__ import annotations

import base64
import email.utils
import gzip
import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from dcim.config import InfluxSink
from dcim.reading import Reading
from dcim.storage.base import Agg, Row, SinkError, StoreError, check_query, sort_rows
from dcim.storage.lineprotocol import encode_many

log = logging.getLogger(__name__)


def quote_ident(name: str) -> str:
    """An InfluxQL identifier: ``"name"`` with ``\\`` and ``"`` escaped."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_string(value: str) -> str:
    """An InfluxQL string literal: ``'value'`` with ``\\`` and ``'`` escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def build_query(
    *,
    measurement: str,
    field: str,
    start_ns: int,
    end_ns: int,
    fn: Agg,
    every_s: int | None = None,
    where: Mapping[str, str] | None = None,
    group_by: Sequence[str] = (),
    retention_policy: str | None = None,
) -> str:
    """The InfluxQL statement for one ``Store.aggregate`` call."""
    check_query(fn, start_ns, end_ns, every_s)
    sel = (
        f"INTEGRAL({quote_ident(field)}, 1s)"
        if fn == "integral"
        else f"{fn.upper()}({quote_ident(field)})"
    )
    src = quote_ident(measurement)
    if retention_policy:
        src = f"{quote_ident(retention_policy)}.{src}"
    conds = [f"time >= {int(start_ns)}", f"time < {int(end_ns)}"]
    conds += [f"{quote_ident(k)} = {quote_string(v)}" for k, v in sorted((where or {}).items())]
    groups = ([f"time({int(every_s)}s)"] if every_s else []) + [quote_ident(k) for k in group_by]
    q = f"SELECT {sel} FROM {src} WHERE {' AND '.join(conds)}"
    if groups:
        q += f" GROUP BY {', '.join(groups)}"
    if every_s:
        q += " fill(none)"
    return q


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


class InfluxStore:
    def __init__(self, sink: InfluxSink, *, create_database: bool = True):
        self.sink = sink
        self.base = sink.url.rstrip("/")
        self.create_database = create_database and sink.api == "v1"
        self._headers: dict[str, str] = {}
        if sink.token is not None:
            self._headers["Authorization"] = f"Token {sink.token.resolve()}"
        elif sink.username:
            pw = sink.password.resolve() if sink.password is not None else ""
            cred = base64.b64encode(f"{sink.username}:{pw}".encode()).decode()
            self._headers["Authorization"] = f"Basic {cred}"

    # -- HTTP ----------------------------------------------------------------------------
    def _request(
        self,
        method: str,
        path: str,
        params: Mapping[str, str],
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, bytes, Any]:
        """(status, body, headers); HTTP error statuses are returned, not raised.
        Connection problems raise SinkError(retryable=True)."""
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        req = urllib.request.Request(url, data=body, method=method)
        for k, v in {**self._headers, **(headers or {})}.items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=self.sink.timeout_s) as resp:
                return resp.status, resp.read(), resp.headers
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), exc.headers
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise SinkError(
                retryable=True, reason=f"InfluxDB {self.base} unreachable: {reason}"
            ) from exc

    # -- writing -------------------------------------------------------------------------
    def write(self, readings: Sequence[Reading]) -> None:
        if not readings:
            return
        try:
            body = gzip.compress(encode_many(readings), compresslevel=1)
        except ValueError as exc:
            raise SinkError(retryable=False, reason=str(exc)) from exc
        if self.sink.api == "v2":
            path = "/api/v2/write"
            params = {"org": self.sink.org or "", "bucket": self.sink.bucket or ""}
        else:
            path = "/write"
            params = {"db": self.sink.database}
            if self.sink.retention_policy:
                params["rp"] = self.sink.retention_policy
        params["precision"] = "ns"
        hdr = {"Content-Encoding": "gzip", "Content-Type": "text/plain; charset=utf-8"}
        for attempt in (1, 2):
            status, text, headers = self._request("POST", path, params, body, hdr)
            if status in (200, 204):
                return
            msg = text.decode("utf-8", "replace").strip()
            missing = status == 404 and "database not found" in msg
            if missing and self.create_database and attempt == 1:
                log.info("creating InfluxDB database %s", self.sink.database)
                self.ensure_database()
                continue
            raise self._write_error(status, msg, headers)

    def _write_error(self, status: int, msg: str, headers: Any) -> SinkError:
        where = f"InfluxDB {self.base}"
        if status in (400, 413, 422):
            return SinkError(retryable=False, reason=f"{where} refused the data ({status}): {msg}")
        if status in (401, 403):
            return SinkError(
                retryable=True,
                reason=f"{where} refused the credentials ({status}): {msg}; "
                "data stays in the spool until the sink's username/password/token is fixed",
            )
        if status == 404:
            return SinkError(retryable=True, reason=f"{where}: not found (404): {msg}")
        retry_after = _retry_after(headers.get("Retry-After")) if headers else None
        return SinkError(
            retryable=True, reason=f"{where} answered {status}: {msg}", retry_after_s=retry_after
        )

    # -- querying ------------------------------------------------------------------------
    def query(self, q: str, *, write: bool = False) -> list[dict[str, Any]]:
        """Run InfluxQL; returns the ``series`` of every result (chunks merged)."""
        params = {"q": q, "db": self.sink.database, "epoch": "ns"}
        if not write:
            params.update(chunked="true", chunk_size="10000")
        try:
            status, text, _ = self._request("POST", "/query", params)
        except SinkError as exc:
            raise StoreError(exc.reason) from exc
        if status != 200:
            msg = text.decode("utf-8", "replace").strip()
            raise StoreError(f"InfluxDB query failed ({status}): {msg}: {q}")
        series: list[dict[str, Any]] = []
        for line in text.splitlines():
            if not line.strip():
                continue
            doc = json.loads(line)
            if "error" in doc:
                raise StoreError(f"InfluxDB query failed: {doc['error']}: {q}")
            for result in doc.get("results", []):
                if "error" in result:
                    if "database not found" in result["error"]:
                        return []  # nothing written yet
                    raise StoreError(f"InfluxDB query failed: {result['error']}: {q}")
                series.extend(result.get("series", []))
        return series

    def ensure_database(self) -> None:
        """CREATE DATABASE (a no-op when it exists)."""
        self.query(f"CREATE DATABASE {quote_ident(self.sink.database)}", write=True)

    def aggregate(
        self,
        *,
        measurement: str,
        field: str,
        start_ns: int,
        end_ns: int,
        fn: Agg,
        every_s: int | None = None,
        where: Mapping[str, str] | None = None,
        group_by: Sequence[str] = (),
    ) -> list[Row]:
        q = build_query(
            measurement=measurement,
            field=field,
            start_ns=start_ns,
            end_ns=end_ns,
            fn=fn,
            every_s=every_s,
            where=where,
            group_by=group_by,
            retention_policy=self.sink.retention_policy,
        )
        point_time = every_s is not None or fn in ("first", "last")
        rows: list[Row] = []
        for s in self.query(q):
            tags = s.get("tags") or {}
            gtags = {k: str(tags.get(k, "")) for k in group_by}
            for t, v in s.get("values", []):
                if isinstance(v, bool):
                    value: float | None = float(v)
                elif isinstance(v, int | float):
                    value = float(v)
                else:
                    continue  # None, or a string from first/last: numeric values only
                rows.append(Row(gtags, int(t) if point_time else start_ns, value))
        return sort_rows(rows, group_by)

    def close(self) -> None:
        pass
