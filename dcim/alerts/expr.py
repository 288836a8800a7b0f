"""Safe expressions over the fields of one reading (``supply_temp_c - return_temp_c``).

A small grammar, parsed by Python's own parser (:func:`ast.parse` in ``eval`` mode) and then
checked node by node against a whitelist: numbers, field names, ``+ - * /``, unary minus,
parentheses, ``abs()``, ``ln()`` (natural log, for a dew point), ``min()``, ``max()``,
``tag("name")`` (a device tag of the reading read as a number, e.g. a PDU's rated current
from the site file) and ``total("measurement", "field")`` (the sum of the last values of that
field over every device of that measurement: the one way to look beyond the reading, e.g.
the heat the dry coolers reject). Anything else (attributes, subscripts, other strings,
calls of other names, comparisons, lambdas) is refused
at load time with the column it is at. Nothing is ever passed to ``eval``: the checked tree is
turned into nested Python closures once, so a reading costs a few function calls.

Written by hand rather than taken from a library (``simpleeval``, ``asteval``) because those
accept far more than a rule needs (strings, comparisons, attribute access) and every extra
feature is something to keep safe; this grammar is 100 lines and has nothing to escape.

An expression evaluates to a float, or None when a field it names is missing from the
reading, is not a number, or a division is by zero: a rule then sees no value (not 0).
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

Value = float | int | bool | str
Evaluator = Callable[[Mapping[str, Value], Mapping[str, str]], float | None]
# (measurement, field) -> device -> its last value: what total() sums
Latest = dict[tuple[str, str], dict[str, float]]

_BINOPS: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
_FUNCS = {"abs", "ln", "min", "max", "tag", "total"}


class ExprError(ValueError):
    """What is wrong with an expression and where (1-based column)."""


@dataclass(frozen=True)
class Expression:
    text: str
    fields: frozenset[str]  # the field names it reads
    tags: frozenset[str]  # the tags it reads through tag()
    evaluate: Evaluator
    totals: frozenset[tuple[str, str]] = frozenset()  # (measurement, field) of total()


def _num(v: object) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


@dataclass
class _Ctx:
    fields: set[str] = field(default_factory=set)
    tags: set[str] = field(default_factory=set)
    totals: set[tuple[str, str]] = field(default_factory=set)
    latest: Latest = field(default_factory=dict)


def compile_expr(text: str, latest: Latest | None = None) -> Expression:
    """Parse and check ``text``; raise :class:`ExprError` naming the first problem.
    ``latest``: where ``total()`` reads the last values of other devices (kept up to date by
    the evaluator; see :attr:`Expression.totals` for what it must keep)."""
    if not isinstance(text, str) or not text.strip():
        raise ExprError("an expression is required (e.g. 'supply_temp_c - return_temp_c')")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExprError(f"not a valid expression at column {exc.offset}: {exc.msg}") from None
    ctx = _Ctx(latest=latest if latest is not None else {})
    fn = _build(tree.body, ctx)
    return Expression(
        text.strip(), frozenset(ctx.fields), frozenset(ctx.tags), fn, frozenset(ctx.totals)
    )


def _where(node: ast.AST) -> str:
    return f"at column {getattr(node, 'col_offset', 0) + 1}"


def _build(node: ast.expr, ctx: _Ctx) -> Evaluator:
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise ExprError(f"only numbers are allowed as constants {_where(node)}")
        const = float(node.value)
        return lambda f, t: const
    if isinstance(node, ast.Name):
        name = node.id
        ctx.fields.add(name)
        return lambda f, t: _num(f.get(name))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        inner = _build(node.operand, ctx)
        if isinstance(node.op, ast.UAdd):
            return inner

        def neg(f: Mapping[str, Value], t: Mapping[str, str]) -> float | None:
            v = inner(f, t)
            return None if v is None else -v

        return neg
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        op = _BINOPS[type(node.op)]
        left, right = _build(node.left, ctx), _build(node.right, ctx)

        def binop(f: Mapping[str, Value], t: Mapping[str, str]) -> float | None:
            a = left(f, t)
            if a is None:
                return None
            b = right(f, t)
            if b is None:
                return None
            try:
                r = op(a, b)
            except ZeroDivisionError:
                return None
            return r if math.isfinite(r) else None

        return binop
    if isinstance(node, ast.Call):
        return _call(node, ctx)
    what = type(node).__name__
    raise ExprError(
        f"{what} is not allowed {_where(node)}: use numbers, field names, + - * /, "
        "parentheses, abs(), ln(), min(), max(), tag('name') and total('measurement', 'field')"
    )


def _call(node: ast.Call, ctx: _Ctx) -> Evaluator:
    name = node.func.id if isinstance(node.func, ast.Name) else None
    if name not in _FUNCS or node.keywords:
        raise ExprError(
            f"unknown function {_where(node)}: only abs(x), ln(x), min(a, b, ...), max(a, b, ...) "
            "tag('name') and total('measurement', 'field') can be called"
        )
    if name == "total":
        ok = len(node.args) == 2 and all(
            isinstance(a, ast.Constant) and isinstance(a.value, str) for a in node.args
        )
        if not ok:
            raise ExprError(
                "total() takes a quoted measurement and field, e.g. "
                f"total('dry_cooler', 'heat_rejected_w') {_where(node)}"
            )
        pair = (str(node.args[0].value), str(node.args[1].value))  # type: ignore[attr-defined]
        ctx.totals.add(pair)
        latest = ctx.latest

        def total(f: Mapping[str, Value], t: Mapping[str, str]) -> float | None:
            values = latest.get(pair)
            return sum(values.values()) if values else None

        return total
    if name == "tag":
        arg = node.args[0] if len(node.args) == 1 else None
        if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
            raise ExprError(
                f"tag() takes one quoted tag name, e.g. tag('rated_current_a') {_where(node)}"
            )
        key = arg.value
        ctx.tags.add(key)

        def tag(f: Mapping[str, Value], t: Mapping[str, str]) -> float | None:
            try:
                v = float(t[key])
            except (KeyError, ValueError):
                return None
            return v if math.isfinite(v) else None

        return tag
    args = [_build(a, ctx) for a in node.args]
    if name in ("abs", "ln"):
        if len(args) != 1:
            raise ExprError(f"{name}() takes one argument {_where(node)}")
        (inner,) = args
        if name == "ln":

            def lnf(f: Mapping[str, Value], t: Mapping[str, str]) -> float | None:
                v = inner(f, t)
                return None if v is None or v <= 0 else math.log(v)

            return lnf

        def absf(f: Mapping[str, Value], t: Mapping[str, str]) -> float | None:
            v = inner(f, t)
            return None if v is None else abs(v)

        return absf
    if len(args) < 2:
        raise ExprError(f"{name}() takes two arguments or more {_where(node)}")
    pick = min if name == "min" else max

    def minmax(f: Mapping[str, Value], t: Mapping[str, str]) -> float | None:
        vals = [a(f, t) for a in args]
        if any(v is None for v in vals):
            return None
        return pick(v for v in vals if v is not None)

    return minmax
