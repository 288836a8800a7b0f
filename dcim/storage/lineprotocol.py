"""Reading -> InfluxDB line protocol (1.x and later), with the escaping the 1.x parser undoes.

- measurement: ``,`` and space escaped; may not start with ``#`` (a comment line);
- tag keys, tag values, field keys: ``,``, ``=`` and space escaped; tags with an empty
  value are left out (InfluxDB has no empty tag values: absent and empty are the same);
- string field values: in double quotes, ``"`` and ``\\`` escaped;
- integers ``123i``, booleans ``true``/``false``, floats always with a decimal point or
  exponent (``1.0``, never ``1``) so a field's type never flips; NaN and infinities raise;
- timestamps in nanoseconds (write with ``precision=ns``).

What the 1.x parser cannot carry raises ``ValueError`` naming measurement, device and field:
newlines and other control characters anywhere (a newline ends a point), and in names and
tag values a backslash that is last or followed by a character the parser treats as an
escape (``\\ , = "`` or space), since 1.x has no escape for the backslash itself there.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from dcim.reading import Reading

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

_MEAS = str.maketrans({",": r"\,", " ": r"\ "})
_TAG = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
STRING_ESCAPES = _STR = str.maketrans({"\\": "\\\\", '"': '\\"'})
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_BAD_BACKSLASH = re.compile(r'\\($|[\\,= "])')
_STR_CONTROL = re.compile(r"[\n\r]")


def _where(r: Reading, field: str | None = None) -> str:
    where = f"measurement {r.measurement!r}, device {r.tags.get('device', '?')!r}"
    return f"{where}, field {field!r}" if field is not None else where


def _check_name(text: str, what: str, r: Reading, field: str | None = None) -> None:
    if not isinstance(text, str) or not text:
        raise ValueError(f"{what} must be a non-empty string, got {text!r} ({_where(r, field)})")
    if _CONTROL.search(text):
        raise ValueError(f"{what} {text!r} contains a control character ({_where(r, field)})")
    if _BAD_BACKSLASH.search(text):
        raise ValueError(
            f"{what} {text!r}: a backslash before '\\', ',', '=', '\"', space or at the end "
            f"cannot be written in line protocol ({_where(r, field)})"
        )


def format_value(value: object, r: Reading, field: str) -> str:
    """One field value in line protocol syntax."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise ValueError(f"integer {value} is outside int64 ({_where(r, field)})")
        return f"{value}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"value {value} is not a finite number ({_where(r, field)})")
        return repr(value)  # shortest round-trip form, always with '.' or 'e'
    if isinstance(value, str):
        if _STR_CONTROL.search(value):
            raise ValueError(
                f"string value {value!r} contains a newline, which InfluxDB 1.x line "
                f"protocol cannot carry ({_where(r, field)})"
            )
        return '"' + value.translate(_STR) + '"'
    raise ValueError(f"unsupported value type {type(value).__name__} ({_where(r, field)})")


def series(r: Reading) -> str:
    """``measurement,tag=value,...`` escaped, tags sorted, empty ones left out; checked."""
    _check_name(r.measurement, "measurement", r)
    if r.measurement.startswith("#"):
        raise ValueError(f"measurement {r.measurement!r} may not start with '#' ({_where(r)})")
    parts = [r.measurement.translate(_MEAS)]
    for key in sorted(r.tags):  # sorted tags: what InfluxDB recommends, and deterministic
        val = r.tags[key]
        if val == "":
            continue
        _check_name(key, "tag key", r)
        _check_name(val, f"value of tag {key!r}", r)
        parts.append(f"{key.translate(_TAG)}={val.translate(_TAG)}")
    return ",".join(parts)


# Checked and escaped names, so a series or field seen before costs a dictionary look-up, not
# escaping and two regular expressions per name (the spool encodes every reading it takes).
# Bounded: emptied when full (a site has a few thousand series; the memory stays small).
_CACHE_MAX = 20_000
_SERIES: dict[tuple[object, tuple[tuple[object, object], ...]], str] = {}
_FIELD_KEYS: dict[str, str] = {}


