"""Validation before the spool: only what every sink can store gets committed.

``Pipeline(spool, screen=Screen.of(cfg)).accept(readings)`` first leaves out the values that
cannot be true (:mod:`dcim.plausible`: vendor sentinels, values outside their field's physical
range, counted per device and reason), then keeps good readings, drops bad values (a bad field
is removed from its reading; a reading with a bad name, tag or time, or with no field left, is
dropped whole), counts what it dropped in ``rejected`` and logs each kind of problem at
most once a minute per device and field. It never raises for bad data. A spool at its disk
budget (:class:`SpoolFullError`, ``on_full="refuse_new"``) refuses the readings: they are
counted in ``refused_full`` and logged at most once a minute, and the collector goes on. Other
spool errors (disk full) do propagate, since losing data silently would be worse.

Field types are kept stable, so that InfluxDB never answers "field type conflict" (which
would send a whole batch to the quarantine): the first type a (measurement, field) is seen
with is its type for the process. Later an integer for a float field becomes a float
(lossless), a whole float for an integer field becomes an integer; anything else (3.5 for an
integer field, text for a number) is refused with that reason.

A spool that takes line protocol (:class:`dcim.spool.Spool`; the write-through to the embedded
store, :class:`dcim.spool_through.WriteThrough`, while its spool has a backlog: ``takes_lines``
is asked at each call) is given the good readings with their lines, encoded here while they
are checked: a reading whose measurement, tags and field
names were seen good before, with values of its fields' established types, is checked and
encoded in one step by a function made for its shape (what is left to check are the values:
finite floats, int64 integers, strings without a newline), whose line is exactly what
:func:`dcim.storage.lineprotocol.encode` writes. Anything else goes through the full checks
and the general encoder.
"""

from __future__ import annotations

import logging
import math
import numbers
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol, cast

from dcim.plausible import Screen
from dcim.reading import FieldValue, Reading
from dcim.spool import SpoolFullError
from dcim.storage.lineprotocol import STRING_ESCAPES, encode, field_key, series

log = logging.getLogger(__name__)

NAME = re.compile(r"^[a-z][a-z0-9_]*$")  # measurement and field names (glossary)
TAG_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_BAD_TEXT = re.compile(r'[\x00-\x1f\x7f]|\\($|[\\,= "])')  # see lineprotocol
MAX_STRING = 64 * 1024
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
LOG_EVERY_S = 60.0
MAX_REMEMBERED = 100_000  # names and tag pairs known good, per pipeline


class _Sink(Protocol):
    def append(self, readings: list[Reading]) -> None: ...


class _LineSink(Protocol):
    """A sink that takes the readings' line protocol too (``takes_lines`` true)."""

    takes_lines: bool

    def append(self, readings: list[Reading], lines: list[str] | None = None) -> None: ...


# A reading's shape: (measurement, number of tags, tag keys..., tag values..., field names...),
# one flat tuple (the cheapest key to build). For one seen good, with its fields' types
# established: the function of its value types that checks the time and values, bound to the
# line's format (``%`` template: the series, ``name=`` and a slot per value, the time).
_ShapeKey = tuple[object, ...]
_LineFn = Callable[..., str | None]  # (fmt or None, time_ns, *values) -> line, "" or None
_Shape = Callable[..., str | None]  # (time_ns, *values) -> line ("" not encoding) or None


