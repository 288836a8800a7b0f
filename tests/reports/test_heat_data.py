"""The statement's figures on a small hand-made day in the embedded store: a meter at
constant power whose registers are known exactly, a device-down hour (failed polls in the
collector's health rows, the other meter read) and the rest of the month without any row
(collector down); the EN 1434 maximum permissible error; local days around the clock change."""

from __future__ import annotations

import subprocess
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from dcim.config import load_config
from dcim.kpi import water
from dcim.reading import Reading
from dcim.reports.heat_data import day_bounds, mpe_percent, serial_check, serial_number
from dcim.reports.heat_statement import compute
from dcim.storage import make_store
from dcim.testing.heat_month import reports_section
from dcim.twin.site import paris_chapelle

NS = 1_000_000_000
TZ = ZoneInfo("Europe/Paris")
FLOW, SUP, RET = 4.0, 65.0, 40.0  # m3/h, degC
POWER_W = water.heat_power_w(FLOW, SUP, RET, sensor="return")


def test_mpe_en1434() -> None:
    # class 2 at qp, 25 K with dtheta_min 3 K: (2 + 0.02) + (0.5 + 0.36) + (0.5 + 0.12)
    assert mpe_percent(2, 6.0, 6.0, 25.0, 3.0) == pytest.approx(3.5)
    assert mpe_percent(1, 6.0, 0.001, 25.0, 3.0) == pytest.approx(3.5 + 0.86 + 0.62)  # capped


def test_days_around_the_clock_change() -> None:
    a = int(datetime(2026, 10, 24, tzinfo=TZ).timestamp()) * NS
    b = int(datetime(2026, 10, 27, tzinfo=TZ).timestamp()) * NS
    bounds = day_bounds(a, b, "Europe/Paris")
    assert [(y - x) / 3600 / NS for x, y in zip(bounds, bounds[1:], strict=False)] == [24, 25, 24]


def test_device_down_and_collector_down(tmp_path: Path) -> None:
    doc = paris_chapelle(racks=1, servers_per_rack=1, interval_s=60.0,
                         spool_dir=str(tmp_path / "spool"),
                         sink={"type": "embedded", "path": str(tmp_path / "s.sqlite")})  # fmt: skip
    doc["reports"] = reports_section()
    doc["reports"]["heat"]["points"][0]["meters"].pop()  # no swap here
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    cfg = load_config(path)
    t0 = int(datetime(2026, 9, 30, 23, 0, tzinfo=TZ).timestamp())
    down = (int(datetime(2026, 10, 1, 10, 0, tzinfo=TZ).timestamp()),
            int(datetime(2026, 10, 1, 11, 0, tzinfo=TZ).timestamp()))  # fmt: skip
    t1 = int(datetime(2026, 10, 2, 1, 0, tzinfo=TZ).timestamp())
    rows = []
    for t in range(t0, t1, 60):
        for dev in ("hm-cpcu", "hm-greenhouse"):
            tags = {"site": cfg.site.name, "device": dev, "role": cfg.device(dev).role or ""}
            if dev == "hm-cpcu" and down[0] <= t < down[1]:
                rows.append(Reading("dcim_poll", {"site": cfg.site.name, "device": dev,
                                    "protocol": "modbus"}, {"up": 0}, t * NS))  # fmt: skip
                continue
            fields = {
                "heat_energy_wh_total": 1e6 + POWER_W * (t - t0) / 3600,
                "volume_m3_total": 500.0 + FLOW * (t - t0) / 3600,
                "flow_m3_per_h": FLOW, "supply_temp_c": SUP, "return_temp_c": RET,
                "heat_power_w": POWER_W,
            }  # fmt: skip
            rows.append(Reading("heat_meter", tags, fields, t * NS))  # type: ignore[arg-type]
    store = make_store(cfg.storage)
    try:
        store.write(rows)
        store.maintain()  # type: ignore[attr-defined]
        assert cfg.reports.heat is not None
        st = compute(store, cfg, cfg.reports.heat.points[0], "2026-10")
    finally:
        store.close()
    day1 = st["days"][0]
    assert day1["energy_mwh"] * 1e6 == pytest.approx(POWER_W * 24, rel=1e-9)
    assert day1["volume_m3"] == pytest.approx(FLOW * 24, rel=1e-9)
    assert day1["supply_temp_c"] == pytest.approx(SUP) and day1["return_temp_c"] == pytest.approx(
        RET
    )
    # the integrated energy leaves the device-down hour out; the register does not
    assert day1["energy_integrated_mwh"] * 1e6 == pytest.approx(POWER_W * 23, rel=1e-3)
    first, last = st["gaps"]
    assert first["cause"] == "device_down" and 3600 <= first["duration_s"] <= 3660
    assert first["register_wh"] == pytest.approx(POWER_W * first["duration_s"] / 3600, rel=1e-9)
    assert last["cause"] == "collector_down"
    assert st["totals"]["energy_mwh"] is None  # no index at the month's end: nothing to bill
    # a month the data cannot bill still renders, saying so
    from dcim.reports.heat_render import write

    pdf, _, _ = write(st, tmp_path, "fr")
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True,
                          check=True).stdout  # fmt: skip
    assert "n.d." in text and "compteur injoignable" in text and "collecteur arrêté" in text


