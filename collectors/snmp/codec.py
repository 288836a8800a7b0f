"""SNMP decoding and request planning, apart from any transport.

:mod:`collectors.snmp.poller` sends the requests; everything here is pure and works on a neutral
form of var-binds, so a faster transport only has to produce the same form:

* an OID is a tuple of ints;
* a value is ``(type, python value)``: ``("Integer32", 5)``, ``("Counter64", 2**40)``,
  ``("OctetString", b"Outlet 1")``; the v2c exceptions and NULL are
  ``("noSuchObject", None)``, ``("noSuchInstance", None)``, ``("endOfMibView", None)``,
  ``("Null", None)``; any other type keeps its name with its value.

Decoding, per value: an exception or a type of the wrong kind leaves that field out (a raw
code listed under ``no_value``, and a value outside its physical range, are refused and
counted after decoding, for every protocol: :mod:`dcim.plausible`); ``map`` is applied to the
raw code, then
``value = raw * scale * 10**exponent + offset``. A field's Python type never changes from
one poll to the next (InfluxDB rejects a field that flips between integer and float):
``counter`` and ``state`` fields with integral scale, offset and map and no exponent are
``int``, everything else is ``float``.

Tables (:class:`Walk`) are read column by column with GETBULK (GETNEXT for SNMPv1), all
columns of all tables of a profile side by side, at most ``max_varbinds`` columns per request
and ``max_repetitions`` rows per column; a column ends where the agent leaves its subtree.
From the second poll on, each column's row count of the last poll sizes the requests: a short
table's columns wait for the request that asks a long table's last rows (one GETBULK's
repetitions are the same for all its columns).

Rates (:func:`counter_rate`): a ``rate_of`` field is the per-second increase of a counter
between two polls, read with sysUpTime in the same request. A Counter32/Counter64 that went
down wrapped once at ``2**32``/``2**64`` if that makes an increase of less than half its
range, else it was reset; an agent whose sysUpTime went back restarted. A reset, a restart,
a counter of another type going down, or a rate above ``rate_max`` gives no rate for that
cycle: never a negative or a huge one.
"""

from __future__ import annotations

import functools
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from collectors.snmp.profile import SNMP_COUNTER_BITS, SnmpField, SnmpProfile, TableSpec
from dcim.reading import FieldValue, Reading

Oid = tuple[int, ...]
Value = tuple[str, Any]
VarBind = tuple[Oid, Value]

SYS_UPTIME: Oid = (1, 3, 6, 1, 2, 1, 1, 3, 0)
SYS_UPTIME_COLUMN: Oid = SYS_UPTIME[:-1]  # GETNEXT/GETBULK non-repeater that answers sysUpTime.0
INTEGER_TYPES = frozenset(
    {"Integer32", "Integer", "Counter32", "Counter64", "Gauge32", "TimeTicks"}
)
EXCEPTIONS = frozenset({"noSuchObject", "noSuchInstance", "endOfMibView"})
MAX_ROWS = 10_000  # per column and poll: a looping agent cannot walk us forever
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
# a backslash InfluxDB 1.x line protocol cannot carry in a tag value (see lineprotocol)
_BACKSLASH = re.compile(r'\\(?=$|[\\,= "])')


@functools.lru_cache(maxsize=8192)
def oid_of(text: str) -> Oid:
    """``"1.3.6.1"`` as ``(1, 3, 6, 1)``; cached: a table's rows look up the same few column
    OIDs for every cell of every poll (parsing them each time was about 5 % of the
    collector's CPU on a metered-outlet PDU, see benchmarks/profile_collect.py)."""
    return tuple(int(p) for p in text.split("."))


def dotted(oid: Oid) -> str:
    return ".".join(map(str, oid))


