"""dcim.plausible: the screen every reading goes through before the pipeline's checks."""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import pytest

from dcim.config import ConfigError, parse_config
from dcim.plausible import NAME_RANGES, SUFFIX_RANGES, Check, Screen, checks_of, default_range
from dcim.profiles import load_profiles
from dcim.reading import Reading

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def test_default_ranges_by_name_and_longest_suffix() -> None:
    assert default_range("supply_temp_c") == (-50.0, 150.0)
    assert default_range("energy_wh_total") == (0.0, 1e15)  # not _total's, not _h's
    assert default_range("flow_m3_per_h") == (0.0, 10_000.0)
    assert default_range("frequency_hz") == (40.0, 70.0)
    assert default_range("power_factor") == (-1.0, 1.0)
    assert default_range("battery_status") is None  # a code: no range
    assert default_range("optical_power_dbm") == (-40.0, 10.0)


def _number(text: str) -> float:
    text = text.replace(" ", "")
    if text.startswith("10^"):
        return 10.0 ** int(text[3:])
    return float(text)


def test_the_glossary_shows_the_ranges_the_code_applies() -> None:
    lines = DOC.read_text().splitlines()
    start = lines.index("| suffix | unit | physical range |")
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(line)
    ranges: dict[str, tuple[float, float]] = {}
    num = r"(-?[0-9][0-9 ^]*?) \.\. (-?[0-9][0-9^]*(?: [0-9]{3})*)"
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        # "`_v` 0 .. 1000, `_a` 0 .. 5000" names its suffixes; else one range for the row
        for name, lo, hi in re.findall(r"`([a-z0-9_]+)` " + num, cells[2]):
            ranges[name] = (_number(lo), _number(hi))
        plain = re.match(num, cells[2])
        if plain:
            for suffix in re.findall(r"`(_[a-z0-9_]+)`", cells[0]):
                ranges.setdefault(suffix, (_number(plain.group(1)), _number(plain.group(2))))
    for suffix, lo, hi in SUFFIX_RANGES:
        assert ranges.get(suffix) == (lo, hi), suffix
    for name, (lo, hi) in NAME_RANGES.items():
        assert ranges.get(name) == (lo, hi), name


def test_every_shipped_numeric_field_has_a_range() -> None:
    for prof in load_profiles().values():
        for _meas, f in prof.field_specs():
            if f.kind in ("state", "info") or f.name in ("status", "meter_serial"):
                continue
            assert f.range or default_range(f.name), (prof.name, f.name)


def reading(fields: dict[str, object], device: str = "ups-a", meas: str = "ups") -> Reading:
    return Reading(meas, {"site": "s", "device": device}, dict(fields), 1)  # type: ignore[arg-type]


def poll_row(device: str = "ups-a") -> Reading:
    return Reading("dcim_poll", {"site": "s", "device": device}, {"up": 1, "error": ""}, 1)


def ups_screen(**corrections: dict[str, object]) -> Screen:
    prof = load_profiles()["ups_rfc1628"]
    return Screen({"ups-a": checks_of(prof, corrections)}, log_every_s=60)


def test_screen_refuses_counts_and_tells_the_poll_row() -> None:
    screen = ups_screen()
    out = screen(
        [
            reading(
                {
                    "battery_runtime_min": 4294967295.0,  # no_value
                    "battery_charge_pct": 100.0,
                    "output_load_pct": 150.0,  # the UPS's 0..200
                    "battery_temp_c": -327.68,  # below range
                    "battery_status": 2,
                }
            ),
            reading({"voltage_v": 2369.0}, meas="ups_input"),  # only field: reading dropped
            poll_row(),
        ]
    )
    assert [r.measurement for r in out] == ["ups", "dcim_poll"]
    assert out[0].fields == {
        "battery_charge_pct": 100.0,
        "output_load_pct": 150.0,
        "battery_status": 2,
    }
    poll = out[1].fields
    assert poll["refused"] == 3
    assert poll["refused_reason"] == "ups_input.voltage_v: 2369 above its range [0, 1000]"
    assert screen.totals() == {
        ("ups-a", "battery_runtime_min", "no_value"): 1,
        ("ups-a", "battery_temp_c", "below_range"): 1,
        ("ups-a", "voltage_v", "above_range"): 1,
    }
    # a clean cycle: refused 0 and no reason, and the readings are passed as they are
    good = reading({"battery_charge_pct": 99.0})
    out = screen([good, poll_row()])
    assert out[0] is good
    assert (out[1].fields["refused"], out[1].fields["refused_reason"]) == (0, "")


