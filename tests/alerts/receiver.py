"""A webhook receiver for the tests: an HTTP server on 127.0.0.1 that keeps every JSON body it
is sent and, given an HMAC key, refuses (401) a body whose ``X-Dcim-Signature`` is wrong."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from dcim.alerts.notify import verify_signature


class Receiver:
    def __init__(self, key: bytes | None = None):
        self.key = key
        self.bodies: list[dict[str, Any]] = []
        self.refused = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                sig = self.headers.get("X-Dcim-Signature", "")
                if outer.key is not None and not verify_signature(outer.key, body, sig):
                    outer.refused += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                outer.bodies.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def alerts(self) -> list[dict[str, Any]]:
        return [a for b in self.bodies for a in b.get("alerts", [])]

    def wait_for(self, check: Any, timeout: float = 30.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = [a for a in self.alerts() if check(a)]
            if got:
                return got
            time.sleep(0.1)
        raise TimeoutError(f"no matching alert in {self.alerts()}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
