"""MQTT payload and topic codec, shared with the twin (:mod:`dcim.twin.serve_mqtt`), which
encodes with the exact inverse of the collector's decoding (:func:`encode_payload`).

Payload mapping: the profile's ``json`` path, dot-separated; ``value = raw * scale + offset``.
Topic templates: ``{name}`` segments become tags.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from collectors.mqtt.profile import RESERVED_TAGS, MqttField, MqttProfile
from dcim.reading import FieldValue

NS = 1_000_000_000
TIME_KEYS = ("ts", "time")
__all__ = [
    "RESERVED_TAGS",
    "MalformedPayload",
    "decode_payload",
    "decode_value",
    "encode_payload",
    "parse_time",
    "render_topic",
    "topic_tags",
]


class MalformedPayload(ValueError):
    pass


def _lookup(doc: Any, path: str) -> Any:
    node = doc
    for part in path.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise KeyError(path)
    return node


def _number(raw: Any) -> float:
    if isinstance(raw, bool):
        return float(raw)
    if isinstance(raw, int | float):
        val = float(raw)
    elif isinstance(raw, str):
        try:
            val = float(raw)
        except ValueError:
            raise MalformedPayload(f"{raw!r} is not a number") from None
    else:
        raise MalformedPayload(f"{raw!r} is not a number")
    if not math.isfinite(val):
        raise MalformedPayload(f"{raw!r} is not a finite number")
    return val


def decode_value(spec: MqttField, raw: Any) -> FieldValue:
    """One JSON value to its canonical field value (``raw * scale + offset``, ``map`` first)."""
    val = _number(raw)
    if spec.map is not None:
        if not val.is_integer() or int(val) not in spec.map:
            raise MalformedPayload(f"{raw!r} is not one of the codes {sorted(spec.map)}")
        val = spec.map[int(val)]
    val = val * spec.scale + spec.offset
    # States are small integer codes; everything else stays float so InfluxDB never sees the
    # same field change type (an int then a float is a rejected write).
    return int(round(val)) if spec.kind == "state" else val


def parse_time(raw: Any) -> int:
    """A payload timestamp to UTC ns: ISO 8601 (naive means UTC) or UNIX epoch in s/ms/us/ns."""
    if isinstance(raw, str):
        try:
            return _epoch_ns(float(raw))
        except ValueError:
            pass
        try:
            dt = datetime.fromisoformat(raw)
        except ValueError:
            raise MalformedPayload(f"time {raw!r} is neither ISO 8601 nor a UNIX epoch") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return int(dt.timestamp()) * NS + dt.microsecond * 1000
    if isinstance(raw, int | float) and not isinstance(raw, bool) and math.isfinite(raw):
        return _epoch_ns(raw)
    raise MalformedPayload(f"time {raw!r} is neither ISO 8601 nor a UNIX epoch")


def _epoch_ns(val: float) -> int:
    mag = abs(val)
    if mag >= 1e17:
        return int(val)
    if mag >= 1e14:
        return int(val * 1000)
    if mag >= 1e11:
        return int(val * 1_000_000)
    return int(round(val * 1e6)) * 1000  # seconds, to the microsecond


def decode_payload(
    profile: MqttProfile, payload: bytes
) -> tuple[dict[str, FieldValue], int | None, list[str]]:
    """JSON payload -> (fields, time_ns or None, problems). Fields that fail alone are left
    out and named in ``problems``; raises MalformedPayload if the payload is not a JSON object."""
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedPayload(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise MalformedPayload(f"not a JSON object but {type(doc).__name__}")
    fields: dict[str, FieldValue] = {}
    problems: list[str] = []
    for spec in profile.fields:
        try:
            fields[spec.name] = decode_value(spec, _lookup(doc, spec.json_path))
        except KeyError:
            problems.append(f"{spec.json_path}: missing")
        except MalformedPayload as exc:
            problems.append(f"{spec.json_path}: {exc}")
    time_ns = None
    for key in TIME_KEYS:
        if key in doc:
            try:
                time_ns = parse_time(doc[key])
            except MalformedPayload as exc:
                problems.append(str(exc))
            break
    return fields, time_ns, problems


def encode_payload(
    profile: MqttProfile, values: Mapping[str, float | int], *, time_s: float | None = None
) -> bytes:
    """The inverse of :func:`decode_payload`: canonical values -> the device's JSON payload.
    Fields missing from ``values`` are left out."""
    doc: dict[str, Any] = {}
    if time_s is not None:
        doc["ts"] = round(time_s, 6)
    for spec in profile.fields:
        if spec.name not in values:
            continue
        raw: float = (float(values[spec.name]) - spec.offset) / spec.scale
        if spec.map is not None:
            raw = next((k for k, v in spec.map.items() if v == raw), raw)
        node = doc
        *parents, leaf = spec.json_path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = int(raw) if spec.map is not None or spec.kind == "state" else raw
    return json.dumps(doc, separators=(",", ":")).encode()


def _template_regex(template: str) -> re.Pattern[str]:
    out, pos = "", 0
    for m in re.finditer(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", template):
        out += re.escape(template[pos : m.start()]) + f"(?P<{m.group(1)}>[^/]+)"
        pos = m.end()
    return re.compile(out + re.escape(template[pos:]) + r"\Z")


def topic_tags(template: str | None, topic: str) -> dict[str, str]:
    """Tags from a concrete topic and the profile's template: ``{}`` if it does not match."""
    if not template:
        return {}
    m = _template_regex(template).match(topic)
    return dict(m.groupdict()) if m else {}


def render_topic(template: str, tags: Mapping[str, str]) -> str:
    """The topic a device with these tags publishes to (raises KeyError if one is missing)."""
    return template.format_map(dict(tags))
