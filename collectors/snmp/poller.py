"""SNMP collector: per poll, a GET of a profile's scalar OIDs and a walk of its tables
(v1, v2c, v3).

v1/v2c devices share the process's :mod:`collectors.snmp.wire` client (one UDP socket,
requests multiplexed by request id and checked against address and community, so a dead
agent only costs its own timeout, and several devices behind one agent address never get
each other's answers). SNMPv3 devices use pysnmp through :mod:`collectors.snmp.usm`, which
is imported only then; each device sends its own ``snmp.context`` (contextName) and
``snmp.context_engine_id``.

Layers: :meth:`SnmpPoller._request` is the transport (one GET, GETNEXT or GETBULK exchange,
answers turned into the neutral form of :mod:`collectors.snmp.codec`); ``_get_chunk`` and
``_walk`` handle the protocol's error statuses (SNMPv1 noSuchName, tooBig); what to ask and
how answers become readings (decoding, table rows, counter rates) is all in
:mod:`collectors.snmp.codec`.

Per device: ``timeout_s`` and ``retries`` (the engine resends), ``snmp.max_varbinds`` OIDs
per request and ``snmp.max_repetitions`` rows per column of a GETBULK (halved on tooBig, and
kept so for the device's later polls).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from collectors.snmp import wire as snmp_wire
from collectors.snmp.codec import (
    EXCEPTIONS,
    SYS_UPTIME,
    SYS_UPTIME_COLUMN,
    Columns,
    Oid,
    ProfilePlan,
    RateState,
    Value,
    VarBind,
    dotted,
    uptime_of,
)
from collectors.snmp.options import SnmpOptions
from collectors.snmp.profile import SnmpProfile
from dcim.config import Device, SiteConfig
from dcim.protocols import PollError, device_profile
from dcim.reading import Reading

if TYPE_CHECKING:
    from collectors.snmp.usm import PysnmpTarget

log = logging.getLogger(__name__)
# A max-repetitions lowered by a tooBig is tried again at snmp.max_repetitions after this long
# (an agent's answer that did not fit may fit later: fewer rows, a firmware update).
MAX_REP_RETRY_S = 3600.0
# Error answers to GETBULKs with the scalars in them (see SnmpPoller._fold) after which a
# device's scalars are asked by GET only.
FOLD_ERRORS_MAX = 3

_NO_SUCH_NAME, _TOO_BIG, _AUTHORIZATION_ERROR = 2, 1, 16
# v1/v2c requests go through collectors.snmp.wire ("wire": its own BER codec, about 7 times
# less CPU per value than pysnmp, see benchmarks/collect.py) or through pysnmp ("pysnmp").
# SNMPv3 always uses pysnmp (USM authentication and privacy), imported only then
# (collectors.snmp.usm).
V1_V2C_TRANSPORT = os.environ.get("DCIM_SNMP_TRANSPORT", "wire")


def close_shared_engine() -> None:
    """Release pysnmp's engines, if this process ever started one (see collectors.snmp.usm)."""
    import sys

    usm = sys.modules.get("collectors.snmp.usm")
    if usm is not None:
        usm.close_shared_engine()


# -- the poller -----------------------------------------------------------------------------

_Answer = tuple[int, int, list[VarBind], int]  # status, index, var-binds, time_ns


