"""Builds the Grafana dashboards (JSON, InfluxQL data source) from the panel list below.

    python dashboards/build.py      # rewrites dashboards/*.json

The JSON files are committed; tests run every panel's query against a real InfluxDB.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SITE = "site =~ /^$site$/"

# (title, unit, [(legend, InfluxQL)]). $timeFilter and $__interval are Grafana's macros.
SITE_OVERVIEW: list[tuple[str, str, list[tuple[str, str]]]] = [
    (
        "IT power (UPS output, PUE cat. 1)",
        "kwatt",
        [
            (
                "IT",
                f"SELECT sum(p) / 1000 FROM (SELECT mean(power_w) AS p FROM energy_meter WHERE {SITE} AND role = 'ups_output' AND $timeFilter GROUP BY time($__interval), device) GROUP BY time($__interval)",
            ),
        ],
    ),
    (
        "Facility power (E_DC scope) and heat pumps",
        "kwatt",
        [
            (
                "grid incomer",
                f"SELECT sum(p) / 1000 FROM (SELECT mean(power_w) AS p FROM energy_meter WHERE {SITE} AND role = 'grid_incomer' AND $timeFilter GROUP BY time($__interval), device) GROUP BY time($__interval)",
            ),
            (
                "heat-pump board (outside E_DC)",
                f"SELECT sum(p) / 1000 FROM (SELECT mean(power_w) AS p FROM energy_meter WHERE {SITE} AND role = 'heat_pump_board' AND $timeFilter GROUP BY time($__interval), device) GROUP BY time($__interval)",
            ),
            (
                "cooling board",
                f"SELECT sum(p) / 1000 FROM (SELECT mean(power_w) AS p FROM energy_meter WHERE {SITE} AND role = 'cooling_board' AND $timeFilter GROUP BY time($__interval), device) GROUP BY time($__interval)",
            ),
        ],
    ),
    (
        "PUE, instantaneous (power based: dashboards only)",
        "none",
        [
            (
                "PUE",
                f"SELECT (sum(inc) - sum(hp)) / sum(it) FROM (SELECT mean(power_w) AS inc FROM energy_meter WHERE {SITE} AND role = 'grid_incomer' AND $timeFilter GROUP BY time($__interval), device), (SELECT mean(power_w) AS hp FROM energy_meter WHERE {SITE} AND role = 'heat_pump_board' AND $timeFilter GROUP BY time($__interval), device), (SELECT mean(power_w) AS it FROM energy_meter WHERE {SITE} AND role = 'ups_output' AND $timeFilter GROUP BY time($__interval), device) GROUP BY time($__interval)",
            ),
        ],
    ),
    (
        "Heat exported",
        "kwatt",
        [
            (
                "$tag_role",
                f"SELECT mean(heat_power_w) / 1000 FROM heat_meter WHERE {SITE} AND $timeFilter GROUP BY time($__interval), role",
            ),
        ],
    ),
    (
        "Heat pumps: COP",
        "none",
        [
            (
                "$tag_device",
                f"SELECT mean(cop) FROM heat_pump WHERE {SITE} AND $timeFilter GROUP BY time($__interval), device",
            ),
        ],
    ),
    (
        "Heat exchanger temperatures",
        "celsius",
        [
            (
                "primary supply",
                f"SELECT mean(primary_supply_temp_c) FROM heat_exchanger WHERE {SITE} AND $timeFilter GROUP BY time($__interval)",
            ),
            (
                "primary return",
                f"SELECT mean(primary_return_temp_c) FROM heat_exchanger WHERE {SITE} AND $timeFilter GROUP BY time($__interval)",
            ),
            (
                "secondary supply",
                f"SELECT mean(secondary_supply_temp_c) FROM heat_exchanger WHERE {SITE} AND $timeFilter GROUP BY time($__interval)",
            ),
        ],
    ),
    (
        "Rack inlet temperature, hottest server (ASHRAE recommended 18-27 degC)",
        "celsius",
        [
            (
                "$tag_rack",
                f"SELECT max(inlet_temp_c) FROM server WHERE {SITE} AND $timeFilter GROUP BY time($__interval), rack",
            ),
        ],
    ),
    (
        "UPS load and battery",
        "percent",
        [
            (
                "load $tag_device",
                f"SELECT mean(output_load_pct) FROM ups WHERE {SITE} AND $timeFilter GROUP BY time($__interval), device",
            ),
            (
                "charge $tag_device",
                f"SELECT min(battery_charge_pct) FROM ups WHERE {SITE} AND $timeFilter GROUP BY time($__interval), device",
            ),
        ],
    ),
    (
        "Greenhouse air temperature",
        "celsius",
        [
            (
                "$tag_zone",
                f"SELECT mean(air_temp_c) FROM greenhouse WHERE {SITE} AND $timeFilter GROUP BY time($__interval), zone",
            ),
        ],
    ),
    (
        "Collector: devices down",
        "none",
        [
            (
                "down",
                f"SELECT count(up) - sum(up) FROM dcim_poll WHERE {SITE} AND $timeFilter GROUP BY time($__interval)",
            ),
        ],
    ),
]


def panel(i: int, title: str, unit: str, targets: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "id": i + 1,
        "type": "timeseries",
        "title": title,
        "datasource": {"type": "influxdb", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [
            {
                "refId": chr(65 + j),
                "alias": alias,
                "query": q,
                "rawQuery": True,
                "resultFormat": "time_series",
            }
            for j, (alias, q) in enumerate(targets)
        ],
    }


def dashboard(
    title: str, uid: str, panels: list[tuple[str, str, list[tuple[str, str]]]]
) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "schemaVersion": 39,
        "time": {"from": "now-24h", "to": "now"},
        "refresh": "30s",
        "tags": ["dcim"],
        "templating": {
            "list": [
                {"name": "datasource", "type": "datasource", "query": "influxdb"},
                {
                    "name": "site",
                    "type": "query",
                    "datasource": {"type": "influxdb", "uid": "${datasource}"},
                    "query": 'SHOW TAG VALUES FROM dcim_poll WITH KEY = "site"',
                    "includeAll": False,
                },
            ]
        },
        "panels": [panel(i, *p) for i, p in enumerate(panels)],
    }


def build() -> dict[str, dict[str, Any]]:
    return {
        "site-overview.json": dashboard("DCIM site overview", "dcim-site-overview", SITE_OVERVIEW)
    }


if __name__ == "__main__":
    for name, doc in build().items():
        (HERE / name).write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote dashboards/{name}")
