"""TWH, the average waste heat temperature: the heat meters' supply temperature weighted by
heat power hour by hour, read from a real embedded store."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dcim.config import SiteConfig, load_config
from dcim.reading import Reading
from dcim.reports.eed_heat import boundary_meters, waste_heat_temperature
from dcim.storage import make_store
from dcim.twin.site import paris_chapelle

S = 1_000_000_000
T0 = 1_767_225_600 * S  # 2026-01-01T00:00Z, an hour boundary


def site(tmp: Path) -> SiteConfig:
    doc = paris_chapelle(racks=1, servers_per_rack=1, spool_dir=str(tmp / "spool"),
                         sink={"type": "embedded", "path": str(tmp / "s.sqlite")})  # fmt: skip
    (tmp / "site.yaml").write_text(yaml.safe_dump(doc))
    return load_config(tmp / "site.yaml")


def write(cfg: SiteConfig, device: str, hours: list[tuple[float, float]]) -> None:
    """(heat power W, supply temperature degC) for each hour, sampled every 15 min."""
    rows = [
        Reading("heat_meter", {"site": cfg.site.name, "device": device},
                {"heat_power_w": p, "supply_temp_c": t}, T0 + (h * 4 + q) * 900 * S)
        for h, (p, t) in enumerate(hours)
        for q in range(4)
    ]  # fmt: skip
    store = make_store(cfg.storage)
    try:
        store.write(rows)
    finally:
        store.close()


def test_weighted_by_heat_power(tmp_path: Path) -> None:
    cfg = site(tmp_path)
    (meter,) = boundary_meters(cfg)
    assert meter.role == "heat_recovered"
    # 1 kW at 30 degC, 3 kW at 40 degC, no flow at 10 degC: (30 + 120) / 4 = 37.5
    write(cfg, meter.name, [(1000.0, 30.0), (3000.0, 40.0), (0.0, 10.0)])
    store = make_store(cfg.storage, read_only=True, owns_spool=False)
    try:
        got = waste_heat_temperature(store, cfg, T0, T0 + 3 * 3600 * S, 0.9)
        part = waste_heat_temperature(store, cfg, T0, T0 + 6 * 3600 * S, 0.9)
        loose = waste_heat_temperature(store, cfg, T0, T0 + 6 * 3600 * S, 0.4)
    finally:
        store.close()
    assert got.value_c == pytest.approx(37.5, rel=1e-12)
    assert got.completeness == 1.0 and "3 of 3 hours" in got.note
    assert part.value_c is None and part.completeness == 0.5  # a gap is a gap
    assert part.note.startswith("insufficient data")
    assert loose.value_c == pytest.approx(37.5, rel=1e-12) and loose.completeness == 0.5


def test_no_boundary_meter_is_not_measured(tmp_path: Path) -> None:
    cfg = site(tmp_path)
    heat = {"heat_recovered", "heat_export_cpcu", "heat_export_greenhouse"}
    write(cfg, "hm-recovery", [(1000.0, 30.0)])  # in the store, but not in the site any more
    cfg = cfg.model_copy(update={"devices": [d for d in cfg.devices if d.role not in heat]})
    store = make_store(cfg.storage, read_only=True, owns_spool=False)
    try:
        got = waste_heat_temperature(store, cfg, T0, T0 + 3600 * S, 0.9)
    finally:
        store.close()
    assert got.value_c is None and got.note.startswith("not measured: no heat meter")
