"""SNMP collector: per poll, a GET of a profile's scalar OIDs and a walk of its tables
(v1, v2c, v3).

All pollers of a process share one pysnmp ``SnmpEngine`` (one UDP socket, one timer) on the
running asyncio loop; requests to different agents are multiplexed by request id, so a dead
agent only costs its own timeout. Each poller configures its target once and hands
pre-built var-binds straight to the command generators, skipping the MIB layer and the
per-call target lookup of ``get_cmd`` (about 12 % less CPU; the rest is pyasn1's BER codec).

Layers: :meth:`SnmpPoller._request` is the transport (one GET, GETNEXT or GETBULK exchange,
answers turned into the neutral form of :mod:`collectors.snmp.codec`); ``_get_chunk`` and
``_walk`` handle the protocol's error statuses (SNMPv1 noSuchName, tooBig); what to ask and
how answers become readings (decoding, table rows, counter rates) is all in
:mod:`collectors.snmp.codec`.

Per device: ``timeout_s`` and ``retries`` (the engine resends), ``snmp.max_varbinds`` OIDs
per request and ``snmp.max_repetitions`` rows per column of a GETBULK (halved on tooBig).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Sequence
from typing import Any

from pyasn1.type import univ
from pysnmp.carrier.asyncio.dgram import udp
from pysnmp.entity import config
from pysnmp.entity.rfc3413 import cmdgen
from pysnmp.hlapi.v3arch.asyncio import (
    CommunityData,
    SnmpEngine,
    UdpTransportTarget,
    UsmUserData,
    usmAesBlumenthalCfb192Protocol,
    usmAesBlumenthalCfb256Protocol,
    usmAesCfb128Protocol,
    usmDESPrivProtocol,
    usmHMAC128SHA224AuthProtocol,
    usmHMAC192SHA256AuthProtocol,
    usmHMAC256SHA384AuthProtocol,
    usmHMAC384SHA512AuthProtocol,
    usmHMACMD5AuthProtocol,
    usmHMACSHAAuthProtocol,
)
from pysnmp.hlapi.v3arch.asyncio.cmdgen import LCD
from pysnmp.proto import errind, rfc1902, rfc1905

from collectors.snmp import wire as snmp_wire
from collectors.snmp.codec import (
    EXCEPTIONS,
    INTEGER_TYPES,
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
from dcim.protocols import ErrorKind, PollError, device_profile
from dcim.reading import Reading

log = logging.getLogger(__name__)

AUTH_PROTOCOLS = {
    "MD5": usmHMACMD5AuthProtocol,
    "SHA": usmHMACSHAAuthProtocol,
    "SHA224": usmHMAC128SHA224AuthProtocol,
    "SHA256": usmHMAC192SHA256AuthProtocol,
    "SHA384": usmHMAC256SHA384AuthProtocol,
    "SHA512": usmHMAC384SHA512AuthProtocol,
}
# AES192/AES256 as net-snmp names them (Blumenthal key extension); Cisco's variant is
# net-snmp's AES192C, not offered here.
PRIV_PROTOCOLS = {
    "DES": usmDESPrivProtocol,
    "AES": usmAesCfb128Protocol,
    "AES192": usmAesBlumenthalCfb192Protocol,
    "AES256": usmAesBlumenthalCfb256Protocol,
}

_AUTH_ERRORS = (
    errind.UnknownUserName,
    errind.UnknownSecurityName,
    errind.WrongDigest,
    errind.AuthenticationFailure,
    errind.AuthenticationError,
    errind.DecryptionError,
    errind.EncryptionError,
    errind.UnsupportedSecurityLevel,
    errind.UnsupportedAuthProtocol,
    errind.UnsupportedPrivProtocol,
    errind.NotInTimeWindow,
    errind.UnknownCommunityName,
)
_NO_SUCH_NAME, _TOO_BIG, _AUTHORIZATION_ERROR = 2, 1, 16
_GET = cmdgen.GetCommandGenerator()
_NEXT = cmdgen.NextCommandGeneratorSingleRun()
_BULK = cmdgen.BulkCommandGeneratorSingleRun()
_NULL = univ.Null("")
RCVBUF_BYTES = 4 * 1024 * 1024
# v1/v2c requests go through collectors.snmp.wire ("wire": its own BER codec, about 7 times
# less CPU per value than pysnmp, see benchmarks/collect.py) or through pysnmp ("pysnmp").
# SNMPv3 always uses pysnmp (USM authentication and privacy).
V1_V2C_TRANSPORT = os.environ.get("DCIM_SNMP_TRANSPORT", "wire")

# -- the shared engine ----------------------------------------------------------------------

_shared: tuple[asyncio.AbstractEventLoop, SnmpEngine, socket.socket] | None = None


def shared_engine() -> SnmpEngine:
    """The process's SnmpEngine for the running loop (a new loop gets a new engine)."""
    global _shared
    loop = asyncio.get_running_loop()
    if _shared is not None and _shared[0] is loop:
        return _shared[1]
    close_shared_engine()
    engine = SnmpEngine()
    # One socket receives the answers of every agent; when hundreds of polls fall on the same
    # instant, the default 208 KiB buffer overflows and answers are lost (then retried).
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF_BYTES)  # capped by rmem_max
    sock.setblocking(False)
    transport = udp.UdpAsyncioTransport().open_server_mode(sock=sock)
    config.add_transport(engine, udp.DOMAIN_NAME, transport)
    _shared = (loop, engine, sock)
    return engine


