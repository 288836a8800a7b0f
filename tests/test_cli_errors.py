"""A newcomer's mistakes with ``dcim``, each run as a user runs it (a separate ``dcim``
process): the exit status (2: the command line or the site config, nothing done; 1: a failure
while running), a one-line message naming what is wrong and where, and no traceback."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import dcim.cli
from dcim.twin.site import paris_chapelle


def dcim_run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dcim.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def assert_refused(r: subprocess.CompletedProcess[str], status: int, *words: str) -> str:
    assert r.returncode == status, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    for w in words:
        assert w in r.stderr, r.stderr
    return r.stderr


def _site(tmp: Path, **change: object) -> Path:
    doc = paris_chapelle(
        racks=1,
        servers_per_rack=1,
        spool_dir=str(tmp / "spool"),
        sink={"type": "embedded", "path": str(tmp / "nothing-yet.sqlite")},
    )
    doc["site"].update(change)
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _site(tmp_path_factory.mktemp("cli_errors"))


def test_json_into_a_missing_folder_is_refused_before_the_work(site: Path) -> None:
    r = dcim_run("kpi", str(site), "--last", "1h", "--json", "/no/such/folder/kpi.json")
    err = assert_refused(r, 2, "--json /no/such/folder/kpi.json", "folder /no/such/folder")
    assert err.count("\n") == 1 and r.stdout == ""


def test_a_store_with_no_data_yet_is_a_runtime_failure(site: Path) -> None:
    r = dcim_run("kpi", str(site), "--last", "1h")
    assert_refused(r, 1, "dcim kpi: no embedded store at", "nothing-yet.sqlite", "collected")


def test_a_time_zone_that_does_not_exist(tmp_path: Path) -> None:
    bad = _site(tmp_path, timezone="Europe/Pariss")
    for cmd in (["check-config", str(bad)], ["kpi", str(bad), "--period", "2026-10"]):
        err = assert_refused(dcim_run(*cmd), 2, "site.timezone", "'Europe/Pariss'")
        assert f"{bad}:" in err and "Europe/Paris or UTC" in err


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--period", "2026-10", "--last", "1m"], ["--last", "not allowed with", "--period"]),
        (["--from", "2026-10-01", "--last", "1m"], ["not allowed with"]),
        (["--last", "5 minutes"], ["dcim kpi: duration '5 minutes'"]),
        (["--period", "2026-13"], ["dcim kpi: period '2026-13': month must be in 1..12"]),
        (["--from", "2026-10-01"], ["--from and --to go together"]),
        (["--last", "1m", "--to", "2026-10-02"], ["--to goes with --from"]),
        (["--from", "yesterday", "--to", "2026-10-02"], ["not an ISO date", "'yesterday'"]),
        ([], ["give --period"]),
    ],
    ids=[
        "period-and-last",
        "from-and-last",
        "bad-duration",
        "month-13",
        "from-alone",
        "last-and-to",
        "bad-date",
        "no-period",
    ],  # fmt: skip
)
def test_kpi_usage_mistakes_exit_2(site: Path, args: list[str], words: list[str]) -> None:
    assert_refused(dcim_run("kpi", str(site), *args), 2, *words)


def test_a_config_that_cannot_be_read(tmp_path: Path) -> None:
    assert_refused(dcim_run("check-config", str(tmp_path / "nope.yaml")), 2, "cannot read")


def test_check_config_secrets_file_is_an_error_env_a_warning(tmp_path: Path) -> None:
    path = _site(tmp_path)
    doc = yaml.safe_load(path.read_text())
    snmp = next(d for d in doc["devices"] if d["protocol"] == "snmp")
    snmp["snmp"]["community"] = {"file": str(tmp_path / "community.txt")}
    doc["storage"]["sink"] = {"type": "influxdb", "url": "http://127.0.0.1:8086",
                              "password": {"env": "DCIM_TEST_UNSET_PASSWORD"}}  # fmt: skip
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    err = assert_refused(dcim_run("check-config", str(path)), 2, "1 error(s)")
    assert f"devices[0]({snmp['name']}).snmp.community: secret file" in err
    assert "community.txt' does not exist" in err
    assert "warning:" in err and "DCIM_TEST_UNSET_PASSWORD is not set here" in err
    (tmp_path / "community.txt").write_text("s3cret\n")
    r = dcim_run("check-config", str(path))
    assert r.returncode == 0 and "OK, site" in r.stdout and "warning:" in r.stderr
    r = dcim_run("check-config", str(path), env={"DCIM_TEST_UNSET_PASSWORD": "x"})
    assert r.returncode == 0 and r.stderr == ""


def test_other_sub_commands_refuse_mistakes(site: Path, tmp_path: Path) -> None:
    assert_refused(dcim_run("probe", str(site), "no-such-device"), 2, "no device 'no-such-device'")
    assert_refused(dcim_run("quarantine", str(site), "show"), 2, "'show' needs an entry id")
    out = "/no/such/folder/site.yaml"
    assert_refused(dcim_run("twin", "write-config", out), 2, "folder /no/such/folder")
    r = dcim_run("twin", "backfill", str(site), "--from", "2026-10-02", "--to", "2026-10-01")
    assert_refused(r, 2, "dcim twin: --to must be after --from")
    (tmp_path / "file").write_text("")
    r = dcim_run("demo", "--dir", str(tmp_path / "file" / "demo"), "--duration", "1")
    assert_refused(r, 1, "dcim demo:", "Not a directory")


def test_a_secret_missing_when_used_is_a_config_error(tmp_path: Path) -> None:
    path = _site(tmp_path)
    doc = yaml.safe_load(path.read_text())
    doc["devices"][0]["snmp"]["community"] = {"env": "DCIM_TEST_UNSET_COMMUNITY"}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    r = dcim_run("probe", str(path), doc["devices"][0]["name"])
    err = assert_refused(r, 2, "dcim probe: secret: environment variable DCIM_TEST_UNSET")
    assert err.count("\n") == 1


def test_version_from_the_package_metadata() -> None:
    from importlib.metadata import version

    r = dcim_run("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"dcim {version('dcim-heat')}"


def _parsers(p: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    out = [p]
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for sub in a.choices.values():
                out += _parsers(sub)
    return out


def test_every_option_has_help_and_no_help_shows_rst() -> None:
    root = dcim.cli.build_parser()
    missing = [
        f"{p.prog} {a.dest}"
        for p in _parsers(root)
        for a in p._actions
        if not isinstance(a, argparse._SubParsersAction) and not a.help
    ]
    assert missing == []
    for p in _parsers(root):
        assert "``" not in p.format_help(), p.prog


def test_a_bug_is_one_line_and_its_traceback_with_debug(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], site: Path
) -> None:
    def broken(args: argparse.Namespace) -> int:
        raise RuntimeError("a bug")

    monkeypatch.setattr(dcim.cli, "cmd_check_config", broken)
    assert dcim.cli.main(["check-config", str(site)]) == 1
    err = capsys.readouterr().err
    assert "dcim check-config: unexpected error RuntimeError: a bug" in err and "--debug" in err
    with pytest.raises(RuntimeError, match="a bug"):
        dcim.cli.main(["--debug", "check-config", str(site)])
