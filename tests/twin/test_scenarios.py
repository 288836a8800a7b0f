"""The twin's fault scenarios: their syntax, their effects on what is served and backfilled,
and the docs' list of them."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dcim.config import SiteConfig
from dcim.reading import Reading
from dcim.storage import make_store
from dcim.twin.runner import TwinRunner
from dcim.twin.scenarios import (
    CRAH_TAU_S,
    FAULTS,
    HP_TRIP_CODE,
    Scenario,
    ScenarioError,
    apply_to_batch,
    parse,
)
from dcim.twin.site import paris_chapelle

T0 = 1_768_431_600.0  # 2026-01-15T00:00+01:00
NS = 1_000_000_000
DOCS = Path(__file__).parents[2] / "docs"


def site(tmp: Path | None = None) -> SiteConfig:
    kw = {}
    if tmp is not None:
        kw = {
            "spool_dir": str(tmp / "spool"),
            "sink": {"type": "embedded", "path": str(tmp / "store.sqlite")},
        }
    return SiteConfig.model_validate(
        paris_chapelle(racks=1, servers_per_rack=2, interval_s=60, **kw)  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("spec", "start", "duration"),
    [
        ("crah-failure", 1800, 1800),
        ("crah-failure@90", 90, 1800),
        ("crah-failure@5m:30m", 300, 1800),
        ("hx-fouling@0s:2h", 0, 7200),
        ("heat-pump-trip:45s", 1800, 45),
        ("ups-on-battery@1.5m", 90, 1500),
    ],
)
def test_spec_syntax(spec: str, start: float, duration: float) -> None:
    sc = parse(spec)
    assert (sc.start_s, sc.duration_s, sc.end_s) == (start, duration, start + duration)


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("crah-fail", "unknown; use NAME[@OFFSET][:DURATION] with NAME one of crah-failure"),
        ("crah-failure@soon", "offset 'soon' is not a duration"),
        ("crah-failure:10y", "duration '10y' is not a duration"),
        ("crah-failure:0", "the duration must be positive"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec: str, words: str) -> None:
    with pytest.raises(ScenarioError, match=words.replace("[", r"\[").replace("]", r"\]")):
        parse(spec)


def test_the_runner_serves_the_fault_while_it_lasts() -> None:
    """What the protocol servers read (``TwinRunner.values``): hp-1 tripped with its code
    and its registers standing still, then running again counting on from where they
    stood; the inlets of the failed CRAH's room rising with its time constant."""
    cfg = site()
    now = [T0]
    scs = [parse("heat-pump-trip@60:600"), parse("crah-failure@60:1200")]
    runner = TwinRunner(cfg, t0=T0 - 3600, clock=lambda: now[0], scenarios=scs)
    healthy = TwinRunner(cfg, t0=T0 - 3600, clock=lambda: now[0])
    before = runner.values("hp-1")
    assert before["fault_code"] == 0 and before == healthy.values("hp-1")
    now[0] = T0 + 60 + 100
    tripped = runner.values("hp-1")
    assert tripped["fault_code"] == HP_TRIP_CODE and tripped["running"] == 0
    assert tripped["electrical_power_w"] == 0 and tripped["heat_output_w"] == 0
    now[0] = T0 + 60 + 500
    later = runner.values("hp-1")
    assert later["heat_energy_wh_total"] == tripped["heat_energy_wh_total"]  # stands still
    srv = "srv-R01-01"
    rise = runner.values(srv)["inlet_temp_c"] - healthy.values(srv)["inlet_temp_c"]
    assert rise == pytest.approx(12 * (1 - math.exp(-500 / CRAH_TAU_S)), rel=1e-6)
    now[0] = T0 + 60 + 600 + 300  # after the trip: running, counting on, short of healthy
    after = runner.values("hp-1")
    assert after["fault_code"] == 0
    lost = healthy.values("hp-1")["heat_energy_wh_total"] - after["heat_energy_wh_total"]
    assert lost > 0 and after["heat_energy_wh_total"] > later["heat_energy_wh_total"]


def test_a_silent_device_is_dropped_from_a_backfill_batch() -> None:
    sc = Scenario(FAULTS["device-silent"], 100, 50)
    batch = [
        Reading("pdu", {"site": "s", "device": d}, {"power_w": 1.0}, int((T0 + t) * NS))
        for t in (50, 120, 160)
        for d in ("pdu-R01-A", "pdu-R01-B")
    ]
    kept = apply_to_batch([sc], batch, T0)
    assert [(r.tags["device"], r.time_ns // NS - int(T0)) for r in kept] == [
        ("pdu-R01-A", 50),
        ("pdu-R01-B", 50),
        ("pdu-R01-B", 120),
        ("pdu-R01-A", 160),
        ("pdu-R01-B", 160),
    ]


def test_backfill_with_a_scenario_writes_the_fault_and_its_truth(tmp_path: Path) -> None:
    cfg_doc = paris_chapelle(
        racks=1,
        servers_per_rack=1,
        interval_s=60.0,
        spool_dir=str(tmp_path / "spool"),
        sink={"type": "embedded", "path": str(tmp_path / "store.sqlite")},
    )
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(cfg_doc))
    truth = tmp_path / "truth.json"
    args = ["twin", "backfill", str(path), "--from", "2026-01-15T00:00", "--to", "2026-01-15T02:00"]
    args += ["--all-devices", "--scenario", "heat-pump-trip@30m:20m", "--truth", str(truth)]
    r = subprocess.run(
        [sys.executable, "-m", "dcim.cli", *args], capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(truth.read_text())
    (sc,) = doc["scenarios"]
    assert sc["scenario"] == "heat-pump-trip" and sc["end"] - sc["start"] == 1200
    assert set(sc["fires_by"]) == {"HeatPumpTrip"}
    store = make_store(SiteConfig.model_validate(cfg_doc).storage)
    try:
        rows = store.aggregate(
            measurement="heat_pump",
            field="fault_code",
            start_ns=int(sc["start"] - 3600) * NS,
            end_ns=int(sc["end"] + 3600) * NS,
            fn="max",
            group_by=("device",),
        )
        got = {row.tags["device"]: row.value for row in rows}
        assert got == {"hp-1": HP_TRIP_CODE, "hp-2": 0}, got
    finally:
        store.close()
    bad = subprocess.run(
        [sys.executable, "-m", "dcim.cli", *args[:7], "--scenario", "melt-down"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "scenario 'melt-down': unknown" in bad.stderr, bad.stderr
    assert "Traceback" not in bad.stderr


def test_docs_list_every_scenario() -> None:
    text = (DOCS / "twin.md").read_text().split("## Fault scenarios")[1]
    for name, f in FAULTS.items():
        row = next((ln for ln in text.splitlines() if ln.startswith(f"| `{name}` |")), None)
        assert row is not None, f"{name} is not in docs/twin.md"
        for rule in f.fires:
            assert f"`{rule}`" in row, (name, rule)
