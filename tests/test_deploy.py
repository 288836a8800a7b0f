"""The deployment files: docker-compose.yml validated by docker-compose itself (Debian's
docker-compose 1.29: `config` works without a Docker engine), every command it (and the
Dockerfile and the systemd unit) runs parsed by the real CLI, the Grafana provisioning files
parsed and pointing where the compose file mounts things, the example site loaded by the
collector's own config loader, the systemd unit checked by systemd-analyze."""

from __future__ import annotations

import configparser
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from dcim.cli import build_parser
from dcim.config import InfluxSink, load_config

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
PROV = ROOT / "dashboards" / "provisioning"


def _compose_config() -> dict:  # type: ignore[type-arg]
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose missing: apt-get install docker-compose (Makefile DEB_PACKAGES)"
    out = subprocess.run(
        [exe, "-f", str(COMPOSE), "config"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)  # type: ignore[no-any-return]


def _volumes(service: dict) -> list[tuple[str, str]]:  # type: ignore[type-arg]
    """(source, target) of each volume, in the short or the long syntax."""
    out = []
    for v in service.get("volumes", []):
        if isinstance(v, str):
            src, dst = v.split(":")[:2]
        else:
            src, dst = str(v["source"]), str(v["target"])
        out.append((src, dst))
    return out


def _cli_accepts(argv: list[str]) -> None:
    assert argv[0] == "dcim", argv
    try:
        build_parser().parse_args(argv[1:])
    except SystemExit as exc:  # argparse exits on an unknown command or option
        raise AssertionError(f"the CLI does not take: {shlex.join(argv)}") from exc


def test_compose_config_is_valid_and_complete() -> None:
    cfg = _compose_config()
    svc = cfg["services"]
    assert set(svc) >= {"influxdb", "dbinit", "collector", "grafana", "alertmanager", "mosquitto"}
    for name, s in svc.items():
        if "image" in s and "build" not in s:
            image = s["image"]
            tag = image.rsplit(":", 1)[-1] if ":" in image else ""
            assert tag and tag != "latest" and any(c.isdigit() for c in tag), (name, image)
        for p in s.get("ports", []):
            published = p if isinstance(p, str) else p.get("host_ip", "")
            assert "127.0.0.1" in str(published), (name, p)  # loopback only
    assert svc["influxdb"]["image"].startswith("influxdb:1.8")
    assert svc["influxdb"]["healthcheck"]["test"]
    assert svc["dbinit"]["depends_on"]["influxdb"]["condition"] == "service_healthy"
    assert svc["collector"]["depends_on"]["dbinit"]["condition"] == (
        "service_completed_successfully"
    )
    col = svc["collector"]
    assert col["user"].split(":")[0] not in ("0", "root")
    assert ("spool", "/var/lib/dcim") in _volumes(col)
    assert any(str(p).startswith("127.0.0.1:9108:9108") for p in col["ports"])
    am = _volumes(svc["alertmanager"])
    assert any(src.endswith("examples/alertmanager.yml") for src, _ in am)


def test_every_command_the_deployment_runs_exists_in_the_cli() -> None:
    svc = _compose_config()["services"]
    commands = [svc["dbinit"]["command"], svc["collector"]["command"]]
    assert commands[0][:3] == ["dcim", "db", "init"] and commands[1][:2] == ["dcim", "run"]
    for c in commands:
        _cli_accepts(c)
    cmd = next(
        line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("CMD")
    )
    _cli_accepts(json.loads(cmd[3:]))
    unit = (ROOT / "deploy" / "dcim-collector.service").read_text()
    for line in unit.splitlines():
        if line.startswith(("ExecStart=", "ExecStartPre=")):
            argv = shlex.split(line.split("=", 1)[1].lstrip("-"))
            assert argv[0] == "/opt/dcim/bin/dcim"
            _cli_accepts(["dcim", *argv[1:]])


def test_dockerfile_runs_as_a_user() -> None:
    text = (ROOT / "Dockerfile").read_text()
    users = [ln.split()[1] for ln in text.splitlines() if ln.startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), users
    assert "FROM python:3.11" in text and ":3.11-slim\n" not in text  # a pinned patch release
    # the compose file runs the image as the same uid:gid, owner of the spool volume
    uid, gid = _compose_config()["services"]["collector"]["user"].split(":")
    assert f"--uid {uid}" in text and f"--gid {gid}" in text


def test_image_builds_the_compiled_decoder() -> None:
    """The image compiles collectors.snmp._fastber (setup.py copied, a compiler while pip
    runs, the import checked in the same step) and does not keep the compiler."""
    text = (ROOT / "Dockerfile").read_text()
    copy = next(ln for ln in text.splitlines() if ln.startswith("COPY pyproject.toml"))
    assert "setup.py" in copy.split()
    run = text.split("pip install --no-cache-dir", 1)
    assert "apt-get install -y --no-install-recommends gcc" in run[0].rsplit("RUN ", 1)[1]
    after = run[1].split("\nUSER ", 1)[0]
    assert 'python -c "import collectors.snmp._fastber"' in after
    assert "apt-get purge -y --auto-remove gcc" in after


def test_image_has_the_report_extra_and_room_to_render() -> None:
    """Scheduled statements render in the stack: the image installs the ``report`` extra by
    default (the collector's plain ``pip install dcim-heat`` stays without numpy:
    tests/test_production_install.py), and the read-only container has somewhere to write
    what rendering writes (Typst's temporary directory, matplotlib's font cache, the PDFs)."""
    text = (ROOT / "Dockerfile").read_text()
    arg = re.search(r"^ARG DCIM_EXTRAS=(\S*)$", text, re.M)
    assert arg is not None and arg[1] == "report"
    pip = re.search(r'pip install --no-cache-dir ("[^"]+")', text)
    assert pip is not None
    for extras, want in (("report", ".[report]"), ("", ".")):  # as the build's /bin/sh does
        got = subprocess.run(["sh", "-c", f"printf %s {pip[1]}"], env={"DCIM_EXTRAS": extras},
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
        assert got == want, (extras, got)
    mpl = re.search(r"^ENV MPLCONFIGDIR=(\S+)$", text, re.M)
    assert (
        mpl is not None
        and mpl[1].startswith("/var/lib/dcim/")
        and mpl[1] in text.split("install -d", 1)[1]
    )
    assert "/var/lib/dcim/reports" in text.split("install -d", 1)[1]
    col = _compose_config()["services"]["collector"]
    assert col["read_only"] is True and "/tmp" in col["tmpfs"]
    assert ("spool", "/var/lib/dcim") in _volumes(col)


def test_provisioning_files_parse_and_point_at_the_mounts() -> None:
    svc = _compose_config()["services"]["grafana"]
    mounts = {dst: Path(src) for src, dst in _volumes(svc) if src.startswith("/")}
    ds = yaml.safe_load((PROV / "datasources" / "influxdb.yaml").read_text())
    by_type = {d["type"]: d for d in ds["datasources"]}
    d = by_type["influxdb"]
    am = by_type["alertmanager"]
    assert am["url"] == "${DCIM_ALERTMANAGER_URL}"
    assert svc["environment"]["DCIM_ALERTMANAGER_URL"] == "http://alertmanager:9093"
    assert ds["apiVersion"] == 1 and d["type"] == "influxdb" and d["access"] == "proxy"
    assert d["jsonData"].get("version", "InfluxQL") == "InfluxQL"
    env = svc["environment"]
    assert d["url"] == "${DCIM_INFLUX_URL}" and env["DCIM_INFLUX_URL"] == "http://influxdb:8086"
    assert d["jsonData"]["dbName"] == "${DCIM_INFLUX_DB}"
    site = load_config(ROOT / "examples" / "compose-site.yaml")
    assert isinstance(site.storage.sink, InfluxSink)
    assert env["DCIM_INFLUX_DB"] == site.storage.sink.database
    prov = yaml.safe_load((PROV / "dashboards" / "dcim.yaml").read_text())
    (p,) = prov["providers"]
    assert p["type"] == "file"
    dash_dir = mounts[p["options"]["path"]]
    assert dash_dir == ROOT / "dashboards"
    assert len(list(dash_dir.glob("*.json"))) >= 7
    assert mounts["/etc/grafana/provisioning/datasources"] == PROV / "datasources"
    assert mounts["/etc/grafana/provisioning/dashboards"] == PROV / "dashboards"
    home = Path(svc["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert (dash_dir / home.name).exists() and str(home.parent) == p["options"]["path"]


def test_example_site_fits_the_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SNMP_COMMUNITY", "public")
    svc = _compose_config()["services"]
    site = load_config(ROOT / "examples" / "compose-site.yaml")
    spool = site.storage.spool_dir
    assert spool.is_absolute() and spool.is_relative_to("/var/lib/dcim"), spool
    sink = site.storage.sink
    assert isinstance(sink, InfluxSink) and sink.url == "http://influxdb:8086"
    assert site.metrics is not None and site.metrics.host == "0.0.0.0"
    assert f"127.0.0.1:{site.metrics.port}:{site.metrics.port}" in json.dumps(
        svc["collector"]["ports"]
    )
    assert site.mqtt is not None and site.mqtt.host == "mosquitto"
    conf = (ROOT / "examples" / "mosquitto.conf").read_text()
    assert f"listener {site.mqtt.port}" in conf


def test_systemd_unit_is_hardened_and_verifies() -> None:
    path = ROOT / "deploy" / "dcim-collector.service"
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read(path)
    s = cp["Service"]
    assert s["User"] == "dcim" and s["NoNewPrivileges"] == "yes"
    assert s["ProtectSystem"] == "strict" and s["CapabilityBoundingSet"] == ""
    assert s["StateDirectory"] == "dcim"
    exe = shutil.which("systemd-analyze")
    assert exe, "systemd-analyze missing (Debian systemd)"
    out = subprocess.run(
        [exe, "verify", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    # The only complaint allowed here: the venv of the install steps does not exist.
    other = [
        ln
        for ln in (out.stderr + out.stdout).splitlines()
        if ln.strip() and "/opt/dcim/bin/dcim is not executable" not in ln
    ]
    assert not other, other
