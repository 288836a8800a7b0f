"""A backfilled October at the reference site for the statement's tests and benchmark
(``tests/reports``, ``benchmarks/report_heat.py``): the
two delivery points' heat meters polled every 10 s (the site's interval) from the day before
the month to the day after, with the daylight-saving change (25 October), a six-hour
collector outage and a meter swap on the CPCU meter (new serial, register from 0)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from dcim.config import SiteConfig, load_config
from dcim.storage import make_store
from dcim.storage.rollupcalc import SuppliedRollups
from dcim.twin.model import GroundTruth, SiteModel, backfill
from dcim.twin.site import paris_chapelle

NS = 1_000_000_000
TZ = ZoneInfo("Europe/Paris")
POINTS = ("hm-cpcu", "hm-greenhouse")
SWAP = datetime(2026, 10, 14, 10, 0, tzinfo=TZ)
OUTAGE = (datetime(2026, 10, 20, 2, 0, tzinfo=TZ), datetime(2026, 10, 20, 8, 0, tzinfo=TZ))
FROM = datetime(2026, 9, 30, 12, 0, tzinfo=TZ)
TO = datetime(2026, 11, 1, 12, 0, tzinfo=TZ)
MONTH = (datetime(2026, 10, 1, tzinfo=TZ), datetime(2026, 11, 1, tzinfo=TZ))


def reports_section() -> dict[str, Any]:
    meter = {"model": "Kamstrup MULTICAL 603", "en1434_class": 2}
    return {
        "heat": {
            "operator": "Ville de Paris, direction des systèmes d'information",
            "points": [
                {
                    "name": "cpcu",
                    "label": "Réseau CPCU, sous-station Chapelle",
                    "customer": "CPCU",
                    "device": "hm-cpcu",
                    "meters": [
                        {
                            **meter,
                            "serial": "71234567",
                            "installed": "2024-03-01T00:00:00",
                            "qp_m3_per_h": 6.0,
                        },
                        {
                            **meter,
                            "serial": "71299881",
                            "installed": SWAP.isoformat(),
                            "qp_m3_per_h": 6.0,
                        },
                    ],  # fmt: skip
                    "contract": {
                        "min_supply_temp_c": 60.0,
                        "min_power_kw": 20.0,
                        "max_power_kw": 200.0,
                        "availability_min": 0.98,
                    },  # fmt: skip
                },
                {
                    "name": "serres",
                    "label": "Serres de la ferme urbaine (toiture)",
                    "customer": "Ferme urbaine Chapelle",
                    "device": "hm-greenhouse",
                    "meters": [
                        {
                            **meter,
                            "serial": "71230001",
                            "installed": "2024-03-01T00:00:00",
                            "qp_m3_per_h": 0.6,
                        }
                    ],  # fmt: skip
                    "contract": {"min_supply_temp_c": 55.0},
                },
            ],
        }
    }


@dataclass
class Month:
    config: Path
    cfg: SiteConfig
    model: SiteModel
    swap_index: dict[str, float]  # the old meter's last index per counter

    def truth(self, device: str) -> dict[str, float]:
        """The twin's true October at ``device``: energy (Wh), volume (m3), volume-weighted
        supply and return temperatures (degC, per second), hours of delivery."""
        import numpy as np

        a, b = MONTH[0].timestamp(), MONTH[1].timestamp()
        t: GroundTruth = self.model.truth(a, b)
        ts = np.arange(a, b, 10.0) + 5.0
        s = self.model.series(device, ts)
        q = s["flow_m3_per_h"]
        hourly = s["heat_power_w"].reshape(-1, 360).mean(axis=1)
        return {
            "energy_wh": t.counters[(device, "heat_energy_wh_total")],
            "volume_m3": t.counters[(device, "volume_m3_total")],
            "supply_c": float((q * s["supply_temp_c"]).sum() / q.sum()),
            "return_c": float((q * s["return_temp_c"]).sum() / q.sum()),
            "hours": float((hourly > 0).sum()),
        }


def site_doc(tmp: Path, sink: dict[str, Any], interval_s: float) -> dict[str, Any]:
    # the reference site's size (its heat flows follow the IT load); only the two heat
    # meters are backfilled
    doc = paris_chapelle(interval_s=interval_s, spool_dir=str(tmp / "spool"), sink=sink)
    doc["reports"] = reports_section()
    return doc


def october(tmp: Path, sink: dict[str, Any], *, interval_s: float = 10.0) -> Month:
    """Write the site file (with the swap declared) and backfill October into ``sink``."""
    doc = site_doc(tmp, sink, interval_s)
    (tmp / "spool").mkdir(parents=True, exist_ok=True)  # InfluxDB keeps its due rollups there
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    model = SiteModel(load_config(path), t0=FROM.timestamp(), seed=1)
    at = model.values("hm-cpcu", SWAP.timestamp())
    swap_index = {f: float(at[f]) for f in ("heat_energy_wh_total", "volume_m3_total")}
    for d in doc["devices"]:
        if d["name"] == "hm-cpcu":
            d["replacements"] = [
                {"at": SWAP.replace(tzinfo=None).isoformat(), "field": f,
                 "old_last_index": v, "new_first_index": 0.0}
                for f, v in swap_index.items()
            ]  # fmt: skip
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    cfg = load_config(path)
    model = SiteModel(cfg, t0=FROM.timestamp(), seed=1)
    store = make_store(cfg.storage)
    start, end = FROM.timestamp(), TO.timestamp()
    rollups = SuppliedRollups(store, int(start * NS), int(end * NS))
    try:
        outage = (OUTAGE[0].timestamp(), OUTAGE[1].timestamp())
        for batch in backfill(cfg, model, start, end, interval_s=interval_s,
                              devices=list(POINTS), outages=[outage], meter_swaps=True,
                              batch=50_000):  # fmt: skip
            store.write(batch)
            rollups.add(batch)
        rollups.close()
        maintain = getattr(store, "maintain", None)
        if maintain is not None:
            maintain()
    finally:
        store.close()
    return Month(path, cfg, model, swap_index)
