from __future__ import annotations

import pytest

from dcim.alerts.expr import ExprError, compile_expr


def test_arithmetic_over_fields_and_tags() -> None:
    e = compile_expr("(supply_temp_c - return_temp_c) * 2 / max(flow, 1)")
    assert e.fields == {"supply_temp_c", "return_temp_c", "flow"}
    assert e.evaluate({"supply_temp_c": 40.0, "return_temp_c": 30, "flow": 0.5}, {}) == 20.0
    share = compile_expr("current_a / tag('rated_current_a')")
    assert share.evaluate({"current_a": 24.0}, {"rated_current_a": "32"}) == 0.75
    assert share.evaluate({"current_a": 24.0}, {}) is None  # no rating: no value, not 0
    assert compile_expr("-abs(x) + ln(y)").evaluate({"x": -2, "y": 1.0}, {}) == -2.0


def test_missing_text_or_zero_division_gives_no_value() -> None:
    e = compile_expr("a / b")
    assert e.evaluate({"a": 1.0, "b": 0.0}, {}) is None
    assert e.evaluate({"a": 1.0}, {}) is None
    assert e.evaluate({"a": "x", "b": 1.0}, {}) is None
    assert e.evaluate({"a": True, "b": 1.0}, {}) is None
    assert compile_expr("ln(a)").evaluate({"a": 0.0}, {}) is None


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("__import__('os').system('x')", "unknown function"),
        ("a.__class__", "Attribute is not allowed at column 1"),
        ("a[0]", "Subscript is not allowed"),
        ("a > 3", "Compare is not allowed"),
        ("'text'", "only numbers"),
        ("a +", "not a valid expression"),
        ("lambda: 1", "Lambda is not allowed"),
        ("a ** 2", "BinOp is not allowed"),
        ("min(a)", "two arguments or more"),
        ("tag(a)", "one quoted tag name"),
        ("", "an expression is required"),
    ],
)
def test_refused(text: str, words: str) -> None:
    with pytest.raises(ExprError, match=words.replace("(", r"\(")):
        compile_expr(text)


def test_total_sums_the_last_values_it_is_given() -> None:
    latest: dict[tuple[str, str], dict[str, float]] = {}
    e = compile_expr("heat_power_w / max(total('dry_cooler', 'heat_rejected_w'), 1)", latest)
    assert e.totals == {("dry_cooler", "heat_rejected_w")}
    assert e.evaluate({"heat_power_w": 100.0}, {}) is None  # nothing known yet: no value
    latest[("dry_cooler", "heat_rejected_w")] = {"dc-1": 3000.0, "dc-2": 2000.0}
    assert e.evaluate({"heat_power_w": 100.0}, {}) == 0.02
    with pytest.raises(ExprError, match="quoted measurement and field"):
        compile_expr("total(dry_cooler)")
