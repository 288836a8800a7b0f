"""The scheduler with fake pollers: cadence under a dead device, deadlines, no overlap, gaps
recorded, failures logged once per transition. Real time, short intervals, bounded runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from typing import Any

import pytest

from collectors.base import PollError
from dcim.config import Device, SiteConfig
from dcim.reading import Reading
from dcim.scheduler import Scheduler


def site(
    n: int,
    *,
    interval_s: float,
    timeout_s: float = 0.1,
    retries: int = 0,
    jitter_s: float = 0.0,
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
    cfg: SiteConfig, pollers: list[FakePoller], seconds: float, **kw: Any
) -> list[Reading]:
    out: list[Reading] = []
    sched = Scheduler(cfg, pollers, out.extend, **kw)
    await sched.start()
    await asyncio.sleep(seconds)
    await sched.stop()
    return out


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
        time.sleep(1.0)  # something hogs the event loop: APScheduler coalesces the backlog
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
    out = asyncio.run(run_for(cfg, pollers, 3.0))
    polls = [r for r in out if r.measurement == "dcim_poll"]
    assert all(r.fields["up"] == 1 for r in polls)
    assert len(polls) >= 200 * (3.0 / 0.5 - 1)
    assert p99([float(r.fields["late_s"]) for r in polls]) < 0.05


def test_jitter_shifts_runs_but_keeps_the_cadence() -> None:
    """APScheduler 3 alone would drift to interval + jitter/2 (one cycle in six lost here)."""
    cfg = site(5, interval_s=0.2, jitter_s=0.1)
    pollers = [FakePoller(d) for d in cfg.devices]
    out = asyncio.run(run_for(cfg, pollers, 3.0))
    for p in pollers:
        rows = health(out, p.device.name)
        assert 3.0 / 0.2 - 2 <= len(rows) <= 3.0 / 0.2 + 1, len(rows)
        starts = [r.time_ns / 1e9 for r in rows]
        gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
        assert max(gaps) > 0.22 or min(gaps) < 0.18  # jittered...
        assert all(0.09 < g < 0.31 for g in gaps)  # ...within one jitter of the grid


@pytest.mark.parametrize(("step", "jitter"), [(0.3, 0.0), (0.1, 0.05), (10.0, 2.0), (1 / 3, 0.0)])
def test_grid_trigger_moves_forward_one_slot_at_a_time(step: float, jitter: float) -> None:
    from datetime import UTC, datetime

    from dcim.scheduler import _GridTrigger

    start = datetime(2025, 1, 15, 10, 0, 0, 123457, tzinfo=UTC)
    trig = _GridTrigger(seconds=step, start_date=start, jitter_s=jitter)
    t = trig.get_next_fire_time(None, start)
    for k in range(1, 5000):
        t = trig.get_next_fire_time(t, start)
        offset = t.timestamp() - start.timestamp() - k * trig.interval_length  # whole us
        assert -1e-5 <= offset <= jitter + 1e-5, (k, offset)


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
        for n, s in Scheduler(cfg, [FakePoller(d) for d in cfg.devices], list).status().items()
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
        assert sched._aps is not None
        jitters = {d.name: sched._aps.get_job(d.name).trigger.jitter_s for d in cfg.devices}
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
