"""The October statement on the embedded store: a backfilled month with the daylight-saving
change (25 October), a six-hour collector outage and a meter swap, against the twin's ground
truth; its PDF's text, CSV and JSON; the same data twice; a month without data."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest

from dcim.cli import main
from dcim.config import InfluxSink
from dcim.dbinit import init_sink
from dcim.reports.l10n import fmt_number
from dcim.testing.heat_month import Month, october
from dcim.testing.servers import InfluxServer

pytestmark = pytest.mark.slow  # a month at 10 s of two meters: ~1 min to backfill


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory) -> Month:
    tmp = tmp_path_factory.mktemp("october")
    return october(tmp, {"type": "embedded", "path": str(tmp / "store.sqlite")})


@pytest.fixture(scope="module")
def statements(month: Month, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("statements")
    assert main(["report", "heat", str(month.config), "--month", "2026-10", "--out", str(out)]) == 0
    return out


def load(out: Path, point: str) -> dict:
    return json.loads((out / f"heat-{point}-2026-10-r1.json").read_text())


def fr(value: float, decimals: int, lang: str = "fr") -> str:
    """A number as the PDF's text layer gives it: pdftotext extracts the narrow no-break
    space that groups French thousands (drawn narrow on the page) as a plain space."""
    return fmt_number(value, decimals, lang).replace("\u202f", " ")


def pdf_text(path: Path) -> str:
    out = subprocess.run(["pdftotext", "-layout", str(path), "-"], check=True,
                         capture_output=True, text=True).stdout  # fmt: skip
    return out.replace("\u202f", " ").replace("\u00a0", " ")


@pytest.mark.parametrize(("point", "device"), [("cpcu", "hm-cpcu"), ("serres", "hm-greenhouse")])
def test_figures_match_the_twin(month: Month, statements: Path, point: str, device: str) -> None:
    doc = load(statements, point)
    truth = month.truth(device)
    t = doc["totals"]
    assert doc["period"]["hours"] == 745  # October with the clock going back: 745 h
    assert t["energy_mwh"] * 1e6 == pytest.approx(truth["energy_wh"], rel=1e-3)
    assert t["volume_m3"] == pytest.approx(truth["volume_m3"], rel=1e-3)
    assert t["supply_temp_c"] == pytest.approx(truth["supply_c"], rel=1e-3)
    assert t["return_temp_c"] == pytest.approx(truth["return_c"], rel=1e-3)
    assert t["delivery_hours"] == pytest.approx(truth["hours"], rel=1e-3)
    assert t["within_mpe"] is True and abs(t["energy_difference"]) <= t["mpe"]
    [gap] = doc["gaps"]
    assert gap["cause"] == "collector_down"
    assert 6 * 3600 <= gap["duration_s"] <= 6 * 3600 + 20
    assert t["completeness"] == pytest.approx(1 - 6 / 745, abs=1e-4)


def test_swap_is_listed_and_chained(month: Month, statements: Path) -> None:
    doc = load(statements, "cpcu")
    assert [m["serial"] for m in doc["meters"]] == ["71234567", "71299881"]
    swaps = {s["field"]: s for s in doc["swaps"]}
    e = swaps["heat_energy_wh_total"]
    assert e["old_last"] == month.swap_index["heat_energy_wh_total"] and e["new_first"] == 0.0
    idx = doc["index"]["energy_wh"]
    chained = idx["end"]["index"] - idx["start"]["index"] + e["old_last"] - e["new_first"]
    assert doc["totals"]["energy_mwh"] * 1e6 == pytest.approx(chained, rel=1e-9)
    assert idx["start"]["how"] == "interpolated"
    assert (
        idx["start"]["before"]["time_ns"]
        < idx["start"]["at_ns"]
        <= idx["start"]["after"]["time_ns"]
    )


def test_pdf_csv_json_agree(statements: Path) -> None:
    for point in ("cpcu", "serres"):
        doc = load(statements, point)
        t = doc["totals"]
        text = pdf_text(statements / f"heat-{point}-2026-10-r1.pdf")
        for v, dec in (
            (t["energy_mwh"], 3),
            (t["volume_m3"], 3),
            (t["supply_temp_c"], 2),
            (t["return_temp_c"], 2),
            (t["energy_integrated_mwh"], 3),
        ):
            assert fr(v, dec) in text
        assert "\u202f" in fmt_number(1234.5, 1, "fr")
        assert "745 h / 745 h" in text and "collecteur arrêté" in text
        assert "interpolé entre deux relevés" in text and doc["fingerprint"] in text
        assert doc["number"] == f"{point.upper()}-2026-10-R1" and doc["number"] in text
        rows = list(csv.DictReader((statements / f"heat-{point}-2026-10-r1.csv").open()))
        days, total = rows[:-1], rows[-1]
        assert len(days) == 31 and total["date"] == "total"
        assert float(total["energy_mwh"]) == t["energy_mwh"]
        assert sum(float(r["energy_mwh"]) for r in days) == pytest.approx(t["energy_mwh"], rel=1e-9)
        assert sum(float(r["volume_m3"]) for r in days) == pytest.approx(t["volume_m3"], rel=1e-9)
        assert fr(float(total["energy_mwh"]), 3) in text
    cpcu = pdf_text(statements / "heat-cpcu-2026-10-r1.pdf")
    assert "71299881" in cpcu and "Remplacement de compteur" in cpcu


def test_pages_render(statements: Path, tmp_path: Path) -> None:
    subprocess.run(["pdftoppm", "-r", "40", "-png", str(statements / "heat-cpcu-2026-10-r1.pdf"),
                    str(tmp_path / "p")], check=True)  # fmt: skip
    pages = sorted(tmp_path.glob("p-*.png"))
    assert len(pages) >= 3 and all(p.stat().st_size > 5000 for p in pages)


def test_same_data_same_fingerprint(month: Month, statements: Path, tmp_path: Path) -> None:
    assert main(["report", "heat", str(month.config), "--month", "2026-10", "--point", "cpcu",
                 "--out", str(tmp_path)]) == 0  # fmt: skip
    again = load(tmp_path, "cpcu")
    assert again["fingerprint"] == load(statements, "cpcu")["fingerprint"]
    assert again["totals"] == load(statements, "cpcu")["totals"]
    # the same inputs into the same folder: the same statement, no new revision
    assert main(["report", "heat", str(month.config), "--month", "2026-10", "--point", "cpcu",
                 "--out", str(tmp_path)]) == 0  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "heat-cpcu-2026-10-r1.csv",
        "heat-cpcu-2026-10-r1.json",
        "heat-cpcu-2026-10-r1.pdf",
    ]


def test_english(month: Month, tmp_path: Path) -> None:
    assert main(["report", "heat", str(month.config), "--month", "2026-10", "--point", "serres",
                 "--lang", "en", "--out", str(tmp_path)]) == 0  # fmt: skip
    doc = load(tmp_path, "serres")
    text = pdf_text(tmp_path / "heat-serres-2026-10-r1.pdf")
    assert fr(doc["totals"]["energy_mwh"], 3, "en") in text
    assert "Monthly heat-delivery statement" in text and "collector down" in text


def test_month_without_data(
    month: Month, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "none"
    assert main(["report", "heat", str(month.config), "--month", "2026-08", "--out", str(out)]) == 1
    assert "no reading of hm-cpcu" in capsys.readouterr().err
    assert list(out.iterdir()) == []


def test_on_influxdb(influxdb: InfluxServer, tmp_path: Path) -> None:
    """The same October on a real InfluxDB (polled every minute here: the figures, not the
    volume, are what this checks): the figures match the twin, the gap and its cause, the
    same fingerprint twice."""
    sink = {
        "type": "influxdb",
        "url": influxdb.url,
        "database": "statement",
        "retention_raw": "400d",
    }  # fmt: skip  (raw October kept, not the default 30 days)
    init_sink(InfluxSink.model_validate(sink))
    m = october(tmp_path, sink, interval_s=60.0)
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        argv = ["report", "heat", str(m.config), "--month", "2026-10", "--out", str(out)]
        assert main([*argv, "--point", "cpcu"]) == 0
    a, b = (load(out, "cpcu") for out in outs)
    assert a["fingerprint"] == b["fingerprint"]
    truth, t = m.truth("hm-cpcu"), a["totals"]
    assert t["energy_mwh"] * 1e6 == pytest.approx(truth["energy_wh"], rel=1e-3)
    assert t["volume_m3"] == pytest.approx(truth["volume_m3"], rel=1e-3)
    assert t["supply_temp_c"] == pytest.approx(truth["supply_c"], rel=1e-3)
    assert t["delivery_hours"] == truth["hours"] and t["within_mpe"] is True
    [gap] = a["gaps"]
    assert gap["cause"] == "collector_down" and [s["field"] for s in a["swaps"]] == [
        "heat_energy_wh_total",
        "volume_m3_total",
    ]