def test_each_poll_row_tells_its_own_cycle_in_a_batch_of_several() -> None:
    """A group commit's batch holds several cycles (each: its readings, then its row): each
    row counts the refusals of its own cycle, not of the whole batch."""
    screen = Screen(
        {
            "ups-a": checks_of(load_profiles()["ups_rfc1628"]),
            "ups-b": checks_of(load_profiles()["ups_rfc1628"]),
        }
    )
    out = screen(
        [
            reading({"battery_temp_c": -327.68, "battery_charge_pct": 101.0}),
            poll_row(),
            reading({"battery_temp_c": -327.68}, device="ups-b"),
            reading({"battery_charge_pct": 99.0}),
            poll_row(),
            poll_row("ups-b"),
            poll_row("ups-b"),  # a missed cycle's row: nothing read, nothing refused
        ]
    )
    rows = [(r.tags["device"], r.fields["refused"]) for r in out if r.measurement == "dcim_poll"]
    assert rows == [("ups-a", 2), ("ups-a", 0), ("ups-b", 1), ("ups-b", 0)]
    reasons = [str(r.fields["refused_reason"]) for r in out if r.measurement == "dcim_poll"]
    assert reasons[0].startswith("ups.battery_charge_pct: 101") and reasons[1] == ""
    assert reasons[2].startswith("ups.battery_temp_c: -327.68") and reasons[3] == ""


def test_unknown_devices_and_measurements_pass_unscreened() -> None:
    screen = ups_screen()
    other = reading({"power_w": -5.0}, device="not-in-the-site")
    odd = reading({"power_w": -5.0}, meas="something_else")
    poll = poll_row("not-in-the-site")
    assert screen([other, odd, poll]) == [other, odd, poll]
    assert screen.totals() == {}


def test_nan_and_infinity_are_refused() -> None:
    screen = ups_screen()
    out = screen([reading({"battery_charge_pct": math.nan, "output_load_pct": math.inf})])
    assert out == []
    assert set(screen.totals()) == {
        ("ups-a", "battery_charge_pct", "not_a_number"),
        ("ups-a", "output_load_pct", "not_a_number"),
    }


def test_corrections_scale_offset_absent() -> None:
    fix = Check.of(load_profiles()["ups_rfc1628"].field("battery_runtime_min"), {"scale": 60})
    assert fix.apply(2) == (120, "", "")  # an int stays an int when the result is whole
    tenths = Check(sentinels=(), scale=0.1, lo=0, hi=1000)
    assert tenths.apply(2302.0) == (230.2, "", "")  # not 230.20000000000002
    f_to_c = Check(sentinels=(), scale=5 / 9, offset=-160 / 9, lo=-50, hi=150)
    assert f_to_c.apply(212.0)[0] == pytest.approx(100.0)
    absent = Check(sentinels=(), absent=True, lo=0, hi=1000)
    assert absent.apply(0.0)[:2] == (None, "absent")
    assert absent.apply(231.0)[:2] == (None, "absent")
    # a sentinel is a raw code: checked before the correction
    raw = Check(sentinels=(-1.0,), scale=0.1, lo=0, hi=100)
    assert raw.apply(-1.0)[:2] == (None, "no_value")
    # text and booleans are not numbers to range-check
    assert Check(sentinels=(), lo=0, hi=1).apply("x") == ("x", "", "")


def test_a_three_phase_meter_on_a_single_phase_line() -> None:
    prof = load_profiles()["energy_meter_3ph"]
    fixes = {n: {"absent": True} for n in ("voltage_l2_v", "voltage_l3_v", "current_l2_a")}
    screen = Screen({"m": checks_of(prof, fixes)})
    out = screen(
        [
            reading(
                {
                    "voltage_l1_v": 231.0,
                    "voltage_l2_v": 0.0,
                    "voltage_l3_v": 0.0,
                    "current_l2_a": 0.0,
                },
                device="m",
                meas=prof.measurement,
            )
        ]
    )
    assert out[0].fields == {"voltage_l1_v": 231.0}
    assert {k[2] for k in screen.totals()} == {"absent"}


def test_refusals_are_logged_at_most_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    screen = ups_screen()
    with caplog.at_level(logging.WARNING, logger="dcim.plausible"):
        for _ in range(5):
            screen([reading({"battery_charge_pct": -1.0})])
    assert len(caplog.records) == 1
    assert "battery_charge_pct" in caplog.records[0].getMessage()
    assert screen.totals() == {("ups-a", "battery_charge_pct", "no_value"): 5}