def test_serial_number_and_verdict() -> None:
    assert serial_number("71234567") == 71234567 and serial_number("HM-0071234567") == 71234567
    assert serial_number("no digits") is None
    h = 3600 * NS
    ok = {"read": [71234567], "declared": ["71234567"], "ok": True}
    bad = {"read": [71234999], "declared": ["71234567"], "ok": False}
    hours = [{"start_ns": i * h, "end_ns": (i + 1) * h, **x}
             for i, x in enumerate([ok, bad, bad, ok, bad])]  # fmt: skip
    got = serial_check(hours)
    assert got["status"] == "mismatch" and got["read"] == ["71234567", "71234999"]
    assert got["hours_read"] == 5 and got["hours_mismatch"] == 3
    assert [(r["start_ns"], r["end_ns"]) for r in got["mismatches"]] == [(h, 3 * h), (4 * h, 5 * h)]
    assert serial_check([]) == {"status": "not_read", "read": [], "hours_read": 0,
                                "hours_mismatch": 0, "mismatches": []}  # fmt: skip
    assert serial_check(hours[:1])["status"] == "ok"


def test_meter_serial_not_the_site_files_shows_on_the_statement(tmp_path: Path) -> None:
    """The CPCU meter answers with another serial for six hours (a swap not declared in
    ``reports: heat: meters``); the greenhouse meter gives none. Both statements say so:
    JSON, CSV and PDF."""
    import csv

    from dcim.reports.heat_render import write

    doc = paris_chapelle(racks=1, servers_per_rack=1, interval_s=60.0,
                         spool_dir=str(tmp_path / "spool"),
                         sink={"type": "embedded", "path": str(tmp_path / "s.sqlite")})  # fmt: skip
    doc["reports"] = reports_section()
    doc["reports"]["heat"]["points"][0]["meters"].pop()  # declared: 71234567 only
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    cfg = load_config(path)
    t0 = int(datetime(2026, 9, 30, 23, 0, tzinfo=TZ).timestamp())
    other = (int(datetime(2026, 10, 1, 12, 0, tzinfo=TZ).timestamp()),
             int(datetime(2026, 10, 1, 18, 0, tzinfo=TZ).timestamp()))  # fmt: skip
    t1 = int(datetime(2026, 10, 2, 1, 0, tzinfo=TZ).timestamp())
    rows = []
    for t in range(t0, t1, 60):
        for dev in ("hm-cpcu", "hm-greenhouse"):
            tags = {"site": cfg.site.name, "device": dev, "role": cfg.device(dev).role or ""}
            fields: dict[str, float | int | bool | str] = {
                "heat_energy_wh_total": 1e6 + POWER_W * (t - t0) / 3600,
                "volume_m3_total": 500.0 + FLOW * (t - t0) / 3600,
                "flow_m3_per_h": FLOW, "supply_temp_c": SUP, "return_temp_c": RET,
                "heat_power_w": POWER_W,
            }  # fmt: skip
            if dev == "hm-cpcu":
                fields["meter_serial"] = 71234999 if other[0] <= t < other[1] else 71234567
            rows.append(Reading("heat_meter", tags, fields, t * NS))
    store = make_store(cfg.storage)
    try:
        store.write(rows)
        store.maintain()  # type: ignore[attr-defined]
        assert cfg.reports.heat is not None
        cpcu, serres = (compute(store, cfg, p, "2026-10") for p in cfg.reports.heat.points)
    finally:
        store.close()
    check = cpcu["serial_check"]
    assert check["status"] == "mismatch" and check["hours_mismatch"] == 6
    assert check["read"] == ["71234567", "71234999"] and check["hours_read"] == 25  # to Oct 2 01:00
    [run] = check["mismatches"]
    assert (run["start_ns"], run["end_ns"]) == (other[0] * NS, other[1] * NS)
    assert run["read"] == ["71234999"] and run["declared"] == ["71234567"]
    assert cpcu["meters"][0]["serial_read"] == ["71234567", "71234999"]
    assert cpcu["days"][0]["meter_serial_ok"] is False and cpcu["days"][1]["meter_serial_ok"]
    assert cpcu["days"][2]["meter_serial_ok"] is None  # no reading that day
    assert serres["serial_check"]["status"] == "not_read"

    pdf, csv_path, _ = write(cpcu, tmp_path, "fr")
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True,
                          check=True).stdout.replace("\u00a0", " ")  # fmt: skip
    assert "NON CONFORME : 6 h sur 25 h lues" in text
    assert "lu 71234999, déclaré 71234567" in text
    days = list(csv.DictReader(csv_path.open()))
    assert days[0]["meter_serial_read"] == "71234567 71234999" and days[0]["meter_serial_ok"] == "0"
    assert days[1]["meter_serial_ok"] == "1" and days[2]["meter_serial_ok"] == ""
    assert days[-1]["date"] == "total" and days[-1]["meter_serial_ok"] == "0"
    pdf, csv_path, _ = write(serres, tmp_path, "en")
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True,
                          check=True).stdout  # fmt: skip
    assert "not read from the meter: not checked" in text
    assert list(csv.DictReader(csv_path.open()))[-1]["meter_serial_ok"] == ""
