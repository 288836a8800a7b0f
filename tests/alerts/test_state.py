"""Durable alert state: a collector process killed -9 while an alert fires, restarted: the
alert is still firing (same start), not fired twice, and its resolve is not lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dcim.alerts.engine import AlertEngine
from dcim.alerts.evaluator import FIRING
from dcim.alerts.rules import AlertsSettings, Rule
from dcim.alerts.state import AlertState
from dcim.reading import Reading

NS = 1_000_000_000
RULES = [
    {
        "name": "Hot",
        "kind": "threshold",
        "severity": "critical",
        "select": {"measurement": "m"},
        "field": "v",
        "above": 27,
        "clear": 26,
        "unit": "degC",
        "annotations": {
            "summary": "{device} at {value:.1f} {unit}",
            "description": "d",
            "runbook": "r",
        },
    },
    {
        "name": "Gone",
        "kind": "stale",
        "severity": "warning",
        "select": {"measurement": "m"},
        "after_s": 30,
        "annotations": {"summary": "s", "description": "d", "runbook": "r"},
    },
]

CHILD = """
import json, sys, time
from pathlib import Path
from dcim.alerts.engine import AlertEngine
from dcim.alerts.rules import AlertsSettings, Rule
from dcim.reading import Reading
rules = [Rule.model_validate(r) for r in json.loads(sys.argv[2])]
eng = AlertEngine(rules, AlertsSettings(), state_path=Path(sys.argv[1]))
t0 = int(sys.argv[3])
for i in range(3):
    eng.observe([Reading("m", {"device": "d1"}, {"v": 30.0 + i}, t0 + i * 10**9)])
eng.observe([Reading("m", {"device": "d2"}, {"v": 20.0}, t0)])
eng.tick(t0 + 3 * 10**9)  # what the engine's thread does every second
print("FIRED", flush=True)
time.sleep(60)
"""


def engine(path: Path) -> AlertEngine:
    return AlertEngine([Rule.model_validate(r) for r in RULES], AlertsSettings(), state_path=path)


def test_killed_while_firing_neither_loses_nor_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "alerts.sqlite"
    t0 = time.time_ns() - 100 * NS
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), json.dumps(RULES), str(t0)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "FIRED"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    assert child.returncode == -signal.SIGKILL

    eng = engine(path)
    try:
        firing = eng.firing()
        assert [(i.rule, i.labels["device"], i.fired_ns) for i in firing] == [("Hot", "d1", t0)]
        # still hot after the restart: no second firing (no re-notification burst)
        hist = eng.state.history()
        eng.observe([Reading("m", {"device": "d1"}, {"v": 31.0}, t0 + 5 * NS)])
        assert eng.state.history() == hist
        # the stale rule knew d2 before the kill: it goes on counting from then
        eng.tick(t0 + 31 * NS)
        assert {i.rule for i in eng.firing()} == {"Hot", "Gone"}
        # cooled down: the resolve is recorded, with the annotations of the moment
        eng.observe([Reading("m", {"device": "d1"}, {"v": 25.0}, t0 + 40 * NS)])
        assert {i.rule for i in eng.firing()} == {"Gone"}
        last = eng.state.history()
        assert [(h["rule"], h["state"]) for h in last[:3]] == [
            ("Hot", "resolved"),
            ("Gone", "firing"),
            ("Hot", "firing"),
        ]
        assert last[0]["annotations"]["summary"] == "d1 at 25.0 degC"
        assert last[2]["at_ns"] == t0
    finally:
        eng.stop()


def test_a_resolve_undelivered_at_a_crash_is_still_due(tmp_path: Path) -> None:
    path = tmp_path / "alerts.sqlite"
    eng = engine(path)
    eng.observe([Reading("m", {"device": "d1"}, {"v": 30.0}, 10 * NS)])
    st = eng.state
    due = st.due("am", 11 * NS, None)
    assert [d.state for d in due] == [FIRING]
    st.delivered("am", due, 11 * NS, receivers=1)
    assert st.due("am", 12 * NS, None) == []
    assert [d.state for d in st.due("am", 12 * NS + 60 * NS, 60 * NS)] == [FIRING]  # re-send
    eng.observe([Reading("m", {"device": "d1"}, {"v": 20.0}, 20 * NS)])
    eng.state.close()  # as a crash would leave it: resolved, not delivered

    st2 = AlertState(path)
    try:
        due = st2.due("am", 30 * NS, 60 * NS)
        assert [(d.state, d.resolved_ns) for d in due] == [("resolved", 20 * NS)]
        st2.delivered("am", due, 30 * NS, receivers=1)
        assert st2.due("am", 31 * NS, 60 * NS) == []  # done with
        assert st2.current() == []
    finally:
        st2.close()


def test_a_removed_rule_resolves_its_firing_alert(tmp_path: Path) -> None:
    path = tmp_path / "alerts.sqlite"
    eng = engine(path)
    eng.observe([Reading("m", {"device": "d1"}, {"v": 30.0}, 10 * NS)])
    eng.stop()
    gone = AlertEngine(
        [Rule.model_validate(RULES[1])], AlertsSettings(), state_path=path
    )  # "Hot" no longer configured
    try:
        due = gone.state.due("am", time.time_ns(), None)
        assert [(d.labels["alertname"], d.state) for d in due] == [("Hot", "resolved")]
        assert gone.firing() == []
    finally:
        gone.stop()


def test_a_removed_device_resolves_and_is_forgotten(tmp_path: Path) -> None:
    path = tmp_path / "alerts.sqlite"
    rules = [Rule.model_validate(r) for r in RULES]
    eng = AlertEngine(rules, AlertsSettings(), state_path=path, device_tags={"d1": {}, "d2": {}})
    eng.observe([Reading("m", {"device": "d1"}, {"v": 30.0}, 10 * NS)])
    eng.observe([Reading("m", {"device": "d2"}, {"v": 20.0}, 10 * NS)])
    eng.tick(11 * NS)
    eng.stop()
    eng = AlertEngine(rules, AlertsSettings(), state_path=path, device_tags={"d2": {}})
    try:
        assert eng.firing() == []
        due = eng.state.due("am", time.time_ns(), None)
        assert [(d.labels["device"], d.state) for d in due] == [("d1", "resolved")]
        eng.tick(100 * NS)  # d2 went quiet: still known, so its stale alert fires
        assert [i.rule for i in eng.firing()] == ["Gone"]
    finally:
        eng.stop()
