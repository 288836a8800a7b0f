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
