"""A production install (``pip install dcim-heat``) has neither numpy nor amqtt: they are the
twin's extra (``dcim-heat[twin]``). (The Docker image adds the report extra, whose matplotlib
needs numpy, so that scheduled statements render in the stack: tests/test_deploy.py.) The
production commands must load without them, and the twin's commands must say which extra to
install instead of a traceback.

Each check runs in a fresh interpreter where importing numpy or amqtt raises an ImportError
naming the import chain that asked for it (the file and line in dcim/collectors and the
modules between), so a failure names the offending import.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "examples" / "paris-chapelle.yaml"

# Installed by a blocker before anything else runs: numpy and amqtt are "not installed".
BLOCKER = r"""
import sys, traceback
BLOCKED = ("numpy", "amqtt", "scipy", "iapws")
class _Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] not in BLOCKED:
            return None
        chain = [
            f"{f.filename.split('/site-packages/')[-1]}:{f.lineno}"
            for f in traceback.extract_stack()[:-1]
            if "importlib" not in f.filename and "<frozen" not in f.filename
            and f.filename != "<string>"
        ]
        raise ModuleNotFoundError(
            f"BLOCKED {name} (twin extra only), imported by: " + " <- ".join(reversed(chain)),
            name=name,
        )
sys.meta_path.insert(0, _Blocker())
"""

# The production commands: each loads what its `dcim <command>` runs.
PRODUCTION_MODULES = [
    "dcim.cli",  # the console script and every sub-command's parser
    "dcim.runtime",  # dcim run
    "dcim.kpi.writer",  # dcim run with a grid incomer (imported only then)
    "dcim.alerts.notify",  # an alert posted to Alertmanager or a webhook
    "dcim.probe",  # dcim probe
    "dcim.dbinit",  # dcim db init
    "dcim.quarantine",  # dcim quarantine
    "dcim.kpi.period",  # dcim kpi (IAPWS-IF97 in dcim.kpi.if97: no iapws, scipy or numpy)
    "dcim.storage",
    "dcim.storage.influx",
    "dcim.storage.sqlite",
    "dcim.forwarder",
    "dcim.pipeline",
    "dcim.spool",
    "dcim.metrics",
    "collectors",
    "dcim.twin.site",  # dcim twin write-config: the reference config needs no extra
]


def run_blocked(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


@pytest.mark.parametrize("module", PRODUCTION_MODULES)
def test_production_module_loads_without_twin_extra(module: str) -> None:
    r = run_blocked(f"import {module}")
    assert r.returncode == 0, r.stderr[-3000:]


def test_check_config_runs_without_twin_extra() -> None:
    code = (
        f"import sys\nfrom dcim.cli import main\nsys.exit(main(['check-config', {str(SITE)!r}]))\n"
    )
    r = run_blocked(code)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "OK, site" in r.stdout, r.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ["demo", "--duration", "1"],
        ["twin", "serve", str(SITE)],
        ["twin", "backfill", str(SITE), "--from", "2026-01-01", "--to", "2026-01-02"],
    ],
    ids=["demo", "twin-serve", "twin-backfill"],
)
def test_twin_commands_name_the_extra(argv: list[str], tmp_path: Path) -> None:
    code = f"import sys\nfrom dcim.cli import main\nsys.exit(main({argv!r}))\n"
    r = run_blocked(code)
    assert r.returncode == 2, (r.returncode, r.stderr[-3000:])
    assert "install dcim-heat[twin]" in r.stderr, r.stderr
    assert "numpy" in r.stderr and "amqtt" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr, r.stderr


def test_twin_write_config_runs_without_twin_extra(tmp_path: Path) -> None:
    out = tmp_path / "site.yaml"
    code = (
        "import sys\nfrom dcim.cli import main\n"
        f"sys.exit(main(['twin', 'write-config', {str(out)!r}, '--racks', '2']))\n"
    )
    r = run_blocked(code)
    assert r.returncode == 0, r.stderr[-3000:]
    assert out.read_text().startswith("# Reference site"), out.read_text()[:200]