def test_heat_meter_disconnected_sensor() -> None:
    prof = load_profiles()["heat_meter_en1434"]
    screen = Screen({"hm": checks_of(prof)})
    out = screen(
        [reading({"supply_temp_c": -327.68, "return_temp_c": 41.5}, device="hm", meas="heat_meter")]
    )
    assert out[0].fields == {"return_temp_c": 41.5}
    assert screen.totals() == {("hm", "supply_temp_c", "no_value"): 1}


SITE = """\
site:
  name: s
devices:
  - name: ups-a
    protocol: snmp
    profile: ups_rfc1628
    host: 127.0.0.1
    port: 161
    snmp: {community: {value: public}}
    corrections:
      voltage_v: {scale: 0.1}
      ups_output.voltage_v: {scale: 1}
      voltage_vv: {scale: 0.1}
"""


def test_corrections_are_checked_with_file_and_line() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(SITE, filename="site.yaml")
    assert [str(i) for i in err.value.issues] == [str(err.value.issues[0])]  # one problem
    text = str(err.value)
    assert "site.yaml:13" in text and "voltage_vv" in text and "has no field" in text
    with pytest.raises(ConfigError) as err:
        parse_config(
            SITE.replace("voltage_vv: {scale: 0.1}", "voltage_v: {scale: -1}").replace(
                "      voltage_v: {scale: 0.1}\n", ""
            ),
            filename="site.yaml",
        )
    assert "site.yaml:12" in str(err.value) and "greater than 0" in str(err.value)
    good = parse_config(SITE.replace("      voltage_vv: {scale: 0.1}\n", ""))
    assert good.devices[0].corrections["voltage_v"].scale == 0.1
    checks = Screen.of(good)._checks["ups-a"]
    assert checks["ups_output"]["voltage_v"].scale == 1.0
    assert checks["ups_input"]["voltage_v"].scale == 0.1


def test_devices_without_corrections_share_their_profiles_checks() -> None:
    """Memory (issue #15): the checks are per profile unless a device corrects a field."""
    from dcim.config import SiteConfig
    from dcim.twin.site import paris_chapelle

    doc = paris_chapelle(racks=1, servers_per_rack=2)
    pdus = [d for d in doc["devices"] if d["profile"] == "apc_rpdu2"]
    assert len(pdus) == 2
    pdus[1]["corrections"] = {"voltage_v": {"scale": 0.1}}
    checks = Screen.of(SiteConfig.model_validate(doc))._checks
    a, b = (checks[name] for name in ("srv-R01-01", "srv-R01-02"))
    assert a is b  # the same profile, no corrections: one set of checks
    plain, fixed = checks[pdus[0]["name"]], checks[pdus[1]["name"]]
    assert plain is not fixed
    meas = next(m for m, fields in plain.items() if "voltage_v" in fields)
    assert plain[meas]["voltage_v"].scale == 1.0 and fixed[meas]["voltage_v"].scale == 0.1


def test_pushed_readings_are_screened_like_polled_ones() -> None:
    """MQTT (greenhouse climate): the same screen, the message's dcim_poll row told."""
    prof = load_profiles()["greenhouse_climate"]
    screen = Screen({"gh": checks_of(prof)})
    out = screen(
        [
            reading({"air_temp_c": 21.5, "humidity_pct": 140.0, "co2_ppm": -3.0},
                    device="gh", meas="greenhouse"),
            poll_row("gh"),
        ]
    )  # fmt: skip
    assert out[0].fields == {"air_temp_c": 21.5}
    assert out[1].fields["refused"] == 2
    assert set(screen.totals()) == {
        ("gh", "humidity_pct", "above_range"),
        ("gh", "co2_ppm", "below_range"),
    }


def test_only_sentinels_within_the_range_are_looked_up_per_value() -> None:
    """The quick test looks a value in range up among the sentinels in range only: one
    outside the range (-1 W) is refused by the full check, with its reason, all the same."""
    power = Check(sentinels=(-10.0,), lo=0.0, hi=1e7)
    pf = Check(sentinels=(-0.01,), lo=-1.0, hi=1.0)
    assert power.near == frozenset() and pf.near == {-0.01}
    screen = Screen({"d": {"m": {"power_w": power, "power_factor": pf}}})
    ok = Reading("m", {"device": "d"}, {"power_w": 250.0, "power_factor": 0.97}, 1)
    out, why = screen.screen(
        [ok, Reading("m", {"device": "d"}, {"power_w": -10.0, "power_factor": -0.01}, 2)]
    )
    assert out == [ok]
    assert [w.split(":")[0] for _, w in why] == ["m.power_w", "m.power_factor"]
    assert {reason for (_, _, reason) in screen.totals()} == {"no_value"}