# -- one value ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Decoder:
    """Raw SNMP value -> canonical value for one field (None: leave the field out)."""

    name: str
    scale: float
    offset: float
    divisor: int | None  # raw / divisor is exact where scale = 1/divisor (0.1 -> 10)
    mapping: dict[int, float] | None
    as_int: bool
    text: bool  # OctetString field holding a number as text
    # the profile's "no reading" codes: decoded (dcim.plausible refuses and counts them)
    # but never a sample a rate is computed from
    no_value: frozenset[float]

    @classmethod
    def of(cls, f: SnmpField) -> _Decoder:
        ints = f.whole_scaling and not f.exponent
        return cls(
            name=f.name,
            scale=f.scale,
            offset=f.offset,
            divisor=f.divisor,
            mapping=dict(f.map) if f.map else None,
            as_int=ints and f.kind in ("counter", "state"),
            text=f.snmp_type == "OctetString",
            no_value=frozenset(f.no_value),
        )

    def quick(self) -> tuple[int, float, float]:
        """(mode, a, b): how :meth:`decode` takes an integer value without map or exponent,
        for a caller that inlines it (per cell, a method call less): 1 ``int(v) * a + b``
        (ints), 2 ``int(v) / a + b``, 3 ``float(int(v) * a + b)``; 0: it has a map, call
        :meth:`decode`."""
        if self.mapping is not None:
            return 0, 0.0, 0.0
        if self.as_int:
            return 1, int(self.scale), int(self.offset)
        if self.divisor is not None:
            return 2, self.divisor, self.offset
        return 3, self.scale, self.offset

    def raw(self, val: Value) -> float | None:
        """The raw number of ``val`` (before map and scale), None if it has none."""
        kind, v = val
        if kind in INTEGER_TYPES:
            return int(v)
        if self.text and kind == "OctetString":
            try:
                raw = float(bytes(v).decode("ascii").strip())
            except (ValueError, UnicodeDecodeError):
                return None
            return raw if math.isfinite(raw) else None
        return None  # an exception, Null or a type of the wrong kind

    def decode(self, val: Value, exp10: int = 0) -> FieldValue | None:
        kind, v = val
        if kind in INTEGER_TYPES and self.mapping is None and not exp10:
            # the usual value (an integer, no map, no exponent): as the general way below
            if self.as_int:
                return int(v) * int(self.scale) + int(self.offset)
            if self.divisor is not None:
                return int(v) / self.divisor + self.offset
            return float(int(v) * self.scale + self.offset)
        raw = self.raw(val)
        if raw is None:
            return None
        if self.mapping is not None:
            if raw not in self.mapping:
                return None
            raw = self.mapping[int(raw)]
        if self.as_int:
            return int(raw) * int(self.scale) + int(self.offset)
        if exp10:
            # 10**-n as a divisor keeps 2731 * 10**-1 at 273.1, not 273.09999999999997
            scaled = raw * self.scale * 10**exp10 if exp10 > 0 else raw * self.scale / 10**-exp10
            return float(scaled + self.offset)
        if self.divisor is not None:
            return raw / self.divisor + self.offset
        return float(raw * self.scale + self.offset)


def _index_of(index: Oid, names: int) -> Oid:
    """A row index without the trailing ``.0`` parts beyond the ``names`` it has (``1.0`` is
    row ``1`` of a one-part index; ``1.2`` stays ``1.2``)."""
    while len(index) > names and index[-1] == 0:
        index = index[:-1]
    return index


def tag_text(val: Value, mapping: Mapping[int, str] | None = None) -> str | None:
    """A column's value as a tag value (None: no tag). Text loses control characters (a
    newline would end a line-protocol point) and backslashes line protocol cannot carry."""
    kind, v = val
    if kind in INTEGER_TYPES:
        if mapping is not None:
            return mapping.get(int(v))
        return str(int(v))
    if kind in ("OctetString", "IpAddress"):
        text = _CONTROL.sub(" ", bytes(v).decode("utf-8", errors="replace")).strip()
        return _BACKSLASH.sub("/", text) or None
    if kind == "ObjectIdentifier":
        return str(v)
    return None


# -- rates ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of a counter: raw value, the agent's sysUpTime (hundredths of a second)
    from the same response if it had one, and the collector's monotonic clock (s)."""

    raw: int
    ticks: int | None
    mono_s: float


