"""Heat integration (EN 1434, :func:`dcim.kpi.heat.integrated_heat`): one heat meter, a month
of 10 s points (flow, supply and return temperature) in the embedded store.

Printed: the whole integration (the store's three per-window mean queries plus the arithmetic),
the queries alone, and the arithmetic over the windows in pure Python (what the production
path runs, no numpy) next to the same arithmetic in numpy (the reference: the code before
numpy left the production path), and both over the raw 10 s points
(:func:`dcim.kpi.water.heat_energy_wh`).

    .venv/bin/python benchmarks/heat_integration.py [--days 31]

Needs numpy for the reference only (``pip install -e .[test]``).
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from dcim.config import SiteConfig
from dcim.kpi import water
from dcim.kpi.heat import FIELDS, integrated_heat, window_energy_wh, window_for
from dcim.reading import Reading
from dcim.storage.sqlite import SqliteStore

NS = 1_000_000_000
T = TypeVar("T")


def timed(fn: Callable[[], T], repeat: int = 3) -> tuple[float, T]:
    best, out = math.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    assert out is not None
    return best, out


def numpy_reference(
    times: list[int], flow: list[float], tf: list[float], tr: list[float], step: int, a: int, b: int
) -> float:
    """The arithmetic of ``integrated_heat`` as it was in numpy (water.py's table, np.interp)."""
    temps, rho, h = (np.asarray(c) for c in water.table(water.DEFAULT_PRESSURE_MPA))
    f, t_f, t_r = np.asarray(flow), np.asarray(tf), np.asarray(tr)
    dt = t_f - t_r
    small = np.abs(dt) < 1e-3
    dens = np.interp(t_r, temps, rho)
    h_f = np.interp(np.where(small, t_f + 0.05, t_f), temps, h)
    h_r = np.interp(np.where(small, t_f - 0.05, t_r), temps, h)
    k = dens * (h_f - h_r) / np.where(small, 0.1, dt)
    power = k * dt * f / 3600.0
    t = np.asarray(times, dtype=np.int64)
    inside_s = (np.minimum(t + step, b) - np.maximum(t, a)) / NS
    return float(np.sum(power * inside_s) / 3600.0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=float, default=31.0)
    args = ap.parse_args()
    a = 1_767_225_600 * NS  # 2026-01-01T00:00Z
    b = a + int(args.days * 86400) * NS
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "month.sqlite"
        cfg = SiteConfig.model_validate(
            {
                "site": {"name": "bench"},
                "defaults": {"interval_s": 10},
                "storage": {"sink": {"type": "embedded", "path": str(path)}},
                "devices": [
                    {"name": "hm", "protocol": "modbus", "profile": "heat_meter_en1434",
                     "host": "127.0.0.1", "port": 502, "role": "heat_export_cpcu"},
                ],
            }
        )  # fmt: skip
        st = SqliteStore(str(path))
        t0 = time.perf_counter()
        readings = []
        tags = {"site": "bench", "device": "hm", "role": "heat_export_cpcu"}
        for i in range(int(args.days * 8640)):
            x = i / 8640.0
            fields: dict[str, Any] = {
                "flow_m3_per_h": 40.0 + 8.0 * math.sin(2 * math.pi * x),
                "supply_temp_c": 45.0 + 3.0 * math.sin(2 * math.pi * x / 7),
                "return_temp_c": 33.0 + 2.0 * math.cos(2 * math.pi * x),
            }
            readings.append(Reading("heat_meter", tags, fields, a + i * 10 * NS))
            if len(readings) == 20_000:
                st.write(readings)
                readings = []
        st.write(readings)
        print(
            f"setup: {args.days * 8640:,.0f} points x 3 fields in {time.perf_counter() - t0:.1f} s"
        )
        dev = cfg.device("hm")
        t_all, got = timed(lambda: integrated_heat(st, cfg, dev, a, b, measurement="heat_meter"))
        window = window_for((b - a) / NS, 10)
        step = window * NS

        def means(fld: str) -> dict[int, float]:
            rows = st.aggregate(measurement="heat_meter", field=fld, start_ns=a, end_ns=b,
                                fn="mean", every_s=window, where={"device": "hm"})  # fmt: skip
            return {r.time_ns: float(r.value) for r in rows if r.value is not None}

        t_q, series = timed(lambda: [means(f) for f in FIELDS])
        times = sorted(series[0])
        flow, tf, tr = ([s[x] for x in times] for s in series)
        t_py, e_py = timed(lambda: window_energy_wh(times, flow, tf, tr, "return", step, a, b).wh)
        t_np, e_np = timed(lambda: numpy_reference(times, flow, tf, tr, step, a, b))
        raw_t = [i * 10.0 for i in range(int(args.days * 8640))]
        rf = [40.0 + 8.0 * math.sin(2 * math.pi * t / 86400) for t in raw_t]
        rs = [45.0 + 3.0 * math.sin(2 * math.pi * t / 86400 / 7) for t in raw_t]
        rr = [33.0 + 2.0 * math.cos(2 * math.pi * t / 86400) for t in raw_t]
        t_raw, e_raw = timed(lambda: water.heat_energy_wh(raw_t, rf, rs, rr, sensor="return"), 1)
        st.close()
    print(f"integrated_heat, {len(times):,} windows of {window} s: {t_all:.3f} s "
          f"({(got.value_wh or 0.0) / 1e6:,.3f} MWh)")  # fmt: skip
    print(f"  the 3 mean queries alone:                 {t_q:.3f} s")
    print(f"  arithmetic, pure Python (production):     {t_py:.4f} s")
    print(f"  arithmetic, numpy (reference):            {t_np:.4f} s")
    print(f"  same energy: {e_py!r} vs {e_np!r} (rel {abs(e_py - e_np) / e_np:.1e})")
    print(f"heat_energy_wh over {len(raw_t):,} raw points, pure Python: {t_raw:.3f} s "
          f"({e_raw / 1e6:,.3f} MWh)")  # fmt: skip


if __name__ == "__main__":
    main()
