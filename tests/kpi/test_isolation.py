"""One bad sensor never takes a report down: every figure is computed on its own.

The CLI case runs ``dcim kpi`` on a real embedded store (SQLite) holding an hour at 10 s of a
grid incomer, a UPS output and a heat meter whose return sensor reads -327.68 degC (the
int16 fault value of a 0.01 degC register) for 80 s.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from dcim.cli import main
from dcim.kpi import water
from dcim.kpi.period import compute_kpis
from dcim.reading import Reading
from dcim.storage.sqlite import SqliteStore
from tests.kpi.fakestore import FakeStore
from tests.kpi.test_period import END, START, kpis, site, store_for

NS = 1_000_000_000
T0 = 1_767_261_600  # 2026-01-01T10:00:00Z
FAULT = -327.68
BAD = range(T0 + 1800, T0 + 1880, 10)  # 8 polls: 80 s from 10:30:00Z
HEAT_W, SUPPLY, RETURN = 95_000.0, 45.0, 35.0


def _site(tmp: Path) -> dict[str, Any]:
    def dev(name: str, profile: str, role: str, port: int) -> dict[str, Any]:
        return {"name": name, "protocol": "modbus", "profile": profile, "host": "127.0.0.1",
                "port": port, "role": role}  # fmt: skip

    return {
        "site": {"name": "lab", "timezone": "UTC"},
        "defaults": {"interval_s": 10},
        "storage": {"sink": {"type": "embedded", "path": str(tmp / "lab.sqlite")}},
        "devices": [
            dev("incomer", "energy_meter_3ph", "grid_incomer", 20001),
            dev("ups-out", "energy_meter_3ph", "ups_output", 20002),
            dev("hm-rec", "heat_meter_en1434", "heat_recovered", 20003),
        ],
    }


def _readings() -> list[Reading]:
    k = water.heat_coefficient(SUPPLY, RETURN, sensor="return")
    flow = HEAT_W * 3600.0 / (k * (SUPPLY - RETURN))  # m3/h carrying HEAT_W
    out = []
    for t in range(T0 - 60, T0 + 3600 + 61, 10):
        s = t - T0
        for name, role, power in (("incomer", "grid_incomer", 135_000.0),
                                  ("ups-out", "ups_output", 100_000.0)):  # fmt: skip
            tags = {"site": "lab", "device": name, "role": role}
            fields = {"energy_wh_total": 1e6 + power * s / 3600.0, "power_w": power}
            out.append(Reading("energy_meter", tags, fields, t * NS))
        tags = {"site": "lab", "device": "hm-rec", "role": "heat_recovered"}
        heat = {
            "heat_energy_wh_total": 5e6 + HEAT_W * s / 3600.0,
            "flow_m3_per_h": flow,
            "supply_temp_c": SUPPLY,
            "return_temp_c": FAULT if t in BAD else RETURN,
        }
        out.append(Reading("heat_meter", tags, heat, t * NS))
    return out


@pytest.fixture
def faulty_site(tmp_path: Path) -> Path:
    doc = _site(tmp_path)
    st = SqliteStore(doc["storage"]["sink"]["path"])
    try:
        st.write(_readings())
    finally:
        st.close()
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


PERIOD = ["--from", "2026-01-01T10:00:00Z", "--to", "2026-01-01T11:00:00Z"]


def test_kpi_cli_reports_around_a_faulty_temperature_sensor(
    faulty_site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json = tmp_path / "rep.json"
    assert main(["kpi", str(faulty_site), *PERIOD, "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    figs = {f["name"]: f for f in json.loads(out_json.read_text())["figures"]}
    assert figs["pue"]["value"] == pytest.approx(1.35)
    assert figs["heat_recovered_kwh"]["value"] == pytest.approx(95.0)
    assert figs["energy_balance"]["value"] == pytest.approx(0.95)
    check = figs["heat_check_hm-rec"]
    assert check["value"] is None and check["flagged"]
    note = check["note"]
    # the device, the field, the values, the time range and why
    assert "hm-rec return_temp_c, window means -327.68 to -85.89" in note, note
    assert "from 2026-01-01T10:30:00Z to 2026-01-01T10:32:00Z" in note, note
    assert "2 window(s) of 60 s" in note and "not liquid water" in note, note
    # what was usable: 58 of the 60 one-minute windows
    assert check["completeness"] == pytest.approx(58 / 60)
    line = next(x for x in text.splitlines() if x.startswith("heat_check_hm-rec"))
    assert "n/a" in line and "CHECK" in line and "return_temp_c" in line
    assert any(x.startswith("pue ") and "1.3500" in x for x in text.splitlines())


def test_kpi_cli_needs_no_numpy(faulty_site: Path) -> None:
    # The production install has no numpy, scipy or iapws: `dcim kpi` must not import them.
    code = (
        "import sys\n"
        "for m in ('numpy', 'scipy', 'iapws'): sys.modules[m] = None\n"
        "from dcim.cli import main\n"
        f"sys.exit(main(['kpi', {str(faulty_site)!r}, *{PERIOD!r}]))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "heat_check_hm-rec" in run.stdout and "1.3500" in run.stdout


class _BrokenWaterMeter(FakeStore):
    """A store whose water meter answers with values no counter accepts."""

    def aggregate(self, **kw: Any) -> Any:
        if kw["field"] == "volume_m3_total":
            raise ValueError("volume_m3_total of wm: register not a number")
        return super().aggregate(**kw)


def test_a_figure_whose_inputs_fail_is_na_and_the_others_print() -> None:
    cfg = site()
    st = _BrokenWaterMeter()
    st.points = store_for(cfg).points
    rep = compute_kpis(st, cfg, START * S, END * S, category=1)
    assert rep.figure("pue").value == pytest.approx(1.35)
    assert rep.figure("water_m3").value is None and rep.figure("wue").value is None
    assert any("water meters not read" in w and "not a number" in w for w in rep.warnings)


def test_a_figure_function_that_raises_is_isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    from dcim.kpi import figures_env

    def broken(*_: Any) -> None:
        raise ZeroDivisionError("float division by zero")

    monkeypatch.setattr(figures_env, "ref", broken)
    rep = kpis(site())
    ref = rep.figure("ref")
    assert ref.value is None and ref.flagged and "ZeroDivisionError" in ref.note
    assert rep.figure("co2_kg").value is not None and rep.figure("pue").value is not None


def test_a_register_glitch_is_ignored_and_said() -> None:
    cfg = site()
    st = store_for(cfg)
    pts = st.points[("energy_meter", "energy_wh_total")]
    i = next(n for n, (tags, t, _) in enumerate(pts)
             if tags["device"] == "incomer" and t == (START + 1800) * S)  # fmt: skip
    tags, t, v = pts[i]
    pts[i] = (tags, t, pts[i - 1][2] - 1.0)  # 1 Wh below the poll before
    rep = compute_kpis(st, cfg, START * S, END * S, category=1)
    dc = rep.figure("e_dc_kwh")
    assert dc.value == pytest.approx(135.0)  # not 135 + the whole index
    assert "register glitches ignored: incomer: 1 step(s) down" in dc.note
    incomer = next(m for m in rep.meters if m.device == "incomer")
    assert incomer.glitches == 1 and incomer.resets == 0
    assert rep.figure("pue").value == pytest.approx(1.35)


S = NS