def counter_rate(prev: Sample | None, cur: Sample, *, bits: int | None) -> float | None:
    """Raw counts per second from ``prev`` to ``cur``, or None where there is no honest rate:
    no previous sample, the agent restarted (sysUpTime went back), no time passed, or the
    counter went down other than by one wrap of its ``bits`` (None: the type does not wrap)."""
    if prev is None:
        return None
    if prev.ticks is not None and cur.ticks is not None:
        if cur.ticks < prev.ticks:  # restart (or sysUpTime's own wrap after 497 days)
            return None
        dt = (cur.ticks - prev.ticks) / 100.0
    else:
        dt = cur.mono_s - prev.mono_s
    if dt <= 0:
        return None
    delta = cur.raw - prev.raw
    if delta < 0:
        if bits is None:
            return None
        delta += 2**bits
        if delta >= 2 ** (bits - 1):  # more than half the range: a reset, not a wrap
            return None
    return delta / dt


@dataclass(frozen=True, slots=True)
class _Rate:
    name: str
    counter: str  # the counter field's name
    factor: float  # canonical rate per raw count per second: counter scale * rate scale
    bits: int | None
    rate_max: float | None


def _rates(fields: Iterable[SnmpField]) -> list[_Rate]:
    by_name = {f.name: f for f in fields}
    out = []
    for f in by_name.values():
        if f.rate_of is None:
            continue
        src = by_name[f.rate_of]
        out.append(
            _Rate(
                name=f.name,
                counter=src.name,
                factor=src.scale * f.scale,
                bits=SNMP_COUNTER_BITS.get(src.snmp_type or ""),
                rate_max=f.rate_max,
            )
        )
    return out


class RateState:
    """The previous sample of every counter a rate is computed from, per device poller."""

    def __init__(self) -> None:
        self._prev: dict[tuple[str, ...], Sample] = {}

    def rate(self, key: tuple[str, ...], cur: Sample, r: _Rate) -> float | None:
        prev = self._prev.get(key)
        self._prev[key] = cur
        per_s = counter_rate(prev, cur, bits=r.bits)
        if per_s is None:
            return None
        value = per_s * r.factor
        if r.rate_max is not None and abs(value) > r.rate_max:
            return None
        return float(value)


def uptime_of(val: Value | None) -> int | None:
    if val is None or val[0] != "TimeTicks":
        return None
    return int(val[1])


# -- scalars --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScalarPlan:
    """The GETs of a profile's scalar fields: ``chunks`` of at most ``max_varbinds`` OIDs,
    each starting with sysUpTime.0 when a rate needs it."""

    chunks: list[list[Oid]]
    decoders: dict[Oid, _Decoder]
    rates: list[_Rate]
    counter_oids: dict[str, Oid]

    @classmethod
    def of(cls, fields: Sequence[SnmpField], max_varbinds: int) -> ScalarPlan:
        decoders = {oid_of(f.oid): _Decoder.of(f) for f in fields if f.oid}
        rates = _rates(fields)
        oids = list(decoders)
        chunks: list[list[Oid]] = []
        if rates:
            n = max(1, max_varbinds - 1)
            chunks = [[SYS_UPTIME, *oids[i : i + n]] for i in range(0, len(oids), n)]
        else:
            n = max_varbinds
            chunks = [oids[i : i + n] for i in range(0, len(oids), n)]
        counter_oids = {f.name: oid_of(f.oid) for f in fields if f.oid}
        return cls(chunks, decoders, rates, counter_oids)

    def decode(
        self,
        answers: Mapping[Oid, Value],
        uptimes: Mapping[Oid, int | None],
        mono_s: float,
        state: RateState,
        missing: list[tuple[str, str]],
    ) -> dict[str, FieldValue]:
        """Fields from the GET answers (``uptimes``: per OID, sysUpTime of its response).
        Fields left out are appended to ``missing`` as (field, why)."""
        out: dict[str, FieldValue] = {}
        raws: dict[str, int] = {}
        for oid, dec in self.decoders.items():
            val = answers.get(oid)
            if val is None:
                continue
            value = dec.decode(val)
            if value is None:
                missing.append((dec.name, val[0]))
                continue
            out[dec.name] = value
            if val[0] in INTEGER_TYPES and int(val[1]) not in dec.no_value:
                raws[dec.name] = int(val[1])
        for r in self.rates:
            if r.counter not in raws:
                continue
            oid = self.counter_oids[r.counter]
            sample = Sample(raws[r.counter], uptimes.get(oid), mono_s)
            rate = state.rate(("", r.counter), sample, r)
            if rate is not None:
                out[r.name] = rate
        return out


