"""Drives every polling collector: one APScheduler job per device.

Each job has the device's interval and jitter, never overlaps itself (``max_instances=1``),
coalesces a backlog into one run, and bounds each poll with the device's deadline, by
default ``min(timeout * (retries + 1) + margin, 0.9 * interval - jitter)``, so a cancelled
poll has finished before the next one is due. Interval, jitter and deadline are the
device's own (``interval_s``, ``jitter_s``, ``deadline_s``) or follow the site's
``defaults:`` (:meth:`SiteConfig.interval_of`, ``jitter_of``, ``deadline_of``). A slow or
dead device therefore never delays another: all polls are tasks on one event loop and a
hanging one only holds its own job.

Every cycle yields one ``dcim_poll`` health reading (tags site, device, protocol; fields
``up``, ``duration_s``, ``values_read``, ``error``, ``late_s``) next to the device's data.
A cycle that could not run (misfired, skipped because the previous run was still going, or
coalesced away) is a ``dcim_poll`` row with ``up=0 error="missed"``: a gap is recorded,
never silently dropped. Failures are logged once per transition (up -> down, down -> up).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from apscheduler.events import (
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    EVENT_JOB_SUBMITTED,
    JobExecutionEvent,
    JobSubmissionEvent,
)
from apscheduler.executors.asyncio import AsyncIOExecutor
from apscheduler.executors.base import run_coroutine_job
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from apscheduler.util import iscoroutinefunction_partial

from collectors.base import Poller, PollError
from dcim.config import SiteConfig
from dcim.reading import FieldValue, Reading

log = logging.getLogger(__name__)
# APScheduler logs every run at INFO and every skipped run at WARNING; the health readings
# and our transition logs say the same once, so its own chatter goes to a quiet logger.
_aps_log = logging.getLogger(__name__ + ".apscheduler")
_aps_log.setLevel(logging.ERROR)

NS = 1_000_000_000
LATE_WINDOW = 200  # late_s samples kept per device for status()


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
    _lates: deque[float] = field(default_factory=lambda: deque(maxlen=LATE_WINDOW), repr=False)

    @property
    def late_s_max(self) -> float | None:
        return max(self._lates) if self._lates else None

    @property
    def late_s_p99(self) -> float | None:
        if not self._lates:
            return None
        s = sorted(self._lates)
        return s[min(len(s) - 1, math.ceil(0.99 * len(s)) - 1)]


class _GridTrigger(IntervalTrigger):  # type: ignore[misc]
    """Fires at ``start + k * interval + uniform(0, jitter)``. APScheduler 3's IntervalTrigger
    adds the jitter to the previous *jittered* time, so jitter accumulates and the mean
    interval becomes ``interval + jitter / 2`` (about 1 cycle in 10 lost at jitter 0.2 *
    interval); here the grid stays fixed and only each run is shifted."""

    def __init__(self, *, seconds: float, start_date: datetime, jitter_s: float) -> None:
        super().__init__(seconds=seconds, start_date=start_date, timezone="UTC")
        self.jitter_s = jitter_s

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime:
        start, step = self.start_date.timestamp(), self.interval_length
        if previous_fire_time is None:
            k = max(0, math.ceil((now.timestamp() - start) / step))
        else:  # the grid slot after the one previous_fire_time was jittered from
            # previous = start + k * step + j, 0 <= j <= jitter <= step / 2, to the microsecond
            k = round((previous_fire_time.timestamp() - start - self.jitter_s / 2) / step) + 1
        at = start + k * step + (random.uniform(0, self.jitter_s) if self.jitter_s else 0.0)
        return datetime.fromtimestamp(at, tz=self.timezone)


class _QuietExecutor(AsyncIOExecutor):  # type: ignore[misc]
    def start(self, scheduler: Any, alias: str) -> None:
        super().start(scheduler, alias)
        self._logger = _aps_log
        self._coroutine_functions: dict[Any, bool] = {}

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        """AsyncIOExecutor's, less its per-run ``iscoroutinefunction_partial`` (an inspect
        walk, tens of µs) done once per job function (here ``Scheduler._run`` only)."""
        known = self._coroutine_functions.get(job.func)
        if known is None:
            known = self._coroutine_functions[job.func] = iscoroutinefunction_partial(job.func)
        if not known:
            super()._do_submit_job(job, run_times)
            return

        def callback(f: asyncio.Future[Any]) -> None:
            self._pending_futures.discard(f)
            try:
                events = f.result()
            except BaseException:  # noqa: BLE001 - as AsyncIOExecutor does
                self._run_job_error(job.id, *sys.exc_info()[1:])
            else:
                self._run_job_success(job.id, events)

        coro = run_coroutine_job(job, job._jobstore_alias, run_times, self._logger.name)
        f = self._eventloop.create_task(coro)
        f.add_done_callback(callback)
        self._pending_futures.add(f)


class _LoopScheduler(AsyncIOScheduler):  # type: ignore[misc]
    """APScheduler's asyncio scheduler, but its timer runs the due jobs right away: the stock
    ``wakeup()`` hops through ``call_soon_threadsafe`` (a byte through the loop's self-pipe,
    a send, a recv and one more loop iteration) on every firing, though the timer already
    fires on the loop's thread. ``wakeup()`` itself, for calls from elsewhere, is unchanged."""

    def _start_timer(self, wait_seconds: float | None) -> None:
        self._stop_timer()
        if wait_seconds is not None:
            self._timeout = self._eventloop.call_later(wait_seconds, self._wakeup_on_loop)

    def _wakeup_on_loop(self) -> None:
        self._stop_timer()
        self._start_timer(self._process_jobs())


