"""SNMP profiles: scalar fields read by OID, and tables walked each poll (one reading per row).

Field keys beyond the common ones (:class:`dcim.profiles.FieldSpec`, with ``no_value`` and
``range``: :mod:`dcim.plausible`): ``oid``, ``snmp_type``, and the SNMP extras: in a table,
``when`` (column OID -> accepted codes: the field exists only in rows whose columns hold one
of them, e.g. entPhySensorType celsius(8)) and ``exponent``; ``rate_of`` makes a field the
per-second rate of a counter field of the same row, times ``scale`` (no ``oid``), computed by
the collector across wraps and never across an agent restart; a rate above ``rate_max`` is
refused as impossible.
"""

from __future__ import annotations

import re
from typing import Literal

from dcim.modelbase import BaseModel, ConfigDict, Field, model_validator
from dcim.profiles import RESERVED_TAGS, FieldSpec, Profile, ReadingShape

SnmpType = Literal["Integer32", "Gauge32", "Counter32", "Counter64", "OctetString", "TimeTicks"]
SNMP_COUNTER_BITS = {"Counter32": 32, "Counter64": 64}
OID_PATTERN = r"^\d+(\.\d+)+$"

_OID = re.compile(OID_PATTERN)
_TAG_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Exponent(_Strict):
    """A power of ten read from another column of the same row,
    ``10 ** (times * (raw + plus))`` (ENTITY-SENSOR-MIB: entPhySensorScale gives
    ``times: 3, plus: -9``, entPhySensorPrecision ``times: -1``)."""

    oid: str = Field(pattern=OID_PATTERN)
    times: int = 1
    plus: int = 0


class SnmpField(FieldSpec):
    """One field of an SNMP profile (see the module docstring for the keys)."""

    oid: str | None = Field(default=None, pattern=OID_PATTERN)
    snmp_type: SnmpType | None = None
    when: dict[str, tuple[int, ...]] | None = None
    exponent: tuple[Exponent, ...] = ()
    rate_of: str | None = None
    rate_max: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _snmp_extras(self) -> SnmpField:
        if self.when:
            for oid in self.when:
                if not _OID.match(oid):
                    raise ValueError(f"field {self.name!r}: 'when' key {oid!r} is not an OID")
        if self.rate_of is not None:
            if self.oid is not None:
                raise ValueError(
                    f"field {self.name!r}: a rate ('rate_of') is computed, it has no 'oid'"
                )
            if self.kind != "gauge":
                raise ValueError(f"field {self.name!r}: a rate ('rate_of') is a gauge")
        elif self.rate_max is not None:
            raise ValueError(f"field {self.name!r}: 'rate_max' needs 'rate_of'")
        return self

    @property
    def counter_bits(self) -> int | None:
        # Counter64 never wraps in practice; Integer32 is signed: no defined wrap.
        return 32 if self.snmp_type == "Counter32" else None


class TagSpec(_Strict):
    """A table's tag read from a column (a text column as it is, an integer column as its
    number or through ``map``), e.g. the outlet's name. ``oid``: the column, without index."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    oid: str = Field(pattern=OID_PATTERN)
    map: dict[int, str] | None = None
    description: str = ""


class TableSpec(_Strict):
    """A table: the columns under ``fields`` and ``tags`` are walked (GETBULK) and give one
    reading per row. The row index (what follows the column OID) becomes the tags named in
    ``index``, one per index component (one name for a multi-part index: the dotted index).
    Trailing ``.0`` components beyond the names of ``index`` are accepted and dropped: some
    UPS-MIB agents index upsInputTable rows ``1.0``, ``2.0`` where the MIB says ``1``, ``2``.
    Field and tag ``oid``s are column OIDs without index."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    measurement: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""
    index: tuple[str, ...] = Field(min_length=1)
    # A scalar (full OID, e.g. upsInputNumLines.0) holding how many rows the device has:
    # rows whose first index component is above it are lines it does not have (an agent
    # answering 0 on rows 2 and 3 of a single-phase UPS), not readings.
    rows_count_oid: str | None = Field(default=None, pattern=OID_PATTERN)
    tags: tuple[TagSpec, ...] = ()
    fields: tuple[SnmpField, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _names(self) -> TableSpec:
        tags = [*self.index, *(t.name for t in self.tags)]
        for name in tags:
            if not _TAG_NAME.match(name):
                raise ValueError(f"table {self.name!r}: tag name {name!r} is not [a-z][a-z0-9_]*")
            if name in RESERVED_TAGS:
                raise ValueError(
                    f"table {self.name!r}: tag {name!r} is reserved for every reading "
                    f"({', '.join(sorted(RESERVED_TAGS))}); name it after the row (e.g. outlet)"
                )
        if len(set(tags)) != len(tags):
            raise ValueError(f"table {self.name!r}: a tag name is used twice in {tags}")
        _check_fields(self.fields, table=True)
        return self

    def columns(self) -> frozenset[str]:
        """Every column OID the table reads (fields, tags, when and exponent columns)."""
        out = {t.oid for t in self.tags}
        if self.rows_count_oid:  # walked as a column of one row (its index: the last part)
            out.add(self.rows_count_oid.rsplit(".", 1)[0])
        for f in self.fields:
            if f.oid:
                out.add(f.oid)
            out.update(f.when or ())
            out.update(e.oid for e in f.exponent)
        return frozenset(out)


def _check_fields(fields: tuple[SnmpField, ...], *, table: bool) -> None:
    seen: dict[str, SnmpField] = {}
    for f in fields:
        if f.name in seen:
            raise ValueError(f"field {f.name!r} is defined twice")
        seen[f.name] = f
    for f in fields:
        if not table and (f.when or f.exponent):
            raise ValueError(f"field {f.name!r}: 'when' and 'exponent' are for table columns")
        if f.rate_of is None:
            if not f.oid:
                raise ValueError(f"field {f.name!r}: an SNMP profile needs 'oid' on every field")
            continue
        src = seen.get(f.rate_of)
        if src is None or src.kind != "counter" or src.rate_of is not None:
            counters = sorted(g.name for g in fields if g.kind == "counter")
            raise ValueError(
                f"field {f.name!r}: 'rate_of' must name a counter field of the same "
                f"{'table' if table else 'profile'} (counters: {counters})"
            )


class SnmpProfile(Profile):
    """An SNMP profile: scalar ``fields`` (one reading per poll) and ``tables`` (one reading
    per row, see :class:`TableSpec`)."""

    protocol: Literal["snmp"]
    fields: tuple[SnmpField, ...] = ()
    tables: tuple[TableSpec, ...] = ()

    @model_validator(mode="after")
    def _snmp(self) -> SnmpProfile:
        if len({t.name for t in self.tables}) != len(self.tables):
            raise ValueError("two tables have the same name")
        _check_fields(self.fields, table=False)
        return self

    def _fields_hint(self) -> str:
        return " or 'tables'"

    def shapes(self) -> list[ReadingShape]:
        return super().shapes() + [
            ReadingShape(
                measurement=t.measurement or self.measurement,
                tags=frozenset({*t.index, *(g.name for g in t.tags)}),
                fields=frozenset(f.name for f in t.fields),
            )
            for t in self.tables
        ]

    def field_specs(self) -> list[tuple[str, FieldSpec]]:
        return super().field_specs() + [
            (t.measurement or self.measurement, f) for t in self.tables for f in t.fields
        ]

    def field(self, name: str) -> SnmpField:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"profile {self.name!r} has no field {name!r}")