# -- tables ---------------------------------------------------------------------------------


Cell = tuple[Value, int | None]  # a value and the sysUpTime of the response that carried it
Columns = dict[Oid, dict[Oid, Cell]]  # column -> row index -> cell


def _compiled_walk_feed() -> Callable[..., bool] | None:
    """_fastber.walk_feed (collectors/snmp/_fastber.c), unless it is not built or
    DCIM_SNMP_DECODER=python asks for the Python (as for wire.py's decoder)."""
    if os.environ.get("DCIM_SNMP_DECODER", "").strip().lower() == "python":
        return None
    try:
        from collectors.snmp._fastber import walk_feed
    except ImportError:
        return None
    return walk_feed


_walk_feed = _compiled_walk_feed()


class Walk:
    """Walks columns side by side: ``request()`` gives the next request's columns (the cursor
    OIDs to GETBULK/GETNEXT from), ``feed()`` takes its answer, until ``done``.
    ``results[column][index]`` holds every cell found under each column."""

    def __init__(
        self,
        columns: Iterable[Oid],
        *,
        max_varbinds: int,
        uptime: bool,
        rows_hint: Mapping[Oid, int] | None = None,
    ) -> None:
        self.columns = sorted(set(columns))
        # Rows per column at the last poll: GETBULK asks for what is left of them plus one
        # (the step out of the subtree) rather than max_repetitions rows past a short table.
        self.rows_hint = dict(rows_hint or {})
        self.cursor: dict[Oid, Oid] = {c: c for c in self.columns}
        self.active: list[Oid] = list(self.columns)
        self.results: Columns = {c: {} for c in self.columns}
        self.uptime = uptime
        self.max_columns = max(1, max_varbinds - (1 if uptime else 0))
        self.looped: list[Oid] = []  # columns ended because the agent did not move forward

    @property
    def done(self) -> bool:
        return not self.active

    def _need(self, column: Oid) -> int | None:
        """Var-binds ``column`` still needs: the rows left of the last poll's count plus the
        step out of its subtree (None: not known, a first walk or a table that grew)."""
        hint = self.rows_hint.get(column)
        got = len(self.results[column])
        if hint is None or got > hint:
            return None
        return hint - got + 1

    def _needs(self, columns: Sequence[Oid]) -> list[int | None]:
        """:meth:`_need` of each of ``columns`` (inline: a method call less per column)."""
        hints, results = self.rows_hint, self.results
        out: list[int | None] = []
        for column in columns:
            hint = hints.get(column)
            got = len(results[column])
            out.append(None if hint is None or got > hint else hint - got + 1)
        return out

    def request(self, cap: int | None = None) -> list[Oid]:
        """The columns of the next request (at most ``max_varbinds`` OIDs with sysUpTime).

        With ``cap`` (max-repetitions) and every column's size known from the last poll, a
        short column waits for the request in which the long ones' last rows are asked:
        one GETBULK's repetitions are the same for all its columns, so a 3-row column asked
        next to a 24-row one would bring back 10 var-binds of the next column, each decoded
        and dropped (about a sixth of a metered-outlet PDU's var-binds). Nor does a column
        join a request whose repetitions are more than twice its rows left (a 3-phase column
        next to 24 outlets asked 25 rows at once): it has a request of its own, cheaper than
        decoding and dropping what lies past its end."""
        active = self.active
        if cap is not None and len(active) > 1:
            needs = self._needs(active)
            if None not in needs:
                top = max(n for n in needs if n is not None)
                reps = min(cap, top)
                active = [
                    c
                    for c, n in zip(active, needs, strict=True)
                    if n and n > top - cap and 2 * n >= reps
                ]
        return active[: self.max_columns]

    def repetitions(self, batch: Sequence[Oid], cap: int) -> int:
        """max-repetitions for ``batch``: at most ``cap``, no more than the rows expected."""
        needs = self._needs(batch)
        return max(1, min(cap, max(cap if n is None else n for n in needs)))

    def rows_seen(self) -> dict[Oid, int]:
        return {c: len(rows) for c, rows in self.results.items()}

    def cursors(self, batch: Sequence[Oid]) -> list[Oid]:
        return [self.cursor[c] for c in batch]

    def end(self, column: Oid) -> None:
        if column in self.active:
            self.active.remove(column)

    def feed(self, batch: Sequence[Oid], var_binds: Sequence[VarBind], ticks: int | None) -> None:
        """The repeated var-binds of one GETBULK (or GETNEXT) answer for ``batch``, in
        row-major order as the agent sent them (without the non-repeaters)."""
        n = len(batch)
        if not var_binds:  # nothing at all: end the batch rather than ask again forever
            for col in batch:
                self.end(col)
            return
        # per place in the batch: its column's cells, cursor and whether it ended
        # (lists by place: an OID tuple's hash is not cached, a dict lookup hashes it again)
        cells = [self.results[c] for c in batch]
        cursors = [self.cursor[c] for c in batch]
        ended = [False] * n
        if _walk_feed is None or not _walk_feed(
            batch, var_binds, ticks, cells, cursors, ended, self.looped, EXCEPTIONS, MAX_ROWS
        ):
            self._feed_py(batch, var_binds, ticks, cells, cursors, ended)
        for j, col in enumerate(batch):
            self.cursor[col] = cursors[j]
            # A column the agent left out of a shortened answer stays active: asked again.
            if ended[j]:
                self.end(col)

    def _feed_py(
        self,
        batch: Sequence[Oid],
        var_binds: Sequence[VarBind],
        ticks: int | None,
        cells: list[dict[Oid, Cell]],
        cursors: list[Oid],
        ended: list[bool],
    ) -> None:
        """feed's loop (the reference; _fastber.walk_feed does the same in C)."""
        n = len(batch)
        lens = [len(c) for c in batch]
        for k, (oid, val) in enumerate(var_binds):
            j = k % n
            if ended[j]:
                continue
            lc = lens[j]
            if val[0] in EXCEPTIONS or len(oid) <= lc or oid[:lc] != batch[j]:
                ended[j] = True
                continue
            if oid <= cursors[j]:  # not lexicographically after: a broken agent
                self.looped.append(batch[j])
                ended[j] = True
                continue
            rows = cells[j]
            rows[oid[lc:]] = (val, ticks)
            cursors[j] = oid
            if len(rows) >= MAX_ROWS:
                ended[j] = True


