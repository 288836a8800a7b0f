"""The InfluxDB sink's connections: one persistent connection per thread (counted at a TCP
proxy in front of the real influxd), opened again when the server closed it; TLS to a real
influxd with ``https-enabled`` and a throwaway CA (``tls_ca``), and a client certificate
(``tls_cert``/``tls_key``) to a TLS proxy that requires one in front of influxd (InfluxDB
1.x itself does not ask for client certificates; sites put such a proxy before it)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from dcim.config import InfluxSink
from dcim.reading import Reading
from dcim.storage.base import SinkError
from dcim.storage.influx import InfluxStore
from dcim.testing.servers import InfluxServer, free_port, need
from tests.storage.tlsca import Pki, make_pki

T = 1_700_000_000_000_000_000


class Proxy:
    """A TCP proxy to ``target`` on 127.0.0.1 counting the connections it accepts; with
    ``tls``, it terminates TLS with that server context first."""

    def __init__(self, target: int, tls: ssl.SSLContext | None = None):
        self.target, self.tls = target, tls
        self.accepted = 0
        self.failed_handshakes = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self._sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c: socket.socket) -> None:
        if self.tls is not None:
            try:
                c = self.tls.wrap_socket(c, server_side=True)
            except (ssl.SSLError, OSError):
                self.failed_handshakes += 1
                c.close()
                return
        up = socket.create_connection(("127.0.0.1", self.target))
        self._open += [c, up]

        def pump(a: socket.socket, b: socket.socket) -> None:
            with contextlib.suppress(OSError):
                while data := a.recv(65536):
                    b.sendall(data)
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

        threading.Thread(target=pump, args=(up, c), daemon=True).start()
        pump(c, up)

    def drop_all(self) -> None:
        """Close every connection (as a server or a load balancer does with idle ones)."""
        for s in self._open:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        self._open.clear()

    def close(self) -> None:
        self._sock.close()
        self.drop_all()


def rd(i: int) -> Reading:
    return Reading("pdu", {"device": "p1"}, {"power_w": float(i)}, T + i)


def count(st: InfluxStore) -> int:
    rows = st.aggregate(measurement="pdu", field="power_w", start_ns=0, end_ns=2 * T, fn="count")
    return int(rows[0].value or 0) if rows else 0


def test_one_connection_for_many_writes_and_queries(influxdb: InfluxServer) -> None:
    proxy = Proxy(influxdb.port)
    sink = InfluxSink(type="influxdb", url=f"http://127.0.0.1:{proxy.port}", database="keep")
    st = InfluxStore(sink)
    try:
        for i in range(30):
            st.write([rd(i)])
        assert count(st) == 30
        assert proxy.accepted == 1 and st.connections_opened == 1  # was one per request: 32
        proxy.drop_all()  # the server closes the kept connection: opened again, nothing lost
        time.sleep(0.1)
        st.write([rd(30)])
        assert count(st) == 31 and proxy.accepted == 2
        # another thread (the forwarder's) has its own
        threading.Thread(target=st.write, args=([rd(31)],)).start()
        time.sleep(0.5)
        assert count(st) == 32 and proxy.accepted == 3
    finally:
        st.close()
        proxy.close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


class HttpsInflux(InfluxServer):
    ca: Path

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=1, context=ctx) as r:
                return bool(r.status == 204)
        except OSError:
            return False


@pytest.fixture(scope="module")
def https_influxdb(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[HttpsInflux]:
    d = tmp_path_factory.mktemp("influx-tls")
    port, rpc = free_port(), free_port()
    conf = d / "influxdb.conf"
    conf.write_text(
        f"""reporting-enabled = false
bind-address = "127.0.0.1:{rpc}"
[meta]
  dir = "{d}/meta"
[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:{port}"
  log-enabled = false
  https-enabled = true
  https-certificate = "{pki.server_cert}"
  https-private-key = "{pki.server_key}"
[ifql]
  enabled = false
[logging]
  level = "warn"
"""
    )
    srv = HttpsInflux(None, port, d, [need("influxd", "influxdb"), "run", "-config", str(conf)],
                      d / "influxd.log")  # fmt: skip
    srv.ca = pki.ca
    srv.start()
    yield srv
    srv.stop()


def test_https_with_a_ca_bundle(https_influxdb: HttpsInflux, pki: Pki) -> None:
    sink = InfluxSink(type="influxdb", url=https_influxdb.url, database="tls", tls_ca=pki.ca)
    st = InfluxStore(sink)
    for i in range(5):
        st.write([rd(i)])
    assert count(st) == 5 and st.connections_opened == 1
    st.close()
    # without the site's CA the server is not trusted: retryable, the data stays spooled
    bare = InfluxStore(sink.model_copy(update={"tls_ca": None}))
    with pytest.raises(SinkError) as err:
        bare.write([rd(9)])
    assert err.value.retryable and "CERTIFICATE_VERIFY_FAILED" in err.value.reason


def test_client_certificate_to_a_proxy_that_requires_one(influxdb: InfluxServer, pki: Pki) -> None:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca))
    ctx.load_cert_chain(str(pki.server_cert), str(pki.server_key))
    ctx.verify_mode = ssl.CERT_REQUIRED
    proxy = Proxy(influxdb.port, tls=ctx)
    url = f"https://127.0.0.1:{proxy.port}"
    try:
        sink = InfluxSink(type="influxdb", url=url, database="mtls", tls_ca=pki.ca,
                          tls_cert=pki.client_cert, tls_key=pki.client_key)  # fmt: skip
        st = InfluxStore(sink)
        st.write([rd(1)])
        assert count(st) == 1 and proxy.failed_handshakes == 0
        st.close()
        anonymous = InfluxStore(sink.model_copy(update={"tls_cert": None, "tls_key": None}))
        with pytest.raises(SinkError) as err:
            anonymous.write([rd(2)])
        assert err.value.retryable
        # TLS 1.3: the client may see its request fail before the proxy's thread has counted
        # the handshake it refused; wait for the count, not for a fixed time
        deadline = time.monotonic() + 5
        while proxy.failed_handshakes == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proxy.failed_handshakes == 1
    finally:
        proxy.close()


def test_tls_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="only with an https:// url"):
        InfluxSink(type="influxdb", url="http://h:8086", tls_ca=tmp_path / "ca.pem")
    with pytest.raises(ValueError, match="give the client certificate too"):
        InfluxSink(type="influxdb", url="https://h:8086", tls_key=tmp_path / "k.pem")
    st = InfluxStore(InfluxSink(type="influxdb", url="https://127.0.0.1:1", tls_ca=tmp_path / "x"))
    with pytest.raises(SinkError) as err:
        st.write([rd(1)])
    assert err.value.retryable and "cannot load the TLS files" in err.value.reason