class Pipeline:
    def __init__(
        self, spool: _Sink, *, log_every_s: float = LOG_EVERY_S, screen: Screen | None = None
    ):
        self.spool = spool
        self.screen = screen  # values that cannot be true, refused first (dcim.plausible)
        self.accepted = 0  # readings committed
        self.rejected = 0  # values dropped (a dropped reading counts its fields)
        self.reasons: Counter[str] = Counter()
        self.refused_full = 0  # good readings the spool refused: over its disk budget
        self._log_every_s = log_every_s
        self._last_full_log = (-math.inf, 0)  # (when, readings refused since)
        self._last_log: dict[tuple[str, str, str], tuple[float, int]] = {}
        self._lock = threading.Lock()
        self._types: dict[tuple[str, str], type] = {}  # (measurement, field) -> first type
        self._good_names: set[str] = set()  # measurement names that passed the checks
        self._good_tags: set[tuple[str, str]] = set()  # tag (key, value) pairs that passed
        self._shapes: dict[_ShapeKey, _Shape] = {}  # shapes that passed: their lines
        self._checks: dict[_ShapeKey, _Shape] = {}  # the same shapes: their checks only
        # a sink that may take the lines (asked at each accept: the write-through to the
        # embedded store wants them only while its spool has a backlog, dcim.spool_through)
        self._lines_sink = hasattr(spool, "takes_lines")

    def accept(
        self, readings: list[Reading], *, hold: bool = False, kept: list[Reading] | None = None
    ) -> int:
        """Validate, commit the good readings to the spool; returns how many were kept.
        ``hold``: the caller keeps readings the spool has no room for and offers them again
        (an MQTT QoS 1 message left unacknowledged at the broker): a full spool raises
        :class:`SpoolFullError` instead of counting them refused. ``kept``: the readings
        committed (as committed) are appended to it."""
        if self.screen is not None:
            readings = self.screen(readings)
        good: list[Reading] = []
        encoding = self._lines_sink and bool(cast(_LineSink, self.spool).takes_lines)
        lines: list[str] | None = [] if encoding else None
        shapes = self._shapes if encoding else self._checks
        for r in readings:
            # A shape seen good: the time and the values' types and ranges are all there is
            # to check.
            try:
                tags, fields = r.tags, r.fields
                shape = shapes.get((r.measurement, len(tags), *tags, *tags.values(), *fields))
            except (AttributeError, TypeError):  # not a dict, unhashable: the full checks
                shape = None
            if shape is not None and type(tags) is dict and type(fields) is dict:
                line = shape(r.time_ns, *fields.values())
                if line is not None:
                    good.append(r)
                    if lines is not None:
                        lines.append(line)
                    continue
            clean = self._clean(r)
            if clean is None:
                continue
            good.append(clean)
            line = self._learn(r, encoding) if clean is r else None
            if lines is not None:
                try:
                    lines.append(line or encode(clean))
                except ValueError:  # not expected of a reading that passed: the spool's
                    lines = None  # own encoder keeps it as JSON, the sink says why
        if good:
            try:
                if lines is not None:
                    cast(_LineSink, self.spool).append(good, lines)
                else:
                    self.spool.append(good)
            except SpoolFullError as exc:
                if hold:
                    raise
                self._refused(len(good), exc)
                return 0
        if kept is not None:
            kept.extend(good)
        with self._lock:
            self.accepted += len(good)
        return len(good)

    # -- checks ------------------------------------------------------------------------
    def _clean(self, r: Reading) -> Reading | None:
        # Names and tag pairs seen good before are looked up, not checked again: the same
        # few hundred recur every cycle. A field whose (measurement, name) has a type
        # established is known to have a good name; a value of that very type only needs
        # its range checked. Anything else goes through the full checks below.
        meas = getattr(r, "measurement", None)
        if not (type(meas) is str and meas in self._good_names):
            if not isinstance(meas, str) or not NAME.match(meas):
                self._drop(r, "", f"measurement {meas!r} is not a canonical name")
                return None
            if type(meas) is str:
                _remember(self._good_names, meas)
        tags = r.tags
        if not isinstance(tags, dict):
            self._drop(r, "", "tags are not a mapping")
            return None
        good_tags = self._good_tags
        for k, v in tags.items():
            if type(v) is str and (k, v) in good_tags:
                continue
            if not isinstance(k, str) or not TAG_KEY.match(k):
                self._drop(r, "", f"tag key {k!r} is not a valid name")
                return None
            if not isinstance(v, str) or not v or _BAD_TEXT.search(v):
                self._drop(r, "", f"tag {k}={v!r} is not a non-empty printable string")
                return None
            if type(k) is str and type(v) is str:
                _remember(good_tags, (k, v))
        t = r.time_ns
        if not (type(t) is int and 0 < t < INT64_MAX) and (
            isinstance(t, bool) or not isinstance(t, numbers.Integral) or not 0 < t < INT64_MAX
        ):
            self._drop(r, "", f"time_ns {t!r} is not a positive int64 of nanoseconds")
            return None
        if not isinstance(r.fields, dict) or not r.fields:
            self._drop(r, "", "reading has no fields")
            return None
        types = self._types
        fields: dict[str, FieldValue] = {}
        same = True
        for name, value in r.fields.items():
            kind = type(value)
            if types.get((meas, name)) is kind and (
                (kind is float and math.isfinite(value))  # type: ignore[arg-type]
                or (kind is int and INT64_MIN <= value <= INT64_MAX)  # type: ignore[operator]
                or (
                    kind is str
                    and "\n" not in value  # type: ignore[operator]
                    and "\r" not in value  # type: ignore[operator]
                    and len(value) <= MAX_STRING  # type: ignore[arg-type]
                )
            ):
                fields[name] = value
                continue
            if not isinstance(name, str) or not NAME.match(name):
                self._reject(r, str(name), "field name is not a canonical name", 1)
                continue
            ok, why = _value(value)
            if not why:
                ok, why = self._stable(meas, name, ok)
            if why:
                self._reject(r, name, why, 1)
                continue
            fields[name] = ok  # type: ignore[assignment,unused-ignore]
            same = same and ok is value
        if not fields:
            return None
        if same and len(fields) == len(r.fields) and type(t) is int:
            return r
        return Reading(meas, dict(tags), fields, int(t))

    def _learn(self, r: Reading, encoding: bool) -> str | None:
        """Remember the shape of ``r``, which passed the full checks as it is (names and
        tags good, values of their fields' established types); its line when ``encoding``,
        None when its values do not take the quick way (a float sum that overflows)."""
        key = (r.measurement, len(r.tags), *r.tags, *r.tags.values(), *r.fields)
        if not all(type(x) is str for x in key[:1] + key[2:]):
            return None  # str subclasses: not worth a shape
        types = tuple(type(v) for v in r.fields.values())
        if not all(k in _FORMATS for k in types):
            return None
        try:
            fmt = _line_format(r, types)
        except ValueError:
            return None
        fn = _line_fn(types)
        if len(self._shapes) >= MAX_REMEMBERED:
            self._shapes.clear()
            self._checks.clear()
        self._shapes[key] = shape = partial(fn, fmt)
        self._checks[key] = check = partial(fn, None)
        return (shape if encoding else check)(r.time_ns, *r.fields.values())

    def _stable(self, measurement: str, field: str, v: object) -> tuple[object, str]:
        """(value in the field's established type, "") or (None, why it cannot be)."""
        key = (measurement, field)
        want = self._types.get(key)
        if want is None:
            with self._lock:
                want = self._types.setdefault(key, type(v))
        if type(v) is want:
            return v, ""
        if want is float and type(v) is int:
            return float(v), ""
        if want is int and type(v) is float and v.is_integer():
            if INT64_MIN <= v < 2.0**63:
                return int(v), ""
            return None, f"float value {v!r} for a field stored as int is outside int64"
        return None, f"{type(v).__name__} value {v!r} for a field stored as {want.__name__}"

    def _refused(self, n: int, exc: SpoolFullError) -> None:
        now = time.monotonic()
        with self._lock:
            self.refused_full += n
            last, suppressed = self._last_full_log
            if now - last < self._log_every_s:
                self._last_full_log = (last, suppressed + n)
                return
            self._last_full_log = (now, 0)
        more = f" ({suppressed} more refused since the last message)" if suppressed else ""
        log.error("%s%s", exc, more)

    def _drop(self, r: Reading, field: str, why: str) -> None:
        n = len(r.fields) if isinstance(getattr(r, "fields", None), dict) else 1
        self._reject(r, field, why, max(1, n))

    def _reject(self, r: Reading, field: str, why: str, n: int) -> None:
        tags = r.tags if isinstance(getattr(r, "tags", None), dict) else {}
        device = str(tags.get("device", "?"))
        key = (str(getattr(r, "measurement", "?")), device, field)
        now = time.monotonic()
        with self._lock:
            self.rejected += n
            self.reasons[why if field == "" else f"field: {why}"] += n
            last, suppressed = self._last_log.get(key, (-math.inf, 0))
            if now - last < self._log_every_s:
                self._last_log[key] = (last, suppressed + n)
                return
            if len(self._last_log) > 10_000:  # bounded: a flood of distinct keys
                self._last_log.clear()
            self._last_log[key] = (now, 0)
        more = f" ({suppressed} more since the last message)" if suppressed else ""
        where = f"{key[0]} device {device}" + (f" field {field}" if field else "")
        log.warning("dropped bad data from %s: %s%s", where, why, more)