_NONE: dict[Oid, Any] = {}  # a column not walked (never written to)
RowTags = tuple[int | None, dict[str, str] | None]  # first index part, tags (see rows)


class TablePlan:
    """How one table's rows become readings."""

    def __init__(self, spec: TableSpec, measurement: str) -> None:
        self.spec = spec
        self.measurement = measurement
        self.fields = [(f, _Decoder.of(f)) for f in spec.fields if f.oid]
        self.field_columns = [oid_of(f.oid) for f in spec.fields if f.oid]
        # per field: its column, whether it has conditions (``when``, ``exponent``), and
        # how rows() decodes its usual value inline (see _Decoder.quick)
        self._cells = [
            (f, dec, col, bool(f.when or f.exponent), *dec.quick())
            for (f, dec), col in zip(self.fields, self.field_columns, strict=True)
        ]
        self._tag_columns = [(t, oid_of(t.oid)) for t in spec.tags]
        self.rates = _rates(spec.fields)
        self.columns = frozenset(oid_of(c) for c in spec.columns())
        # the columns that give values or decide them (fields, when, exponent, row count)
        value: set[str] = {f.oid for f in spec.fields if f.oid}
        for f in spec.fields:
            value.update(f.when or ())
            value.update(e.oid for e in f.exponent)
        if spec.rows_count_oid:
            value.add(spec.rows_count_oid.rsplit(".", 1)[0])
        self.value_columns = frozenset(oid_of(c) for c in value)
        # Each row's tags, kept while the tag columns are the same objects (the poller keeps
        # them between their walks, see ProfilePlan.tag_columns): not 48 outlet names
        # decoded and cleaned (two regular expressions each) and 24 index tags made per poll.
        self._tag_memo: dict[Oid, RowTags] = {}
        self._tag_memo_of: Sequence[Mapping[Oid, Cell]] = ()
        self._tag_memo_base: Mapping[str, str] | None = None

    def rows_of(self, walked: Columns) -> frozenset[Oid]:
        """The row indexes the table's field columns answered."""
        return frozenset().union(*(walked.get(c, _NONE) for c in self.field_columns))

    def _row_tags(self, index: Oid, columns: Sequence[Mapping[Oid, Cell]]) -> RowTags:
        """Row ``index``'s first index part (for ``rows_count_oid``) and tags (its index's,
        then its tag columns'; None: the index does not fit the table's)."""
        spec = self.spec
        named = _index_of(index, len(spec.index))
        first = named[0] if named else None
        tags: dict[str, str] = {}
        if len(spec.index) == len(named):
            tags.update(zip(spec.index, map(str, named), strict=True))
        elif len(spec.index) == 1:
            tags[spec.index[0]] = dotted(named)
        else:
            return first, None
        for (t, _), column in zip(self._tag_columns, columns, strict=True):
            cell = column.get(index)
            text = tag_text(cell[0], t.map) if cell is not None else None
            if text is not None:
                tags[t.name] = text
        return first, tags

    def rows(
        self,
        walked: Columns,
        base_tags: Mapping[str, str],
        time_ns: int,
        mono_s: float,
        state: RateState,
        problems: list[tuple[str, str]],
    ) -> list[Reading]:
        spec = self.spec
        indexes = sorted(set().union(*(walked.get(c, _NONE) for c in self.field_columns)))
        rows = self._rows_count(walked)
        out: list[Reading] = []
        rates = self.rates  # a table without rates keeps no raw values
        # each column's cells looked up once per poll, not once per row
        tag_cells = [walked.get(tcol, _NONE) for _, tcol in self._tag_columns]
        cells = [
            (f, dec, walked.get(col, _NONE), c, mode, a, b)
            for f, dec, col, c, mode, a, b in self._cells
        ]
        # the rows' tags of the last poll, while its tag columns and the device's tags are
        # these very ones: each row's merged tags are one dict, made once and shared by its
        # readings from poll to poll (no consumer of a Reading changes its tags)
        memo = self._tag_memo
        if (
            base_tags is not self._tag_memo_base
            or len(tag_cells) != len(self._tag_memo_of)
            or any(a is not b for a, b in zip(tag_cells, self._tag_memo_of, strict=True))
        ):
            memo = self._tag_memo = {}
            self._tag_memo_of = tag_cells
            self._tag_memo_base = base_tags
        measurement = self.measurement
        for index in indexes:
            row = memo.get(index)
            if row is None:
                first, row_tags = self._row_tags(index, tag_cells)
                row = (first, None if row_tags is None else {**base_tags, **row_tags})
                if len(memo) < MAX_ROWS:
                    memo[index] = row
            first, tags = row
            if rows is not None and first is not None and first > rows:
                continue  # a line the device says it does not have: not a reading
            if tags is None:
                problems.append((f"{spec.name}.{dotted(index)}", "index parts do not match"))
                continue
            fields: dict[str, FieldValue] = {}
            raws: dict[str, tuple[int, int | None]] | None = {} if rates else None
            value: FieldValue | None
            for f, dec, column, conditions, mode, a, b in cells:
                cell = column.get(index)
                if cell is None:
                    continue
                val = cell[0]
                if mode and not conditions and val[0] in INTEGER_TYPES:
                    # _Decoder.decode's usual way, inline (the same operations)
                    if mode == 1:
                        value = int(val[1]) * a + b
                    elif mode == 2:
                        value = int(val[1]) / a + b
                    else:
                        value = float(int(val[1]) * a + b)
                elif conditions:
                    if not self._when(f, walked, index):
                        continue
                    exp10 = self._exp10(f, walked, index)
                    if exp10 is None:
                        problems.append((f.name, "exponent column missing"))
                        continue
                    value = dec.decode(val, exp10)
                else:
                    value = dec.decode(val)
                if value is None:
                    problems.append((f.name, val[0]))
                    continue
                fields[dec.name] = value
                if raws is not None and val[0] in INTEGER_TYPES and int(val[1]) not in dec.no_value:
                    raws[dec.name] = (int(val[1]), cell[1])
            if raws:
                key = dotted(index)
                for r in rates:
                    if r.counter in raws:
                        raw, ticks = raws[r.counter]
                        rate = state.rate(
                            (spec.name, key, r.counter), Sample(raw, ticks, mono_s), r
                        )
                        if rate is not None:
                            fields[r.name] = rate
            if fields:
                out.append(Reading(measurement, tags, fields, time_ns))
        return out

    def _rows_count(self, walked: Columns) -> int | None:
        """The value of the table's ``rows_count_oid`` (None: no such scalar, or no answer)."""
        if not self.spec.rows_count_oid:
            return None
        col, _, last = self.spec.rows_count_oid.rpartition(".")
        cell = walked.get(oid_of(col), {}).get((int(last),))
        if cell is None or cell[0][0] not in INTEGER_TYPES:
            return None
        return int(cell[0][1])

    @staticmethod
    def _when(f: SnmpField, walked: Columns, index: Oid) -> bool:
        for col, accepted in (f.when or {}).items():
            cell = walked.get(oid_of(col), {}).get(index)
            if cell is None or cell[0][0] not in INTEGER_TYPES or int(cell[0][1]) not in accepted:
                return False
        return True

    @staticmethod
    def _exp10(f: SnmpField, walked: Columns, index: Oid) -> int | None:
        exp10 = 0
        for e in f.exponent:
            cell = walked.get(oid_of(e.oid), {}).get(index)
            if cell is None or cell[0][0] not in INTEGER_TYPES:
                return None
            exp10 += e.times * (int(cell[0][1]) + e.plus)
        return exp10


