"""Drives every polling collector: each device on a fixed grid of its own, on asyncio.

A device's runs are due at ``first + k * interval + uniform(0, jitter)``: the grid is fixed
at start and the device moves forward one slot at a time, so jitter never accumulates and
the mean interval stays the interval. The slots of every device and the deadlines of the
running polls wait on one heap and one loop timer (``loop.call_at``) set for the earliest of
them.
Devices start together in groups of at most ``GROUP_MAX`` (in the order of their names;
devices behind one address, as Modbus units behind a gateway, each in a group of their own:
:func:`group_devices`), the groups spread evenly over the shortest interval: one wake-up of
the loop and one spool transaction for up to ``GROUP_MAX`` polls, not one each. Intervals
that are multiples of the shortest (10 s, 60 s, 300 s) keep every group apart; each
device's coalescing window is at most the groups' spacing, so two groups never share a
wake-up. The same 50 rack PDUs cost 13.2 rather than 18.5 µs of CPU per value started in one
group rather than spread over their 10 s (benchmarks/profile_collect.py): on a host that
sleeps between polls, a wake-up costs far more than the few lines it runs (its caches are
cold). ``GROUP_MAX`` bounds what answers at once: 50 SNMP answers of 20 var-binds x 25 rows
(about 8 KB each in the kernel) are what the SNMP socket's receive buffer holds at Linux's
default ``rmem_max``, so a burst loses none even if the loop takes none of them meanwhile.
With ``defaults.coalesce_s`` (0 = off), poll starts are coalesced: a slot waits for the
next tick of a grid ``coalesce`` apart (the device's own ``SiteConfig.coalesce_of``), so the
polls due within one window start together in one wake-up, each at most ``coalesce`` after
its slot (never before it). The slots themselves do not move, and ``late_s`` counts the wait.
A run never overlaps the device's own previous one, and each poll is bounded by the
device's deadline, by default ``min(timeout * (retries + 1) + margin, 0.9 * interval -
jitter)``, so a cancelled poll has finished before the next one is due. Interval, jitter
and deadline are the device's own (``interval_s``, ``jitter_s``, ``deadline_s``) or follow
the site's ``defaults:`` (:meth:`SiteConfig.interval_of`, ``jitter_of``, ``deadline_of``).
A slow or dead device therefore never delays another: all polls are tasks on one event
loop, each device has its own slots, and a hanging poll only holds its own device.

Every cycle yields one ``dcim_poll`` health reading (tags site, device, protocol; fields
``up``, ``duration_s``, ``values_read``, ``error``, ``late_s``) next to the device's data.
A cycle that could not run is a ``dcim_poll`` row with ``up=0 error="missed"``: skipped
because the device's previous run was still going, or swallowed because the event loop was
blocked past the next slot (a timer that fires more than a slot late runs only the latest
slot whose time has come, and records the ones before it). A gap is recorded, never
silently dropped. Failures are logged once per transition (up -> down, down -> up).

The scheduler is its own, not APScheduler: per firing APScheduler looked the job up, asked
its trigger, did datetime arithmetic, dispatched events and went through an executor, which
cost more CPU than reading the values (see ``benchmarks/collect.py`` and CHANGELOG.md).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import random
import time
from array import array
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

from dcim.config import Device, SiteConfig
from dcim.protocols import Poller, PollError
from dcim.reading import FieldValue, Reading

log = logging.getLogger(__name__)

NS = 1_000_000_000
LATE_WINDOW = 200  # late_s samples kept per device for status()
FIRST_DELAY_S = 0.05  # from start() to the first device's first poll
GROUP_MAX = 50  # devices whose first slots coincide (see the module's docstring)


@dataclass
class DeviceStatus:
    """What the scheduler knows of one device. Times are UNIX seconds (the scheduler's clock)."""

    device: str
    protocol: str
    interval_s: float
    deadline_s: float
    jitter_s: float
    up: bool = False  # False until the first successful poll
    last_poll: float | None = None  # start of the last poll that ran
    last_ok: float | None = None
    consecutive_failures: int = 0
    last_error: str = ""
    polls: int = 0
    failures: int = 0
    missed: int = 0
    late_s: float | None = None  # start delay of the last poll
    # The last LATE_WINDOW delays, a ring of C doubles: a deque of float objects held 32 bytes
    # a sample, 2.3 MB once full on the reference site (issue #15), 8 here.
    _lates: array[float] = field(default_factory=lambda: array("d"), repr=False)
    _late_at: int = field(default=0, repr=False)  # the ring's oldest sample, once it is full

    def add_late(self, late: float) -> None:
        lates = self._lates
        if len(lates) < LATE_WINDOW:
            lates.append(late)
        else:
            lates[self._late_at] = late
            self._late_at = (self._late_at + 1) % LATE_WINDOW

    @property
    def late_s_max(self) -> float | None:
        return max(self._lates) if self._lates else None

    @property
    def late_s_p99(self) -> float | None:
        if not self._lates:
            return None
        s = sorted(self._lates)
        return s[min(len(s) - 1, math.ceil(0.99 * len(s)) - 1)]


class _Device:
    """One device's place on the grid: its next slot is ``k``, due at ``at`` (loop time,
    jitter included) and started at the first coalescing tick not before it (``at`` itself
    without coalescing); ``task`` is its running poll, if any, and ``expired`` that poll once
    its deadline has come."""

    __slots__ = (
        "name",
        "poller",
        "st",
        "interval",
        "jitter",
        "coalesce",
        "first",
        "k",
        "at",
        "task",
        "expired",
    )

    def __init__(
        self, name: str, poller: Poller, st: DeviceStatus, first: float, coalesce: float
    ) -> None:
        self.name, self.poller, self.st = name, poller, st
        self.interval, self.jitter, self.coalesce = st.interval_s, st.jitter_s, coalesce
        self.first = first  # loop time of slot 0
        self.k = 0
        self.at = first  # the first poll is not jittered: start() places them
        self.task: asyncio.Task[None] | None = None
        self.expired: asyncio.Task[None] | None = None

    def slot_time(self, k: int) -> float:
        """Slot ``k`` on the grid, without its jitter."""
        return self.first + k * self.interval


# What the scheduler waits for, on a heap of its own: (loop time, sequence number, device,
# None) for the device's next slot (at its coalescing tick, if any), (loop time, sequence
# number, device, task) for the deadline of the poll ``task``. Tuples of floats and ints
# compare in C; a TimerHandle per device in the loop's own heap would compare in Python
# (TimerHandle.__lt__), tens of calls per poll with hundreds of devices.
_Entry = tuple[float, int, _Device, "asyncio.Task[None] | None"]


def _endpoint(dev: Device) -> Hashable:
    """Where a device is asked: its host and port (Modbus units behind one gateway, SNMP
    devices behind one agent address share one), else the device alone."""
    return (dev.host, dev.port) if dev.host else ("device", dev.name)


def group_devices(endpoints: Sequence[Hashable], group_max: int) -> tuple[list[int], int]:
    """The start group of each device (given in order by its endpoint), and how many groups:
    enough for at most ``group_max`` devices a group, and at least as many as the most
    devices one endpoint has, so that no two of an endpoint share a group (a gateway answers
    one request at a time: its units polled at once would wait for each other, past their
    deadlines). Devices fill the groups in order, ``ceil(n / groups)`` a group; one whose
    endpoint is in every group with room goes to the smallest group without it (one more
    group when that makes a group too big)."""
    n = len(endpoints)
    if not n:
        return [], 1
    count = max(-(-n // group_max), *Counter(endpoints).values())
    while True:
        cap = -(-n // count)
        sizes = [0] * count
        taken: dict[Hashable, set[int]] = {}
        out: list[int] = []
        for e in endpoints:
            used = taken.setdefault(e, set())
            free = [g for g in range(count) if g not in used]
            g = next((g for g in free if sizes[g] < cap), None)
            if g is None:
                g = min(free, key=sizes.__getitem__)
            used.add(g)
            sizes[g] += 1
            out.append(g)
        if max(sizes) <= group_max:
            return out, count
        count += 1


class Scheduler:
    """Polls ``pollers`` on the running asyncio loop; ``emit`` gets each cycle's readings
    (data + health, or a ``missed`` health row) on the event loop thread. ``clock`` (UNIX
    seconds) timestamps the readings; the schedule itself runs on the loop's monotonic
    clock, with one loop timer for the earliest of every device's next slot and every
    running poll's deadline."""

    def __init__(
        self,
        cfg: SiteConfig,
        pollers: Sequence[Poller],
        emit: Callable[[list[Reading]], None],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg, self.emit, self.clock = cfg, emit, clock
        self.pollers = {p.device.name: p for p in pollers}
        if len(self.pollers) != len(pollers):
            raise ValueError("two pollers for the same device name")
        self._status: dict[str, DeviceStatus] = {}
        self._coalesce: dict[str, float] = {}
        for name, p in self.pollers.items():
            dev = p.device
            self._status[name] = DeviceStatus(
                name, dev.protocol, cfg.interval_of(dev), cfg.deadline_of(dev), cfg.jitter_of(dev)
            )
            self._coalesce[name] = cfg.coalesce_of(dev)
        self._devices: list[_Device] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._heap: list[_Entry] = []
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._resolution = time.get_clock_info("monotonic").resolution
        self._epoch = 0.0  # loop time of the coalescing ticks' origin (the first slot)
        self.wakeups = 0  # times the scheduler's timer fired

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Put every device on its grid: the devices, in the order of their names, in groups
        (:func:`group_devices`), group ``g`` of ``G`` first due ``g / G`` of the shortest
        interval after the first; each device's coalescing window at most that spacing, so
        that two groups never start in one wake-up. Starting a started scheduler does
        nothing."""
        if self._loop is not None:
            return
        loop = self._loop = asyncio.get_running_loop()
        self._stopping = False
        self._resolution = getattr(loop, "_clock_resolution", self._resolution)
        now = loop.time()
        self._epoch = now + FIRST_DELAY_S
        self._devices = []
        for name, (offset, coalesce) in self._layout().items():
            st = self._status[name]
            d = _Device(name, self.pollers[name], st, self._epoch + offset, coalesce)
            self._devices.append(d)
            heapq.heappush(self._heap, (self._tick_of(d), next(self._seq), d, None))
        self._arm()

    def _layout(self) -> dict[str, tuple[float, float]]:
        """Each device's first slot (seconds after the first group's) and coalescing window,
        in the order of the names: its group's place, the window at most the spacing."""
        names = sorted(self._status)
        group, groups = group_devices([_endpoint(self.pollers[n].device) for n in names], GROUP_MAX)
        spacing = min((st.interval_s for st in self._status.values()), default=1.0) / groups
        return {
            name: (g * spacing, min(self._coalesce[name], spacing))
            for name, g in zip(names, group, strict=True)
        }

    async def stop(self, timeout_s: float | None = None) -> None:
        """No new polls; wait for the running ones (at most ``timeout_s``, default the longest
        deadline plus a second; their deadlines still hold), then cancel what is left (and
        wait a second more for it to end)."""
        if self._loop is None or self._stopping:
            return
        # From here on no poll starts: the slots leave the heap (the deadlines stay), and
        # every poll started so far is its device's task (set as the task is created).
        self._stopping = True
        self._heap = [e for e in self._heap if e[3] is not None]
        heapq.heapify(self._heap)
        if timeout_s is None:
            timeout_s = max((s.deadline_s for s in self._status.values()), default=0.0) + 1.0
        running = self._running()
        if running:
            await asyncio.wait(running, timeout=timeout_s)
        left = self._running()
        if left:
            log.warning("stop: cancelling %d polls still running", len(left))
            for task in left:
                task.cancel()
            await asyncio.wait(left, timeout=1.0)
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at, self._heap = None, math.inf, []
        for d in self._devices:
            d.task = d.expired = None
        self._loop = None

    def status(self) -> dict[str, DeviceStatus]:
        return dict(self._status)

    def _running(self) -> set[asyncio.Task[None]]:
        return {d.task for d in self._devices if d.task is not None and not d.task.done()}

    # -- the timer ------------------------------------------------------------------------
    def _tick_of(self, d: _Device) -> float:
        """When ``d``'s next slot starts: its time, or with coalescing the first tick of the
        device's coalescing grid not before it (a slot on a tick starts on it, whatever the
        float rounding of either)."""
        c = d.coalesce
        if not c:
            return d.at
        epoch = self._epoch
        return epoch + math.ceil((d.at - epoch) / c - 1e-9) * c

    def _arm(self) -> None:
        """Set the loop timer for the earliest entry of the heap (if not set for it already),
        after dropping the deadlines of polls that have ended from its top."""
        heap = self._heap
        while heap and (task := heap[0][3]) is not None and heap[0][2].task is not task:
            heapq.heappop(heap)
        if not heap or self._loop is None:
            return
        when = heap[0][0]
        if self._timer is not None:
            if self._timer_at <= when:
                return  # an earlier wake-up is set: it arms again
            self._timer.cancel()
        self._timer, self._timer_at = self._loop.call_at(when, self._tick), when

    def _tick(self) -> None:
        """The loop timer: every slot and deadline that has come, then the timer again."""
        self._timer, self._timer_at = None, math.inf
        self.wakeups += 1
        loop = self._loop
        if loop is None:
            return
        heap = self._heap
        now = loop.time()
        end = now + self._resolution  # as the loop itself tells a due timer
        try:
            while heap and heap[0][0] < end:
                _, _, d, task = heapq.heappop(heap)
                if task is None:
                    if not self._stopping:
                        self._fire(d, now)
                elif d.task is task:
                    d.expired = task
                    task.cancel()
        finally:  # whatever went wrong with one device, the others stay on time
            self._arm()

    def _fire(self, d: _Device, now: float) -> None:
        """Slot ``d.k`` is due: run it (or record it missed), put the next one on the heap."""
        k, at = d.k, d.at
        # The latest slot whose grid time has come: past k only if the loop was blocked (or
        # the timer held up) beyond the next slot's time. Those in between were swallowed.
        latest = int((now - d.first) // d.interval)
        if latest > k:
            self._missed(d.st, [at] + [d.slot_time(j) for j in range(k + 1, latest)], now)
            k, at = latest, d.slot_time(latest)
        d.k = nxt = k + 1
        d.at = d.first + nxt * d.interval + (d.jitter * random.random() if d.jitter else 0.0)
        heapq.heappush(self._heap, (self._tick_of(d), next(self._seq), d, None))
        if d.task is None:
            assert self._loop is not None
            d.task = self._loop.create_task(self._poll(d, at))
        else:  # the previous run is still going: never two of one device at once
            self._missed(d.st, [at], now)

    # -- one cycle ------------------------------------------------------------------------
    async def _poll(self, d: _Device, scheduled: float) -> None:
        """One poll of ``d`` for the slot due at ``scheduled`` (loop time), bounded by the
        device's deadline: the timer cancels the task, and the cancellation becomes the
        ``deadline`` error (as ``asyncio.timeout`` does, without a loop timer per poll)."""
        st, task, loop = d.st, d.task, self._loop
        assert task is not None and loop is not None
        t0 = loop.time()
        start = self.clock()
        late = t0 - scheduled if t0 > scheduled else 0.0
        deadline = t0 + st.deadline_s
        heapq.heappush(self._heap, (deadline, next(self._seq), d, task))
        if deadline < self._timer_at:
            self._arm()
        readings: list[Reading] = []
        error, detail = "", ""
        try:
            readings = await d.poller.poll()
        except asyncio.CancelledError:
            if d.expired is not task:
                d.task = None
                raise
            d.expired = None
            if task.uncancel():  # cancelled from elsewhere too (the loop shutting down)
                d.task = None
                raise
            error, detail = "deadline", f"no answer within the {st.deadline_s:.3g} s deadline"
        except TimeoutError:
            error, detail = "deadline", f"no answer within the {st.deadline_s:.3g} s deadline"
        except PollError as exc:
            error, detail = exc.kind, str(exc)
        except Exception as exc:  # noqa: BLE001 - a poller bug is a failed poll, not a dead job
            error, detail = "other", f"{type(exc).__name__}: {exc}"
            if st.up or st.last_poll is None:
                log.debug("poller %s raised", d.name, exc_info=True)
        if d.expired is task:  # the deadline came, but the poll ended otherwise
            d.expired = None
            task.uncancel()
        d.task = None
        duration = loop.time() - t0
        values = 0
        for r in readings:
            values += len(r.fields)
        self._record(st, start, late, error, detail)
        readings.append(
            self._health(
                st, start, up=not error, duration=duration, values=values, error=error, late=late
            )
        )
        self._emit(readings)

    def _record(self, st: DeviceStatus, start: float, late: float, error: str, detail: str) -> None:
        was_up, first = st.up, st.last_poll is None
        st.polls += 1
        st.last_poll, st.late_s = start, late
        st.add_late(late)
        if not error:
            if not was_up and not first:
                log.info("%s is back up after %d failed polls", st.device, st.consecutive_failures)
            st.up, st.last_ok, st.consecutive_failures, st.last_error = True, start, 0, ""
            return
        st.failures += 1
        st.consecutive_failures += 1
        st.up, st.last_error = False, error
        if was_up or first:
            log.warning("%s is down: %s: %s", st.device, error, detail)

    def _health(
        self,
        st: DeviceStatus,
        at: float,
        *,
        up: bool,
        duration: float,
        values: int,
        error: str,
        late: float,
    ) -> Reading:
        tags = {"site": self.cfg.site.name, "device": st.device, "protocol": st.protocol}
        fields: dict[str, FieldValue] = {
            "up": int(up),
            "duration_s": round(duration, 6),
            "values_read": values,
            "error": error,
            "late_s": round(late, 6),
        }
        return Reading("dcim_poll", tags, fields, int(at * NS))

    def _emit(self, readings: list[Reading]) -> None:
        try:
            self.emit(readings)
        except Exception:  # noqa: BLE001 - the schedule must go on; the pipeline logs its own
            log.exception("emitting %d readings failed", len(readings))

    # -- gaps -----------------------------------------------------------------------------
    def _missed(self, st: DeviceStatus, slots: Sequence[float], now: float) -> None:
        """Rows for the slots (loop times) that did not run, as of loop time ``now``: each
        timestamped at its slot, late by how long ago that was."""
        wall = self.clock()
        rows = []
        for at in slots:
            st.missed += 1
            late = now - at if now > at else 0.0
            rows.append(
                self._health(
                    st, wall - late, up=False, duration=0.0, values=0, error="missed", late=late
                )
            )
        self._emit(rows)
