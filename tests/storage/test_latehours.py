"""dcim.storage.latehours: the (measurement, hour) entries due for rollup, their file (both
formats), the measurements of a line protocol body, the statements' grouping."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from dcim.reading import Reading
from dcim.storage import latehours
from dcim.storage.latehours import ALL
from dcim.storage.lineprotocol import encode_many

H = 3600 * 1_000_000_000
T = 1_700_000_000 // 3600 * H


def test_measurements_of_a_body_with_escapes() -> None:
    body = encode_many(
        [
            Reading("pdu", {"device": "p 1"}, {"power_w": 1.0}, T),
            Reading("kpi", {"site": "s"}, {"pue": 1.3}, T + 1),
            Reading("odd, name", {"device": "x"}, {"v": 1.0}, T + 2),
            Reading("back\\slash", {}, {"v": 1.0}, T + 3),
            Reading("pdu", {"device": "p2"}, {"power_w": 2.0}, T + 4),
        ]
    )
    assert b"odd\\,\\ name" in body  # escaped in the line protocol
    assert latehours.measurements_of(body) == {"pdu", "kpi", "odd, name", "back\\slash"}
    assert latehours.measurements_of(b"") == frozenset()


def test_statements_per_measurement() -> None:
    due: set[latehours.Entry] = {("kpi", T), ("kpi", T + H), ("pdu", T + H), ("kpi", T + 5 * H)}
    due.add(("pdu", T + 5 * H))
    due |= {(ALL, T + 9 * H), ("pdu", T + 9 * H)}  # every measurement: pdu with them
    assert latehours.statements(due) == [
        ("kpi", [T, T + H, T + 5 * H]),
        ("pdu", [T + H, T + 5 * H]),
        (None, [T + 9 * H]),
    ]
    assert latehours.statements(set()) == []


def test_the_file_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "due.json"
    due = {("kpi", T), ("pdu", T), ("pdu", T + H), (ALL, T + 2 * H)}
    latehours.save(path, due)
    assert path.stat().st_mode & 0o777 == 0o600
    assert json.loads(path.read_text()) == {
        "format": 2,
        "all": [T + 2 * H],
        "measurements": {"kpi": [T], "pdu": [T, T + H]},
    }
    assert latehours.load(path) == due
    assert sorted(f.name for f in tmp_path.iterdir()) == ["due.json"]  # no temporary left


def test_a_file_of_the_first_format_is_every_measurement(tmp_path: Path) -> None:
    """The store before per-measurement rollups kept hours only: each stays due for every
    measurement of its hour."""
    path = tmp_path / "due.json"
    path.write_text(json.dumps([T, T + H, "junk"]))
    assert latehours.load(path) == {(ALL, T), (ALL, T + H)}


@pytest.mark.parametrize(
    "text", ["{not json", '{"format": 3, "all": [1]}', '"a string"', '{"all": [1]}']
)
def test_an_unreadable_file_is_ignored_and_said(
    tmp_path: Path, text: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "due.json"
    path.write_text(text)
    assert latehours.load(path) == set()
    assert "ignoring the hours due for rollup in" in caplog.text and str(path) in caplog.text
    assert latehours.load(tmp_path / "absent.json") == set()


def test_fields_of_the_wrong_type_in_a_format_2_file_are_left_out(tmp_path: Path) -> None:
    path = tmp_path / "due.json"
    path.write_text(json.dumps({"format": 2, "all": None, "measurements": {"kpi": 5, "pdu": [T]}}))
    assert latehours.load(path) == {("pdu", T)}
    path.write_text(json.dumps({"format": 2, "all": 7, "measurements": None}))
    assert latehours.load(path) == set()


def test_saves_from_two_threads_leave_a_whole_file(tmp_path: Path) -> None:
    """The forwarder's thread and a reader's flush both save: each write goes to a temporary
    file of its own, renamed over the file, so a reader (or a restart) always finds one whole
    document, never a mix or a missing file."""
    path = tmp_path / "due.json"
    latehours.save(path, {("kpi", T)})
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer(m: str) -> None:
        try:
            for i in range(200):
                latehours.save(path, {(m, T + i * H)})
        except BaseException as exc:  # noqa: BLE001 - collected, asserted below
            errors.append(exc)

    def reader() -> None:
        while not stop.is_set():
            try:
                doc = json.loads(path.read_text())
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
                return
            if doc.get("format") != 2:
                errors.append(AssertionError(doc))

    threads = [threading.Thread(target=writer, args=(m,)) for m in ("kpi", "pdu")]
    r = threading.Thread(target=reader)
    r.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    r.join()
    assert errors == []
    assert sorted(f.name for f in tmp_path.iterdir()) == ["due.json"]
