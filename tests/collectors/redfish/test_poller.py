"""The Redfish poller against the twin's BMCs over real HTTPS: values equal to the twin's
ground truth for both resource generations, sessions, basic auth, TLS checks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from dcim.protocols import PollError
from dcim.twin.serve_redfish import RedfishTwin
from tests.collectors.redfish.bmcs import as_truth, make_twin, poller, values_of

VALUES = values_of(3)
NAME = "srv-001"


def with_twin(body: Callable[[RedfishTwin], Awaitable[None]], **kw: Any) -> None:
    async def main() -> None:
        twin = make_twin(VALUES, **kw)
        await twin.start()
        try:
            await body(twin)
        finally:
            await twin.stop()

    asyncio.run(main())


@pytest.mark.parametrize("expand", [True, False], ids=["expand", "member-by-member"])
def test_newer_resources_give_the_ground_truth(expand: bool) -> None:
    async def body(twin: RedfishTwin) -> None:
        twin.set_expand(NAME, expand)
        p = poller(twin, NAME)
        try:
            got = as_truth(await p.poll())
            assert got == twin.state(NAME).truth()
            # the newer resources were read (the older ones are served too, and not needed)
            assert "speed_pct" in got[("server_fan", "Fan1")]
            assert {"environment_metrics", "sensors", "fans", "power_supplies"} <= set(
                p._urls or {}
            )
        finally:
            await p.close()

    with_twin(body)


def test_older_power_and_thermal_only_give_the_ground_truth() -> None:
    async def body(twin: RedfishTwin) -> None:
        twin.set_old_only(NAME)
        p = poller(twin, NAME)
        try:
            got = as_truth(await p.poll())
            assert got == twin.state(NAME).truth(old_only=True)
            assert set(p._urls or {}) == {"chassis", "power", "thermal"}
        finally:
            await p.close()

    with_twin(body)


def test_absent_components_and_null_readings_are_left_out() -> None:
    async def body(twin: RedfishTwin) -> None:
        p = poller(twin, NAME)
        try:
            for old in (False, True):
                twin.set_old_only(NAME, old)
                p._urls = None
                rows = {k[1] for k in as_truth(await p.poll())}
                assert rows >= {"Inlet Temp", "Fan4", "PSU2"}
                assert not rows & {"GPU Temp", "Fan5", "PSU3"}, rows
        finally:
            await p.close()

    with_twin(body)


def test_a_url_gone_404_is_rediscovered(caplog: pytest.LogCaptureFixture) -> None:
    """The BMC's firmware changed under us: the newer resources went away (404). That poll
    still reads what the older ones give (and says once what it could not read); the next
    one discovers the URLs again."""

    async def body(twin: RedfishTwin) -> None:
        p = poller(twin, NAME)
        try:
            await p.poll()
            assert p.discoveries == 1
            twin.set_old_only(NAME)
            with caplog.at_level(logging.INFO, logger="collectors.redfish.poller"):
                got = as_truth(await p.poll())
                assert got[("server", "")] == twin.state(NAME).truth()[("server", "")]
                assert p._urls is None
                warned = [r for r in caplog.records if r.levelno == logging.WARNING]
                assert warned and all("404" in r.getMessage() for r in warned)
                got = as_truth(await p.poll())
            assert p.discoveries == 2
            assert got == twin.state(NAME).truth(old_only=True)
            assert "every resource read again" in caplog.records[-1].getMessage()
        finally:
            await p.close()

    with_twin(body)


def test_session_login_once_relogin_on_401_and_logout_on_close() -> None:
    async def body(twin: RedfishTwin) -> None:
        bmc = twin.bmcs[NAME]
        p = poller(twin, NAME)
        for _ in range(3):
            await p.poll()
        assert bmc.logins == 1 and len(bmc.sessions) == 1
        twin.drop_sessions(NAME)  # the BMC restarted its web server, or expired the session
        assert as_truth(await p.poll()) == twin.state(NAME).truth()
        assert bmc.logins == 2 and p.client.logins == 2
        await p.close()
        assert bmc.logouts == 1 and bmc.sessions == {}

    with_twin(body)


def test_basic_auth_sends_credentials_without_a_session() -> None:
    async def body(twin: RedfishTwin) -> None:
        p = poller(twin, NAME, auth="basic")
        try:
            assert as_truth(await p.poll()) == twin.state(NAME).truth()
            assert twin.bmcs[NAME].logins == 0
        finally:
            await p.close()

    with_twin(body)


@pytest.mark.parametrize("auth", ["session", "basic"])
def test_wrong_password_is_an_auth_error(auth: str) -> None:
    async def body(twin: RedfishTwin) -> None:
        p = poller(twin, NAME, auth=auth, password={"value": "nope"})
        try:
            with pytest.raises(PollError) as err:
                await p.poll()
            assert err.value.kind == "auth", err.value
            assert "'dcim'" in str(err.value)
        finally:
            await p.close()

    with_twin(body)


def test_pinned_fingerprint_is_accepted() -> None:
    async def body(twin: RedfishTwin) -> None:
        fp = ":".join(twin.fingerprint_sha256[i : i + 2] for i in range(0, 64, 2)).upper()
        p = poller(twin, NAME, tls_ca=None, tls_fingerprint_sha256=fp)
        try:
            assert as_truth(await p.poll()) == twin.state(NAME).truth()
        finally:
            await p.close()

    with_twin(body)


def test_wrong_fingerprint_is_refused_with_both_fingerprints() -> None:
    async def body(twin: RedfishTwin) -> None:
        wrong = "ab" * 32
        p = poller(twin, NAME, tls_ca=None, tls_fingerprint_sha256=wrong)
        try:
            with pytest.raises(PollError) as err:
                await p.poll()
            assert err.value.kind == "auth"
            assert wrong in str(err.value) and twin.fingerprint_sha256 in str(err.value)
            assert twin.bmcs[NAME].requests == 0  # nothing was sent, credentials included
        finally:
            await p.close()

    with_twin(body)


def test_certificate_of_an_unknown_ca_is_refused() -> None:
    async def body(twin: RedfishTwin) -> None:
        other = make_twin({"x": {"power_w": 1.0, "inlet_temp_c": 1.0}})  # another CA
        p = poller(twin, NAME, tls_ca=other.ca_path)
        try:
            with pytest.raises(PollError) as err:
                await p.poll()
            assert err.value.kind == "auth"
            assert "not trusted" in str(err.value) and str(other.ca_path) in str(err.value)
            assert twin.bmcs[NAME].requests == 0
        finally:
            await p.close()

    with_twin(body)


def test_a_bmc_refusing_the_tls_handshake_is_refused() -> None:
    async def body(twin: RedfishTwin) -> None:
        p = poller(twin, NAME)
        try:
            with pytest.raises(PollError) as err:
                await p.poll()
            assert err.value.kind == "refused", err.value
            assert f":{twin.bmcs[NAME].port}" in str(err.value)
        finally:
            await p.close()

    with_twin(body, refuse_tls=frozenset({NAME}))


def test_a_slow_bmc_times_out_within_its_timeout() -> None:
    async def body(twin: RedfishTwin) -> None:
        from tests.collectors.redfish.bmcs import site

        p = poller(twin, NAME, cfg=site(timeout_s=0.3))
        twin.set_delay(NAME, 2.0)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        try:
            with pytest.raises(PollError) as err:
                await p.poll()
            assert err.value.kind == "timeout"
            assert loop.time() - t0 < 1.0
        finally:
            await p.close()

    with_twin(body)


def test_nothing_listening_is_refused() -> None:
    async def body(twin: RedfishTwin) -> None:
        p = poller(twin, NAME)
        await twin.stop()
        try:
            with pytest.raises(PollError) as err:
                await p.poll()
            assert err.value.kind == "refused"
        finally:
            await p.close()

    with_twin(body)


def test_redirects_to_a_trailing_slash_are_followed() -> None:
    """HPE iLO 5 answers /redfish/v1/x with a 308 to /redfish/v1/x/ (HPE's "Adapting from
    iLO 4" guide): followed, the session token kept."""

    async def body(twin: RedfishTwin) -> None:
        twin.set_redirect_slash(NAME)
        p = poller(twin, NAME)
        try:
            assert as_truth(await p.poll()) == twin.state(NAME).truth()
            assert twin.bmcs[NAME].redirects > 5 and twin.bmcs[NAME].logins == 1
        finally:
            await p.close()

    with_twin(body)


def test_requests_waiting_for_a_connection_do_not_time_out() -> None:
    """A BMC taking 0.3 s per request over one connection: the poll's requests queue for it
    (well beyond the 0.5 s timeout in total), each answers within it, the poll succeeds."""

    async def body(twin: RedfishTwin) -> None:
        from tests.collectors.redfish.bmcs import site

        p = poller(twin, NAME, cfg=site(timeout_s=0.5), max_connections=1)
        try:
            await p.poll()  # discovery
            twin.set_delay(NAME, 0.3)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            assert as_truth(await p.poll()) == twin.state(NAME).truth()
            assert loop.time() - t0 > 1.5  # 6 GETs one after the other
        finally:
            await p.close()

    with_twin(body)


def test_a_discovery_longer_than_a_poll_is_not_started_over() -> None:
    """A BMC taking 0.2 s per request: logging in and discovering take longer than the
    0.7 s a poll may; the poll cut at its deadline leaves the discovery running, the next
    poll waits for it and reads the values (discovery is not started over each time)."""

    async def body(twin: RedfishTwin) -> None:
        twin.set_delay(NAME, 0.2)
        p = poller(twin, NAME, max_connections=4)
        try:
            cut = 0
            while True:
                try:
                    got = as_truth(await asyncio.wait_for(p.poll(), 0.7))
                    break
                except TimeoutError:
                    cut += 1
                    assert cut < 4, "the discovery never ended"
            assert cut >= 1, "the first poll should not fit in 0.7 s"
            assert got == twin.state(NAME).truth()
            assert p.discoveries == 1 and twin.bmcs[NAME].logins == 1
        finally:
            await p.close()

    with_twin(body)
