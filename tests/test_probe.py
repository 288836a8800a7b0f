"""``dcim probe``: one read of one device through its profile, printed as line protocol."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml

from dcim.cli import main
from dcim.config import SiteConfig
from dcim.testing.servers import MosquittoServer, free_ports
from dcim.twin.runner import TwinRunner, TwinThread
from dcim.twin.site import paris_chapelle


def test_probe_reads_snmp_modbus_and_mqtt_devices(
    tmp_path: Path, mosquitto: MosquittoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = paris_chapelle(
        racks=1,
        servers_per_rack=1,
        snmp_base_port=free_ports(5, kind=socket.SOCK_DGRAM),
        modbus_base_port=free_ports(16),
        mqtt_port=mosquitto.port,
        interval_s=1.0,
    )
    doc["mqtt"].update(username=mosquitto.user, password={"value": mosquitto.password})
    doc["defaults"]["timeout_s"] = 0.5
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(doc))
    cfg = SiteConfig.model_validate(doc)
    with TwinThread(TwinRunner(cfg)) as twin:
        for device, measurement in (
            ("ups-a", "ups"),
            ("meter-incomer", "energy_meter"),
            ("gh-zone-1", "greenhouse"),
        ):
            assert main(["probe", str(path), device]) == 0, device
            out = capsys.readouterr()
            (line,) = out.out.strip().splitlines()
            assert line.startswith(f"{measurement},") and f"device={device}" in line
            assert "value(s) read" in out.err
        twin.set_unreachable("crah-1")
        assert main(["probe", str(path), "crah-1"]) == 1
        assert "crah-1: timeout" in capsys.readouterr().err
    assert main(["probe", str(path), "no-such-device"]) == 2


def test_probe_shows_what_is_stored_and_what_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.collectors.snmpsim_server import start_snmpsim

    walk = Path(__file__).parent / "captures" / "snmp" / "quirks" / "ups_unknown.snmprec"
    sim = start_snmpsim({"ups_unknown": walk})
    try:
        doc = {
            "site": {"name": "s"},
            "devices": [
                {"name": "ups-q", "protocol": "snmp", "profile": "ups_rfc1628",
                 "host": "127.0.0.1", "port": sim.port,
                 "snmp": {"community": {"value": "ups_unknown"}}},
            ],
        }  # fmt: skip
        path = tmp_path / "site.yaml"
        path.write_text(yaml.safe_dump(doc))
        assert main(["probe", str(path), "ups-q"]) == 0
    finally:
        sim.cleanup()
    out = capsys.readouterr()
    lines = out.out.splitlines()
    ups = [line for line in lines if line.startswith("ups,")]
    inputs = [line for line in lines if line.startswith("ups_input,")]
    assert len(ups) == 1 and "battery_charge_pct" not in ups[0] and "output_power_w=" in ups[0]
    assert len(inputs) == 3 and not any("current_a" in line for line in inputs)
    assert "# refused (ups-q): ups.battery_charge_pct: -1 is the profile's no-value code" in out.err
    assert ", 6 refused" in out.err  # charge, temperature, runtime, 3 line currents
