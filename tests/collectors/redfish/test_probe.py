"""``dcim probe`` on Redfish devices of a site file, served by the twin: what the collector
would store, or why it could not (a pinned fingerprint that is not the BMC's)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from dcim.cli import main
from dcim.config import load_config
from dcim.twin.ports import free_port
from dcim.twin.runner import TwinRunner, TwinThread
from dcim.twin.serve_redfish import make_certificates


def test_probe_a_redfish_bmc(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ca, _, _, fingerprint = make_certificates(tmp_path / "certs")
    section: dict[str, Any] = {"username": "dcim", "password": {"value": "pw"}}
    devices: list[dict[str, Any]] = [
        {"name": "srv-1", "redfish": {**section, "tls_ca": str(ca)}},
        {"name": "srv-2", "redfish": {**section, "tls_fingerprint_sha256": fingerprint}},
        {"name": "srv-3", "redfish": {**section, "tls_fingerprint_sha256": "0" * 64}},
    ]
    for d in devices:
        d.update(protocol="redfish", profile="redfish_dmtf", host="127.0.0.1", port=free_port())
    doc = {"site": {"name": "t"}, "defaults": {"timeout_s": 2.0}, "devices": devices}
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(doc))
    runner = TwinRunner(load_config(path), redfish_certs=tmp_path / "certs")
    with TwinThread(runner):
        for name in ("srv-1", "srv-2"):
            assert main(["probe", str(path), name]) == 0, name
            out = capsys.readouterr()
            lines = out.out.strip().splitlines()
            assert lines[0].startswith("server,") and "power_w=" in lines[0]
            assert sum(line.startswith("server_temperature,") for line in lines) == 4
            assert sum(line.startswith("server_psu,") for line in lines) == 2
            assert "28 value(s) read" in out.err
        assert main(["probe", str(path), "srv-3"]) == 1
        err = capsys.readouterr().err
        assert "srv-3: auth" in err and fingerprint in err
