"""The scheduler with fake pollers: cadence under a dead device, deadlines, no overlap, gaps
recorded, failures logged once per transition. Real time, short intervals, bounded runs; and
in virtual time (an event loop whose clock jumps to its next timer instead of waiting), where
thousands of slots take a second and every start and deadline can be checked exactly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import selectors
import statistics
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

import dcim.scheduler
from dcim.config import Device, SiteConfig
from dcim.protocols import PollError
from dcim.reading import Reading
from dcim.scheduler import FIRST_DELAY_S, GROUP_MAX, Scheduler, group_devices


@pytest.fixture(autouse=True)
def spread_layout(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests of the timer, deadlines and coalescing below were written for first polls
    spread one device at a time over the interval, each with its own coalescing window: they
    keep that layout; the start groups (``Scheduler._layout``) have tests of their own
    (marked ``groups``)."""
    if request.node.get_closest_marker("groups"):
        return

    def spread(self: Scheduler) -> dict[str, tuple[float, float]]:
        names = sorted(self._status)
        return {
            name: (self._status[name].interval_s * i / len(names), self._coalesce[name])
            for i, name in enumerate(names)
        }

    monkeypatch.setattr(Scheduler, "_layout", spread)


def site(
    n: int,
    *,
    interval_s: float,
    timeout_s: float = 0.1,
    retries: int = 0,
    jitter_s: float = 0.0,
    coalesce_s: float = 0.0,
    own: dict[int, dict[str, Any]] | None = None,
) -> SiteConfig:
    """``n`` Modbus devices d000, d001, ...; ``own``: device index -> its own settings."""
    return SiteConfig.model_validate(
        {
            "site": {"name": "t"},
            "defaults": {
                "interval_s": interval_s,
                "timeout_s": timeout_s,
                "retries": retries,
                "jitter_s": jitter_s,
                "coalesce_s": coalesce_s,
            },
            "devices": [
                {
                    "name": f"d{i:03d}",
                    "protocol": "modbus",
                    "profile": "x",
                    "host": "127.0.0.1",
                    "port": 1000 + i,
                    **(own or {}).get(i, {}),
                }
                for i in range(n)
            ],
        }
    )


class FakePoller:
    """Answers after ``delay_s`` (a random one in ``delay_s`` if a tuple), or as told."""

    def __init__(self, device: Device, *, delay_s: float | tuple[float, float] = 0.0) -> None:
        self.device = device
        self.delay_s = delay_s
        self.behaviour = "ok"  # ok | hang | raise | crash | stubborn
        self.active = self.max_active = self.calls = 0

    async def poll(self) -> list[Reading]:
        self.calls += 1
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            if self.behaviour == "hang":
                await asyncio.Event().wait()
            if self.behaviour == "raise":
                raise PollError("refused", "connection refused")
            if self.behaviour == "crash":
                raise ZeroDivisionError("bug")
            if self.behaviour == "stubborn":  # a library that swallows cancellation
                end = time.monotonic() + 0.5
                while time.monotonic() < end:
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.sleep(end - time.monotonic())
            d = random.uniform(*self.delay_s) if isinstance(self.delay_s, tuple) else self.delay_s
            if d:
                await asyncio.sleep(d)
            return [
                Reading("fake", {"device": self.device.name}, {"v": 1.0, "w": 2.0}, time.time_ns())
            ]
        finally:
            self.active -= 1

    async def close(self) -> None:
        pass


async def run_for(
    cfg: SiteConfig,
    pollers: list[FakePoller],
    seconds: float,
    *,
    lags: list[float] | None = None,
    **kw: Any,
) -> list[Reading]:
    """The readings of ``seconds`` of scheduling. ``lags``: filled meanwhile with how late the
    loop wakes a task that sleeps 5 ms at a time (see :func:`loop_allowance`)."""
    out: list[Reading] = []
    sched = Scheduler(cfg, pollers, out.extend, **kw)
    probe = asyncio.create_task(_lag_probe(lags)) if lags is not None else None
    await sched.start()
    await asyncio.sleep(seconds)
    await sched.stop()
    if probe is not None:
        probe.cancel()
    return out


async def _lag_probe(lags: list[float]) -> None:
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + 0.005
        await asyncio.sleep(0.005)
        lags.append(loop.time() - due)


