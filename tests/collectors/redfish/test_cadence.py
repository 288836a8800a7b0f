"""The real scheduler with many Redfish pollers over HTTPS: a BMC that answers in 8 s and one
that refuses the TLS handshake do not move the others' cadence."""

from __future__ import annotations

import asyncio

from dcim.reading import Reading
from dcim.scheduler import Scheduler
from tests.collectors.redfish.bmcs import make_twin, poller, site, twin_thread, values_of
from tests.test_scheduler import _lag_probe, loop_allowance, p99

N = 30
INTERVAL_S = 2.0
SECONDS = 8.0


def test_a_slow_and_a_refusing_bmc_do_not_delay_the_others() -> None:
    values = values_of(N)
    slow, refusing = "srv-007", "srv-023"
    twin = make_twin(values, refuse_tls=frozenset({refusing}))
    twin.set_delay(slow, 8.0)
    # no coalescing: each start measured against its own slot, not the next tick's
    cfg = site(interval_s=INTERVAL_S, timeout_s=1.0, retries=0, coalesce_s=0)

    async def main() -> tuple[list[Reading], list[float]]:
        pollers = [poller(twin, name, cfg=cfg) for name in values]
        out: list[Reading] = []
        lags: list[float] = []
        sched = Scheduler(cfg, pollers, out.extend)
        probe = asyncio.create_task(_lag_probe(lags))
        await sched.start()
        await asyncio.sleep(SECONDS)
        await sched.stop()
        probe.cancel()
        for p in pollers:
            await p.close()
        return out, lags

    with twin_thread(twin):
        out, lags = asyncio.run(main())
    polls = [r for r in out if r.measurement == "dcim_poll"]
    by_dev: dict[str, list[Reading]] = {}
    for r in polls:
        by_dev.setdefault(r.tags["device"], []).append(r)
    others = [r for d, rs in by_dev.items() if d not in (slow, refusing) for r in rs]
    # every other BMC polled on its grid and started on time; up (a poll of theirs that
    # failed could only be this machine's overload: the twin runs in the same process)
    failed = [(r.tags["device"], r.fields["error"]) for r in others if r.fields["up"] != 1]
    assert len(failed) <= 0.05 * len(others), failed
    assert all(len(by_dev[d]) >= SECONDS / INTERVAL_S - 1 for d in values if d != slow)
    late = p99([float(r.fields["late_s"]) for r in others])
    print(f"p99 start lateness of the {N - 2} others: {late * 1e3:.1f} ms")
    assert late < loop_allowance(lags, 0.05)
    # the two bad ones fail on their own, each poll ended by its deadline or refused at once
    assert {r.fields["error"] for r in by_dev[slow]} <= {"deadline", "timeout", "missed"}
    assert any(r.fields["error"] in ("deadline", "timeout") for r in by_dev[slow])
    assert {r.fields["error"] for r in by_dev[refusing]} == {"refused"}
    # and the readings of the others are their BMC's values
    data = [r for r in out if r.measurement == "server"]
    assert {r.tags["device"] for r in data} == set(values) - {slow, refusing}
    for r in data:
        assert r.fields == twin.state(r.tags["device"]).truth()[("server", "")]
