"""Modbus TCP collector: one read cycle of a profile's registers per poll.

Only the read function codes are ever sent (1 coils, 2 discrete inputs, 3 holding, 4 input
registers). Reads are planned once per poller (``codec.plan_reads``: contiguous and
nearby registers coalesced, ``max_registers_per_request``, ``max_hole``,
``single_value_reads``).

Connections: the devices behind one gateway (same host and port, different unit ids) share
one TCP connection per event loop, opened on first use and closed when its last poller
closes. A lock keeps requests from interleaving (gateways and pymodbus's client handle one
transaction at a time). Each request has its own timeout (``timeout_s``) and ``retries``, so a
dead unit only costs the others on its gateway the time its own requests wait; after a
timeout its poll stops instead of queueing its remaining requests. A dropped connection is
reopened by the next request, that is on the next poll, with a backoff: after a failed
connect the endpoint does not try again for 0.5 s, doubling per failure up to 30 s (+-10 %
jitter, so collectors do not reconnect in step); polls in between fail at once with the last
failure's kind. A gateway that is down thus costs its units one connect attempt per backoff
period, not one per unit per poll (each of which would hold the shared lock for a timeout).

Errors: an exception response (illegal address, ...) leaves that request's fields out; the
poll fails (``PollError``) only when nothing at all was read. Kinds: ``timeout`` (no answer,
or gateway exceptions 0x0A/0x0B), ``refused`` (cannot connect, connection lost),
``protocol`` (exception responses, malformed answers), ``decode`` (no value decodable).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException

from collectors.modbus import logs
from collectors.modbus.codec import ReadRequest, field_codecs, plan_reads
from collectors.modbus.options import ModbusOptions
from collectors.modbus.profile import ModbusProfile
from dcim.config import Device, SiteConfig
from dcim.protocols import ErrorKind, PollError, device_profile
from dcim.reading import FieldValue, Reading

log = logging.getLogger(__name__)
# No pymodbus line or traceback per poll: see collectors.modbus.logs. (Set the "pymodbus"
# logger's level to see its lines.)
logs.install()

_CLIENT_TIMEOUT_S = 3600.0
BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 30.0
_GATEWAY_EXCEPTIONS = {
    0x0A: "gateway path unavailable",
    0x0B: "gateway target device failed to respond",
}
_EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    6: "server device busy",
    **_GATEWAY_EXCEPTIONS,
}


class _RequestFailed(Exception):
    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind


class Endpoint:
    """One TCP connection to a Modbus server or gateway, shared by its devices' pollers."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.loop = asyncio.get_running_loop()
        # Timeouts and retries are per device, so they are enforced here around each call;
        # pymodbus's own timer is set out of the way (it would also count "no answer"s and
        # drop the connection shared with the healthy units). reconnect_delay=0: reconnect
        # on demand by the next request, not in the background.
        self.client = AsyncModbusTcpClient(
            host, port=port, timeout=_CLIENT_TIMEOUT_S, retries=0, reconnect_delay=0
        )
        self.lock = asyncio.Lock()
        self.users = 0
        self.connect_failures = 0  # in a row; 0 once connected
        self._retry_at = 0.0  # monotonic time before which no connect is tried
        self._last_failure: _RequestFailed | None = None

    async def _connect(self, timeout: float) -> None:
        wait = self._retry_at - time.monotonic()
        if wait > 0 and self._last_failure is not None:
            raise _RequestFailed(
                self._last_failure.kind,
                f"{self._last_failure} (next connect attempt in {wait:.1f} s, "
                f"after {self.connect_failures} failed)",
            )
        try:
            ok = await asyncio.wait_for(self.client.connect(), timeout)
        except TimeoutError:
            self.client.close()
            raise self._backoff(
                "timeout", f"connecting to {self.host}:{self.port}: no answer in {timeout:.1f} s"
            ) from None
        if not ok or not self.client.connected:
            raise self._backoff("refused", f"cannot connect to {self.host}:{self.port}")
        self.connect_failures, self._retry_at, self._last_failure = 0, 0.0, None

    def _backoff(self, kind: ErrorKind, message: str) -> _RequestFailed:
        self.connect_failures += 1
        delay = min(BACKOFF_MAX_S, BACKOFF_MIN_S * 2 ** (self.connect_failures - 1))
        self._retry_at = time.monotonic() + delay * random.uniform(0.9, 1.1)
        self._last_failure = _RequestFailed(kind, message)
        return self._last_failure

    async def read(self, req: ReadRequest, unit: int, timeout: float, retries: int) -> list[Any]:
        """Registers (or bits) of ``req`` from ``unit``; raises _RequestFailed."""
        async with self.lock:
            if not self.client.connected:
                await self._connect(timeout)
            calls: dict[int, Callable[..., Awaitable[Any]]] = {
                1: self.client.read_coils,
                2: self.client.read_discrete_inputs,
                3: self.client.read_holding_registers,
                4: self.client.read_input_registers,
            }
            call = calls[req.function_code]
            for attempt in range(retries + 1):
                try:
                    rsp = await asyncio.wait_for(
                        call(req.start, count=req.count, device_id=unit), timeout
                    )
                except TimeoutError:
                    if attempt < retries:
                        continue
                    raise _RequestFailed(
                        "timeout",
                        f"unit {unit} at {self.host}:{self.port}: no answer in {timeout:.1f} s",
                    ) from None
                except ConnectionException as exc:
                    self.client.close()
                    raise _RequestFailed(
                        "refused", f"{self.host}:{self.port}: connection lost ({exc})"
                    ) from exc
                except ModbusException as exc:
                    raise _RequestFailed(
                        "protocol", f"unit {unit} at {self.host}:{self.port}: {exc}"
                    ) from exc
                if rsp.isError():
                    code = int(getattr(rsp, "exception_code", 0))
                    kind: ErrorKind = "timeout" if code in _GATEWAY_EXCEPTIONS else "protocol"
                    name = _EXCEPTION_NAMES.get(code, "unknown")
                    raise _RequestFailed(
                        kind,
                        f"exception {code:#04x} ({name}) for FC {req.function_code} "
                        f"{req.table} {req.start}+{req.count}",
                    )
                answered = int(getattr(rsp, "function_code", req.function_code))
                if answered != req.function_code:  # pymodbus checks the ids, not this
                    raise _RequestFailed(
                        "protocol",
                        f"answer with function code {answered} to FC {req.function_code} "
                        f"{req.table} {req.start}+{req.count}",
                    )
                bits = req.function_code in (1, 2)
                words = list(rsp.bits if bits else rsp.registers)
                # Bits come padded to a whole byte; registers must be exactly those asked for.
                if len(words) < req.count or (not bits and len(words) != req.count):
                    raise _RequestFailed(
                        "protocol",
                        f"{len(words)} values in the answer for the {req.count} of "
                        f"{req.table} {req.start}",
                    )
                return words[: req.count]
            raise AssertionError("unreachable")

    def close(self) -> None:
        self.client.close()


