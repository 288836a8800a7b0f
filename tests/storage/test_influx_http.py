"""InfluxStore against a scripted HTTP server (status mapping, auth, gzip, v2) and the real
influxd (database creation, type conflicts)."""

from __future__ import annotations

import gzip
import http.server
import threading
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from dcim.config import InfluxSink, Secret
from dcim.reading import Reading
from dcim.storage import influx
from dcim.storage.base import SinkError
from dcim.storage.influx import InfluxStore, StoreUnavailable, build_query
from dcim.testing.servers import InfluxServer, free_port
from tests.storage.helpers import influx_store

T = 1_700_000_000_000_000_000
R = [Reading("pdu", {"device": "p1"}, {"power_w": 1.0}, T)]


class Scripted(http.server.BaseHTTPRequestHandler):
    replies: list[tuple[int, dict[str, str], bytes]] = []
    seen: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.seen.append({"path": self.path, "headers": dict(self.headers), "body": body})
        status, headers, out = self.replies.pop(0) if self.replies else (204, {}, b"")
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake() -> Iterator[str]:
    Scripted.replies, Scripted.seen = [], []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.mark.parametrize(
    ("status", "headers", "body", "retryable", "retry_after", "text"),
    [
        (400, {}, b'{"error":"partial write: field type conflict"}', False, None, "type conflict"),
        (401, {}, b'{"error":"authorization failed"}', True, None, "credentials"),
        (403, {}, b"", True, None, "credentials"),
        (429, {"Retry-After": "7"}, b"", True, 7.0, "429"),
        (503, {"Retry-After": "2"}, b"busy", True, 2.0, "503"),
        (500, {}, b'{"error":"timeout"}', True, None, "timeout"),
        (404, {}, b"404 page not found", True, None, "not found"),
        (413, {}, b"too large", False, None, "too large"),
    ],
)
def test_status_mapping(
    fake: str, status: int, headers: dict[str, str], body: bytes, retryable: bool,
    retry_after: float | None, text: str,
) -> None:  # fmt: skip
    Scripted.replies = [(status, headers, body)]
    st = InfluxStore(InfluxSink(type="influxdb", url=fake, timeout_s=2))
    with pytest.raises(SinkError) as err:
        st.write(R)
    assert err.value.retryable is retryable
    assert err.value.retry_after_s == retry_after
    assert text in err.value.reason


def test_v1_write_request(fake: str) -> None:
    sink = InfluxSink(type="influxdb", url=fake, database="db x", retention_policy="rp1",
                      username="u", password=Secret(value="p"))  # fmt: skip
    InfluxStore(sink).write(R)
    req = Scripted.seen[0]
    assert req["path"].startswith("/write?db=db+x&rp=rp1&precision=ns")
    assert req["headers"]["Content-Encoding"] == "gzip"
    assert req["headers"]["Authorization"] == "Basic dTpw"
    assert gzip.decompress(req["body"]) == f"pdu,device=p1 power_w=1.0 {T}\n".encode()


def test_write_without_gzip(fake: str) -> None:
    InfluxStore(InfluxSink(type="influxdb", url=fake, gzip=False)).write(R)
    req = Scripted.seen[0]
    assert "Content-Encoding" not in req["headers"]
    assert req["body"] == f"pdu,device=p1 power_w=1.0 {T}\n".encode()


def test_v2_write_request(fake: str) -> None:
    sink = InfluxSink(type="influxdb", url=fake, api="v2", org="o", bucket="b",
                      token=Secret(value="tok"))  # fmt: skip
    InfluxStore(sink).write(R)
    req = Scripted.seen[0]
    assert req["path"] == "/api/v2/write?org=o&bucket=b&precision=ns"
    assert req["headers"]["Authorization"] == "Token tok"


def test_database_not_found_creates_it(fake: str) -> None:
    Scripted.replies = [
        (404, {}, b'{"error":"database not found: \\"dcim\\""}'),
        (200, {}, b'{"results":[{"statement_id":0}]}'),
        (204, {}, b""),
    ]
    InfluxStore(InfluxSink(type="influxdb", url=fake)).write(R)
    paths = [s["path"].split("?")[0] for s in Scripted.seen]
    assert paths[:3] == ["/write", "/query", "/write"]
    assert b"CREATE+DATABASE" in Scripted.seen[1]["body"] or "CREATE" in Scripted.seen[1]["path"]


