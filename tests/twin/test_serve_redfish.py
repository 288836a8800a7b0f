"""The twin's Redfish BMCs as third parties see them: every link of the resource tree
crawled with `requests`, the session service, OpenStack's `sushy` (a typed model of the DMTF
schemas) reading the same values the collector reads, and the same values as the twin's
SNMP agents at the same instant."""

from __future__ import annotations

import asyncio
import re
import socket
from typing import Any

import requests
import sushy
from sushy.auth import SessionAuth

from collectors.redfish.poller import RedfishPoller
from collectors.snmp.poller import SnmpPoller, close_shared_engine
from collectors.snmp.profile import SnmpProfile
from collectors.snmp.wire import close_shared_client
from dcim.config import SiteConfig
from dcim.profiles import load_profiles
from dcim.twin.ports import free_ports
from dcim.twin.serve_redfish import RedfishTwin
from dcim.twin.serve_snmp import SnmpTwin
from dcim.twin.site import paris_chapelle
from tests.collectors.redfish.bmcs import (
    as_truth,
    device,
    make_twin,
    options,
    site,
    twin_thread,
    values_of,
)

VALUES = values_of(2)
NAME = "srv-001"
ODATA_TYPE = re.compile(r"^#(\w+)\.(v\d+_\d+_\d+\.)?\w+$")


def _base(twin: RedfishTwin, name: str = NAME) -> str:
    return f"https://127.0.0.1:{twin.bmcs[name].port}"


def crawl(twin: RedfishTwin, http: requests.Session) -> dict[str, dict[str, Any]]:
    """Every resource reachable from the service root by ``@odata.id`` links."""
    seen: dict[str, dict[str, Any]] = {}
    todo = ["/redfish/v1/"]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        rsp = http.get(_base(twin) + path, verify=str(twin.ca_path), timeout=5)
        assert rsp.status_code == 200, (path, rsp.status_code)
        body = rsp.json()
        seen[path] = body
        stack: list[Any] = [body]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                link = node.get("@odata.id")
                if isinstance(link, str) and "#" not in link and link not in seen:
                    todo.append(link)
                stack.extend(node.values())
            elif isinstance(node, list):
                stack.extend(node)
    return seen


def test_resource_tree_is_linked_and_typed_as_dmtf_schemas() -> None:
    twin = make_twin(VALUES)
    with twin_thread(twin), requests.Session() as http:
        http.auth = (twin.username, twin.password)
        tree = crawl(twin, http)
        ch = "/redfish/v1/Chassis/1"
        expected = {
            "/redfish/v1/",
            "/redfish/v1/SessionService",
            "/redfish/v1/SessionService/Sessions",
            "/redfish/v1/Systems/1",
            ch,
            f"{ch}/Power",
            f"{ch}/Thermal",
            f"{ch}/PowerSubsystem/PowerSupplies/1/Metrics",
            f"{ch}/ThermalSubsystem/Fans/4",
            f"{ch}/ThermalSubsystem/ThermalMetrics",
            f"{ch}/EnvironmentMetrics",
            f"{ch}/Sensors/InletTemp",
        }
        assert expected <= set(tree), sorted(expected - set(tree))
        for path, body in tree.items():
            assert body["@odata.id"].rstrip("/") == path.rstrip("/"), path
            assert ODATA_TYPE.match(body["@odata.type"]), (path, body["@odata.type"])
            if "Members" in body:
                assert body["Members@odata.count"] == len(body["Members"]), path
        # the newer resources say what the older ones say
        truth = twin.state(NAME)
        assert tree[f"{ch}/EnvironmentMetrics"]["PowerWatts"]["Reading"] == truth.power_w
        assert tree[f"{ch}/Power"]["PowerControl"][0]["PowerConsumedWatts"] == truth.power_w
        # a collection expanded in one request
        rsp = http.get(
            _base(twin) + f"{ch}/Sensors",
            params={"$expand": ".($levels=1)"},
            verify=str(twin.ca_path),
            timeout=5,
        )
        assert all("Reading" in m for m in rsp.json()["Members"])
        # old-only: the newer links are gone and their URLs answer 404
        twin.set_old_only(NAME)
        old = crawl(twin, http)
        assert not any("Subsystem" in p or "Sensors" in p for p in old)
        rsp = http.get(_base(twin) + f"{ch}/PowerSubsystem", verify=str(twin.ca_path))
        assert rsp.status_code == 404