_endpoints: dict[tuple[str, int], Endpoint] = {}


def _acquire(host: str, port: int) -> Endpoint:
    loop = asyncio.get_running_loop()
    ep = _endpoints.get((host, port))
    if ep is None or ep.loop is not loop or ep.loop.is_closed():
        ep = Endpoint(host, port)
        _endpoints[(host, port)] = ep
    ep.users += 1
    return ep


def _release(ep: Endpoint) -> None:
    ep.users -= 1
    if ep.users <= 0:
        if _endpoints.get((ep.host, ep.port)) is ep:
            del _endpoints[(ep.host, ep.port)]
        if not ep.loop.is_closed():
            ep.close()


class ModbusPoller:
    """Reads one Modbus device (one unit id at host:port) through its shared endpoint."""

    def __init__(
        self, cfg: SiteConfig, device: Device, profile: ModbusProfile | None = None
    ) -> None:
        if device.host is None or device.port is None:
            raise PollError("config", f"device {device.name!r} has no host/port")
        if profile is None:
            profile = device_profile(cfg, device, ModbusProfile, "a Modbus profile")
        self.device = device
        self._host, self._port = device.host, device.port
        opts = device.options
        self._opts = opts if isinstance(opts, ModbusOptions) else ModbusOptions()
        self._measurement = profile.measurement
        self._tags = cfg.tags_of(device)
        self._timeout = cfg.timeout_of(device)
        self._retries = cfg.retries_of(device)
        try:
            self._plan = plan_reads(field_codecs(profile), self._opts)
        except ValueError as exc:
            raise PollError("config", f"profile {profile.name!r}: {exc}") from exc
        self._order = [f.name for f in profile.fields]  # fields in profile order, every poll
        self._endpoint: Endpoint | None = None
        self._warned: set[str] = set()

    def _ep(self) -> Endpoint:
        ep = self._endpoint
        if ep is None or ep.loop is not asyncio.get_running_loop():
            if ep is not None:
                _release(ep)
            ep = self._endpoint = _acquire(self._host, self._port)
        return ep

    async def poll(self) -> list[Reading]:
        ep = self._ep()
        unit = self._opts.unit_id
        fields: dict[str, FieldValue] = {}
        time_ns = 0
        failures: list[_RequestFailed] = []
        for req in self._plan:
            try:
                words = await ep.read(req, unit, self._timeout, self._retries)
            except _RequestFailed as exc:
                failures.append(exc)
                self._warn(f"{req.table}:{req.start}", str(exc))
                if exc.kind in ("timeout", "refused"):
                    break  # the unit (or its gateway) is gone: do not queue the rest behind it
                continue
            time_ns = time_ns or time.time_ns()
            values, missing = req.decode(words)
            fields.update(values)
            for name in missing:
                self._warn(name, "not a value (NaN or unmapped code)")
        if not fields:
            if failures:
                raise PollError(failures[-1].kind, f"{self.device.name}: {failures[-1]}")
            raise PollError(
                "decode",
                f"{self.device.name}: no value of profile {self.device.profile!r} could be decoded",
            )
        ordered = {n: fields[n] for n in self._order if n in fields}
        return [Reading(self._measurement, dict(self._tags), ordered, time_ns)]

    def _warn(self, key: str, why: str) -> None:
        if key not in self._warned:  # once per field or block, not every cycle
            self._warned.add(key)
            log.warning("%s: %s left out (%s)", self.device.name, key, why)

    async def close(self) -> None:
        if self._endpoint is not None:
            _release(self._endpoint)
            self._endpoint = None


def make_poller(cfg: SiteConfig, device: Device) -> ModbusPoller:
    """PollerFactory for ``protocol: modbus`` devices."""
    return ModbusPoller(cfg, device)