@dataclass
class ProfilePlan:
    """Everything one poll of one profile asks and how its answers become readings."""

    measurement: str
    scalars: ScalarPlan
    tables: list[TablePlan]
    table_rates: bool = False
    columns: list[Oid] = field(default_factory=list)
    # Columns read only as tags (outlet names): the poller may walk them less often than
    # the others (``snmp.tag_refresh_s``); ``value_columns``: all the others.
    tag_columns: list[Oid] = field(default_factory=list)
    value_columns: list[Oid] = field(default_factory=list)

    @classmethod
    def of(cls, profile: SnmpProfile, *, max_varbinds: int) -> ProfilePlan:
        tables = [TablePlan(t, t.measurement or profile.measurement) for t in profile.tables]
        columns = sorted({c for t in tables for c in t.columns})
        values = {c for t in tables for c in t.value_columns}
        return cls(
            measurement=profile.measurement,
            scalars=ScalarPlan.of(profile.fields, max_varbinds),
            tables=tables,
            table_rates=any(t.rates for t in tables),
            columns=columns,
            tag_columns=[c for c in columns if c not in values],
            value_columns=[c for c in columns if c in values],
        )

    def walk(
        self,
        max_varbinds: int,
        rows_hint: Mapping[Oid, int] | None = None,
        columns: Iterable[Oid] | None = None,
    ) -> Walk:
        """A walk of ``columns`` (default: every column of the profile's tables)."""
        return Walk(
            self.columns if columns is None else columns,
            max_varbinds=max_varbinds,
            uptime=self.table_rates,
            rows_hint=rows_hint,
        )

    def rows_of(self, walked: Columns) -> tuple[frozenset[Oid], ...]:
        """Per table, the row indexes its field columns answered."""
        return tuple(t.rows_of(walked) for t in self.tables)
