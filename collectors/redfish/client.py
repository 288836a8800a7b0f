"""HTTP to one BMC: an aiohttp session with keep-alive, Redfish session login, TLS checks.

One :class:`RedfishClient` per BMC owns one ``aiohttp.ClientSession`` (its own connection
pool, ``max_connections`` connections kept alive between polls), so a slow BMC only holds
its own connections and every request carries its own timeout.

Authentication: ``auth: session`` logs in once (``POST /redfish/v1/SessionService/Sessions``,
DSP0266 section "Session management"), sends the ``X-Auth-Token`` it gets, logs in again when
a request answers 401 (the BMC expired or dropped the session) and deletes the session on
:meth:`close`; ``auth: basic`` sends HTTP basic credentials on every request.

TLS: verified against ``tls_ca`` (an ``ssl.SSLContext`` with that CA file, hostname checked)
or the pinned SHA-256 of the certificate (``aiohttp.Fingerprint``); plain HTTP only with
``scheme: http``. Redfish is read-only here: GET, plus the POST and DELETE of the session.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
from typing import Any

import aiohttp

from collectors.redfish.options import RedfishOptions
from dcim.protocols import PollError

log = logging.getLogger(__name__)

SESSIONS = "/redfish/v1/SessionService/Sessions"
_HEADERS = {"Accept": "application/json", "OData-Version": "4.0"}
MAX_BODY = 8 * 1024 * 1024  # a BMC answer larger than this is refused (decode)


class NotFound(PollError):
    """A cached URL answered 404: the poller rediscovers."""

    def __init__(self, url: str) -> None:
        super().__init__("protocol", f"{url}: 404 Not Found")
        self.url = url


def ssl_for(opts: RedfishOptions) -> ssl.SSLContext | aiohttp.Fingerprint | bool:
    """What aiohttp's ``ssl=`` gets for these options (True for plain HTTP: unused)."""
    if opts.scheme == "http":
        return True
    if opts.tls_fingerprint_sha256 is not None:
        return aiohttp.Fingerprint(bytes.fromhex(opts.tls_fingerprint_sha256))
    assert opts.tls_ca is not None
    try:
        return ssl.create_default_context(cafile=str(opts.tls_ca))
    except (OSError, ssl.SSLError) as exc:
        raise PollError("config", f"tls_ca {opts.tls_ca}: cannot load it: {exc}") from exc


