"""benchmarks/peers.py: the pure pieces of the side-by-side benchmark (configurations generated
from the profiles, counting what each tool stored, CPU of a process tree). The benchmark itself
(``make bench``) runs the peers; it is not run here."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import peers  # noqa: E402

PDU = peers.Device("pdu-07", "127.0.0.1", 16107, "pdu-07", "apc_rpdu2")
UPS = peers.Device("ups-a", "127.0.0.1", 16100, "public", "ups_rfc1628")
BMC = peers.Device("srv-1", "127.0.0.1", 16101, "public", "bmc_server")


def test_spec_from_the_profile() -> None:
    spec = peers.load_spec("apc_rpdu2")
    assert [n for n, _ in spec.scalars] == ["power_w", "energy_wh_total", "current_a", "voltage_v"]
    assert [t.name for t in spec.tables] == ["phase", "outlet"]
    outlet = spec.tables[1].columns
    assert ("current_a", "1.3.6.1.4.1.318.1.1.26.9.4.3.1.6") in outlet
    # phase 1's current and voltage are cells of the walked phase table: the exporter reads
    # them once, from the walk
    assert [n for n, _ in spec.scalars_outside_tables()] == ["power_w", "energy_wh_total"]


def test_collectd_config(tmp_path: Path) -> None:
    conf = peers.collectd_config(tmp_path, [PDU, UPS], 10).read_text()
    assert "LoadPlugin snmp" in conf and "StoreRates false" in conf
    assert '<Host "pdu-07">' in conf and 'Address "127.0.0.1:16107"' in conf
    assert 'Community "pdu-07"' in conf
    assert 'Collect "dcim_apc_rpdu2_s" "dcim_apc_rpdu2_phase" "dcim_apc_rpdu2_outlet"' in conf
    assert 'Collect "dcim_ups_rfc1628_s" "dcim_ups_rfc1628_input_line"' in conf
    types = (tmp_path / "dcim_types.db").read_text().splitlines()
    outlet = next(t for t in types if t.startswith("dcim_apc_rpdu2_outlet "))
    assert outlet.count(":GAUGE:") == 3  # one data source per column read
    block = conf.split('<Data "dcim_apc_rpdu2_outlet">')[1].split("</Data>")[0]
    assert "Table true" in block and '"1.3.6.1.4.1.318.1.1.26.9.4.3.1.11"' in block


def test_exporter_config(tmp_path: Path) -> None:
    other = peers.Device("pdu-08", "127.0.0.1", 16108, "pdu-08", "apc_rpdu2")
    doc = yaml.safe_load(peers.exporter_config(tmp_path, [PDU, other, BMC]).read_text())
    assert set(doc) == {"apc_rpdu2__pdu_07", "apc_rpdu2__pdu_08", "bmc_server__public"}
    mod = doc["apc_rpdu2__pdu_07"]
    assert mod["auth"] == {"community": "pdu-07"} and mod["version"] == 2
    assert mod["get"] == ["1.3.6.1.4.1.318.1.1.26.4.3.1.5.1", "1.3.6.1.4.1.318.1.1.26.4.3.1.9.1"]
    assert len(mod["walk"]) == 8  # 5 phase + 3 outlet columns
    walked = [m for m in mod["metrics"] if "indexes" in m]
    assert len(walked) == 8 and all(m["type"] == "gauge" for m in mod["metrics"])
    assert "walk" not in doc["bmc_server__public"]


def test_count_samples() -> None:
    text = (
        "# HELP dcim_apc_rpdu2_power_w x\n# TYPE dcim_apc_rpdu2_power_w gauge\n"
        "dcim_apc_rpdu2_power_w 1210\n"
        'dcim_apc_rpdu2_outlet_power_w{index="1"} 78\n'
        'dcim_apc_rpdu2_outlet_power_w{index="2"} NaN\n'
        "snmp_scrape_duration_seconds 0.05\n"
    )
    assert peers.count_samples(text) == 2


def test_collectd_values(tmp_path: Path) -> None:
    f = tmp_path / "pdu-07" / "snmp" / "dcim_apc_rpdu2_outlet-1-2026-12-04"
    f.parent.mkdir(parents=True)
    f.write_text("epoch,v0,v1,v2\n99.5,1,2,3\n100.0,1,nan,3\n105.2,4,5,6\n110.0,7,8,9\n")
    assert peers.collectd_values(tmp_path, 100.0, 110.0) == 5  # [100, 110), NaN left out


def test_tree_cpu_counts_a_busy_child() -> None:
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        deadline = time.monotonic() + 30  # the machine may be busy: until the child has run
        while peers.tree_cpu(child.pid) < 0.2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert child.pid in peers.tree(os.getpid())
        st = Path(f"/proc/{os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()
        own = sum(int(x) for x in st[11:15]) / os.sysconf("SC_CLK_TCK")
        assert peers.tree_cpu(os.getpid()) - own >= 0.15  # the child's loop is in the tree's
        rss, hwm = peers.tree_rss_mb(os.getpid())
        assert rss > 10 and hwm > 10
    finally:
        child.kill()
        child.wait()


def test_start_on_free_port_gives_up_on_a_server_that_exits() -> None:
    with pytest.raises(RuntimeError, match="3 tries; last: exit 1"):
        peers.start_on_free_port(
            lambda port: subprocess.Popen([sys.executable, "-c", "raise SystemExit(1)"]),
            lambda port, proc: False,
            tries=3,
        )


def test_pdu_agents_serve_the_recorded_walk() -> None:
    import pdu_agents

    profile = yaml.safe_load((peers.PROFILES / "apc_rpdu2.yaml").read_text())
    values = pdu_agents.walk_values(peers.apc_walk(), profile)
    assert values["power_w"] == 1210  # 121 hundredths of kW
    assert values["energy_wh_total"] == 1951600
    assert values["phase/1/voltage_v"] == 201
    outlets = {k.split("/")[1] for k in values if k.startswith("outlet/")}
    assert len(outlets) == 24
    assert values["outlet/23/outlet_name"] == "SW-DC01-NY-CSI-01"
    assert values["outlet/23/power_w"] == 86 and values["outlet/1/pdu_module"] == 1
    # what the product reads of it: 4 scalars, 5 phase fields, 3 per outlet
    assert (
        sum(1 for k in values if "/" not in k)
        + sum(
            1
            for k in values
            if "/" in k and k.rsplit("/", 1)[1] not in ("outlet_name", "pdu_module")
        )
        == 4 + 5 + 24 * 3
    )
