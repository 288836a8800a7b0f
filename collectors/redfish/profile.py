"""Redfish profiles: which resources of a BMC's chassis to read and how their JSON becomes
canonical fields.

A profile names resources from a fixed vocabulary (:data:`RESOURCES`, the DMTF resource tree
under one Chassis, found by :mod:`collectors.redfish.codec`'s discovery) and, for each
canonical field, one or more places to read it (``from:``), tried in order: the first whose
resource the BMC serves and whose path holds a number wins. That is how one profile reads
both the newer PowerSubsystem/ThermalSubsystem/EnvironmentMetrics/Sensors resources and the
older Power/Thermal ones, preferring whichever it lists first.

Paths (:func:`parse_path`) are dotted JSON paths with list filters:
``PowerControl.0.PowerConsumedWatts``, ``Temperatures[PhysicalContext=Intake].ReadingCelsius``
(the first element whose key equals the value), ``[Name~(?i)inlet].Reading`` (a regular
expression, searched), several conditions joined by ``,`` all hold. A collection resource
(``sensors``, ``fans``, ``power_supplies``) is the list of its members' bodies.

Tables give one reading per row: the rows of one source (a list in a resource, or a
collection's members), each tagged with the values of ``tags`` (e.g. ``sensor: Name``), with
``fields`` read relative to the row (a tag may list several paths, the first present wins:
``fan: [Name, FanName]``). ``where`` keeps only the rows (or, on a field, the values) whose
keys hold one of the listed texts, ``exclude`` leaves out those that do (a text starting
with ``~`` is a regular expression, searched). A row whose ``Status.State`` is ``Absent``
(an empty PSU bay, an unpopulated fan header) is left out, and a null reading is left out:
both are Redfish's "no reading", never a zero.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from dcim.modelbase import BaseModel, ConfigDict, Field, field_validator, model_validator
from dcim.profiles import RESERVED_TAGS, FieldSpec, Profile, ReadingShape

# The resources discovery finds under a chassis (DSP0268 schema names in brackets).
RESOURCES: dict[str, str] = {
    "chassis": "the Chassis itself (Chassis)",
    "power": "Chassis.Power (Power, deprecated since 2020.4 but the only one on older BMCs)",
    "thermal": "Chassis.Thermal (Thermal, deprecated since 2020.4)",
    "environment_metrics": "Chassis.EnvironmentMetrics (EnvironmentMetrics)",
    "power_subsystem": "Chassis.PowerSubsystem (PowerSubsystem)",
    "power_supplies": "PowerSubsystem.PowerSupplies members (PowerSupply collection)",
    "thermal_subsystem": "Chassis.ThermalSubsystem (ThermalSubsystem)",
    "thermal_metrics": "ThermalSubsystem.ThermalMetrics (ThermalMetrics)",
    "fans": "ThermalSubsystem.Fans members (Fan collection)",
    "sensors": "Chassis.Sensors members (Sensor collection)",
}
COLLECTIONS = frozenset({"power_supplies", "fans", "sensors"})
Resource = Literal[
    "chassis",
    "power",
    "thermal",
    "environment_metrics",
    "power_subsystem",
    "power_supplies",
    "thermal_subsystem",
    "thermal_metrics",
    "fans",
    "sensors",
]

_TAG_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_SEGMENT = re.compile(r"^([^\[\]]*)(?:\[([^\]]+)\])?$")


@dataclass(frozen=True, slots=True)
class Cond:
    """One filter condition: ``key`` (dotted, relative to the element) equals ``text``
    (``regex`` False) or matches it (``regex`` True, searched)."""

    key: tuple[str, ...]
    text: str
    regex: re.Pattern[str] | None


@dataclass(frozen=True, slots=True)
class Step:
    """One path segment: a key (``""`` for none), a list index, or a filter on a list."""

    key: str
    index: int | None
    conds: tuple[Cond, ...]


def parse_path(text: str) -> tuple[Step, ...]:
    """``A.0.B[K=V,L~re].C`` -> steps; raises ValueError saying what is wrong."""
    steps: list[Step] = []
    for part in _split(text):
        m = _SEGMENT.match(part)
        if m is None or (not m.group(1) and not m.group(2)):
            raise ValueError(f"path {text!r}: bad segment {part!r}")
        key, filt = m.group(1), m.group(2)
        index = int(key) if key.isdigit() else None
        conds: list[Cond] = []
        for c in _split(filt, sep=",") if filt else ():
            op = "~" if "~" in c and ("=" not in c or c.index("~") < c.index("=")) else "="
            k, _, v = c.partition(op)
            if not k or not v:
                raise ValueError(f"path {text!r}: filter {c!r} is not KEY=TEXT or KEY~REGEX")
            try:
                rx = re.compile(v) if op == "~" else None
            except re.error as exc:
                raise ValueError(f"path {text!r}: bad regular expression {v!r}: {exc}") from exc
            conds.append(Cond(tuple(k.strip().split(".")), v, rx))
        steps.append(Step("" if index is not None else key, index, tuple(conds)))
    return tuple(steps)


def _split(text: str, sep: str = ".") -> list[str]:
    """Split on ``sep`` outside brackets."""
    out: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == sep and depth == 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    if depth != 0 or any(not p for p in out):
        raise ValueError(f"path {text!r}: empty segment or unbalanced brackets")
    return out


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(_Strict):
    """Where a chassis-level field is read: a resource and a path in it."""

    resource: Resource
    path: str

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        parse_path(v)
        return v


class RedfishField(FieldSpec):
    """A canonical field read from Redfish JSON: ``from`` (chassis-level fields: resource and
    path, tried in order) or ``path`` (table fields: relative to the row). ``codes`` maps a
    text value (``Status.Health``: OK, Warning, Critical) to a number; ``where`` keeps the
    value only if the row's keys hold one of the listed texts (``ReadingUnits: [RPM]``)."""

    sources: tuple[Source, ...] = Field(default=(), alias="from")
    path: str | None = None
    codes: dict[str, float] | None = None
    where: dict[str, tuple[str, ...]] = {}

    @model_validator(mode="after")
    def _redfish(self) -> RedfishField:
        if self.path is not None:
            parse_path(self.path)
        check_conditions(self.where)
        return self