class RedfishClient:
    """GETs JSON from one BMC (``host``:``port``), each request bounded by ``timeout_s``."""

    def __init__(
        self, *, host: str, port: int, opts: RedfishOptions, password: str, timeout_s: float
    ) -> None:
        self.base = f"{opts.scheme}://{host}:{port}"
        self.opts = opts
        self._password = password
        # Per request, not counting the wait for a pooled connection: connecting (TLS
        # included) and then each read get ``timeout_s``; the whole poll is bounded by the
        # scheduler's deadline.
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=timeout_s, sock_read=timeout_s
        )
        self._timeout_s = timeout_s
        self._ssl = ssl_for(opts)
        self._http: aiohttp.ClientSession | None = None
        self._token: str | None = None
        self._session_url: str | None = None
        self._generation = 0  # bumped at each login, so concurrent 401s log in once
        self._login_lock: asyncio.Lock | None = None
        self.requests = 0  # HTTP requests sent (GET, login, logout)
        self.logins = 0

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            connector = aiohttp.TCPConnector(
                limit=self.opts.max_connections, ssl=self._ssl, keepalive_timeout=120
            )
            headers = dict(_HEADERS)
            if self.opts.auth == "basic":  # RFC 7617; aiohttp's BasicAuth is deprecated
                pair = f"{self.opts.username}:{self._password}".encode()
                headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
            self._http = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, headers=headers
            )
            self._login_lock = asyncio.Lock()
        return self._http

    async def get(self, path: str) -> Any:
        """The JSON body at ``path`` (raises PollError; :class:`NotFound` for 404)."""
        http = self._session()
        if self.opts.auth == "session" and self._token is None:
            await self._login(self._generation)
        for attempt in range(2):
            gen = self._generation
            status, body = await self._request(http, "GET", path)
            if status == 401 and self.opts.auth == "session" and attempt == 0:
                await self._login(gen)
                continue
            break
        if status == 404:
            raise NotFound(path)
        if status in (401, 403):
            raise PollError("auth", f"GET {path}: HTTP {status} (user {self.opts.username!r})")
        if status != 200:
            raise PollError("protocol", f"GET {path}: HTTP {status}")
        try:
            return json.loads(body)
        except ValueError as exc:
            raise PollError("decode", f"GET {path}: not JSON: {exc}") from exc

    async def _request(
        self, http: aiohttp.ClientSession, method: str, path: str, **kw: Any
    ) -> tuple[int, bytes]:
        headers = {"X-Auth-Token": self._token} if self._token else None
        url = self.base + path
        for attempt in range(2):
            self.requests += 1
            try:
                async with http.request(method, url, headers=headers, **kw) as rsp:
                    body = await rsp.content.read(MAX_BODY + 1)
                    if len(body) > MAX_BODY:
                        raise PollError("decode", f"{method} {path}: answer over {MAX_BODY} B")
                    if method == "POST":
                        self._login_answer(rsp, body)
                    return rsp.status, body
            except aiohttp.ServerDisconnectedError as exc:
                if attempt == 0:  # a kept-alive connection the BMC had closed: once more
                    continue
                raise PollError(
                    "refused", f"{method} {url}: the BMC closed the connection"
                ) from exc
            except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
                raise PollError(
                    "timeout", f"{method} {url}: no answer within {self._timeout_s:g} s"
                ) from exc
            except aiohttp.ServerFingerprintMismatch as exc:
                raise PollError(
                    "auth",
                    f"{url}: TLS certificate SHA-256 {exc.got.hex()} is not the pinned "
                    f"tls_fingerprint_sha256 {exc.expected.hex()}",
                ) from exc
            except aiohttp.ClientConnectorCertificateError as exc:
                raise PollError(
                    "auth",
                    f"{url}: TLS certificate not trusted ({exc.certificate_error}); "
                    f"tls_ca is {self.opts.tls_ca}",
                ) from exc
            except aiohttp.ClientConnectorSSLError as exc:
                raise PollError("refused", f"{url}: TLS handshake failed: {exc}") from exc
            except aiohttp.ClientConnectorError as exc:
                raise PollError("refused", f"{url}: cannot connect: {exc.os_error}") from exc
            except (aiohttp.ClientError, ssl.SSLError, ConnectionError) as exc:
                raise PollError("refused", f"{method} {url}: {type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable")

    def _login_answer(self, rsp: aiohttp.ClientResponse, body: bytes) -> None:
        if rsp.status not in (200, 201):
            return
        self._token = rsp.headers.get("X-Auth-Token")
        location = rsp.headers.get("Location")
        if location is None:
            try:
                location = json.loads(body).get("@odata.id")
            except (ValueError, AttributeError):
                location = None
        if location and location.startswith(("http://", "https://")):
            location = "/" + location.split("/", 3)[3]
        self._session_url = location

    async def _login(self, seen_generation: int) -> None:
        assert self._login_lock is not None
        async with self._login_lock:
            if self._generation != seen_generation:
                return  # another request logged in meanwhile
            self._token = None
            http = self._session()
            credentials = {"UserName": self.opts.username, "Password": self._password}
            status, _ = await self._request(http, "POST", SESSIONS, json=credentials)
            if status not in (200, 201) or self._token is None:
                raise PollError(
                    "auth",
                    f"POST {SESSIONS}: login as {self.opts.username!r} refused (HTTP {status}"
                    f"{'' if status not in (200, 201) else ', no X-Auth-Token'})",
                )
            self._generation += 1
            self.logins += 1

    async def close(self) -> None:
        """Delete the Redfish session (best effort) and close the connections."""
        http, self._http = self._http, None
        if http is None:
            return
        if self._session_url and self._token:
            try:
                async with http.delete(
                    self.base + self._session_url,
                    headers={"X-Auth-Token": self._token},
                    timeout=aiohttp.ClientTimeout(total=2),
                ) as rsp:
                    self.requests += 1
                    await rsp.read()
            except (aiohttp.ClientError, TimeoutError, ssl.SSLError, OSError) as exc:
                log.debug("%s: session not deleted: %s", self.base, exc)
        self._token = self._session_url = None
        await http.close()