def loop_allowance(lags: list[float], least: float) -> float:
    """What real-time tests allow the loop to add to a poll's start: ``least``, or more when
    the machine stalled the loop during the run (its longest stall, seen by the lag probe,
    plus 10 ms), so that a stall of the machine does not read as a scheduler delay."""
    return max(least, max(lags, default=0.0) + 0.01)


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock only moves when the loop would wait for a timer: it jumps
    to the timer instead. I/O still works (the selector is polled without blocking). Tests
    ``block(s)`` it to play a callback that hogs the loop for ``s`` seconds."""

    def __init__(self) -> None:
        self.now = 1000.0
        super().__init__(selector=_VirtualSelector(self))

    def time(self) -> float:
        return self.now

    def block(self, seconds: float) -> None:
        self.now += seconds


class _VirtualSelector(selectors.DefaultSelector):
    def __init__(self, loop: VirtualClockLoop) -> None:
        super().__init__()
        self._vloop = loop

    def select(self, timeout: float | None = None) -> list[Any]:
        if timeout is None:  # nothing scheduled: a real wait (for the self-pipe)
            return super().select(None)
        events = super().select(0)
        if not events and timeout > 0:
            self._vloop.now += timeout
        return events


def run_virtual(main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    with asyncio.Runner(loop_factory=VirtualClockLoop) as runner:
        return runner.run(main())


async def run_virtual_for(
    cfg: SiteConfig, pollers: list[FakePoller], seconds: float, wakeups: list[int] | None = None
) -> Any:
    """``run_for`` on a VirtualClockLoop, readings timestamped by the loop's clock; also
    returns the loop time start() was called at (and appends the scheduler's wake-ups to
    ``wakeups``)."""
    loop = asyncio.get_running_loop()
    out: list[Reading] = []
    sched = Scheduler(cfg, pollers, out.extend, clock=loop.time)
    t0 = loop.time()
    await sched.start()
    await asyncio.sleep(seconds)
    await sched.stop()
    if wakeups is not None:
        wakeups.append(sched.wakeups)
    return out, t0


def starts(rows: list[Reading]) -> list[float]:
    return [r.time_ns / 1e9 for r in rows]


def health(out: list[Reading], device: str) -> list[Reading]:
    return [r for r in out if r.measurement == "dcim_poll" and r.tags["device"] == device]


def p99(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(0.99 * len(s)))]


def test_blackholed_device_does_not_delay_the_others() -> None:
    interval, run_s = 0.3, 3.0
    cfg = site(41, interval_s=interval)
    pollers = [FakePoller(d, delay_s=(0.001, 0.05)) for d in cfg.devices]
    pollers[0].behaviour = "hang"
    out = asyncio.run(run_for(cfg, pollers, run_s))

    dead = health(out, "d000")
    assert len(dead) >= run_s / interval - 2
    assert all(r.fields["up"] == 0 and r.fields["error"] == "deadline" for r in dead)
    # At its cadence: one row per interval, each ending at the deadline (0.1 s timeout + margin
    # capped to 0.9 * interval).
    gaps = [(b.time_ns - a.time_ns) / 1e9 for a, b in zip(dead, dead[1:], strict=False)]
    assert all(abs(g - interval) < 0.05 for g in gaps), gaps
    assert all(0.25 < float(r.fields["duration_s"]) < 0.35 for r in dead)

    lates: list[float] = []
    for p in pollers[1:]:
        rows = health(out, p.device.name)
        assert len(rows) >= run_s / interval - 2, p.device.name
        assert all(
            r.fields["up"] == 1 and r.fields["error"] == "" and r.fields["values_read"] == 2
            for r in rows
        )
        lates += [float(r.fields["late_s"]) for r in rows]
    assert p99(lates) < 0.03, p99(lates)
    # data and health together: one data reading per successful poll
    assert sum(1 for r in out if r.measurement == "fake") == sum(
        len(health(out, p.device.name)) for p in pollers[1:]
    )


def test_no_overlapping_runs_and_skipped_runs_are_recorded() -> None:
    cfg = site(2, interval_s=0.2)
    pollers = [FakePoller(d) for d in cfg.devices]
    pollers[0].behaviour = "stubborn"  # takes 0.5 s whatever the deadline says
    out = asyncio.run(run_for(cfg, pollers, 2.0))
    assert pollers[0].max_active == 1
    rows = health(out, "d000")
    missed = [r for r in rows if r.fields["error"] == "missed"]
    ran = [r for r in rows if r.fields["error"] != "missed"]
    assert missed and ran
    assert all(r.fields["up"] == 0 for r in missed)
    # Every scheduled cycle is accounted for: ran or recorded as missed.
    assert len(rows) >= 2.0 / 0.2 - 2
    assert len(health(out, "d001")) >= 2.0 / 0.2 - 2


def test_a_blocked_loop_records_the_cycles_it_swallowed() -> None:
    cfg = site(1, interval_s=0.2)
    pollers = [FakePoller(cfg.devices[0])]

    async def main() -> list[Reading]:
        out: list[Reading] = []
        sched = Scheduler(cfg, pollers, out.extend)
        await sched.start()
        await asyncio.sleep(0.5)
        time.sleep(1.0)  # something hogs the event loop: its timer fires 1 s late
        await asyncio.sleep(0.6)
        await sched.stop()
        return out

    rows = health(asyncio.run(main()), "d000")
    missed = [r for r in rows if r.fields["error"] == "missed"]
    assert len(missed) >= 3, [r.fields for r in rows]
    assert 2.1 / 0.2 - 2 <= len(rows) <= 2.1 / 0.2 + 2


def test_failure_is_logged_once_per_transition(caplog: pytest.LogCaptureFixture) -> None:
    cfg = site(2, interval_s=0.1)
    pollers = [FakePoller(d) for d in cfg.devices]
    pollers[0].behaviour = "raise"
    pollers[1].behaviour = "crash"

    async def main() -> tuple[list[Reading], Scheduler]:
        out: list[Reading] = []
        sched = Scheduler(cfg, pollers, out.extend)
        await sched.start()
        await asyncio.sleep(0.75)
        st = sched.status()["d000"]
        assert not st.up and st.consecutive_failures >= 5 and st.last_error == "refused"
        pollers[0].behaviour = "ok"
        await asyncio.sleep(0.5)
        await sched.stop()
        return out, sched

    with caplog.at_level(logging.INFO, logger="dcim.scheduler"):
        out, sched = asyncio.run(main())
    rows = health(out, "d000")
    errors = [r.fields["error"] for r in rows]
    assert errors[0] == "refused" and errors[-1] == ""
    assert all(r.fields["up"] == (0 if e else 1) for r, e in zip(rows, errors, strict=True))
    assert {r.fields["error"] for r in health(out, "d001")} == {"other"}
    msgs = [r.getMessage() for r in caplog.records if r.name == "dcim.scheduler"]
    assert sum("d000 is down" in m for m in msgs) == 1, msgs
    assert sum("d000 is back up" in m for m in msgs) == 1, msgs
    assert sum("d001 is down" in m for m in msgs) == 1, msgs
    st = sched.status()["d000"]
    assert st.up and st.consecutive_failures == 0 and st.failures >= 5 and st.late_s is not None


def test_stop_waits_for_running_polls_and_starts_no_new_ones() -> None:
    cfg = site(3, interval_s=0.5, timeout_s=0.3)
    pollers = [FakePoller(d, delay_s=0.2) for d in cfg.devices]

    async def main() -> None:
        out: list[Reading] = []
        sched = Scheduler(cfg, pollers, out.extend)
        await sched.start()
        await asyncio.sleep(0.1)  # first polls are running
        t0 = time.monotonic()
        await sched.stop()
        assert time.monotonic() - t0 < 1.0
        calls = sum(p.calls for p in pollers)
        assert all(p.active == 0 for p in pollers)
        await asyncio.sleep(0.6)
        assert sum(p.calls for p in pollers) == calls

    asyncio.run(main())


def test_many_devices_keep_their_cadence() -> None:
    """200 devices at 0.5 s for 3 s, each poll taking 5-50 ms: starts stay on schedule."""
    cfg = site(200, interval_s=0.5, timeout_s=0.2, jitter_s=0.0)
    pollers = [FakePoller(d, delay_s=(0.005, 0.05)) for d in cfg.devices]
    lags: list[float] = []
    out = asyncio.run(run_for(cfg, pollers, 3.0, lags=lags))
    polls = [r for r in out if r.measurement == "dcim_poll"]
    assert all(r.fields["up"] == 1 for r in polls)
    assert len(polls) >= 200 * (3.0 / 0.5 - 1)
    assert p99([float(r.fields["late_s"]) for r in polls]) < loop_allowance(lags, 0.05)


def test_jitter_shifts_runs_but_keeps_the_cadence() -> None:
    """APScheduler 3 alone would drift to interval + jitter/2 (one cycle in six lost here).
    In virtual time: 10 ms of a stalled machine read as a run off the grid in real time."""
    cfg = site(5, interval_s=0.2, jitter_s=0.1)
    pollers = [FakePoller(d) for d in cfg.devices]
    out, _ = run_virtual(lambda: run_virtual_for(cfg, pollers, 3.0))
    for p in pollers:
        rows = health(out, p.device.name)
        assert 3.0 / 0.2 - 2 <= len(rows) <= 3.0 / 0.2 + 1, len(rows)
        starts = [r.time_ns / 1e9 for r in rows]
        gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
        assert max(gaps) > 0.22 or min(gaps) < 0.18  # jittered...
        assert all(0.09 < g < 0.31 for g in gaps)  # ...within one jitter of the grid


@pytest.mark.parametrize(("step", "jitter"), [(0.3, 0.0), (0.1, 0.05), (10.0, 2.0), (1 / 3, 0.0)])
def test_runs_stay_on_the_grid_one_slot_at_a_time(step: float, jitter: float) -> None:
    """Run k starts at first + k * interval + uniform(0, jitter), for thousands of slots:
    the jitter never accumulates (APScheduler 3's IntervalTrigger adds it to the previous
    jittered time: the mean interval drifts to interval + jitter / 2), no slot is skipped or
    run twice, and the first run is not jittered."""
    slots = 3000
    cfg = site(1, interval_s=step, jitter_s=jitter)
    pollers = [FakePoller(cfg.devices[0])]
    # The last slot is due by first + (slots - 1) * step + jitter; the next one not before
    # first + slots * step (the jitter is at most half the interval).
    seconds = FIRST_DELAY_S + (slots - 1) * step + jitter + step / 4
    out, t0 = run_virtual(lambda: run_virtual_for(cfg, pollers, seconds))
    rows = health(out, "d000")
    assert len(rows) == slots == pollers[0].calls
    assert all(r.fields["up"] == 1 and r.fields["late_s"] == 0 for r in rows)
    offsets = [t - t0 - FIRST_DELAY_S - k * step for k, t in enumerate(starts(rows))]
    assert abs(offsets[0]) < 1e-6
    assert all(-1e-6 <= o <= jitter + 1e-6 for o in offsets), (min(offsets), max(offsets))
    if jitter:  # uniform over [0, jitter]: spread over all of it, centred on its middle
        assert min(offsets[1:]) < 0.05 * jitter and max(offsets) > 0.95 * jitter
        assert abs(statistics.mean(offsets[1:]) - jitter / 2) < 0.05 * jitter


def test_a_device_has_its_own_interval_jitter_and_deadline() -> None:
    cfg = site(
        4,
        interval_s=10.0,
        timeout_s=2.0,
        retries=1,
        jitter_s=3.0,
        own={
            1: {"interval_s": 60.0, "jitter_s": 5.0, "deadline_s": 20.0},
            2: {"interval_s": 4.0},  # the site's jitter is capped to half its interval
            3: {"jitter_s": 0.0, "deadline_s": 9.5},
        },
    )
    got = {
        n: (s.interval_s, s.jitter_s, s.deadline_s)
        for n, s in Scheduler(cfg, [FakePoller(d) for d in cfg.devices], lambda rs: None)
        .status()
        .items()
    }
    assert got == {
        "d000": (10.0, 3.0, 4.5),  # min(2 * (1 + 1) + 0.5, 0.9 * 10 - 3)
        "d001": (60.0, 5.0, 20.0),
        "d002": (4.0, 2.0, pytest.approx(1.6)),  # min(4.5, 0.9 * 4 - 2)
        "d003": (10.0, 0.0, 9.5),
    }


def test_each_device_polls_with_its_own_deadline_and_jitter() -> None:
    cfg = site(
        3,
        interval_s=0.3,
        own={0: {"deadline_s": 0.05}, 2: {"jitter_s": 0.1, "deadline_s": 0.15}},
    )
    pollers = [FakePoller(d) for d in cfg.devices]
    pollers[0].behaviour = pollers[1].behaviour = "hang"

    async def main() -> tuple[list[Reading], dict[str, float]]:
        out: list[Reading] = []
        sched = Scheduler(cfg, pollers, out.extend)
        await sched.start()
        jitters = {name: st.jitter_s for name, st in sched.status().items()}
        await asyncio.sleep(1.5)
        await sched.stop()
        return out, jitters

    out, jitters = asyncio.run(main())
    assert jitters == {"d000": 0.0, "d001": 0.0, "d002": 0.1}
    own, default = health(out, "d000"), health(out, "d001")
    assert len(own) >= 3 and len(default) >= 3
    assert all(r.fields["error"] == "deadline" for r in own + default)
    assert all(0.04 < float(r.fields["duration_s"]) < 0.1 for r in own)
    # the site's: min(0.1 s timeout + 0.5 s margin, 0.9 * 0.3 s)
    assert all(0.25 < float(r.fields["duration_s"]) < 0.35 for r in default)
    assert all(r.fields["up"] == 1 for r in health(out, "d002"))


def test_own_deadline_and_jitter_exactly_and_hung_devices_move_no_one() -> None:
    """The same site in virtual time, 200 slots: the hung devices end each poll exactly at
    their own deadline and start exactly on their grid; the jittered one starts within its
    own jitter of its grid, never moved by the others."""
    slots, step = 200, 0.3
    cfg = site(
        3,
        interval_s=step,
        own={0: {"deadline_s": 0.05}, 2: {"jitter_s": 0.1, "deadline_s": 0.15}},
    )
    pollers = [FakePoller(d) for d in cfg.devices]
    pollers[0].behaviour = pollers[1].behaviour = "hang"
    # until d002's slot 199 (its grid is 2/3 of an interval after d000's, plus its jitter)
    seconds = FIRST_DELAY_S + (slots - 1) * step + step * 2 / 3 + 0.1 + 0.01
    out, t0 = run_virtual(lambda: run_virtual_for(cfg, pollers, seconds))
    offsets: dict[str, list[float]] = {}
    for i, p in enumerate(pollers):
        rows = health(out, p.device.name)
        assert len(rows) == (slots + 1 if i == 0 else slots), p.device.name
        first = t0 + FIRST_DELAY_S + step * i / len(pollers)
        offsets[p.device.name] = [t - first - k * step for k, t in enumerate(starts(rows))]
        assert all(r.fields["late_s"] == 0 for r in rows)
        durations = [float(r.fields["duration_s"]) for r in rows]
        if i < 2:
            assert all(r.fields["error"] == "deadline" for r in rows)
            # own 0.05 s; the site's min(0.1 s timeout + 0.5 s margin, 0.9 * 0.3 s)
            assert durations == [pytest.approx(0.05 if i == 0 else 0.27, abs=1e-6)] * len(rows)
        else:
            assert all(r.fields["up"] == 1 for r in rows) and max(durations) < 1e-6
    assert all(abs(o) < 1e-6 for o in offsets["d000"] + offsets["d001"])
    jittered = offsets["d002"]
    assert all(-1e-6 <= o <= 0.1 + 1e-6 for o in jittered)
    assert max(jittered) > 0.09 and min(jittered[1:]) < 0.01


def test_a_blocked_loop_records_exactly_the_slots_it_swallowed() -> None:
    """Virtual time: the loop is blocked for 1 s after 0.5 s (slots every 0.2 s from 0.05
    s): at 1.5 s the slots of 0.65, 0.85, 1.05 and 1.25 s are recorded missed, at their
    own time and as late as they are; the one of 1.45 s runs at once (late 0.05 s), then
    the grid goes on as if nothing happened."""
    cfg = site(1, interval_s=0.2)
    pollers = [FakePoller(cfg.devices[0])]

    async def main() -> tuple[list[Reading], float]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualClockLoop)
        out: list[Reading] = []
        sched = Scheduler(cfg, pollers, out.extend, clock=loop.time)
        t0 = loop.time()
        await sched.start()
        await asyncio.sleep(0.5)
        loop.block(1.0)
        await asyncio.sleep(0.6)
        await sched.stop()
        return out, t0

    out, t0 = run_virtual(main)
    rows = health(out, "d000")
    got = [
        (round(t - t0, 6), r.fields["error"], round(float(r.fields["late_s"]), 6))
        for t, r in zip(starts(rows), rows, strict=True)
    ]
    assert got == [
        (0.05, "", 0.0),
        (0.25, "", 0.0),
        (0.45, "", 0.0),
        (0.65, "missed", 0.85),
        (0.85, "missed", 0.65),
        (1.05, "missed", 0.45),
        (1.25, "missed", 0.25),
        (1.5, "", 0.05),
        (1.65, "", 0.0),
        (1.85, "", 0.0),
        (2.05, "", 0.0),
    ]
    assert all(r.fields["up"] == (0 if r.fields["error"] else 1) for r in rows)


def test_a_poll_submitted_as_stop_is_called_is_waited_for() -> None:
    """stop() called in the loop iteration right after the first slot fired, before that
    poll's task has run a step: stop() still waits for it (the poll runs and is recorded
    before stop() returns), and nothing starts after."""
    cfg = site(1, interval_s=0.5, timeout_s=0.3)
    pollers = [FakePoller(cfg.devices[0], delay_s=0.2)]

    async def main() -> tuple[list[Reading], int, int]:
        loop = asyncio.get_running_loop()
        out: list[Reading] = []
        sched = Scheduler(cfg, pollers, out.extend, clock=loop.time)
        woken = loop.create_future()
        # Due within the loop's clock resolution of the first slot, just before it: both
        # fire in one iteration, this one first, so this task runs before the poll's task.
        loop.call_at(loop.time() + FIRST_DELAY_S - 1e-10, woken.set_result, None)
        await sched.start()
        await woken
        submitted = len(asyncio.all_tasks()) - 1  # not this one
        assert pollers[0].calls == 0  # submitted, not started
        await sched.stop()
        calls = pollers[0].calls
        await asyncio.sleep(2.0)
        return out, submitted, calls

    out, submitted, calls = run_virtual(main)
    assert submitted == 1
    assert calls == pollers[0].calls == 1 and pollers[0].active == 0
    rows = health(out, "d000")
    assert len(rows) == 1 and rows[0].fields["up"] == 1
    assert float(rows[0].fields["duration_s"]) == pytest.approx(0.2, abs=1e-6)


def _coalesced_run(
    n: int, step: float, slots: int, *, jitter: float, coalesce: float
) -> tuple[list[Reading], float, int]:
    cfg = site(n, interval_s=step, jitter_s=jitter, coalesce_s=coalesce)
    pollers = [FakePoller(d) for d in cfg.devices]
    # until the last device's last slot has started (jitter and window included)
    seconds = FIRST_DELAY_S + (slots - 1) * step + step * (n - 1) / n + jitter + coalesce + 1e-3
    wakeups: list[int] = []
    out, t0 = run_virtual(lambda: run_virtual_for(cfg, pollers, seconds, wakeups))
    # (the first devices may have started their next slot too)
    assert all(slots <= p.calls <= slots + 1 for p in pollers), [p.calls for p in pollers]
    return out, t0, wakeups[0]


@pytest.mark.parametrize("jitter", [0.0, 0.2])
def test_coalesced_starts_share_wakeups_within_the_window(jitter: float) -> None:
    """100 devices spread over a 1 s interval, window 0.1 s, 300 slots each, virtual time:
    every poll starts on a tick of the window's grid, at most 0.1 s after its own (jittered)
    slot and never before it, with ``late_s`` saying exactly how late; the polls due within
    one window share one wake-up (10 a second instead of 100); the grid does not drift."""
    n, step, slots, c = 100, 1.0, 300, 0.1
    out, t0, wakeups = _coalesced_run(n, step, slots, jitter=jitter, coalesce=c)
    epoch = t0 + FIRST_DELAY_S
    lates: list[float] = []
    for i in range(n):
        rows = health(out, f"d{i:03d}")[:slots]
        assert len(rows) == slots and all(r.fields["up"] == 1 for r in rows)
        first = epoch + step * i / n
        for k, (t, r) in enumerate(zip(starts(rows), rows, strict=True)):
            late = float(r.fields["late_s"])
            slot = t - late  # the jittered slot the poll was due at
            assert -1e-6 <= late <= c + 1e-6
            assert -1e-6 <= slot - (first + k * step) <= (jitter if k else 0.0) + 1e-6
            ticks = (t - epoch) / c
            assert abs(ticks - round(ticks)) < 1e-6, (i, k, t - epoch)  # on a tick
            lates.append(late)
    # one wake-up per tick at most: (slots + 1) intervals of 1 s, ten ticks a second
    assert wakeups <= (slots + 1) * round(step / c) + 2, wakeups
    assert wakeups * 5 < n * slots
    # late by a fraction of the window, spread over it (the slots fall anywhere in it)
    assert max(lates) > 0.85 * c and statistics.mean(lates) < 0.7 * c


def test_coalesce_zero_is_a_wakeup_per_slot_exactly_on_time() -> None:
    """Without coalescing (the default) every slot has its own wake-up and starts exactly on
    its slot (late 0), as before the window existed."""
    n, step, slots = 20, 1.0, 100
    out, t0, wakeups = _coalesced_run(n, step, slots, jitter=0.0, coalesce=0.0)
    assert n * slots <= wakeups <= n * slots + n
    for i in range(n):
        rows = health(out, f"d{i:03d}")
        first = t0 + FIRST_DELAY_S + step * i / n
        assert all(r.fields["late_s"] == 0 for r in rows)
        assert all(abs(t - first - k * step) < 1e-6 for k, t in enumerate(starts(rows)))


def test_coalescing_keeps_real_start_jitter_within_the_window() -> None:
    """Real time, 200 devices at 0.5 s with a 0.05 s window: the p99 start delay is the
    window plus what the loop adds without it (test_many_devices_keep_their_cadence)."""
    cfg = site(200, interval_s=0.5, timeout_s=0.2, coalesce_s=0.05)
    pollers = [FakePoller(d, delay_s=(0.005, 0.05)) for d in cfg.devices]
    lags: list[float] = []
    out = asyncio.run(run_for(cfg, pollers, 3.0, lags=lags))
    polls = [r for r in out if r.measurement == "dcim_poll"]
    assert all(r.fields["up"] == 1 for r in polls)
    assert len(polls) >= 200 * (3.0 / 0.5 - 1)
    assert p99([float(r.fields["late_s"]) for r in polls]) < 0.05 + loop_allowance(lags, 0.05)


def test_a_devices_window_is_capped_by_its_interval_and_deadline() -> None:
    cfg = site(
        4,
        interval_s=10.0,
        timeout_s=2.0,
        retries=1,
        coalesce_s=1.0,
        own={1: {"interval_s": 6.0}, 2: {"deadline_s": 9.5}, 3: {"interval_s": 4.0}},
    )
    assert [cfg.coalesce_of(d) for d in cfg.devices] == [
        1.0,  # 10 s - 4.5 s deadline leaves room
        pytest.approx(0.6),  # a tenth of its own interval
        pytest.approx(0.25),  # half of 10 - 9.5: cancelled at its deadline before the next slot
        pytest.approx(0.2),  # half of 4 - 3.6 (its default deadline, 0.9 * 4)
    ]
    sched = Scheduler(cfg, [FakePoller(d) for d in cfg.devices], lambda rs: None)
    assert sched._coalesce == {
        "d000": 1.0,
        "d001": pytest.approx(0.6),
        "d002": 0.25,
        "d003": pytest.approx(0.2),
    }


def test_the_late_window_keeps_the_last_samples_in_a_ring() -> None:
    from dcim.scheduler import LATE_WINDOW, DeviceStatus

    st = DeviceStatus("d", "snmp", 10.0, 9.0, 0.0)
    assert st.late_s_max is None and st.late_s_p99 is None
    for i in range(LATE_WINDOW + 50):  # 0.0 .. 0.249: the first 50 fall out
        st.add_late(i / 1000)
    assert len(st._lates) == LATE_WINDOW and min(st._lates) == 0.05
    assert st.late_s_max == (LATE_WINDOW + 49) / 1000
    assert st.late_s_p99 == sorted(i / 1000 for i in range(50, LATE_WINDOW + 50))[197]


@pytest.mark.groups
@pytest.mark.parametrize("group_max", [GROUP_MAX, 7])
def test_devices_start_together_in_groups(monkeypatch: pytest.MonkeyPatch, group_max: int) -> None:
    """120 devices every 1 s and 3 every 0.5 s, virtual time: in groups of at most
    ``group_max`` in the order of their names, the groups' first slots spread evenly over the
    shortest interval (0.5 s); then each on its own interval."""
    monkeypatch.setattr(dcim.scheduler, "GROUP_MAX", group_max)
    cfg = site(123, interval_s=1.0, own={i: {"interval_s": 0.5} for i in range(120, 123)})
    pollers = [FakePoller(d) for d in cfg.devices]
    wakeups: list[int] = []
    out, t0 = run_virtual(lambda: run_virtual_for(cfg, pollers, FIRST_DELAY_S + 2.99, wakeups))
    groups = -(-123 // group_max)
    spacing = 0.5 / groups
    group, slots = [], set()
    for i, p in enumerate(pollers):
        rows = [t - t0 - FIRST_DELAY_S for t in starts(health(out, p.device.name))]
        g = round(rows[0] / spacing)
        interval = 1.0 if i < 120 else 0.5
        assert rows == pytest.approx([g * spacing + k * interval for k in range(len(rows))])
        assert len(rows) == int((2.99 - g * spacing) / interval) + 1, i
        group.append(g)
        slots.update(round(t, 6) for t in rows)
    assert group == sorted(group) and set(group) == set(range(groups))  # in name order
    assert max(group.count(g) for g in range(groups)) <= group_max
    # a wake-up for every slot of a group (and some for deadlines of polls already ended)
    assert wakeups[0] >= len(slots)


@pytest.mark.groups
def test_devices_behind_one_address_never_start_together() -> None:
    """Four Modbus units behind one gateway (same host and port) among 6 devices: four groups,
    one unit in each (polled at once, they would queue at the gateway past their deadlines);
    the others fill the groups in name order."""
    cfg = site(
        6,
        interval_s=1.0,
        own={i: {"port": 502, "modbus": {"unit_id": i + 1}} for i in (1, 2, 4, 5)},
    )
    pollers = [FakePoller(d) for d in cfg.devices]
    out, t0 = run_virtual(lambda: run_virtual_for(cfg, pollers, FIRST_DELAY_S + 0.99))
    first = [round((starts(health(out, p.device.name))[0] - t0 - FIRST_DELAY_S) * 4, 6)
             for p in pollers]  # fmt: skip
    assert first == [0, 0, 1, 1, 2, 3]


@pytest.mark.groups
def test_coalescing_never_merges_two_groups() -> None:
    """12 units behind one gateway every 10 s with ``coalesce_s`` 1: 12 groups 0.83 s apart
    (closer than the coalescing window): each unit still starts on its own, cycle after
    cycle, and each group in a wake-up of its own."""
    own = {i: {"port": 502, "modbus": {"unit_id": i + 1}} for i in range(12)}
    cfg = site(14, interval_s=10.0, coalesce_s=1.0, own=own)
    pollers = [FakePoller(d) for d in cfg.devices]
    wakeups: list[int] = []
    out, t0 = run_virtual(lambda: run_virtual_for(cfg, pollers, FIRST_DELAY_S + 29.9, wakeups))
    gateway = sorted(t for p in pollers[:12] for t in starts(health(out, p.device.name)))
    assert len(gateway) == 36 and len({round(t, 6) for t in gateway}) == 36
    assert min(b - a for a, b in zip(gateway, gateway[1:], strict=False)) > 0.8
    assert wakeups == [36]


@pytest.mark.parametrize("seed", range(200))
def test_groups_are_bounded_and_never_hold_an_address_twice(seed: int) -> None:
    rng = random.Random(seed)
    n, group_max = rng.randint(1, 300), rng.randint(1, 60)
    endpoints = [rng.randint(0, rng.randint(1, 2 * n)) for _ in range(n)]
    group, count = group_devices(endpoints, group_max)
    assert set(group) <= set(range(count)) and len(group) == n
    assert max(group.count(g) for g in range(count)) <= group_max
    assert len({(e, g) for e, g in zip(endpoints, group, strict=True)}) == n


def test_group_devices_examples() -> None:
    assert group_devices(["a", "b"] * 3, 50) == ([0, 0, 1, 1, 2, 2], 3)
    assert group_devices([], 50) == ([], 1)
    # 50 at their own address, then 25 gateways twice: two groups of 50 would put 75 in one
    bmcs, gateways = [f"bmc{i}" for i in range(50)], [f"gw{i}" for i in range(25)]
    group, count = group_devices(bmcs + gateways + gateways, 50)
    assert count == 3 and max(group.count(g) for g in range(count)) <= 50
