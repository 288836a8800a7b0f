"""The cases whose reports were captured from ``compute_kpis`` before it was split into one
function per figure (tests/kpi/golden/<case>.json): every branch of the report on the fake
store of test_period, plus heat meters with flow and temperatures (the EN 1434 integration).

Regenerate (only when a figure is meant to change, and say why in the commit):
``python -m tests.kpi.golden_cases``
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dcim.config import SiteConfig
from dcim.kpi.period import KpiReport, compute_kpis
from tests.kpi.fakestore import FakeStore
from tests.kpi.test_period import END, INTERVAL, METERS, SITE, START, TIMES, site, store_for

S = 1_000_000_000
GOLDEN = Path(__file__).parent / "golden"
Meters = list[tuple[str, str, str | None, str | None, float]]


def with_flow_and_temperatures(st: FakeStore, meters: Meters = METERS) -> FakeStore:
    """Flow and supply/return temperatures for every heat meter, slowly varying."""
    for i, (name, profile, role, _, power) in enumerate(meters):
        if profile != "heat_meter_en1434":
            continue
        tags = {"site": SITE, "device": name, "role": role or ""}
        pts = st.points
        for t in TIMES:
            dt = 10.0 + 2.0 * math.sin(t / 900.0 + i)
            flow = power / (1.16 * 1000.0 * dt)
            pts[("heat_meter", "flow_m3_per_h")].append((tags, t * S, flow))
            pts[("heat_meter", "supply_temp_c")].append((tags, t * S, 35.0 + 5 * i + dt))
            pts[("heat_meter", "return_temp_c")].append((tags, t * S, 35.0 + 5 * i))
    return st


def _variant(meters: Meters, **kw: Any) -> tuple[SiteConfig, FakeStore]:
    cfg = site(meters, **kw)
    return cfg, store_for(cfg, meters)


def _replace(name: str, **change: Any) -> Meters:
    out: Meters = []
    for m in METERS:
        if m[0] == name:
            vals = {"upstream": m[3], "power": m[4]} | change
            out.append((m[0], m[1], m[2], vals["upstream"], vals["power"]))
        else:
            out.append(m)
    return out


def _cases() -> dict[str, Callable[[], tuple[SiteConfig, FakeStore, int | None]]]:
    gaps = {t for t in range(START + INTERVAL, END, 2 * INTERVAL)}
    tail = {t for t in TIMES if t > END - 2 * INTERVAL}

    def reference() -> tuple[SiteConfig, FakeStore, int | None]:
        cfg = site(renewable=[{"kind": "ppa", "share": 0.5}])
        return cfg, with_flow_and_temperatures(store_for(cfg)), 1

    def supply_sensor() -> tuple[SiteConfig, FakeStore, int | None]:
        cfg = site(heat_reconcile_tolerance=0.001)
        for d in cfg.devices:
            if d.name == "hm-cpcu":
                d.flow_sensor = "supply"
        return cfg, with_flow_and_temperatures(store_for(cfg)), None

    def incomplete() -> tuple[SiteConfig, FakeStore, int | None]:
        cfg = site()
        return cfg, store_for(cfg, skip={"incomer": gaps}), 1

    def low_threshold() -> tuple[SiteConfig, FakeStore, int | None]:
        cfg = site(min_completeness=0.4)
        return cfg, store_for(cfg, skip={"incomer": gaps}), 1

    def tail_gap(n: int) -> Callable[[], tuple[SiteConfig, FakeStore, int | None]]:
        def case() -> tuple[SiteConfig, FakeStore, int | None]:
            cfg = site(max_gap_extrapolation_intervals=n)
            return cfg, store_for(cfg, skip={"incomer": tail}), 1

        return case

    def wrap() -> tuple[SiteConfig, FakeStore, int | None]:
        cfg = site()
        return cfg, store_for(cfg, hp_heat_start=2.0**32 - 80_000.0 * 1.5), 1

    def variant(meters: Meters, category: int | None = 1, **kw: Any) -> Any:
        return lambda: (*_variant(meters, **kw), category)

    return {
        "reference": reference,
        "supply_sensor_default_category": supply_sensor,
        "incomplete_incomer": incomplete,
        "incomplete_incomer_low_threshold": low_threshold,
        "hp_board_without_upstream": variant(_replace("hp-board", upstream=None)),
        "hp_board_fed_from_cooling": variant(_replace("hp-board", upstream="cooling")),
        "heat_pumps_without_board": variant([m for m in METERS if m[0] != "hp-board"]),
        "broken_heat_meter": variant(_replace("hm-rec", power=50_000.0)),
        "unavailable_figures": variant(
            [m for m in METERS if m[0] not in ("cooling", "wm")], ups_input_meters=[]
        ),
        "renewable_declarations": variant(
            METERS,
            renewable=[
                {"kind": "guarantees_of_origin", "kwh_per_year": 365.2425 * 24 * 10.0},
                {"kind": "ppa", "share": 0.2},
            ],
            grid_carbon_kg_per_kwh=0.1,
        ),
        "onsite_renewable": variant(
            [*METERS, ("pv", "energy_meter_3ph", "renewable_onsite", None, 200_000.0)]
        ),
        "tail_gap_extrapolated": tail_gap(3),
        "tail_gap_not_extrapolated": tail_gap(1),
        "heat_pump_counter_wrap": wrap,
        "category_not_metered": variant(METERS, category=3),
        "no_meters_at_all": lambda: (*_variant([], heat_pumps=0, ups_input_meters=[]), None),
    }


CASES = _cases()


def report(name: str) -> KpiReport:
    cfg, st, category = CASES[name]()
    return compute_kpis(st, cfg, START * S, END * S, category=category)


def as_json(rep: KpiReport) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(rep.to_dict()))
    return out


if __name__ == "__main__":
    GOLDEN.mkdir(exist_ok=True)
    for name in CASES:
        path = GOLDEN / f"{name}.json"
        path.write_text(json.dumps(as_json(report(name)), indent=1, sort_keys=True) + "\n")
        print(path)
