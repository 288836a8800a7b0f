"""``dcim report eed`` on a backfilled year of the reference site (the twin's meters every
hour, into the embedded store): the annexes' figures are the KPI report's of the same year,
the JSON and CSV agree, the PDF carries the figures; what is missing says why."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from dcim.cli import main
from dcim.config import load_config
from dcim.kpi.period import compute_kpis
from dcim.kpi.report import KpiReport
from dcim.reports.eed import NO_METER, compute_eed, year_span
from dcim.reports.eed_annex import items
from dcim.reports.l10n import fmt_number
from dcim.storage import make_store
from dcim.twin.site import paris_chapelle

pytestmark = pytest.mark.slow  # a year backfilled: ~1 to 2.5 min on a loaded 2-core machine

YEAR = 2025
DECLARED = {
    "total_floor_area_m2": 1200.0,
    "computer_room_floor_area_m2": 760.0,
    "installed_it_power_kw": 600.0,
    "storage_capacity_pb": 2.5,
    "refrigerants": ["R-1234ze", "R-513A"],
    "potable_water_share": 1.0,
}
RENEWABLE = [
    {"kind": "guarantees_of_origin", "kwh_per_year": 20000.0},
    {"kind": "ppa", "share": 0.1},
]


@dataclass
class Year:
    site: Path
    out: Path
    rc: int
    files: dict[str, Path]


def site_doc(tmp: Path, **extra: Any) -> dict[str, Any]:
    doc = paris_chapelle(
        racks=4,
        servers_per_rack=3,
        interval_s=3600.0,
        spool_dir=str(tmp / "spool"),
        sink={"type": "embedded", "path": str(tmp / "year.sqlite")},
    )
    doc.update(extra)
    return doc


@pytest.fixture(scope="module")
def year(tmp_path_factory: pytest.TempPathFactory) -> Year:
    tmp = tmp_path_factory.mktemp("eed")
    site = tmp / "site.yaml"
    doc = site_doc(tmp, reports={"eed": DECLARED}, kpi={"renewable": RENEWABLE})
    site.write_text(yaml.safe_dump(doc))
    # the model starts at --from: a margin on both sides gives both boundary indexes
    rc = main(["twin", "backfill", str(site), "--from", f"{YEAR - 1}-12-31T21:00",
               "--to", f"{YEAR + 1}-01-01T03:00"])  # fmt: skip
    assert rc == 0
    out = tmp / "out"
    out.mkdir()
    rc = main(["report", "eed", str(site), "--year", str(YEAR), "--out", str(out)])
    stem = out / f"eed-paris-chapelle-{YEAR}"
    files = {ext: Path(f"{stem}.{ext}") for ext in ("json", "csv", "pdf")}
    return Year(site, out, rc, files)


def kpi_report(site: Path, year: int) -> KpiReport:
    cfg = load_config(site)
    start, end = year_span(year, cfg.site.timezone)
    store = make_store(cfg.storage, read_only=True, owns_spool=False)
    try:
        return compute_kpis(store, cfg, start, end)
    finally:
        store.close()


def indicators(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {i["key"]: i for s in doc["sections"] for i in s["indicators"]}


def test_every_metered_figure_is_the_kpi_reports(year: Year) -> None:
    assert year.rc == 0
    doc = json.loads(year.files["json"].read_text())
    got = indicators(doc)
    rep = kpi_report(year.site, YEAR)
    assert doc["pue_category"] == rep.pue_category is not None
    checked = 0
    for _, item in items():
        kind, _, name = item.source.partition(":")
        if kind != "kpi":
            continue
        fig = rep.figure(f"e_it_cat{rep.pue_category}_kwh" if name == "e_it" else name)
        e = got[item.key]
        assert e["value"] == fig.value, item.key
        assert e["completeness"] == fig.completeness, item.key
        assert e["estimated"] == fig.estimated and e["flagged"] == fig.flagged, item.key
        assert e["status"] in ("measured", "declared") and fig.value is not None
        checked += 1
    assert checked == 9  # EDC, EIT, WIN, EREUSE, ERES-TOT, PUE, WUE, ERF, REF
    # the renewable parts are those of ERES-TOT, by kind
    parts = got["ERES_GOO"]["value"] + got["ERES_PPA"]["value"] + got["ERES_OS"]["value"]
    assert parts == pytest.approx(got["ERES_TOT"]["value"], rel=1e-12)
    assert got["ERES_GOO"]["value"] == RENEWABLE[0]["kwh_per_year"]
    assert got["ERES_PPA"]["value"] == pytest.approx(0.1 * got["EDC"]["value"], rel=1e-12)
    assert got["WIN_POT"]["value"] == got["WIN"]["value"]  # declared share 1
    assert got["WIN_POT"]["status"] == "derived"


def test_declared_inputs_and_waste_heat_temperature(year: Year) -> None:
    got = indicators(json.loads(year.files["json"].read_text()))
    assert got["total_floor_area_m2"]["value"] == DECLARED["total_floor_area_m2"]
    assert got["PDIT"]["value"] == DECLARED["installed_it_power_kw"]
    assert got["CSTOR"]["value"] == DECLARED["storage_capacity_pb"]
    assert got["refrigerants"]["value"] == "R-1234ze, R-513A"
    for key in ("total_floor_area_m2", "PDIT", "CSTOR", "refrigerants"):
        assert got[key]["status"] == "declared" and got[key]["completeness"] is None
    for key in ("TIN", "CDD", "CSERV", "Pinstalled", "incoming_traffic_eb"):
        assert got[key]["value"] is None and got[key]["status"] == "not declared"
        assert "reports.eed." in got[key]["note"], key
    twh = got["TWH"]
    assert twh["status"] == "measured" and twh["completeness"] == 1.0
    assert "hm-recovery" in twh["note"]


def test_json_and_csv_agree(year: Year) -> None:
    got = indicators(json.loads(year.files["json"].read_text()))
    rows = list(csv.DictReader(io.StringIO(year.files["csv"].read_text())))
    assert [r["key"] for r in rows] == [i.key for _, i in items()]
    for r in rows:
        e = got[r["key"]]
        if e["value"] is None:
            assert r["value"] == ""
        elif isinstance(e["value"], float):
            assert float(r["value"]) == e["value"], r["key"]
        else:
            assert r["value"] == e["value"]
        c = e["completeness"]
        assert (r["completeness"] == "") if c is None else float(r["completeness"]) == c
        assert (r["status"], r["unit"], r["section"]) == (e["status"], e["unit"], e["section"])


def test_pdf_carries_the_figures(year: Year, tmp_path: Path) -> None:
    assert shutil.which("pdftotext"), "Debian poppler-utils (Makefile DEB_PACKAGES)"
    pdf = year.files["pdf"]
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True,
                          text=True, check=True).stdout  # fmt: skip
    got = indicators(json.loads(year.files["json"].read_text()))
    for key in ("EDC", "EIT", "EREUSE"):  # kWh, French grouping (narrow no-break space)
        want = fmt_number(got[key]["value"], 0, "fr")
        assert want.replace("\u202f", " ") in text.replace("\u202f", " "), key
    for key in ("PUE", "ERF", "WUE"):
        assert fmt_number(got[key]["value"], 3, "fr") in text, key
    assert fmt_number(got["TWH"]["value"], 1, "fr") in text
    assert "2024/1364" in text and "paris-chapelle" in text
    assert "non déclaré" in text  # the items the site file does not give
    # one page, rendered
    subprocess.run(["pdftoppm", "-r", "60", "-png", str(pdf), str(tmp_path / "p")], check=True)
    assert [p.name for p in tmp_path.glob("p*.png")] == ["p-1.png"]


def test_english_pdf(year: Year, tmp_path: Path) -> None:
    rc = main(["report", "eed", str(year.site), "--year", str(YEAR), "--out", str(tmp_path),
               "--lang", "en"])  # fmt: skip
    assert rc == 0
    pdf = next(tmp_path.glob("*.pdf"))
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True,
                          check=True).stdout  # fmt: skip
    got = indicators(json.loads(next(tmp_path.glob("*.json")).read_text()))
    assert fmt_number(got["EDC"]["value"], 0, "en") in text  # 122,026
    assert "not declared" in text and "EU data centre report" in text


def test_a_year_with_a_few_hours_is_a_gap_not_a_figure(year: Year) -> None:
    cfg = load_config(year.site)
    store = make_store(cfg.storage, read_only=True, owns_spool=False)
    try:
        rep = compute_eed(store, cfg, YEAR + 1)  # 3 hours of January
    finally:
        store.close()
    for key in ("EDC", "EIT", "PUE", "ERF", "TWH"):
        e = rep.entry(key)
        assert e.value is None and e.status == "insufficient data", key
        assert e.completeness is not None and e.completeness < 0.01
        assert "insufficient data" in e.note


def test_a_meter_the_site_lacks_is_not_measured(year: Year, tmp_path: Path) -> None:
    doc = yaml.safe_load(year.site.read_text())
    doc["devices"] = [d for d in doc["devices"] if d.get("role") != "water"]
    site = tmp_path / "no-water.yaml"
    site.write_text(yaml.safe_dump(doc))
    cfg = load_config(site)
    store = make_store(cfg.storage, read_only=True, owns_spool=False)
    try:
        rep = compute_eed(store, cfg, YEAR)
    finally:
        store.close()
    for key in ("WIN", "WIN_POT"):
        assert rep.entry(key).value is None and rep.entry(key).status == "not measured"
        assert NO_METER["water_m3"] in rep.entry(key).note
    assert rep.entry("WUE").value is None and "no water meter" in rep.entry("WUE").note
    assert rep.entry("EDC").value is not None  # the rest is reported


def test_a_year_without_data_fails_and_writes_nothing(
    year: Year, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["report", "eed", str(year.site), "--year", "2023", "--out", str(tmp_path)])
    assert rc == 1
    assert "no readings" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