class SnmpPoller:
    """Reads one SNMP device: GET of the profile's scalar OIDs, ``max_varbinds`` per request,
    and a walk of its tables' columns (GETBULK, ``max_repetitions`` rows per column)."""

    def __init__(self, cfg: SiteConfig, device: Device, profile: SnmpProfile | None = None) -> None:
        if (
            not isinstance(device.options, SnmpOptions)
            or device.host is None
            or device.port is None
        ):
            raise PollError("config", f"device {device.name!r} has no host/port/snmp options")
        if profile is None:
            profile = device_profile(cfg, device, SnmpProfile, "an SNMP profile")
        self.device = device
        self._opts: SnmpOptions = device.options
        self._profile_name = profile.name
        self._tags = cfg.tags_of(device)
        self._timeout = cfg.timeout_of(device)
        self._retries = cfg.retries_of(device)
        self._plan = ProfilePlan.of(profile, max_varbinds=self._opts.max_varbinds)
        self._rates = RateState()
        self._rows_hint: dict[Oid, int] = {}
        # GETBULK max-repetitions: ``snmp.max_repetitions``, halved by a tooBig to a request
        # asked at it (an agent whose answers would not fit its message size is not asked that
        # much again), and tried again at ``snmp.max_repetitions`` after MAX_REP_RETRY_S.
        self._max_rep = self._opts.max_repetitions
        self._max_rep_retry = 0.0  # monotonic time to try snmp.max_repetitions again
        self._fold_errors = 0  # error answers to a GETBULK with the scalars in it
        scalars = list(self._plan.scalars.decoders)
        self._foldable = (  # see _fold
            scalars
            if scalars
            and self._plan.columns
            and self._opts.version == "2c"
            and len(scalars) + 2 <= self._opts.max_varbinds
            else []
        )
        # The tag-only columns (outlet names) as last walked, when, and the rows of each
        # table then: walked again after ``snmp.tag_refresh_s``, or in the same poll when a
        # table's rows are not those of then (see _walk_tables).
        self._tag_cells: Columns | None = None
        self._tags_at = 0.0
        self._tag_rows: tuple[frozenset[Oid], ...] = ()
        self._no_zero: set[Oid] = set()  # scalar OIDs not answered at OID.0 either
        self._pysnmp: PysnmpTarget | None = None
        if self._opts.version == "3" or V1_V2C_TRANSPORT != "wire":
            # pysnmp imported here, while the collector builds its pollers, not on the loop
            # at the first poll (a second of import would hold every other device's poll).
            import collectors.snmp.usm  # noqa: F401
        self._wire: tuple[snmp_wire.WireClient, snmp_wire.Target] | None = None
        self._warned: set[str] = set()

    async def _configure(self) -> None:
        """Requests go through ``self._wire`` (v1/v2c) or ``self._pysnmp`` (v3)."""
        opts = self._opts
        if opts.version in ("1", "2c") and V1_V2C_TRANSPORT == "wire":
            client = snmp_wire.shared_client()
            if self._wire is None or self._wire[0] is not client:
                self._wire = (client, await self._wire_target())
            self._pysnmp = None
            return
        self._wire = None
        if self._pysnmp is None or self._pysnmp.stale():
            from collectors.snmp.usm import PysnmpTarget

            host, port = self.device.host, self.device.port
            assert host is not None and port is not None
            target = PysnmpTarget(self.device.name, opts, host, port, self._timeout, self._retries)
            await target.configure()
            self._pysnmp = target

    async def poll(self) -> list[Reading]:
        wire = self._wire
        if wire is None or wire[0] is not snmp_wire.shared_client():
            await self._configure()  # (a v1/v2c device set up already: nothing to do)
        plan = self._plan
        problems: list[tuple[str, str]] = []
        answers: dict[Oid, Value] = {}
        uptimes: dict[Oid, int | None] = {}
        time_ns = 0
        walked: Columns = {}
        folded = self._fold()
        if folded:  # the scalars asked in the walk's first GETBULK (see _fold)
            walked, time_ns = await self._walk_tables(folded, answers, uptimes)
        for chunk in plan.scalars.chunks:
            if folded:  # what the GETBULK did not answer: by GET, as without it
                helper = chunk[:1] if plan.scalars.rates and chunk[0] == SYS_UPTIME else []
                rest = [o for o in chunk[len(helper) :] if o not in answers]
                if not rest:
                    continue
                chunk = helper + rest
            got_ns = await self._get_chunk(chunk, answers, uptimes)
            time_ns = time_ns or got_ns
        await self._ask_at_zero(answers, uptimes)
        if plan.columns and not folded:
            walked, got_ns = await self._walk_tables()
            time_ns = time_ns or got_ns
        time_ns = time_ns or time.time_ns()
        mono_s = time.monotonic()
        out: list[Reading] = []
        fields = plan.scalars.decode(answers, uptimes, mono_s, self._rates, problems)
        if fields:
            out.append(Reading(plan.measurement, dict(self._tags), fields, time_ns))
        for table in plan.tables:
            out += table.rows(walked, self._tags, time_ns, mono_s, self._rates, problems)
        for name, why in problems:
            self._warn_missing(name, why)
        if not out:
            raise PollError("decode", f"no value of profile {self._profile_name!r} could be read")
        return out

    def _stop_folding(self, why: str) -> None:
        """Ask this device's scalars by GET from now on (as without :meth:`_fold`)."""
        if self._foldable:
            log.info(
                "%s: the agent %s to a GETBULK with the scalar fields in it; asking them by "
                "GET from now on",
                self.device.name,
                why,
            )
        self._foldable = []

    def _fold(self) -> list[Oid]:
        """The scalar OIDs to ask as non-repeaters of the walk's first GETBULK, one request
        fewer a poll than a GET of them then the walk (a metered-outlet PDU: 3 requests ->
        2; each request costs about as much CPU as decoding 40 var-binds). A non-repeater is
        a GETNEXT: each is asked from the OID just before it (``x.0`` from ``x``, ``x.5``
        from ``x.4``), and taken only when the answer is that very OID; any other answer
        (a missing OID, one in between) is asked again by GET, as without this. SNMPv2c
        only (v1 has no GETBULK; v3 through pysnmp), and only when the scalars, sysUpTime
        and a table column fit ``max_varbinds``."""
        return self._foldable if self._wire is not None else []

    async def _ask_at_zero(self, answers: dict[Oid, Value], uptimes: dict[Oid, int | None]) -> None:
        """Scalar fields read from a table's row 1 (upsOutputPower.1) that the agent answers
        at ``.1.0`` (rows indexed ``1.0``): asked again at OID + ``.0``, and the answer taken
        as the field's. An OID that answers at neither is not asked at ``.0`` again."""
        lost = [
            oid
            for oid in self._plan.scalars.decoders
            if oid not in self._no_zero and answers.get(oid, ("noSuchInstance",))[0] in EXCEPTIONS
        ]
        if not lost:
            return
        got: dict[Oid, Value] = {}
        got_uptimes: dict[Oid, int | None] = {}
        n = max(1, len(self._plan.scalars.chunks[0]))
        zeros = [(*oid, 0) for oid in lost]
        for i in range(0, len(zeros), n):
            await self._get_chunk(zeros[i : i + n], got, got_uptimes)
        for oid, zero in zip(lost, zeros, strict=True):
            val = got.get(zero)
            if val is None or val[0] in EXCEPTIONS:
                self._no_zero.add(oid)
                continue
            answers[oid] = val
            uptimes[oid] = got_uptimes.get(zero)

    # -- requests ----------------------------------------------------------------------------

    def _status_error(self, status: int, index: int) -> PollError:
        return PollError(
            "auth" if status == _AUTHORIZATION_ERROR else "protocol",
            f"{self.device.name}: error-status {status} at index {index}",
        )

    async def _get_chunk(
        self,
        oids: list[Oid],
        out: dict[Oid, Value],
        uptimes: dict[Oid, int | None],
    ) -> int:
        """GET ``oids`` into ``out`` (and each answer's sysUpTime into ``uptimes`` when the
        chunk asked for it); returns the time of the first response (0: none).

        A chunk of a profile with counter rates starts with sysUpTime.0 as a helper (the
        agent's clock for the rates): a batch left with only that helper (the other OIDs
        missing) is not sent, unless the chunk also reads sysUpTime.0 as a field. Without
        rates sysUpTime.0 is only ever a field, read like any other."""
        helper = bool(self._plan.scalars.rates) and oids[0] == SYS_UPTIME
        helper_only = helper and SYS_UPTIME not in oids[1:]
        pending = [oids]
        first_ns = 0
        while pending:
            batch = pending.pop()
            if not batch or helper_only and batch == [SYS_UPTIME]:
                continue
            status, index, var_binds, got_ns = await self._request("get", batch)
            first_ns = first_ns or got_ns
            if status == _NO_SUCH_NAME and 0 < index <= len(batch):
                # SNMPv1 fails the whole request for one missing OID: drop it, ask again.
                self._warn_missing(dotted(batch[index - 1]), "noSuchName")
                pending.append(batch[: index - 1] + batch[index:])
                continue
            if status == _TOO_BIG:
                # Halve what was asked, the helper kept in front of both halves ([helper, x]
                # is as small as it gets: splitting it would ask [helper, x] again).
                up = [SYS_UPTIME] if helper and batch[0] == SYS_UPTIME else []
                rest = batch[len(up) :]
                if len(rest) > 1:
                    half = len(rest) // 2
                    pending += [up + rest[:half], up + rest[half:]]
                    continue
            if status:
                raise self._status_error(status, index)
            ticks = None
            for oid, val in var_binds:
                if oid == SYS_UPTIME:
                    ticks = uptime_of(val)
            for oid, val in var_binds:
                out[oid] = val
                if batch[0] == SYS_UPTIME:
                    uptimes[oid] = ticks
        return first_ns

    async def _walk_tables(
        self,
        folded: Sequence[Oid] = (),
        answers: dict[Oid, Value] | None = None,
        uptimes: dict[Oid, int | None] | None = None,
    ) -> tuple[Columns, int]:
        """Every column of the profile's tables; the tag-only columns (outlet names) from
        their last walk while it is under ``snmp.tag_refresh_s`` old and every table has the
        rows it had then (else walked in this poll too): about a third of a metered-outlet
        PDU's var-binds, each one decoded, every poll, for names that seldom change.
        ``folded`` scalars are asked in the first GETBULK (see :meth:`_fold`), their answers
        put in ``answers`` and ``uptimes``."""
        plan = self._plan
        cached = self._tag_cells
        if (
            not plan.tag_columns
            or cached is None
            or time.monotonic() - self._tags_at >= self._opts.tag_refresh_s
        ):
            walked, first_ns = await self._walk(plan.columns, folded, answers, uptimes)
            self._keep_tags(walked)
            return walked, first_ns
        walked, first_ns = await self._walk(plan.value_columns, folded, answers, uptimes)
        if plan.rows_of(walked) == self._tag_rows:
            walked.update(cached)
            return walked, first_ns
        tags, _ = await self._walk(plan.tag_columns)  # rows came or went: their tags now
        walked.update(tags)
        self._keep_tags(walked)
        return walked, first_ns

    def _keep_tags(self, walked: Columns) -> None:
        plan = self._plan
        if not plan.tag_columns:
            return
        self._tag_cells = {c: walked[c] for c in plan.tag_columns if c in walked}
        self._tags_at = time.monotonic()
        self._tag_rows = plan.rows_of(walked)

    async def _walk(
        self,
        columns: list[Oid],
        folded: Sequence[Oid] = (),
        answers: dict[Oid, Value] | None = None,
        uptimes: dict[Oid, int | None] | None = None,
    ) -> tuple[Columns, int]:
        """``columns`` of the profile's tables: GETBULK (SNMPv1: GETNEXT); with ``folded``
        scalars (SNMPv2c) asked in the first GETBULK as non-repeaters."""
        walk = self._plan.walk(self._opts.max_varbinds, self._rows_hint, columns)
        v1 = self._opts.version == "1"
        if self._max_rep < self._opts.max_repetitions and time.monotonic() >= self._max_rep_retry:
            self._max_rep = self._opts.max_repetitions
        max_rep = self._max_rep
        first_ns = 0
        while not walk.done:
            batch = walk.request(max_rep)
            non_rep = [SYS_UPTIME_COLUMN] if walk.uptime else []
            fold = folded if folded and not v1 else ()
            if fold:
                if not non_rep and self._plan.scalars.rates:
                    non_rep = [SYS_UPTIME_COLUMN]  # the scalars' rates need the agent's clock
                room = self._opts.max_varbinds - len(non_rep) - len(fold)
                if room < 1:
                    fold, folded = (), ()
                else:
                    batch = batch[:room]
                    non_rep = non_rep + [_before(o) for o in fold]
            cursors = walk.cursors(batch)
            reps = walk.repetitions(batch, max_rep)
            if v1:
                status, index, var_binds, got_ns = await self._request("next", non_rep + cursors)
            else:
                status, index, var_binds, got_ns = await self._request(
                    "bulk", non_rep + cursors, len(non_rep), reps
                )
            first_ns = first_ns or got_ns
            if fold:
                folded = ()  # asked once: whatever went wrong, the GETs ask what is missing
                if status and status != _TOO_BIG:  # (tooBig: asked smaller, below)
                    self._fold_errors += 1
                    if self._fold_errors >= FOLD_ERRORS_MAX:  # not asked so again
                        self._stop_folding(f"answered {FOLD_ERRORS_MAX} times with an error")
                    continue  # the same request again without the scalars
                if not status:
                    self._take_folded(fold, var_binds, len(non_rep), answers, uptimes)
                    if len(var_binds) <= len(non_rep):
                        continue  # an answer cut to the scalars: the columns asked alone
                    if not _rows_ascend(var_binds, len(non_rep), len(cursors)):
                        # an agent that repeats the non-repeaters too: its rows are not
                        # where a GETBULK's are; the columns asked again alone
                        self._stop_folding("repeated its non-repeaters")
                        continue
                    keep = 1 if walk.uptime else 0  # sysUpTime's answer, for the table rows
                    var_binds = var_binds[:keep] + var_binds[len(non_rep) :]
                    non_rep = non_rep[:keep]
            if status == _NO_SUCH_NAME and len(non_rep) < index <= len(non_rep) + len(batch):
                walk.end(batch[index - len(non_rep) - 1])  # SNMPv1: past the end of the MIB
                continue
            if status == _NO_SUCH_NAME and index and non_rep:
                walk.uptime = False  # an SNMPv1 agent without sysUpTime
                continue
            if status == _TOO_BIG:
                if reps > 1:
                    max_rep = max(1, reps // 2)
                    if reps >= self._max_rep:  # asked at the cap: the cap is too much
                        self._max_rep = max_rep
                        self._max_rep_retry = time.monotonic() + MAX_REP_RETRY_S
                    continue
                if walk.max_columns > 1:
                    walk.max_columns = max(1, walk.max_columns // 2)
                    continue
            if status:
                raise self._status_error(status, index)
            ticks = None
            if non_rep and var_binds and var_binds[0][0] == SYS_UPTIME:
                ticks = uptime_of(var_binds[0][1])
            walk.feed(batch, var_binds[len(non_rep) :], ticks)
        for col in walk.looped:
            self._warn_missing(dotted(col), "the agent answered OIDs out of order")
        self._rows_hint.update(walk.rows_seen())
        return walk.results, first_ns

    def _take_folded(
        self,
        fold: Sequence[Oid],
        var_binds: list[VarBind],
        n_non_rep: int,
        answers: dict[Oid, Value] | None,
        uptimes: dict[Oid, int | None] | None,
    ) -> None:
        """The folded scalars' answers (the non-repeaters after sysUpTime) that are the OID
        asked for; each with the answer's sysUpTime when the scalars have rates."""
        assert answers is not None and uptimes is not None
        head = var_binds[: min(n_non_rep, len(var_binds))]
        first = n_non_rep - len(fold)
        ticks = None
        if first and head and head[0][0] == SYS_UPTIME:
            ticks = uptime_of(head[0][1])
        rates = bool(self._plan.scalars.rates)
        for oid, (got, val) in zip(fold, head[first:], strict=False):
            if got == oid and val[0] not in EXCEPTIONS:
                answers[oid] = val
                if rates:
                    uptimes[oid] = ticks

    async def _request(
        self,
        kind: str,
        oids: Sequence[Oid],
        non_repeaters: int = 0,
        max_repetitions: int = 0,
    ) -> _Answer:
        """One GET ("get"), GETNEXT ("next") or GETBULK ("bulk") exchange: the transport.
        Raises PollError (timeout, auth, protocol)."""
        if self._pysnmp is not None:
            return await self._pysnmp.request(kind, oids, non_repeaters, max_repetitions)
        return await self._wire_request(kind, oids, non_repeaters, max_repetitions)

    async def _wire_target(self) -> snmp_wire.Target:
        opts, host, port = self._opts, self.device.host, self.device.port
        assert opts.community is not None and host is not None and port is not None
        try:
            address, family = await snmp_wire.resolve(host, port)
        except OSError as exc:
            raise PollError("config", f"cannot resolve {host}: {exc}") from exc
        version = snmp_wire.V1 if opts.version == "1" else snmp_wire.V2C
        community = opts.community.resolve().encode()
        return snmp_wire.Target(address, port, version, community, family)

    async def _wire_request(
        self, kind: str, oids: Sequence[Oid], non_repeaters: int, max_repetitions: int
    ) -> _Answer:
        assert self._wire is not None
        client, target = self._wire
        try:
            status, index, var_binds = await client.read(
                target,
                kind,
                oids,
                timeout=self._timeout,
                retries=self._retries,
                non_repeaters=non_repeaters,
                max_repetitions=max_repetitions,
            )
        except snmp_wire.WireTimeout:
            raise PollError(
                "timeout", f"{self.device.name}: no answer in {self._retries + 1} tries"
            ) from None
        except (snmp_wire.WireError, OSError) as exc:
            raise PollError("protocol", f"{self.device.name}: {exc}") from exc
        return status, index, var_binds, time.time_ns()

    def _warn_missing(self, field: str, why: str) -> None:
        if field not in self._warned:  # once per field, not every cycle
            self._warned.add(field)
            log.warning("%s: %s left out (%s)", self.device.name, field, why)

    async def close(self) -> None:
        # The engine and its socket are shared; the target entry is a few bytes in its LCD.
        self._pysnmp = None
        self._wire = None


def _rows_ascend(var_binds: Sequence[VarBind], start: int, width: int) -> bool:
    """Whether each column of a GETBULK answer's rows (from ``start``, ``width`` var-binds a
    row) ascends from row to row, as GETNEXT's answers do (an exception aside); not so when
    an agent repeats the non-repeaters too and its rows are shifted."""
    for i in range(start + width, len(var_binds)):
        oid, val = var_binds[i]
        prev, pval = var_binds[i - width]
        if val[0] not in EXCEPTIONS and pval[0] not in EXCEPTIONS and oid <= prev:
            return False
    return True


def _before(oid: Oid) -> Oid:
    """The OID a GETNEXT asks from to be answered ``oid`` when nothing lies in between:
    ``x`` for ``x.0``, ``x.4`` for ``x.5``."""
    last = oid[-1]
    return oid[:-1] if last == 0 else (*oid[:-1], last - 1)


def make_poller(cfg: SiteConfig, device: Device) -> SnmpPoller:
    """PollerFactory for ``protocol: snmp`` devices."""
    return SnmpPoller(cfg, device)