def close_shared_engine() -> None:
    """Release the shared engine's socket and timer (at shutdown; pollers reconfigure)."""
    global _shared
    if _shared is None:
        return
    _, engine, sock = _shared
    _shared = None
    with contextlib.suppress(RuntimeError, AttributeError):  # its loop is already closed
        engine.close_dispatcher()
    sock.close()


# -- pysnmp values -> the codec's neutral form -----------------------------------------------

_TYPE_NAMES = {
    rfc1902.Counter32.tagSet: "Counter32",
    rfc1902.Counter64.tagSet: "Counter64",
    rfc1902.Gauge32.tagSet: "Gauge32",
    rfc1902.TimeTicks.tagSet: "TimeTicks",
    rfc1902.Integer32.tagSet: "Integer32",
    rfc1902.IpAddress.tagSet: "IpAddress",
    rfc1902.Opaque.tagSet: "Opaque",
    univ.OctetString.tagSet: "OctetString",
    univ.ObjectIdentifier.tagSet: "ObjectIdentifier",
    univ.Null.tagSet: "Null",
    rfc1905.noSuchObject.tagSet: "noSuchObject",
    rfc1905.noSuchInstance.tagSet: "noSuchInstance",
    rfc1905.endOfMibView.tagSet: "endOfMibView",
}
_BYTES = frozenset({"OctetString", "IpAddress", "Opaque"})


def neutral(val: Any) -> Value:
    """A pysnmp value as ``(type, python value)`` (see :mod:`collectors.snmp.codec`)."""
    kind = _TYPE_NAMES.get(getattr(val, "tagSet", None), val.__class__.__name__)
    if kind in INTEGER_TYPES:
        return kind, int(val)
    if kind in _BYTES:
        return kind, bytes(val)
    if kind == "ObjectIdentifier":
        return kind, str(val)
    return kind, None


# -- the poller -----------------------------------------------------------------------------

