"""What the MQTT collector does not take on a publisher's word (pure logic, no broker).

- Topic filters: :func:`filters_overlap` (both could match one topic, ``+`` and ``#`` aware),
  used by the plugin's config check so that a topic maps to exactly one device.
- Payload size and JSON nesting: :func:`json_depth` counts the nesting before the payload is
  parsed (the standard library's parser has no depth limit and raises ``RecursionError`` on a
  deep document; a scan of the brackets outside strings is linear and cannot recurse).
- Time: :class:`Seen` remembers the timestamps stored per topic, so that a second message with
  a timestamp already stored is refused (``conflict`` when its values differ, ``duplicate``
  when they are the same, e.g. a QoS 1 redelivery) instead of overwriting the stored values.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping
from typing import Literal

from dcim.reading import FieldValue

# Timestamps remembered per topic (device and topic: one series) and topics per device. A
# message older than the oldest timestamp a full memory still holds cannot be checked against
# what is stored and is refused ("out_of_order"); a device publishing on more distinct topics
# than MAX_TOPICS (through a wildcard) has the new ones refused ("topic"): that bounds the
# memory and the number of series a publisher can create.
REMEMBERED_PER_TOPIC = 256
MAX_TOPICS = 256

Verdict = Literal["new", "duplicate", "conflict", "out_of_order"]

_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")


def filters_overlap(a: str, b: str) -> bool:
    """True if some topic matches both filters (MQTT 3.1.1 section 4.7: ``+`` one level,
    ``#`` this level and every one below, also the parent itself; wildcards at the first
    level do not match topics starting with ``$``)."""
    return common_topic(a, b) is not None


def common_topic(a: str, b: str) -> str | None:
    """A topic both filters match (an example for an error message), None if there is none."""
    la, lb = a.split("/"), b.split("/")
    if la[0] != lb[0] and (
        (la[0].startswith("$") and lb[0] in "+#") or (lb[0].startswith("$") and la[0] in "+#")
    ):
        return None
    out: list[str] = []
    for x, y in zip(la, lb, strict=False):
        if x == "#" or y == "#":
            tail = lb[len(out) :] if x == "#" else la[len(out) :]
            return "/".join(out + [lv if lv not in "+#" else "x" for lv in tail]).rstrip("/")
        if x != y and x != "+" and y != "+":
            return None
        out.append(x if y == "+" else y if x == "+" or x == y else x)
    out = [lv if lv != "+" else "x" for lv in out]
    rest = la[len(lb) :] or lb[len(la) :]
    return "/".join(out) if not rest or rest == ["#"] else None


def filter_problem(topic: str) -> str | None:
    """What makes ``topic`` an invalid subscription filter, None if it is valid."""
    levels = topic.split("/")
    for i, lv in enumerate(levels):
        if "#" in lv and (lv != "#" or i != len(levels) - 1):
            return "'#' must be a whole level, the last one"
        if "+" in lv and lv != "+":
            return "'+' must be a whole level"
    if "\x00" in topic:
        return "a topic has no NUL character"
    return None


def template_filter(template: str) -> str:
    """The filter matching every topic of a profile's template (``{name}`` levels as ``+``)."""
    return "/".join(
        "+" if re.search(r"\{[A-Za-z_][A-Za-z0-9_]*\}", level) else level
        for level in template.split("/")
    )


def json_depth(payload: bytes) -> int:
    """Nesting depth of a JSON document (objects and arrays; 0 for a scalar), from its
    brackets outside strings. Linear in the payload; for a malformed document a rough figure."""
    depth = deepest = 0
    for m in _BRACKETS.finditer(_STRINGS.sub(b"", payload)):
        if m.group() in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def digest(fields: Mapping[str, FieldValue]) -> int:
    return hash(tuple(sorted(fields.items())))


class Seen:
    """The timestamps stored per (device, topic), each with a digest of its values."""

    def __init__(self, per_topic: int = REMEMBERED_PER_TOPIC, max_topics: int = MAX_TOPICS) -> None:
        self.per_topic, self.max_topics = per_topic, max_topics
        self._times: dict[tuple[str, str], OrderedDict[int, int]] = {}
        self._floor: dict[tuple[str, str], int] = {}  # newest timestamp forgotten
        self._topics: dict[str, int] = {}

    def admit(self, device: str, topic: str) -> bool:
        """Whether the topic is one of the device's (a new one while it has fewer than
        ``max_topics``)."""
        key = (device, topic)
        if key in self._times:
            return True
        if self._topics.get(device, 0) >= self.max_topics:
            return False
        self._topics[device] = self._topics.get(device, 0) + 1
        self._times[key] = OrderedDict()
        return True

    def check(self, device: str, topic: str, time_ns: int, values: int) -> Verdict:
        """``values``: the digest of the message's fields. A ``new`` timestamp is remembered.
        The topic must have been admitted."""
        key = (device, topic)
        times = self._times[key]
        known = times.get(time_ns)
        if known is not None:
            return "duplicate" if known == values else "conflict"
        if time_ns <= self._floor.get(key, -1):
            return "out_of_order"
        times[time_ns] = values
        while len(times) > self.per_topic:
            old, _ = times.popitem(last=False)
            self._floor[key] = max(self._floor.get(key, -1), old)
        return "new"

    def forget(self, device: str, topic: str, time_ns: int) -> None:
        """A timestamp remembered for a message that was not stored after all (it will be
        delivered again)."""
        times = self._times.get((device, topic))
        if times is not None:
            times.pop(time_ns, None)