def _remember(known: set[Any], item: Any) -> None:
    """Adds ``item`` to a set of things that passed the checks, bounded: a flood of distinct
    tag values empties it rather than growing it without end."""
    if len(known) >= MAX_REMEMBERED:
        known.clear()
    known.add(item)


def _value(v: object) -> tuple[object, str]:
    """(normalised value, "") or (None, why it is refused)."""
    kind = type(v)  # the usual types first: the ABC checks below cost a microsecond each
    if kind is float and math.isfinite(v):  # type: ignore[arg-type]
        return v, ""
    if kind is int and INT64_MIN <= v <= INT64_MAX:  # type: ignore[operator]
        return v, ""
    if isinstance(v, bool):
        return v, ""
    if isinstance(v, numbers.Integral):  # also numpy integers
        i = int(v)
        if INT64_MIN <= i <= INT64_MAX:
            return i, ""
        return None, f"integer {i} is outside int64"
    if isinstance(v, numbers.Real):  # float, numpy floats
        f = float(v)
        if math.isfinite(f):
            return f, ""
        return None, f"value {f} is not a finite number"
    if isinstance(v, str):
        if "\n" in v or "\r" in v:
            return None, "string value contains a newline"
        if len(v) > MAX_STRING:
            return None, f"string value is longer than {MAX_STRING} characters"
        return v, ""
    return None, f"unsupported value type {type(v).__name__}"