_Answer = tuple[Any, int, int, list[VarBind], int]  # error, status, index, var-binds, time_ns


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
        self._no_zero: set[Oid] = set()  # scalar OIDs not answered at OID.0 either
        self._engine: SnmpEngine | None = None
        self._target = ""
        self._wire: tuple[snmp_wire.WireClient, snmp_wire.Target] | None = None
        self._warned: set[str] = set()

    async def _configure(self) -> SnmpEngine | None:
        """The shared pysnmp engine, or None when requests go through ``self._wire``."""
        opts = self._opts
        if opts.version in ("1", "2c") and V1_V2C_TRANSPORT == "wire":
            client = snmp_wire.shared_client()
            if self._wire is None or self._wire[0] is not client:
                self._wire = (client, await self._wire_target())
            return None
        engine = shared_engine()
        if engine is self._engine:
            return engine
        auth: CommunityData | UsmUserData
        if opts.version in ("1", "2c"):
            assert opts.community is not None
            auth = CommunityData(opts.community.resolve(), mpModel=0 if opts.version == "1" else 1)
        else:
            auth = UsmUserData(
                opts.user,
                authKey=opts.auth_key.resolve() if opts.auth_key else None,
                privKey=opts.priv_key.resolve() if opts.priv_key else None,
                authProtocol=AUTH_PROTOCOLS[opts.auth_protocol] if opts.auth_protocol else None,
                privProtocol=PRIV_PROTOCOLS[opts.priv_protocol] if opts.priv_protocol else None,
            )
        try:
            target = await UdpTransportTarget.create(
                (self.device.host, self.device.port), timeout=self._timeout, retries=self._retries
            )
        except Exception as exc:  # noqa: BLE001 - pysnmp wraps resolver errors in its own type
            raise PollError("config", f"cannot resolve {self.device.host}: {exc}") from exc
        self._target, _ = LCD.configure(engine, auth, target, b"")
        self._engine = engine
        return engine

    async def poll(self) -> list[Reading]:
        engine = await self._configure()
        plan = self._plan
        problems: list[tuple[str, str]] = []
        answers: dict[Oid, Value] = {}
        uptimes: dict[Oid, int | None] = {}
        time_ns = 0
        for chunk in plan.scalars.chunks:
            got_ns = await self._get_chunk(engine, chunk, answers, uptimes)
            time_ns = time_ns or got_ns
        await self._ask_at_zero(engine, answers, uptimes)
        walked: Columns = {}
        if plan.columns:
            walked, got_ns = await self._walk(engine)
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

    async def _ask_at_zero(
        self, engine: Any, answers: dict[Oid, Value], uptimes: dict[Oid, int | None]
    ) -> None:
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
            await self._get_chunk(engine, zeros[i : i + n], got, got_uptimes)
        for oid, zero in zip(lost, zeros, strict=True):
            val = got.get(zero)
            if val is None or val[0] in EXCEPTIONS:
                self._no_zero.add(oid)
                continue
            answers[oid] = val
            uptimes[oid] = got_uptimes.get(zero)

    # -- requests ----------------------------------------------------------------------------

    def _raise(self, err: Any) -> None:
        kind: ErrorKind = "timeout" if isinstance(err, errind.RequestTimedOut) else "protocol"
        if isinstance(err, _AUTH_ERRORS):
            kind = "auth"
        raise PollError(kind, f"{self.device.name}: {err}")

    def _status_error(self, status: int, index: int) -> PollError:
        return PollError(
            "auth" if status == _AUTHORIZATION_ERROR else "protocol",
            f"{self.device.name}: error-status {status} at index {index}",
        )

    async def _get_chunk(
        self,
        engine: SnmpEngine | None,
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
            err, status, index, var_binds, got_ns = await self._request(engine, "get", batch)
            if err is not None:
                self._raise(err)
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

    async def _walk(self, engine: SnmpEngine | None) -> tuple[Columns, int]:
        """Every column of the profile's tables: GETBULK (SNMPv1: GETNEXT)."""
        walk = self._plan.walk(self._opts.max_varbinds, self._rows_hint)
        v1 = self._opts.version == "1"
        max_rep = self._opts.max_repetitions
        first_ns = 0
        while not walk.done:
            batch = walk.request()
            cursors = walk.cursors(batch)
            reps = walk.repetitions(batch, max_rep)
            non_rep = [SYS_UPTIME_COLUMN] if walk.uptime else []
            if v1:
                err, status, index, var_binds, got_ns = await self._request(
                    engine, "next", non_rep + cursors
                )
            else:
                err, status, index, var_binds, got_ns = await self._request(
                    engine, "bulk", non_rep + cursors, len(non_rep), reps
                )
            if err is not None:
                self._raise(err)
            first_ns = first_ns or got_ns
            if status == _NO_SUCH_NAME and len(non_rep) < index <= len(non_rep) + len(batch):
                walk.end(batch[index - len(non_rep) - 1])  # SNMPv1: past the end of the MIB
                continue
            if status == _NO_SUCH_NAME and index and non_rep:
                walk.uptime = False  # an SNMPv1 agent without sysUpTime
                continue
            if status == _TOO_BIG:
                if reps > 1:
                    max_rep = max(1, reps // 2)
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
        self._rows_hint = walk.rows_seen()
        return walk.results, first_ns

    async def _request(
        self,
        engine: SnmpEngine | None,
        kind: str,
        oids: Sequence[Oid],
        non_repeaters: int = 0,
        max_repetitions: int = 0,
    ) -> _Answer:
        """One GET ("get"), GETNEXT ("next") or GETBULK ("bulk") exchange: the transport."""
        if engine is None:
            return await self._wire_request(kind, oids, non_repeaters, max_repetitions)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[_Answer] = loop.create_future()

        def done(_e: Any, _h: Any, err: Any, status: Any, index: Any, vbs: Any, _ctx: Any) -> None:
            if not fut.done():
                got = [(tuple(o), neutral(v)) for o, v in vbs or ()]
                fut.set_result((err, int(status or 0), int(index or 0), got, time.time_ns()))

        var_binds = [(rfc1902.ObjectName(o), _NULL) for o in oids]
        if kind == "get":
            _GET.send_varbinds(engine, self._target, None, b"", var_binds, done)
        elif kind == "next":
            _NEXT.send_varbinds(engine, self._target, None, b"", var_binds, done)
        else:
            _BULK.send_varbinds(
                engine, self._target, None, b"", non_repeaters, max_repetitions, var_binds, done
            )
        # The engine enforces timeout and retries; this bound only guards against a lost callback.
        limit = self._timeout * (self._retries + 1) + 2.0
        try:
            return await asyncio.wait_for(fut, limit)
        except TimeoutError:
            raise PollError("timeout", f"{self.device.name}: no answer in {limit:.1f} s") from None

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
            return errind.requestTimedOut, 0, 0, [], 0
        except (snmp_wire.WireError, OSError) as exc:
            raise PollError("protocol", f"{self.device.name}: {exc}") from exc
        return None, status, index, var_binds, time.time_ns()

    def _warn_missing(self, field: str, why: str) -> None:
        if field not in self._warned:  # once per field, not every cycle
            self._warned.add(field)
            log.warning("%s: %s left out (%s)", self.device.name, field, why)

    async def close(self) -> None:
        # The engine and its socket are shared; the target entry is a few bytes in its LCD.
        self._engine = None
        self._wire = None


def make_poller(cfg: SiteConfig, device: Device) -> SnmpPoller:
    """PollerFactory for ``protocol: snmp`` devices."""
    return SnmpPoller(cfg, device)
