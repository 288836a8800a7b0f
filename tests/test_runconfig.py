"""``dcim run``'s site file validated by a child process and restored into plain models
(dcim.runconfig, dcim.plainmodel): the same errors as every command, the same values and
helpers as pydantic's models, and ``ssl`` left out only where nothing can need it."""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from dcim.config import SiteConfig, load_config
from dcim.runconfig import needs_ssl, plain_ok
from dcim.testing.heat_month import reports_section
from dcim.twin.site import paris_chapelle

REPO = Path(__file__).resolve().parents[1]
CASES = sorted(p for p in (REPO / "tests" / "cases").glob("config_*") if p.is_dir())


def site_doc(tmp: Path, *, snmp_only: bool = True) -> dict[str, Any]:
    doc = paris_chapelle(
        racks=2,
        servers_per_rack=2,
        spool_dir=str(tmp / "spool"),
        sink={"type": "embedded", "path": str(tmp / "store.sqlite")},
    )
    if snmp_only:
        doc["devices"] = [d for d in doc["devices"] if d["protocol"] == "snmp"]
        doc.pop("mqtt", None)
    return doc


def write(tmp: Path, doc: dict[str, Any], name: str = "site.yaml") -> Path:
    path = tmp / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.mark.parametrize("case", CASES[:3], ids=[c.name for c in CASES[:3]])
def test_dcim_run_refuses_a_bad_site_file_as_check_config_does(case: Path) -> None:
    """The errors come from the child: the same lines (file:line, path, message) and exit 2."""
    path = case / "config.yaml"
    run = subprocess.run(
        [sys.executable, "-m", "dcim.cli", "run", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    check = subprocess.run(
        [sys.executable, "-m", "dcim.cli", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert run.returncode == 2 and check.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    expected = {f"{case}/{line}" for line in (case / "error.txt").read_text().splitlines()}
    got = {line.strip() for line in run.stderr.splitlines() if line.startswith("  ")}
    assert got == expected, run.stderr
    assert got == {line.strip() for line in check.stderr.splitlines() if line.startswith("  ")}


# Restores the site in a fresh interpreter as `dcim run` does, and prints what it holds.
RESTORE = """
import json, sys
from dcim.runconfig import load_for_run
cfg, rules = load_for_run(sys.argv[1])
from dcim.modelbase import PLAIN
out = {
    "plain": PLAIN,
    "modules": sorted(m for m in ("pydantic", "pydantic_core", "ssl") if sys.modules.get(m)),
    "dump": cfg.model_dump(mode="json"),
    "options": {d.name: d.options.model_dump(mode="json") for d in cfg.devices if d.options},
    "helpers": {d.name: [cfg.tags_of(d), cfg.interval_of(d), cfg.deadline_of(d),
                         cfg.jitter_of(d), cfg.coalesce_of(d), cfg.retries_of(d)]
                for d in cfg.devices},
    "profiles": {n: sorted(p.field_names) for n, p in cfg.profiles().items()},
    "rules": None if rules is None else sorted(r.name for r in rules),
    "community": cfg.devices[0].options.community.resolve(),
}
print(json.dumps(out))
"""


def restored(path: Path) -> dict[str, Any]:
    run = subprocess.run(
        [sys.executable, "-c", RESTORE, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out: dict[str, Any] = json.loads(run.stdout.splitlines()[-1])
    return out


def test_the_plain_models_hold_what_pydantic_validated(tmp_path: Path) -> None:
    path = write(tmp_path, site_doc(tmp_path))
    got = restored(path)
    assert got["plain"] is True and got["modules"] == [], got["modules"]
    cfg = load_config(path)
    # Device's serializer adds its protocol section; the plain dump has it apart.
    want = cfg.model_dump(mode="json")
    for dev in want["devices"]:
        dev.pop(dev["protocol"], None)
    assert got["dump"] == want
    assert got["options"] == {
        d.name: d.options.model_dump(mode="json") for d in cfg.devices if d.options
    }
    helpers = {
        d.name: [
            cfg.tags_of(d),
            cfg.interval_of(d),
            cfg.deadline_of(d),
            cfg.jitter_of(d),
            cfg.coalesce_of(d),
            cfg.retries_of(d),
        ]
        for d in cfg.devices
    }
    assert got["helpers"] == helpers
    assert got["profiles"] == {n: sorted(p.field_names) for n, p in cfg.profiles().items()}
    from dcim.alerts.loader import load_rules

    assert got["rules"] == sorted(r.name for r in load_rules(cfg)) and got["rules"]
    first = cfg.devices[0].options
    assert got["community"] == first.community.resolve()  # type: ignore[union-attr]


def test_a_site_with_scheduled_statements_is_validated_in_the_collector(tmp_path: Path) -> None:
    doc = site_doc(tmp_path, snmp_only=False)  # its heat meters, MQTT devices, ...
    doc["reports"] = reports_section()
    assert plain_ok(SiteConfig.model_validate(doc))  # statements on demand only
    doc["reports"]["heat"]["schedule"] = {"day": 2, "folder": str(tmp_path / "reports")}
    assert not plain_ok(SiteConfig.model_validate(doc))
    got = restored(write(tmp_path, doc))
    assert got["plain"] is False and "pydantic" in got["modules"]


def test_ssl_is_left_out_only_where_nothing_needs_it(tmp_path: Path) -> None:
    doc = site_doc(tmp_path)
    assert not needs_ssl(SiteConfig.model_validate(doc))

    def needs(**change: Any) -> bool:
        d = json.loads(json.dumps(doc))
        d.update(change)
        return needs_ssl(SiteConfig.model_validate(d))

    assert needs(metrics={"port": 0})  # prometheus_client imports ssl
    assert needs(alerts={"webhooks": [{"url": "https://hooks.example/x", "secret_env": "K"}]})
    assert not needs(alerts={"webhooks": [{"url": "http://127.0.0.1:9/x", "secret_env": "K"}]})
    assert needs(
        storage={**doc["storage"], "sink": {"type": "influxdb", "url": "http://127.0.0.1:8086"}}
    )
    full = site_doc(tmp_path, snmp_only=False)  # Modbus (pymodbus imports ssl), MQTT
    assert needs_ssl(SiteConfig.model_validate(full))
    v3 = json.loads(json.dumps(doc))
    v3["devices"][0]["snmp"] = {"version": "3", "user": "u"}
    assert needs_ssl(SiteConfig.model_validate(v3))


def test_the_child_writes_a_header_the_plugins_then_the_models(tmp_path: Path) -> None:
    path = write(tmp_path, site_doc(tmp_path))
    run = subprocess.run(
        [sys.executable, "-m", "dcim.runconfig", str(path)],
        capture_output=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ},
    )
    assert run.returncode == 0, run.stderr
    stream = io.BytesIO(run.stdout)
    assert pickle.load(stream) == {"plain": True, "ssl": False}
    from dcim import protocols

    assert pickle.load(stream) == protocols.entry_points()  # {"snmp": "collectors.snmp:plugin"...}
    cfg, dirs, rules = pickle.load(stream)  # here with pydantic's classes: the same values
    assert cfg == load_config(path)
    assert rules and all(isinstance(p, dict) for p in dirs.values())
