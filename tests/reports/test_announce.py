"""The statements' announcement outbox and its sender, against a real HTTP receiver: queued
once per statement and receiver, sent oldest first, a 400 logged and never retried, a 503
retried until the receiver takes it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from dcim.reports.announce import Outbox, StatementWebhook


class Hook:
    """Answers each POST with the next status of ``answers`` (then 200), keeps the bodies."""

    def __init__(self, answers: list[int]) -> None:
        self.answers = answers
        self.bodies: list[tuple[int, dict[str, Any]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                code = outer.answers.pop(0) if outer.answers else 200
                outer.bodies.append((code, body))
                self.send_response(code)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}/hook"


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "announcements.sqlite")
    yield box
    box.close()


def note(number: str) -> dict[str, Any]:
    return {"event": "heat_statement_ready", "number": number}


def test_refused_once_retried_otherwise(outbox: Outbox) -> None:
    hook = Hook([400, 503])
    try:
        assert outbox.add(hook.url, note("CPCU-2026-10-R1"), 1)
        assert outbox.add(hook.url, note("SERRES-2026-10-R1"), 2)
        assert not outbox.add(hook.url, note("CPCU-2026-10-R1"), 3)  # queued already
        sender = StatementWebhook(hook.url, outbox, retry_max_s=1.0)
        with pytest.raises(RuntimeError, match="503"):  # the loop retries it, with backoff
            sender.send_due()
        assert sender.refused_total == 1  # the 400: logged, not retried
        assert [n for n, _ in outbox.due(hook.url)] == ["SERRES-2026-10-R1"]
        assert sender.send_due() == 1  # the receiver takes it now
        assert outbox.due(hook.url) == [] and sender.send_due() == 0
        assert outbox.others_pending(hook.url) == {}
        outbox.add("http://127.0.0.1:9/old", note("CPCU-2026-09-R1"), 4)
        assert outbox.others_pending(hook.url) == {"http://127.0.0.1:9/old": 1}
    finally:
        hook.srv.shutdown()
        hook.srv.server_close()
    assert [(c, b["number"]) for c, b in hook.bodies] == [
        (400, "CPCU-2026-10-R1"),
        (503, "SERRES-2026-10-R1"),
        (200, "SERRES-2026-10-R1"),
    ]
