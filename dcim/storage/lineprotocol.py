"""Reading -> InfluxDB line protocol (1.x and later), with the escaping the 1.x parser undoes.

- measurement: ``,`` and space escaped; may not start with ``#`` (a comment line);
- tag keys, tag values, field keys: ``,``, ``=`` and space escaped; tags with an empty
  value are left out (InfluxDB has no empty tag values: absent and empty are the same);
- string field values: in double quotes, ``"`` and ``\\`` escaped;
- integers ``123i``, booleans ``true``/``false``, floats always with a decimal point or
  exponent (``1.0``, never ``1``) so a field's type never flips; NaN and infinities raise;
- timestamps in nanoseconds (write with ``precision=ns``).

:func:`decode_lines` reads back what :func:`encode_lines` wrote: the readings again, exactly
(float text is ``repr``, which round-trips; tags come back sorted, and without the empty ones
``encode`` leaves out). The spool keeps readings only as line protocol, and the embedded store
is given them decoded.

What the 1.x parser cannot carry raises ``ValueError`` naming measurement, device and field:
newlines and other control characters anywhere (a newline ends a point), and in names and
tag values a backslash that is last or followed by a character the parser treats as an
escape (``\\ , = "`` or space), since 1.x has no escape for the backslash itself there.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from dcim.reading import FieldValue, Reading

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


# -- decoding ----------------------------------------------------------------------------------
# What ``encode`` writes, read back. Its escapes are unambiguous because it refuses a backslash
# before any character it escapes: in names and tag values a backslash followed by ``,``, ``=``
# or space is an escape, any other backslash is itself; in a string value every ``\\`` and
# ``"`` is escaped. So an unescaped ``,``, ``=`` or space is one not preceded by a backslash.
_UNESCAPE = re.compile(r"\\([,= ])")
_UNESCAPE_STR = re.compile(r'\\(["\\])')
_SPLIT_COMMA = re.compile(r"(?<!\\),")
_SPLIT_EQ = re.compile(r"(?<!\\)=")
_SPLIT_SPACE = re.compile(r"(?<!\\) ")
# One field of a line with backslashes: key (escapes), ``=``, a quoted string or a bare value.
_FIELD = re.compile(r'((?:[^=\\]|\\.)+)=("(?:[^"\\]|\\.)*"|[^,"]+)(,|$)')
_BOOLS = {"true": True, "false": False}
_DECODED_SERIES: dict[str, tuple[str, dict[str, str]]] = {}


def _unescape(text: str) -> str:
    return _UNESCAPE.sub(r"\1", text) if "\\" in text else text


def _series_of(text: str) -> tuple[str, dict[str, str]]:
    """``measurement,tag=value,...`` -> (measurement, tags), cached."""
    got = _DECODED_SERIES.get(text)
    if got is not None:
        return got
    parts = _SPLIT_COMMA.split(text) if "\\" in text else text.split(",")
    tags: dict[str, str] = {}
    for part in parts[1:]:
        kv = _SPLIT_EQ.split(part, maxsplit=1) if "\\" in part else part.split("=", 1)
        if len(kv) != 2 or not kv[0] or not kv[1]:
            raise ValueError(f"bad tag {part!r} in line protocol series {text!r}")
        tags[_unescape(kv[0])] = _unescape(kv[1])
    if not parts[0]:
        raise ValueError(f"no measurement in line protocol series {text!r}")
    got = (_unescape(parts[0]), tags)
    if len(_DECODED_SERIES) >= _CACHE_MAX:
        _DECODED_SERIES.clear()
    _DECODED_SERIES[text] = got
    return got


def _value_of(text: str) -> FieldValue:
    """A field value as ``encode`` writes it."""
    if text[:1] == '"':
        if len(text) < 2 or text[-1] != '"':
            raise ValueError(f"unterminated string value {text!r}")
        inner = text[1:-1]
        return _UNESCAPE_STR.sub(r"\1", inner) if "\\" in inner else inner
    last = text[-1:]
    if last == "i":
        return int(text[:-1])
    if last == "e":
        return _BOOLS[text]  # KeyError for anything else: caught by the caller
    return float(text)


def _general_line(line: str) -> Reading:
    """A line with backslashes (or quotes in a field key): split on the unescaped spaces,
    commas and equal signs, strings matched whole."""
    head = _SPLIT_SPACE.split(line, maxsplit=1)
    if len(head) != 2:
        raise ValueError("no fields")
    rest, sep, t = head[1].rpartition(" ")
    if not sep:
        raise ValueError("no timestamp")
    meas, tags = _series_of(head[0])
    fields: dict[str, FieldValue] = {}
    pos, end = 0, len(rest)
    while pos < end:
        m = _FIELD.match(rest, pos)
        if m is None or (m[3] == "") != (m.end() == end):
            raise ValueError(f"bad fields {rest!r}")
        fields[_unescape(m[1])] = _value_of(m[2])
        pos = m.end()
    if not fields:
        raise ValueError("no fields")
    return Reading(meas, dict(tags), fields, int(t))


def decode_lines(lp: bytes | str) -> list[Reading]:
    """The readings of a line protocol block written by :func:`encode_lines` (each line ending
    with a newline; nanosecond timestamps). ValueError when it is not such a block."""
    text = lp.decode("utf-8") if isinstance(lp, bytes | bytearray) else lp
    lines = text.split("\n")
    if lines.pop() != "":
        raise ValueError("not line protocol as written: the block does not end with a newline")
    out: list[Reading] = []
    append, series_of, cached, bools = out.append, _series_of, _DECODED_SERIES, _BOOLS
    for n, line in enumerate(lines, 1):
        try:
            # Without a backslash nothing is escaped: the series has no space, keys no comma
            # or equal sign, a string no quote (but maybe spaces and commas: then the quick
            # split fails below, and the line is read the general way).
            if "\\" in line:
                append(_general_line(line))
                continue
            parts = line.split(" ")
            if len(parts) == 3:
                s, f, t = parts
            else:  # spaces in a string value
                i, j = line.find(" "), line.rfind(" ")
                s, f, t = line[:i], line[i + 1 : j], line[j + 1 :]
            try:
                fields: dict[str, FieldValue] = {}
                for item in f.split(","):
                    k, _, v = item.partition("=")
                    last = v[-1:]
                    if last == "i":
                        fields[k] = int(v[:-1])
                    elif last == "e":
                        fields[k] = bools[v]
                    elif last == '"':
                        if v[:1] != '"' or len(v) < 2 or '"' in v[1:-1]:
                            raise ValueError
                        fields[k] = v[1:-1]
                    else:
                        fields[k] = float(v)
                    if not k:
                        raise ValueError
            except (ValueError, KeyError):  # a comma in a string, or not line protocol
                append(_general_line(line))
                continue
            meas, tags = cached.get(s) or series_of(s)
            append(Reading(meas, tags.copy(), fields, int(t)))
        except (ValueError, KeyError, IndexError) as exc:
            raise ValueError(f"line {n} is not line protocol as written: {exc}") from None
    return out
