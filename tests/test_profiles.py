"""Profile model: what the built-in profiles declare, and where counters wrap."""

from __future__ import annotations

import pytest

from dcim.profiles import load_profiles


@pytest.mark.parametrize(
    ("profile", "field", "wrap_at"),
    [
        ("heat_meter_en1434", "heat_energy_wh_total", 2.0**32),  # uint32 Wh
        ("heat_meter_en1434", "volume_m3_total", 2.0**32 * 0.001),  # uint32 litres
        ("heat_pump", "heat_energy_wh_total", None),  # checked below: uint32 with its scale
        ("energy_meter_3ph", "energy_wh_total", None),  # int64: no wrap in practice
        ("apc_rpdu2", "energy_wh_total", None),  # Integer32 (signed): no defined wrap
        ("heat_meter_en1434", "heat_power_w", None),  # a gauge
    ],
)
def test_counter_wrap_follows_the_register_type(
    profile: str, field: str, wrap_at: float | None
) -> None:
    spec = load_profiles()[profile].field(field)
    if profile == "heat_pump":
        assert spec.type == "uint32" and spec.wrap_at == pytest.approx(2.0**32 * spec.scale)
    else:
        assert spec.wrap_at == (pytest.approx(wrap_at) if wrap_at else None)
