"""The live evaluator with a fake clock (times in the readings and tick arguments)."""

from __future__ import annotations

from typing import Any

from dcim.alerts.evaluator import FIRING, PENDING, RESOLVED, Evaluator, Transition
from dcim.alerts.rules import Rule
from dcim.reading import Reading

NS = 1_000_000_000
ANN = {"summary": "s {value}", "description": "d", "runbook": "r"}


def rule(**kw: Any) -> Rule:
    base: dict[str, Any] = {
        "name": "R",
        "kind": "threshold",
        "severity": "warning",
        "select": {"measurement": "m"},
        "annotations": ANN,
    }
    base.update(kw)
    return Rule.model_validate(base)


def rd(t: float, dev: str = "d1", m: str = "m", **fields: Any) -> Reading:
    return Reading(m, {"site": "s", "device": dev}, fields, int(t * NS))


def states(out: list[Transition]) -> list[str]:
    return [t.new for t in out]


def feed(ev: Evaluator, series: list[tuple[float, float]], name: str = "v") -> list[str]:
    got: list[str] = []
    for t, v in series:
        got += states(ev.observe([rd(t, **{name: v})]))
    return got


def test_hysteresis_one_alert_for_a_hovering_value() -> None:
    ev = Evaluator([rule(field="v", above=27, clear=26)])
    # hovers around 27 for a while: fires once, resolves only below 26
    got = feed(ev, [(0, 25), (10, 27.5), (20, 26.8), (30, 27.2), (40, 26.5), (50, 25.9)])
    assert got == [PENDING, FIRING, RESOLVED]
    inst = next(iter(ev.instances.values()))
    assert inst.fired_ns == 10 * NS and inst.resolved_ns == 50 * NS
    assert inst.labels == {"site": "s", "device": "d1", "alertname": "R", "severity": "warning"}


def test_for_duration_and_a_short_excursion_is_silent() -> None:
    ev = Evaluator([rule(field="v", above=27, for_s=30)])
    assert feed(ev, [(0, 28), (10, 28), (20, 20)]) == [PENDING, "inactive"]
    assert feed(ev, [(100, 28), (120, 28)]) == [PENDING]
    assert feed(ev, [(130, 28)]) == [FIRING]  # 30 s after it became true
    assert next(iter(ev.instances.values())).fired_ns == 130 * NS


def test_for_duration_completes_on_tick_without_a_new_reading() -> None:
    ev = Evaluator([rule(field="v", above=27, for_s=30)])
    assert feed(ev, [(0, 28)]) == [PENDING]
    assert states(ev.tick(29 * NS)) == []
    assert states(ev.tick(30 * NS)) == [FIRING]


def test_min_hold_damps_a_flapping_value() -> None:
    ev = Evaluator([rule(field="v", below=10, clear=12, min_hold_s=300)])
    assert feed(ev, [(0, 5), (60, 15)]) == [PENDING, FIRING]  # recovered, but held
    assert states(ev.tick(200 * NS)) == []
    assert states(ev.tick(300 * NS)) == [RESOLVED]


def test_rate_of_change() -> None:
    ev = Evaluator([rule(kind="rate", field="v", per_s=60, above=2, clear=1)])
    # +1 degC a minute, then +3 a minute, then flat
    series = [(t, 20 + t / 60) for t in range(0, 120, 10)]
    series += [(120 + t, 22 + 3 * t / 60) for t in range(10, 130, 10)]
    series += [(250 + t, 28.0) for t in range(0, 130, 10)]
    got = feed(ev, series)
    assert got == [PENDING, FIRING, RESOLVED]


def test_stale_device_and_back() -> None:
    ev = Evaluator([rule(kind="stale", after_s=60, field=None)])
    feed(ev, [(0, 1), (10, 1)])
    assert states(ev.tick(69 * NS)) == []
    out = ev.tick(70 * NS)
    assert states(out) == [FIRING] and out[0].instance.value == 60.0
    assert states(ev.tick(80 * NS)) == []  # no re-fire
    assert feed(ev, [(90, 1)]) == [RESOLVED]


def test_stale_field_missing_while_the_device_still_reports() -> None:
    ev = Evaluator([rule(kind="stale", after_s=60, field="v")])
    feed(ev, [(40, 1)])
    ev.observe([rd(50, w=1.0), rd(100, w=1.0)])
    assert states(ev.tick(100 * NS)) == [FIRING]