def test_sessions_login_logout_and_401() -> None:
    twin = make_twin(VALUES)
    ca = str(twin.ca_path)
    with twin_thread(twin), requests.Session() as http:
        base = _base(twin)
        assert http.get(base + "/redfish/v1/", verify=ca).status_code == 200  # public
        assert http.get(base + "/redfish/v1/Chassis", verify=ca).status_code == 401
        bad = {"UserName": twin.username, "Password": "wrong"}
        sessions = base + "/redfish/v1/SessionService/Sessions"
        assert http.post(sessions, json=bad, verify=ca).status_code == 401
        good = {"UserName": twin.username, "Password": twin.password}
        rsp = http.post(sessions, json=good, verify=ca)
        assert rsp.status_code == 201
        token, location = rsp.headers["X-Auth-Token"], rsp.headers["Location"]
        auth = {"X-Auth-Token": token}
        assert http.get(base + "/redfish/v1/Chassis", headers=auth, verify=ca).status_code == 200
        assert http.get(base + location, headers=auth, verify=ca).json()["Id"] == "1"
        assert http.delete(base + location, headers=auth, verify=ca).status_code == 204
        assert http.get(base + "/redfish/v1/Chassis", headers=auth, verify=ca).status_code == 401
        # read-only: anything but GET (and the session's POST/DELETE) is refused
        rsp = http.patch(
            base + "/redfish/v1/Chassis/1", json={}, auth=(twin.username, twin.password), verify=ca
        )
        assert rsp.status_code == 405


def test_sushy_reads_the_values_the_collector_reads() -> None:
    """sushy (OpenStack's Redfish library: typed Chassis, Power and Thermal resources) reads
    the older resources, the collector the newer ones by default: the same values."""
    twin = make_twin(VALUES)

    async def collect() -> dict[tuple[str, str], dict[str, Any]]:
        p = RedfishPoller(site(), device(twin, NAME), opts=options(twin))
        try:
            return as_truth(await p.poll())
        finally:
            await p.close()

    with twin_thread(twin):
        got = asyncio.run(collect())
        with SessionAuth(twin.username, twin.password) as auth:  # logs out on exit
            client = sushy.Sushy(_base(twin) + "/redfish/v1/", auth=auth, verify=str(twin.ca_path))
            chassis = client.get_chassis("/redfish/v1/Chassis/1")
            power, thermal = chassis.power, chassis.thermal
        assert got == twin.state(NAME).truth()  # the collector's read is the ground truth
        # sushy's Power model has no PowerControl: its raw JSON, through sushy's session
        assert power.json["PowerControl"][0]["PowerConsumedWatts"] == got[("server", "")]["power_w"]
        inlet = [t for t in thermal.temperatures if t.physical_context == "Intake"]
        assert [t.reading_celsius for t in inlet] == [got[("server", "")]["inlet_temp_c"]]
        temps = {
            t.name: t.reading_celsius
            for t in thermal.temperatures
            if t.status.state == sushy.STATE_ENABLED
        }
        assert temps.pop("CPU1 DTS") < 0  # a margin, not a temperature: the profile skips it
        assert temps == {k[1]: v["temp_c"] for k, v in got.items() if k[0] == "server_temperature"}
        fans = {f.name: f.reading for f in thermal.fans if f.reading is not None}
        assert fans == {k[1]: v["speed_rpm"] for k, v in got.items() if k[0] == "server_fan"}
        psus = {
            p.name: (p.last_power_output_watts, p.status.health.value)
            for p in power.power_supplies
            if p.status.state == sushy.STATE_ENABLED
        }
        assert psus == {
            k[1]: (v["output_power_w"], ["OK", "Warning", "Critical"][v["health"]])
            for k, v in got.items()
            if k[0] == "server_psu"
        }
        assert twin.bmcs[NAME].logins == 2  # sushy logged in through the session service too
        assert twin.bmcs[NAME].logouts == 2 and not twin.bmcs[NAME].sessions


def test_redfish_and_snmp_agents_serve_the_same_values() -> None:
    doc = paris_chapelle(
        racks=1, servers_per_rack=3, snmp_base_port=free_ports(20, kind=socket.SOCK_DGRAM)
    )
    doc["devices"] = [d for d in doc["devices"] if d["profile"] == "bmc_server"]
    cfg = SiteConfig.model_validate(doc)
    values = {d.name: v for d, v in zip(cfg.devices, values_of(3).values(), strict=True)}
    twin = make_twin(values)

    async def main() -> None:
        snmp = SnmpTwin(cfg, lambda name: values[name])
        await snmp.start()
        await twin.start()
        bmc = load_profiles()["bmc_server"]
        assert isinstance(bmc, SnmpProfile)
        try:
            for dev in cfg.devices:
                sp = SnmpPoller(cfg, dev, bmc)
                rf = device(twin, dev.name, rack=dev.rack)
                rp = RedfishPoller(cfg, rf, opts=options(twin))
                try:
                    (s,) = await sp.poll()
                    r = [x for x in await rp.poll() if x.measurement == "server"]
                finally:
                    await sp.close()
                    await rp.close()
                assert r[0].fields == s.fields, dev.name
                assert r[0].tags == s.tags
        finally:
            await twin.stop()
            await snmp.stop()
            close_shared_engine()
            close_shared_client()

    asyncio.run(main())