def test_closed_port_is_retryable() -> None:
    st = InfluxStore(InfluxSink(type="influxdb", url=f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(SinkError) as err:
        st.write(R)
    assert err.value.retryable and "unreachable" in err.value.reason


def test_real_type_conflict_is_not_retryable(influxdb: InfluxServer) -> None:
    st = influx_store(influxdb, "conf")
    st.write(R)  # creates the database, power_w is a float
    bad = [Reading("pdu", {"device": "p1"}, {"power_w": 5}, T + 1)]
    with pytest.raises(SinkError) as err:
        st.write(bad)
    assert not err.value.retryable and "conflict" in err.value.reason


def test_query_quoting() -> None:
    q = build_query(measurement='we"ird', field="a\\b", start_ns=1, end_ns=2, fn="integral",
                    every_s=60, where={"room": "it's"}, group_by=("device",),
                    retention_policy="rp")  # fmt: skip
    assert q == (
        'SELECT INTEGRAL("a\\\\b", 1s) FROM "rp"."we\\"ird" WHERE time >= 1 AND time < 2 '
        'AND "room" = \'it\\\'s\' GROUP BY time(60s), "device" fill(none)'
    )


@pytest.mark.parametrize("gzip_on", [True, False])
def test_query_with_strange_tag_values(influxdb: InfluxServer, gzip_on: bool) -> None:
    st = influx_store(influxdb, "q")
    st.sink = st.sink.model_copy(update={"gzip": gzip_on})
    odd = 'it\'s \\x "odd" a=b,c'
    st.write([Reading("pdu", {"device": odd}, {"power_w": 2.0}, T)])
    rows = st.aggregate(measurement="pdu", field="power_w", start_ns=T, end_ns=T + 1,
                        fn="mean", where={"device": odd}, group_by=("device",))  # fmt: skip
    assert [(r.tags, r.value) for r in rows] == [({"device": odd}, 2.0)]


_POLICIES = (
    b'{"results":[{"statement_id":0,"series":[{"columns":["name","duration",'
    b'"shardGroupDuration","replicaN","default"],"values":[["raw","720h0m0s","24h0m0s",1,true],'
    b'["rp_1m","9600h0m0s","168h0m0s",1,false],["rp_1h","0s","168h0m0s",1,false]]}]}]}'
)


@pytest.mark.parametrize(
    ("status", "body", "raises"),
    [
        (503, b"busy", True),
        (200, b'{"results":[{"statement_id":0,"error":"query engine shutdown"}]}', True),
        (200, b'{"results":[{"statement_id":0,"error":"nope"}]}', False),
    ],
)
def test_late_points_rolled_up_after_the_writes(
    fake: str, status: int, body: bytes, raises: bool
) -> None:
    """Points older than a few minutes miss the CQs: their hours are due to be rolled up
    again, once for many writes (flush_rollups); if the server is gone meanwhile they stay
    due, if it refuses the rollup, it is logged."""
    Scripted.replies = [(204, {}, b""), (204, {}, b""), (200, {}, _POLICIES), (status, {}, body)]
    st = InfluxStore(InfluxSink(type="influxdb", url=fake, timeout_s=2))
    st.write(R)
    st.write(R)
    assert [s["path"].split("?")[0] for s in Scripted.seen] == ["/write", "/write"]
    assert st.rollups_due() == 1
    if raises:
        with pytest.raises(StoreUnavailable):
            st.flush_rollups()
        assert st.rollups_due() == 1  # comes again
    else:
        assert st.flush_rollups() == 1
        assert st.rollups_due() == 0
    rollup = urllib.parse.parse_qs(Scripted.seen[3]["path"].split("?", 1)[1])["q"][0]
    assert rollup.startswith("SELECT mean(*), min(*), max(*), first(*), last(*), count(*), sum(*)")
    assert f"WHERE time >= {T - T % (3600 * 10**9)} AND" in rollup
    # the measurement that got the late point only (not every measurement of the hour)
    assert 'INTO "dcim"."rp_1m".:MEASUREMENT FROM "dcim"."raw"."pdu" WHERE' in rollup


def test_late_points_due_too_long_fail_the_write_when_the_server_is_gone(
    fake: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hours due for ROLLUP_DEBOUNCE_S are rolled up after the next write; if the server does
    not answer, that write fails (retryable: the batch comes again, the hours stay due)."""
    monkeypatch.setattr(influx, "ROLLUP_DEBOUNCE_S", 0.0)
    Scripted.replies = [(204, {}, b""), (200, {}, _POLICIES), (503, {}, b"busy")]
    st = InfluxStore(InfluxSink(type="influxdb", url=fake, timeout_s=2))
    with pytest.raises(SinkError) as err:
        st.write(R)
    assert err.value.retryable and "rollup" in err.value.reason
    assert st.rollups_due() == 1


def test_recent_points_are_left_to_the_cqs(fake: str) -> None:
    now = time.time_ns()
    InfluxStore(InfluxSink(type="influxdb", url=fake)).write(
        [Reading("pdu", {"device": "p1"}, {"power_w": 1.0}, now)]
    )
    assert [s["path"].split("?")[0] for s in Scripted.seen] == ["/write"]


@pytest.mark.parametrize(("precision", "param", "div"), [("ns", "ns", 1), ("us", "u", 1000),
                                                          ("s", "s", 10**9)])  # fmt: skip
def test_write_lines_converts_to_the_precision(
    fake: str, precision: str, param: str, div: int
) -> None:
    body = (
        f'pdu,device=p1 power_w=1.0,s="12 34" {T + 999_999_999}\n'
        f"pdu,device=p2 n=17i {T}\nups,device=u1 on=true {T + 1}\n"
    ).encode()
    sink = InfluxSink(type="influxdb", url=fake, precision=precision)  # type: ignore[arg-type]
    now = time.time_ns()
    InfluxStore(sink).write_lines(body, [(now, now)])  # recent: no rollup query
    req = Scripted.seen[0]
    assert urllib.parse.parse_qs(req["path"].split("?", 1)[1])["precision"] == [param]
    want = [f"{line.rsplit(' ', 1)[0]} {int(line.rsplit(' ', 1)[1]) // div}"
            for line in body.decode().splitlines()]  # fmt: skip
    assert gzip.decompress(req["body"]).decode().splitlines() == want
    assert len(Scripted.seen) == 1


def test_write_lines_rolls_up_the_hours_of_late_points(fake: str) -> None:
    done = (200, {}, b'{"results":[{"statement_id":0}]}')
    Scripted.replies = [(204, {}, b""), (200, {}, _POLICIES), done, done, done]
    h = 3600 * 10**9
    st = InfluxStore(InfluxSink(type="influxdb", url=fake, timeout_s=2))
    st.write_lines(f"pdu,device=p1 power_w=1.0 {T}\n".encode(), [(T, T + h + 5), (T, T)])
    assert st.rollups_due() == 2 and len(Scripted.seen) == 1
    st.close()  # rolls up what is due
    rollups = [urllib.parse.parse_qs(s["path"].split("?", 1)[1])["q"][0] for s in Scripted.seen[2:]]
    start = T - T % h
    # the 1-minute rollups an hour per statement, the 1-hour ones of both hours at once
    assert [q.split("WHERE ")[1].split(" GROUP")[0] for q in rollups] == [
        f"time >= {start} AND time < {start + h}",
        f"time >= {start + h} AND time < {start + 2 * h}",
        f"time >= {start} AND time < {start + 2 * h}",
    ]
    assert ["time(1m)" in q for q in rollups] == [True, True, False]


def test_queries_read_messagepack_answers(influxdb: InfluxServer) -> None:
    """Queries ask for MessagePack (influxd 1.x answers it) and read the same values as from
    JSON; an answer in JSON (a server that does not speak it) or an error page is read too."""
    st = influx_store(influxdb, "mp")
    t0 = time.time_ns() - 3600 * 1_000_000_000
    st.write([Reading("m", {"device": "d"}, {"v": 1.5 + i, "n": i}, t0 + i) for i in range(3)])
    q = f'SELECT "v", "n" FROM "m" WHERE time >= {t0} GROUP BY "device"'
    params = {"q": q, "db": st.sink.database, "epoch": "ns"}
    _, body, headers = st._request(
        "POST", "/query", params, headers={"Accept": "application/x-msgpack"}
    )
    assert "msgpack" in headers.get("Content-Type", "")
    _, js, js_headers = st._request("POST", "/query", params)
    assert influx._documents(body, headers) == influx._documents(js, js_headers)
    got = st.query(q)
    assert got[0]["tags"] == {"device": "d"}
    assert got[0]["values"] == [[t0 + i, 1.5 + i, i] for i in range(3)]
    assert influx._documents(b"<html>bad gateway</html>", {"Content-Type": "text/html"}) == []
    assert influx._documents(b"\xc1\xc1", {"Content-Type": "application/x-msgpack"}) == []
    st.close()


@pytest.mark.parametrize("gzip_on", [True, False])
def test_a_body_prepared_apart_is_posted_as_write_lines_posts_it(fake: str, gzip_on: bool) -> None:
    """The forwarder has the next body prepared (compressed) by its helper thread while one
    is posted: the same request as write_lines, the late hours noted at the POST."""
    h = 3600 * 10**9
    body = f"pdu,device=p1 power_w=1.0 {T}\npdu,device=p2 power_w=2.0 {T + h}\n".encode()
    st = InfluxStore(InfluxSink(type="influxdb", url=fake, timeout_s=2, gzip=gzip_on))
    st.supply_rollups(0, 2 * T)  # no rollup statements: only the writes are seen here
    st.write_lines(body, [(T, T + h)])
    prepared = st.prepare_lines(body, [(T, T + h)])
    start = T - T % h
    assert prepared.late == {start, start + h} and prepared.size == len(body)
    assert len(Scripted.seen) == 1  # prepared, not posted
    st.write_prepared(prepared)
    st.write_prepared(st.prepare_lines(b"", []))  # nothing to post
    first, second = Scripted.seen
    assert first["path"] == second["path"] and second["body"] == prepared.body
    assert first["headers"].get("Content-Encoding") == second["headers"].get("Content-Encoding")
    sent = gzip.decompress(second["body"]) if gzip_on else second["body"]
    assert sent == body and (second["headers"].get("Content-Encoding") == "gzip") == gzip_on
