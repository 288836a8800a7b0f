"""The twin's three-phase meters: per-phase values consistent with the total."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from dcim.config import SiteConfig
from dcim.twin.model import SiteModel
from dcim.twin.site import paris_chapelle

T0 = datetime(2026, 1, 12, tzinfo=UTC).timestamp()


def test_phase_powers_add_up_to_the_total_and_match_volts_times_amps() -> None:
    cfg = SiteConfig.model_validate(paris_chapelle(racks=2, servers_per_rack=1))
    model = SiteModel(cfg, t0=T0, seed=1)
    meters = [d.name for d in cfg.devices if d.profile == "energy_meter_3ph"]
    assert meters
    ts = T0 + np.linspace(0, 7 * 86400, 50)
    for name in meters:
        s = model.series(name, ts)
        phases = [s[f"power_l{k}_w"] for k in (1, 2, 3)]
        np.testing.assert_allclose(sum(phases), s["power_w"], rtol=1e-12)
        for k, p in enumerate(phases, start=1):
            vi = s[f"voltage_l{k}_v"] * s[f"current_l{k}_a"] * s["power_factor"]
            np.testing.assert_allclose(vi, np.abs(p), rtol=1e-12)
            # unbalanced by a few percent, never one phase carrying the load
            assert np.all(np.abs(p / s["power_w"] - 1 / 3) < 0.02), name