def field_key(name: str, r: Reading) -> str:
    """``name=`` escaped and checked, cached."""
    key = _FIELD_KEYS.get(name)
    if key is None:
        _check_name(name, "field key", r, name)
        key = name.translate(_TAG) + "="
        if len(_FIELD_KEYS) >= _CACHE_MAX:
            _FIELD_KEYS.clear()
        _FIELD_KEYS[name] = key
    return key


def encode(r: Reading) -> str:
    """One reading as one line (no trailing newline). Raises ValueError (see module doc)."""
    try:
        cache_key: tuple[object, tuple[tuple[object, object], ...]] | None = (
            r.measurement,
            tuple(r.tags.items()),
        )
        prefix = _SERIES.get(cache_key)  # type: ignore[arg-type]
    except (TypeError, AttributeError):  # unhashable or not a mapping: checked below
        cache_key, prefix = None, None
    if prefix is None:
        prefix = series(r)
        if cache_key is not None:
            if len(_SERIES) >= _CACHE_MAX:
                _SERIES.clear()
            _SERIES[cache_key] = prefix
    if not r.fields:
        raise ValueError(f"a point needs at least one field ({_where(r)})")
    fields = []
    for name, value in r.fields.items():
        key = _FIELD_KEYS.get(name) or field_key(name, r)
        kind = type(value)
        if kind is float and math.isfinite(value):  # type: ignore[arg-type]
            fields.append(key + repr(value))  # shortest round-trip form, with '.' or 'e'
        elif kind is int and INT64_MIN <= value <= INT64_MAX:  # type: ignore[operator]
            fields.append(f"{key}{value}i")
        else:
            fields.append(key + format_value(value, r, name))
    t = r.time_ns
    if isinstance(t, bool) or not isinstance(t, int) or not INT64_MIN < t < INT64_MAX:
        raise ValueError(f"time_ns must be an int64 in nanoseconds, got {t!r} ({_where(r)})")
    return f"{prefix} {','.join(fields)} {t}"


def encode_lines(readings: Iterable[Reading]) -> str:
    """Readings as line protocol text, each line ending with a newline: what ``encode`` gives
    for each, with the common cases (a series seen before, float, integer and string fields)
    inline. Raises ValueError like ``encode``."""
    out: list[str] = []
    series, field_keys, isfinite, translate = _SERIES, _FIELD_KEYS, math.isfinite, str.translate
    for r in readings:
        try:
            prefix = series.get((r.measurement, tuple(r.tags.items())))
        except (TypeError, AttributeError):
            prefix = None
        fields, t = r.fields, r.time_ns
        if prefix is None or not fields or type(t) is not int or not INT64_MIN < t < INT64_MAX:
            out.append(encode(r))  # caches the series, or raises saying what is wrong
            continue
        parts = []
        for name, value in fields.items():
            key = field_keys.get(name) or field_key(name, r)
            kind = type(value)
            if kind is float and isfinite(value):  # type: ignore[arg-type]
                parts.append(key + repr(value))
            elif kind is int and INT64_MIN <= value <= INT64_MAX:  # type: ignore[operator]
                parts.append(f"{key}{value}i")
            elif kind is str and "\n" not in value and "\r" not in value:  # type: ignore[operator]
                text = translate(value, _STR) if '"' in value or "\\" in value else value  # type: ignore[arg-type,operator]
                parts.append(f'{key}"{text}"')
            else:
                parts.append(key + format_value(value, r, name))
        out.append(f"{prefix} {','.join(parts)} {t}")
    return "\n".join(out) + "\n" if out else ""


def encode_many(readings: Iterable[Reading]) -> bytes:
    """Readings as a line protocol body (UTF-8, one point per line, each ending with a
    newline)."""
    return encode_lines(readings).encode("utf-8")