class Scheduler:
    """Polls ``pollers`` on the running asyncio loop; ``emit`` gets each cycle's readings
    (data + health, or a ``missed`` health row) on the event loop thread."""

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
        for name, p in self.pollers.items():
            dev = p.device
            self._status[name] = DeviceStatus(
                name, dev.protocol, cfg.interval_of(dev), cfg.deadline_of(dev), cfg.jitter_of(dev)
            )
        self._scheduled: dict[str, datetime] = {}  # job id -> scheduled time of the run submitted
        self._last_run_time: dict[str, datetime] = {}  # job id -> last run time seen in an event
        self._running: set[asyncio.Task[Any]] = set()
        self._aps: AsyncIOScheduler | None = None

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Add one job per device; first polls are spread evenly over each device's interval."""
        aps = _LoopScheduler(
            event_loop=asyncio.get_running_loop(),
            executors={"default": _QuietExecutor()},
            logger=_aps_log,
            timezone="UTC",
        )
        aps.add_listener(
            self._on_event, EVENT_JOB_SUBMITTED | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES
        )
        now = datetime.now(aps.timezone)
        n = max(1, len(self.pollers))
        for i, (name, st) in enumerate(sorted(self._status.items())):
            first = now + timedelta(seconds=0.05 + st.interval_s * i / n)
            trigger = _GridTrigger(seconds=st.interval_s, start_date=first, jitter_s=st.jitter_s)
            aps.add_job(
                self._run,
                trigger,
                args=[name],
                id=name,
                name=f"poll {name}",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=max(1, math.ceil(st.interval_s)),
                next_run_time=first,
            )
        aps.start()
        self._aps = aps

    async def stop(self, timeout_s: float | None = None) -> None:
        """No new polls; wait for the running ones (at most ``timeout_s``, default the longest
        deadline plus a second), then cancel what is left."""
        if self._aps is None:
            return
        self._aps.pause()
        self._aps.remove_all_jobs()
        if timeout_s is None:
            timeout_s = max((s.deadline_s for s in self._status.values()), default=0.0) + 1.0
        if self._running:
            await asyncio.wait(set(self._running), timeout=timeout_s)
        self._aps.shutdown(wait=False)
        self._aps = None

    def status(self) -> dict[str, DeviceStatus]:
        return dict(self._status)

    # -- one cycle ------------------------------------------------------------------------
    async def _run(self, name: str) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        try:
            await self._poll(name)
        finally:
            if task is not None:
                self._running.discard(task)

    async def _poll(self, name: str) -> None:
        poller, st = self.pollers[name], self._status[name]
        start = self.clock()
        scheduled = self._scheduled.pop(name, None)
        late = max(0.0, start - scheduled.timestamp()) if scheduled is not None else 0.0
        t0 = time.monotonic()
        readings: list[Reading] = []
        error, detail = "", ""
        try:
            # asyncio.timeout, not wait_for: the poll runs in this task instead of a task of
            # its own (one task and a few loop iterations less per poll, same TimeoutError).
            async with asyncio.timeout(st.deadline_s):
                readings = await poller.poll()
        except TimeoutError:
            error, detail = "deadline", f"no answer within the {st.deadline_s:.3g} s deadline"
        except PollError as exc:
            error, detail = exc.kind, str(exc)
        except Exception as exc:  # noqa: BLE001 - a poller bug is a failed poll, not a dead job
            error, detail = "other", f"{type(exc).__name__}: {exc}"
            if st.up or st.last_poll is None:
                log.debug("poller %s raised", name, exc_info=True)
        duration = time.monotonic() - t0
        values = sum(len(r.fields) for r in readings)
        self._record(st, start, late, error, detail)
        health = self._health(
            st, start, up=not error, duration=duration, values=values, error=error, late=late
        )
        self._emit([*readings, health])

    def _record(self, st: DeviceStatus, start: float, late: float, error: str, detail: str) -> None:
        was_up, first = st.up, st.last_poll is None
        st.polls += 1
        st.last_poll, st.late_s = start, late
        st._lates.append(late)
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
    def _on_event(self, event: Any) -> None:
        name = event.job_id
        st = self._status.get(name)
        if st is None:
            return
        if isinstance(event, JobSubmissionEvent):
            run_times = list(event.scheduled_run_times)
        elif isinstance(event, JobExecutionEvent):
            run_times = [event.scheduled_run_time]
        else:
            return
        # Runs APScheduler coalesced away (the loop was too busy to fire them) leave no event
        # of their own: they show as a jump of more than one interval between run times.
        prev = self._last_run_time.get(name)
        if prev is not None and event.code != EVENT_JOB_MISSED:
            skipped = round((run_times[0] - prev).total_seconds() / st.interval_s) - 1
            step = timedelta(seconds=st.interval_s)
            self._missed(st, [prev + step * (k + 1) for k in range(max(0, skipped))])
        self._last_run_time[name] = run_times[-1]
        if event.code == EVENT_JOB_SUBMITTED:
            self._scheduled[name] = run_times[-1]
        else:  # EVENT_JOB_MISSED or EVENT_JOB_MAX_INSTANCES: these runs did not happen
            self._missed(st, run_times)

    def _missed(self, st: DeviceStatus, run_times: Sequence[datetime]) -> None:
        if not run_times:
            return
        now = self.clock()
        rows = []
        for rt in run_times:
            st.missed += 1
            late = max(0.0, now - rt.timestamp())
            rows.append(
                self._health(
                    st, rt.timestamp(), up=False, duration=0.0, values=0, error="missed", late=late
                )
            )
        self._emit(rows)
