"""Redfish JSON -> canonical fields, apart from any transport.

Discovery (what :class:`collectors.redfish.poller.RedfishPoller` does once, and again when a
cached URL answers 404): service root -> ``Chassis`` collection -> the chassis (the one named
in the options, else the first member that links to Power, PowerSubsystem or
EnvironmentMetrics) -> its links (:func:`chassis_links`) -> the links of its PowerSubsystem
and ThermalSubsystem (:func:`subsystem_links`). The result maps the resource names of
:data:`collectors.redfish.profile.RESOURCES` to URLs.

A poll (:class:`Plan`) reads, for each field and table of the profile, its first source whose
resource the BMC has; an item that finds nothing there moves on to its next source, fetched
in a second round of the same poll. Decoding, per value: a JSON number (not a boolean, not
NaN) or a text listed in ``codes``; ``value = raw * scale + offset``; ``state`` and
``counter`` fields with whole scaling are ``int``, everything else ``float`` (a field's type
never changes from one poll to the next: InfluxDB refuses a field that flips type).
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from collectors.redfish.profile import (
    COLLECTIONS,
    Cond,
    RedfishField,
    RedfishProfile,
    RedfishTable,
    RowSource,
    Step,
    parse_path,
)
from dcim.reading import FieldValue, Reading

Json = Any
# fetches the resources named (concurrently), filling the docs dict that _Reader.run reads
_Fetch = Callable[[set[str]], Awaitable[None]]
# A row with this Status.State has no reading (an empty bay): left out.
ABSENT_STATES = frozenset({"Absent"})
_MAX_ROWS = 1000  # per table and poll: a runaway collection cannot flood the spool

# Chassis link property -> resource name
_CHASSIS_LINKS = {
    "Power": "power",
    "Thermal": "thermal",
    "EnvironmentMetrics": "environment_metrics",
    "PowerSubsystem": "power_subsystem",
    "ThermalSubsystem": "thermal_subsystem",
    "Sensors": "sensors",
}
_SUBSYSTEM_LINKS = {
    "power_subsystem": {"PowerSupplies": "power_supplies"},
    "thermal_subsystem": {"Fans": "fans", "ThermalMetrics": "thermal_metrics"},
}
_POWER_CHASSIS = ("Power", "PowerSubsystem", "EnvironmentMetrics")


def odata_id(node: Json) -> str | None:
    """The ``@odata.id`` of a link object, or None."""
    if isinstance(node, dict):
        url = node.get("@odata.id")
        if isinstance(url, str) and url.startswith("/"):
            return url
    return None


def members(collection: Json) -> list[str]:
    """The member URLs of a collection body (``Members: [{"@odata.id": ...}]``)."""
    out = []
    for m in collection.get("Members", []) if isinstance(collection, dict) else []:
        url = odata_id(m)
        if url is not None:
            out.append(url)
    return out


def pick_chassis(bodies: Mapping[str, Json], chassis_id: str | None) -> str | None:
    """The chassis to read among ``bodies`` (URL -> Chassis body, in collection order): the
    one whose ``Id`` is ``chassis_id``, else the first that links to a power resource, else
    the first."""
    if chassis_id is not None:
        return next(
            (u for u, b in bodies.items() if isinstance(b, dict) and b.get("Id") == chassis_id),
            None,
        )
    for url, body in bodies.items():
        if isinstance(body, dict) and any(odata_id(body.get(k)) for k in _POWER_CHASSIS):
            return url
    return next(iter(bodies), None)


def chassis_links(chassis_url: str, body: Json) -> dict[str, str]:
    out = {"chassis": chassis_url}
    for prop, name in _CHASSIS_LINKS.items():
        url = odata_id(body.get(prop)) if isinstance(body, dict) else None
        if url is not None:
            out[name] = url
    return out


def subsystem_links(resource: str, body: Json) -> dict[str, str]:
    out = {}
    for prop, name in _SUBSYSTEM_LINKS.get(resource, {}).items():
        url = odata_id(body.get(prop)) if isinstance(body, dict) else None
        if url is not None:
            out[name] = url
    return out


# -- paths ----------------------------------------------------------------------------------


def _key(node: Json, key: tuple[str, ...]) -> Json:
    for k in key:
        if not isinstance(node, dict):
            return None
        node = node.get(k)
    return node


def _holds(node: Json, conds: Iterable[Cond]) -> bool:
    for c in conds:
        v = _key(node, c.key)
        if not isinstance(v, str | int | float) or isinstance(v, bool):
            return False
        text = str(v)
        if (c.regex.search(text) is None) if c.regex is not None else text != c.text:
            return False
    return True


def get(node: Json, steps: tuple[Step, ...]) -> Json:
    """The value at ``steps`` in ``node`` (None where the path leads nowhere)."""
    for s in steps:
        if s.key:
            if not isinstance(node, dict):
                return None
            node = node.get(s.key)
        if s.index is not None:
            if not isinstance(node, list) or not -len(node) <= s.index < len(node):
                return None
            node = node[s.index]
        if s.conds:
            if not isinstance(node, list):
                return None
            node = next((e for e in node if _holds(e, s.conds)), None)
        if node is None:
            return None
    return node


@dataclass(frozen=True, slots=True)
class _Texts:
    """The texts a ``where``/``exclude`` key accepts: exact ones and ``~regex`` ones."""

    exact: frozenset[str]
    patterns: tuple[re.Pattern[str], ...]

    @classmethod
    def of(cls, texts: Iterable[str]) -> _Texts:
        texts = list(texts)
        return cls(
            frozenset(t for t in texts if not t.startswith("~")),
            tuple(re.compile(t[1:]) for t in texts if t.startswith("~")),
        )

    def holds(self, v: Json) -> bool:
        if not isinstance(v, str | int | float) or isinstance(v, bool):
            return False
        text = str(v)
        return text in self.exact or any(p.search(text) for p in self.patterns)


_Where = tuple[tuple[tuple[Step, ...], _Texts], ...]


def _where(where: Mapping[str, Iterable[str]]) -> _Where:
    return tuple((parse_path(k), _Texts.of(v)) for k, v in where.items())


def _passes(node: Json, where: _Where) -> bool:
    """Every key holds one of its texts."""
    return all(texts.holds(get(node, steps)) for steps, texts in where)


def _excluded(node: Json, exclude: _Where) -> bool:
    """Some key holds one of its texts."""
    return any(texts.holds(get(node, steps)) for steps, texts in exclude)


# -- one value ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Decoder:
    """JSON value -> canonical value for one field (None: left out)."""

    name: str
    steps: tuple[Step, ...]
    scale: float
    offset: float
    codes: Mapping[str, float] | None
    as_int: bool
    where: _Where

    @classmethod
    def of(cls, f: RedfishField, path: str) -> Decoder:
        as_int = f.kind in ("counter", "state") and f.whole_scaling
        if f.codes is not None:
            as_int = as_int and all(float(v).is_integer() for v in f.codes.values())
        return cls(f.name, parse_path(path), f.scale, f.offset, f.codes, as_int, _where(f.where))

    def decode(self, node: Json) -> FieldValue | None:
        if self.where and not _passes(node, self.where):
            return None
        raw = get(node, self.steps)
        if isinstance(raw, str) and self.codes is not None:
            if raw not in self.codes:
                return None
            x = float(self.codes[raw])
        elif isinstance(raw, int | float) and not isinstance(raw, bool):
            x = float(raw)
        else:
            return None
        if not math.isfinite(x):
            return None
        value = x * self.scale + self.offset
        if self.as_int:
            return int(round(value))
        return float(value)


# -- the plan of a poll ---------------------------------------------------------------------


@dataclass(slots=True)
class _TableSource:
    source: RowSource
    rows: tuple[Step, ...]
    where: _Where
    exclude: _Where
    tags: tuple[tuple[str, tuple[tuple[Step, ...], ...]], ...]
    decoders: tuple[Decoder, ...]


@dataclass(slots=True)
class _TablePlan:
    spec: RedfishTable
    measurement: str
    sources: list[_TableSource]


@dataclass(slots=True)
class Plan:
    """What one profile reads, compiled once (paths parsed, decoders built)."""

    measurement: str
    fields: list[tuple[str, list[tuple[str, Decoder]]]]  # name -> [(resource, decoder)]
    tables: list[_TablePlan]
    follows: dict[str, frozenset[str]] = field(default_factory=dict)  # collection -> links

    @classmethod
    def of(cls, profile: RedfishProfile) -> Plan:
        fields: list[tuple[str, list[tuple[str, Decoder]]]] = [
            (f.name, [(str(s.resource), Decoder.of(f, s.path)) for s in f.sources])
            for f in profile.fields
        ]
        tables = []
        follows: dict[str, set[str]] = {}
        for t in profile.tables:
            srcs = []
            for s in t.sources:
                srcs.append(
                    _TableSource(
                        s,
                        parse_path(s.rows) if s.rows else (),
                        _where(s.where),
                        _where(s.exclude),
                        tuple(
                            (k, tuple(parse_path(p) for p in ((v,) if isinstance(v, str) else v)))
                            for k, v in s.tags.items()
                        ),
                        tuple(Decoder.of(f, f.path or "") for f in s.fields),
                    )
                )
                if s.follow:
                    follows.setdefault(s.resource, set()).update(s.follow)
            tables.append(_TablePlan(t, t.measurement or profile.measurement, srcs))
        return cls(
            profile.measurement,
            fields,
            tables,
            {k: frozenset(v) for k, v in follows.items()},
        )

    def read(
        self, available: Iterable[str], fetch_round: _Fetch, tags: Mapping[str, str], time_ns: int
    ) -> _Reader:
        return _Reader(self, frozenset(available), fetch_round, tags, time_ns)


class _Reader:
    """The readings of one poll, resource by resource (see :meth:`Plan.read`)."""

    def __init__(
        self,
        plan: Plan,
        available: frozenset[str],
        fetch: _Fetch,
        tags: Mapping[str, str],
        time_ns: int,
    ) -> None:
        self.plan, self.available, self.fetch = plan, available, fetch
        self.tags, self.time_ns = dict(tags), time_ns

    async def run(self, docs: dict[str, Json]) -> list[Reading]:
        """``docs``: resource -> body (a list of member bodies for a collection), filled by
        ``fetch(resources)``; a resource that could not be read is absent from it."""
        fields: dict[str, FieldValue] = {}
        pos_f = {name: 0 for name, _ in self.plan.fields}
        pos_t = {t.spec.name: 0 for t in self.plan.tables}
        rows_of: dict[str, list[Reading]] = {}
        tried: set[str] = set()
        while True:
            want: set[str] = set()
            for name, srcs in self.plan.fields:
                while pos_f[name] < len(srcs) and srcs[pos_f[name]][0] not in self.available:
                    pos_f[name] += 1
                if pos_f[name] < len(srcs):
                    want.add(srcs[pos_f[name]][0])
            for t in self.plan.tables:
                while (
                    pos_t[t.spec.name] < len(t.sources)
                    and t.sources[pos_t[t.spec.name]].source.resource not in self.available
                ):
                    pos_t[t.spec.name] += 1
                if pos_t[t.spec.name] < len(t.sources):
                    want.add(t.sources[pos_t[t.spec.name]].source.resource)
            new = want - tried
            if not want:
                break
            if new:
                await self.fetch(new)
                tried |= new
            for name, srcs in self.plan.fields:
                i = pos_f[name]
                if i >= len(srcs):
                    continue
                res, dec = srcs[i]
                if res in docs:
                    v = dec.decode(docs[res])
                    if v is not None:
                        fields[name] = v
                        pos_f[name] = len(srcs)
                        continue
                pos_f[name] = i + 1
            for t in self.plan.tables:
                i = pos_t[t.spec.name]
                if i >= len(t.sources):
                    continue
                src = t.sources[i]
                rows = self._rows(t, src, docs.get(src.source.resource))
                if rows:
                    rows_of[t.spec.name] = rows
                    pos_t[t.spec.name] = len(t.sources)
                else:
                    pos_t[t.spec.name] = i + 1
        out = []
        if fields:
            out.append(Reading(self.plan.measurement, dict(self.tags), fields, self.time_ns))
        for t in self.plan.tables:
            out.extend(rows_of.get(t.spec.name, ()))
        return out

    def _rows(self, t: _TablePlan, src: _TableSource, doc: Json) -> list[Reading]:
        if doc is None:
            return []
        rows = get(doc, src.rows) if src.rows else doc
        if not isinstance(rows, list):
            return []
        out: list[Reading] = []
        seen: set[tuple[str, ...]] = set()
        for row in rows[:_MAX_ROWS]:
            if not isinstance(row, dict) or _key(row, ("Status", "State")) in ABSENT_STATES:
                continue
            if src.where and not _passes(row, src.where):
                continue
            if src.exclude and _excluded(row, src.exclude):
                continue
            tags = {}
            for name, alternatives in src.tags:
                for steps in alternatives:
                    v = get(row, steps)
                    if isinstance(v, str | int | float) and not isinstance(v, bool) and str(v):
                        tags[name] = str(v)
                        break
            if len(tags) != len(src.tags):
                continue  # a row it cannot name would merge with another in the database
            key = tuple(tags.values())
            if key in seen:
                continue
            seen.add(key)
            fields = {}
            for dec in src.decoders:
                v = dec.decode(row)
                if v is not None:
                    fields[dec.name] = v
            if fields:
                out.append(Reading(t.measurement, {**self.tags, **tags}, fields, self.time_ns))
        return out


def is_collection(resource: str) -> bool:
    return resource in COLLECTIONS
