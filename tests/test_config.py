"""Config validation: golden cases under tests/cases/config_*/ (config.yaml + error.txt)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dcim.cli import main
from dcim.config import ConfigError, SiteConfig, inline_secrets, load_config, parse_config
from dcim.twin.site import paris_chapelle

CASES = sorted(p for p in (Path(__file__).parent / "cases").glob("config_*") if p.is_dir())
ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_golden_config_errors(case: Path) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config((case / "config.yaml").read_text(), filename="config.yaml")
    expected = (case / "error.txt").read_text().strip().splitlines()
    assert sorted(str(i) for i in err.value.issues) == sorted(expected)


def test_check_config_cli_reports_all_errors_with_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = CASES[0] / "config.yaml"
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    n = len((CASES[0] / "error.txt").read_text().strip().splitlines())
    assert f"{n} error(s)" in err
    assert err.count(f"{path}:") == n


def test_reference_site_example_is_valid_and_current() -> None:
    cfg = load_config(ROOT / "examples" / "paris-chapelle.yaml")
    servers = [d for d in cfg.devices if d.profile == "bmc_server"]
    assert len(servers) == 300 and len(cfg.racks) == 30
    assert sum(d.profile == "apc_rpdu2" for d in cfg.devices) == 60
    on_file = yaml.safe_load((ROOT / "examples" / "paris-chapelle.yaml").read_text())
    assert on_file["devices"] == paris_chapelle()["devices"], "regenerate: dcim twin write-config"


def test_yaml_syntax_error_has_a_line() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config("site:\n  name: [x\n", filename="bad.yaml")
    assert str(err.value).startswith("bad.yaml:")


def test_tags_carry_topology() -> None:
    cfg = SiteConfig.model_validate(paris_chapelle(racks=2, servers_per_rack=1))
    pdu = cfg.device("pdu-R01-A")
    assert cfg.tags_of(pdu) == {
        "site": "paris-chapelle",
        "device": "pdu-R01-A",
        "rack": "R01",
        "room": "salle-a",
        "role": "pdu_output",
    }


def _meters(*own: dict[str, object], defaults: dict[str, object] | None = None) -> str:
    doc = {
        "site": {"name": "t"},
        "defaults": defaults or {"interval_s": 10},
        "devices": [
            {
                "name": f"m{i}",
                "protocol": "modbus",
                "profile": "water_meter",
                "host": "127.0.0.1",
                "port": 502 + i,
                **o,
            }
            for i, o in enumerate(own)
        ],
    }
    return yaml.safe_dump(doc, sort_keys=False)


def test_device_jitter_and_deadline_are_checked_beside_a_schema_error() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_meters({"jitter_s": 5.5}, {"intervall_s": 5}), filename="c.yaml")
    assert [i.path for i in err.value.issues] == [
        "devices[1](m1).intervall_s",
        "devices[0](m0).jitter_s",
    ]
    assert "write jitter_s: 5 or less" in err.value.issues[1].message


def test_device_timing_is_not_judged_against_defaults_that_are_wrong() -> None:
    # defaults.interval_s is 60 but the section has a typo: no check against the built-in 10 s
    text = _meters({"deadline_s": 30}, defaults={"interval_s": 60, "jiter_s": 1})
    with pytest.raises(ConfigError) as err:
        parse_config(text, filename="c.yaml")
    assert [i.path for i in err.value.issues] == ["defaults.jiter_s"]


def test_device_timing_follows_the_defaults_unless_its_own() -> None:
    cfg = parse_config(
        _meters(
            {},
            {"interval_s": 60, "jitter_s": 30, "deadline_s": 29.5},
            {"interval_s": 2},
            defaults={"interval_s": 10, "timeout_s": 2, "retries": 1, "jitter_s": 1.5},
        )
    )
    timing = [(cfg.interval_of(d), cfg.jitter_of(d), cfg.deadline_of(d)) for d in cfg.devices]
    assert timing == [
        (10, 1.5, 4.5),  # min(2 * (1 + 1) + 0.5, 0.9 * 10 - 1.5)
        (60, 30, 29.5),
        (2, 1, pytest.approx(0.8)),  # the site's jitter capped to half the interval
    ]


@pytest.mark.parametrize(
    ("coalesce", "message"),
    [(-0.1, "greater than or equal to 0"), (1.5, "write coalesce_s: 1 or less")],
)
def test_defaults_coalesce_is_checked(coalesce: float, message: str) -> None:
    text = _meters({}, defaults={"interval_s": 10, "coalesce_s": coalesce})
    with pytest.raises(ConfigError) as err:
        parse_config(text, filename="c.yaml")
    assert [i.path for i in err.value.issues] == [
        "defaults.coalesce_s" if coalesce < 0 else "defaults"
    ]
    assert message in err.value.issues[0].message


def test_coalesce_default_is_capped_to_a_short_interval_not_refused() -> None:
    cfg = parse_config(_meters({}, {"interval_s": 0.2}))
    # a 10 s device: the default, 1 s (a tenth of its interval)
    assert cfg.defaults.coalesce_s == 1.0 and cfg.coalesce_of(cfg.devices[0]) == 1.0
    # half of what its deadline (0.9 * 0.2 s) leaves of its interval
    assert cfg.coalesce_of(cfg.devices[1]) == pytest.approx(0.01)
    assert parse_config(_meters({}, defaults={"interval_s": 0.2})).defaults.coalesce_s == 1.0
    # the default, even written (as a dumped config has it), is capped, not refused
    short = parse_config(_meters({}, defaults={"interval_s": 2}))
    again = SiteConfig.model_validate(short.model_dump())
    assert again.coalesce_of(again.devices[0]) == short.coalesce_of(short.devices[0]) > 0
    off = parse_config(_meters({}, defaults={"interval_s": 10, "coalesce_s": 0}))
    assert off.coalesce_of(off.devices[0]) == 0


def test_inline_secrets_are_warned_about_not_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = paris_chapelle(
        sink={
            "type": "influxdb",
            "url": "http://127.0.0.1:8086",
            "username": "dcim",
            "password": {"value": "S3cret"},
        }  # fmt: skip
    )
    doc["devices"][0]["snmp"] = {"community": {"value": "private-c0mmunity"}}
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert main(["check-config", str(path)]) == 0
    out = capsys.readouterr()
    assert "OK" in out.out
    warnings = [line for line in out.err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2, out.err  # the demo's 'public' communities are not warned about
    assert "storage.sink.password: the secret is written in the site file" in warnings[1]
    assert "devices[0].snmp.community" in warnings[0] and "{env: VAR}" in warnings[0]
    assert "S3cret" not in out.err and "c0mmunity" not in out.err


def test_the_reference_site_has_no_inline_secret_but_the_demo_community() -> None:
    assert inline_secrets(SiteConfig.model_validate(paris_chapelle())) == []


def test_unknown_protocol_names_the_registered_ones_at_its_line() -> None:
    text = (
        "site: {name: x}\n"
        "devices:\n"
        "  - name: ahu-1\n"
        "    protocol: bacnet\n"
        "    profile: crah\n"
        "    host: 127.0.0.1\n"
        "    port: 47808\n"
        "    bacnet: {device_instance: 7}\n"
    )
    with pytest.raises(ConfigError) as err:
        parse_config(text, filename="site.yaml")
    first, *rest = (str(i) for i in err.value.issues)
    assert first.startswith("site.yaml:4: devices[0](ahu-1).protocol: unknown protocol 'bacnet'")
    registered = first.split("the registered protocols are: ")[1].split(" (")[0].split(", ")
    assert {"modbus", "mqtt", "snmp"} <= set(registered)
    assert "'dcim.protocols' entry-point group" in first
    # the section of a protocol no plugin provides is no known key either
    assert rest == [
        "site.yaml:8: devices[0](ahu-1).bacnet: unknown key (check its spelling and indentation)"
    ]


def test_a_protocols_own_check_runs_with_the_others() -> None:
    text = (
        "site: {name: x}\n"
        "devices:\n"
        "  - name: gh-1\n"
        "    protocol: mqtt\n"
        "    profile: greenhouse_climate\n"
        "    mqtt: {topic: dcim/x/greenhouse/b/climate}\n"
        "  - name: gh-2\n"
        "    protocol: mqtt\n"
        "    profile: greenhouse_climate\n"
        "    mqtt: {topic: dcim/x/greenhouse/c/climate}\n"
        "    upstream: nowhere\n"
    )
    with pytest.raises(ConfigError) as err:
        parse_config(text, filename="site.yaml")
    broker = "mqtt devices need a top-level 'mqtt:' broker section (host, port, ...)"
    assert [str(i) for i in err.value.issues] == [
        f"site.yaml:4: devices[0](gh-1).protocol: {broker}",
        f"site.yaml:8: devices[1](gh-2).protocol: {broker}",
        "site.yaml:11: devices[1](gh-2).upstream: upstream meter 'nowhere' is not a device of "
        "this site",
    ]