# -- a reading's line in one step, by the types of its values ------------------------------
_FORMATS = {float: "%r", int: "%di", str: '"%s"', bool: "%s"}
_LINE_FNS: dict[tuple[type, ...], _LineFn] = {}


def _line_format(r: Reading, types: tuple[type, ...]) -> str:
    """The ``%`` template of the line of ``r`` (the series and field keys as ``encode`` writes
    them; literal ``%`` doubled)."""
    keys = ",".join(
        field_key(name, r).replace("%", "%%") + _FORMATS[kind]
        for name, kind in zip(r.fields, types, strict=True)
    )
    return f"{series(r).replace('%', '%%')} {keys} %d"


def _line_fn(types: tuple[type, ...]) -> _LineFn:
    """``fn(fmt, time_ns, *values)``: the line (``""`` when ``fmt`` is None), or None when the
    time is not a positive int64, a value not of its type or out of its range (then the full
    checks say what is wrong).
    Made once per tuple of types: a float is finite when the floats' sum is (an overflowing
    sum sends the reading the long way), an int within int64, a string without a newline
    and not longer than MAX_STRING, its quotes and backslashes escaped."""
    fn = _LINE_FNS.get(types)
    if fn is not None:
        return fn
    args = [f"v{i}" for i in range(len(types))]
    checks = [f"type(t) is not int or not 0 < t < {INT64_MAX}"]
    checks += [f"type({a}) is not {k.__name__}" for a, k in zip(args, types, strict=True)]
    floats = [a for a, k in zip(args, types, strict=True) if k is float]
    ints = [a for a, k in zip(args, types, strict=True) if k is int]
    strs = [a for a, k in zip(args, types, strict=True) if k is str]
    if floats:
        checks.append(f"not isfinite({' + '.join(floats)})")
    checks += [f"not {INT64_MIN} <= {a} <= {INT64_MAX}" for a in ints]
    checks += [f"'\\n' in {a} or '\\r' in {a} or len({a}) > {MAX_STRING}" for a in strs]
    body = [f"def line(fmt, t, {', '.join(args)}):"]
    body.append(f"    if {' or '.join(checks)}:")
    body.append("        return None")
    body.append("    if fmt is None:")
    body.append("        return ''")
    for a in strs:
        body.append(f"    if '\"' in {a} or '\\\\' in {a}:")
        body.append(f"        {a} = {a}.translate(ESCAPES)")
    values = [
        f"('true' if {a} else 'false')" if k is bool else a
        for a, k in zip(args, types, strict=True)
    ]
    body.append(f"    return fmt % ({', '.join(values)}, t)")
    scope: dict[str, Any] = {"isfinite": math.isfinite, "ESCAPES": STRING_ESCAPES}
    exec("\n".join(body), scope)  # source made of type names and numbers only
    fn = cast(_LineFn, scope["line"])
    if len(_LINE_FNS) >= 1000:
        _LINE_FNS.clear()
    _LINE_FNS[types] = fn
    return fn