def check_conditions(conds: dict[str, tuple[str, ...]]) -> None:
    """``where``/``exclude``: every key a path, every ``~`` text a regular expression."""
    for k, texts in conds.items():
        parse_path(k)
        for t in texts:
            if t.startswith("~"):
                try:
                    re.compile(t[1:])
                except re.error as exc:
                    raise ValueError(f"{k}: bad regular expression {t[1:]!r}: {exc}") from exc


class RowSource(_Strict):
    """One way to get a table's rows: the list at ``rows`` in ``resource`` (``""`` for a
    collection: its members), rows kept by ``where`` and not by ``exclude``; ``follow``:
    links in each row (``Metrics``) whose resource is read and put in place of the link."""

    resource: Resource
    rows: str = ""
    where: dict[str, tuple[str, ...]] = {}
    exclude: dict[str, tuple[str, ...]] = {}
    follow: tuple[str, ...] = ()
    tags: dict[str, str | tuple[str, ...]] = Field(min_length=1)
    fields: tuple[RedfishField, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> RowSource:
        if self.rows:
            parse_path(self.rows)
        elif self.resource not in COLLECTIONS:
            raise ValueError(
                f"resource {self.resource!r} is not a collection: say which list is the rows "
                f"('rows: Temperatures')"
            )
        for name, paths in self.tags.items():
            if not _TAG_NAME.match(name) or name in RESERVED_TAGS:
                raise ValueError(f"tag {name!r}: [a-z][a-z0-9_]*, not one of {RESERVED_TAGS}")
            for path in (paths,) if isinstance(paths, str) else paths:
                parse_path(path)
        for cond in (self.where, self.exclude):
            check_conditions(cond)
        for f in self.fields:
            if f.path is None or f.sources:
                raise ValueError(f"table field {f.name!r}: give 'path' (relative to the row)")
        return self


class RedfishTable(_Strict):
    """Rows of one kind (temperature sensors, fans, PSUs): ``from`` lists ways to read them,
    the first whose resource the BMC serves is used."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    measurement: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""
    sources: tuple[RowSource, ...] = Field(alias="from", min_length=1)

    @model_validator(mode="after")
    def _same_tags(self) -> RedfishTable:
        tags = {tuple(sorted(s.tags)) for s in self.sources}
        if len(tags) != 1:
            raise ValueError(f"table {self.name!r}: every source must give the same tags")
        return self

    @property
    def tags(self) -> frozenset[str]:
        """The row tags (every source gives the same)."""
        return frozenset(self.sources[0].tags)

    @property
    def fields(self) -> tuple[RedfishField, ...]:
        """Every field some source gives, once per name."""
        out: dict[str, RedfishField] = {}
        for s in self.sources:
            for f in s.fields:
                out.setdefault(f.name, f)
        return tuple(out.values())


class RedfishProfile(Profile):
    """A Redfish profile (module doc). ``fields`` are chassis-level (the profile's
    measurement, tagged like the device); ``tables`` give one reading per row."""

    protocol: Literal["redfish"]
    fields: tuple[RedfishField, ...] = ()
    tables: tuple[RedfishTable, ...] = ()

    def _fields_hint(self) -> str:
        return " or 'tables'"

    def shapes(self) -> list[ReadingShape]:
        return super().shapes() + [
            ReadingShape(
                measurement=t.measurement or self.measurement,
                tags=t.tags,
                fields=frozenset(f.name for f in t.fields),
            )
            for t in self.tables
        ]

    def field_specs(self) -> list[tuple[str, FieldSpec]]:
        return super().field_specs() + [
            (t.measurement or self.measurement, f) for t in self.tables for f in t.fields
        ]

    @model_validator(mode="after")
    def _redfish(self) -> RedfishProfile:
        if len({t.name for t in self.tables}) != len(self.tables):
            raise ValueError("two tables have the same name")
        for f in self.fields:
            if not f.sources or f.path is not None:
                raise ValueError(f"field {f.name!r}: give 'from' (resource and path)")
        return self

    def resources(self) -> frozenset[str]:
        """Every resource the profile reads."""
        out = {s.resource for f in self.fields for s in f.sources}
        out |= {s.resource for t in self.tables for s in t.sources}
        return frozenset(out)