def test_frozen_sensor() -> None:
    ev = Evaluator([rule(kind="stale", after_s=60, field="v", unchanged=True)])
    feed(ev, [(t, 21.5) for t in range(5, 100, 10)])
    assert states(ev.tick(100 * NS)) == [FIRING]
    assert feed(ev, [(110, 21.6)]) == [RESOLVED]


def test_counter_reset_and_impossible_step_then_hold() -> None:
    ev = Evaluator([rule(kind="counter", field="e_total", max_per_s=10, hold_s=600)])
    assert feed(ev, [(0, 1000), (10, 1050), (20, 1100)], "e_total") == []
    got = ev.observe([rd(30, e_total=5.0)])  # register reset
    assert states(got) == [FIRING] and "went backwards" in got[0].instance.detail
    assert feed(ev, [(40, 50)], "e_total") == []
    assert states(ev.tick(629 * NS)) == []
    assert states(ev.tick(630 * NS)) == [RESOLVED]
    got = ev.observe([rd(700, e_total=100_000.0)])  # 99,950 in 660 s: > 10/s
    assert states(got) == [FIRING] and "stepped" in got[0].instance.detail


def test_selectors_and_expressions() -> None:
    r = rule(
        field=None,
        expr="a - b",
        above=5,
        select={"measurement": "m", "device": ["hx-*"], "role": ["heat"], "tags": {"loop": "1"}},
    )
    ev = Evaluator([r], device_tags={"hx-1": {"role": "heat", "room": "plant"}})
    hit = Reading("m", {"device": "hx-1", "loop": "1"}, {"a": 20.0, "b": 10.0}, 0)
    other_loop = Reading("m", {"device": "hx-1", "loop": "2"}, {"a": 20.0, "b": 10.0}, 0)
    other_dev = Reading("m", {"device": "crah-1", "loop": "1"}, {"a": 20.0, "b": 10.0}, 0)
    no_role = Reading("m", {"device": "hx-2", "loop": "1"}, {"a": 20.0, "b": 10.0}, 0)
    out = ev.observe([other_loop, other_dev, no_role, hit])
    assert states(out) == [PENDING, FIRING]
    assert out[0].instance.labels["room"] == "plant"  # from the site file
    assert out[0].instance.value == 10.0


def test_series_are_separate_and_a_missing_field_is_no_value() -> None:
    ev = Evaluator([rule(field="v", above=1)])
    out = ev.observe([rd(0, "a", v=2.0), rd(0, "b", v=0.0), rd(0, "c", w=5.0), rd(0, "d", v="x")])
    assert [t.instance.labels["device"] for t in out if t.new == FIRING] == ["a"]
    assert {t.instance.labels["device"] for t in out} == {"a"}


def test_total_leaves_out_a_silent_device() -> None:
    """CPCU export against the heat all dry coolers reject: dc-2 goes silent; once it has
    not been heard from for total_max_age_s its last value no longer counts in total()."""
    r = rule(
        select={"measurement": "hm"},
        expr="heat_power_w / max(total('dc', 'heat_rejected_w'), 1)",
        below=0.5,
    )
    ev = Evaluator([r], total_max_age_s=300)
    ev.observe([rd(0, "dc-1", "dc", heat_rejected_w=100.0)])
    ev.observe([rd(0, "dc-2", "dc", heat_rejected_w=900.0)])
    # 300 / 1000 of the rejected heat: below 0.5
    assert states(ev.observe([rd(10, "hm-1", "hm", heat_power_w=300.0)]))[-1] == FIRING
    for t in range(60, 420, 60):  # dc-1 goes on reporting, dc-2 is silent
        ev.observe([rd(t, "dc-1", "dc", heat_rejected_w=100.0)])
        ev.tick(t * NS)
    assert ev.latest[("dc", "heat_rejected_w")] == {"dc-1": 100.0}
    # 300 / 100: the silent cooler's 900 W no longer holds the ratio down
    assert states(ev.observe([rd(420, "hm-1", "hm", heat_power_w=300.0)])) == [RESOLVED]
    # it answers again: counted again
    ev.observe([rd(430, "dc-2", "dc", heat_rejected_w=900.0)])
    assert states(ev.observe([rd(440, "hm-1", "hm", heat_power_w=300.0)]))[-1] == FIRING
