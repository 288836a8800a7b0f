"""Real devices' recordings (PyPI ``snmpsim-data``: walks of APC rack PDUs and of UPS-MIB
agents by Eaton, Huawei, EastPower, Ingrasys and Phoenixtec) served by a real agent
(snmpsim), polled by the real collector (:class:`dcim.runtime.Collector`: scheduler,
pipeline with its screen, spool, forwarder, embedded store) for a few cycles. No implausible
value is stored, and every refusal is counted with its reason, per device, in ``dcim_poll``
and in ``dcim_values_refused_total``.

What the recordings hold (see also ``collectors/profiles/ups_rfc1628.yaml``):

* Huawei GSE200M: -1 for runtime, charge and battery temperature; input and output voltage
  in tenths of a volt (2369) and frequencies in hundredths of a hertz (5000, 4999) where
  the MIB says volts and tenths; output power in hundreds of watts (34 for 3.4 kW: a figure
  a range cannot tell from a small load, fixed by the site file's ``corrections``).
* EastPower iStars: table rows indexed ``1.0``, ``2.0``, ``3.0`` (row 1 scalars answered
  only at ``.1.0``); 0 for every current and power (not measured); 0 minutes of runtime.
* Eaton 93E: 0 W input power on every line while 21 A flow (not measured).
* Ingrasys: 0 for input currents and powers, runtime and output frequency as TimeTicks 0.
* Phoenixtec: upsInputNumLines = upsOutputNumLines = 1, rows 2 and 3 answering 0.
* APC AP7902B: -1 for power, energy, voltage, apparent power and power factor.
"""

from __future__ import annotations

import asyncio
import bz2
import json
import math
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import snmpsim_data

from dcim.config import SiteConfig
from dcim.metrics import CollectorMetrics
from dcim.plausible import default_range
from dcim.runtime import Collector
from tests.collectors.snmpsim_server import Snmpsim, start_snmpsim

DATA = Path(snmpsim_data.__file__).resolve().parent / "data" / "UPS"
RECORDINGS = {
    "eastpower-istars-swv053": "ups_rfc1628",
    "eaton-93e-80": "ups_rfc1628",
    "huawei-gse200m": "ups_rfc1628",
    "ingrasys-power-switch": "ups_rfc1628",
    "phoenixtec-power": "ups_rfc1628",
    "apc-7902b": "apc_rpdu2",
    "apc-8641": "apc_rpdu2",
    "apc-8932": "apc_rpdu2",
}
# The Huawei card as an engineer commissioning it corrects it (the two names are the
# same agent, recorded once; one is corrected in the site file, the other not).
HUAWEI_FIXED = "huawei-fixed"
CORRECTIONS = {
    "voltage_v": {"scale": 0.1},
    "frequency_hz": {"scale": 0.1},
    "output_frequency_hz": {"scale": 0.1},
    "power_w": {"scale": 100},
    "output_power_w": {"scale": 100},
}


def recording(name: str) -> str:
    plain = DATA / f"{name}.snmprec"
    raw = (
        plain.read_bytes()
        if plain.exists()
        else bz2.decompress(plain.with_suffix(".snmprec.bz2").read_bytes())
    )
    return raw.decode("latin-1")  # some walks carry binary OCTET STRINGs


@pytest.fixture(scope="module")
def agent() -> Iterator[Snmpsim]:
    texts = {name: recording(name) for name in RECORDINGS}
    texts[HUAWEI_FIXED] = texts["huawei-gse200m"]
    sim = start_snmpsim(texts)
    try:
        yield sim
    finally:
        sim.cleanup()


def site(tmp: Path, port: int) -> SiteConfig:
    devices: list[dict[str, Any]] = [
        {
            "name": name,
            "protocol": "snmp",
            "profile": profile,
            "host": "127.0.0.1",
            "port": port,
            "snmp": {"community": {"value": name}},
        }
        for name, profile in [*RECORDINGS.items(), (HUAWEI_FIXED, "ups_rfc1628")]
    ]
    devices[-1]["corrections"] = CORRECTIONS
    return SiteConfig.model_validate(
        {
            "site": {"name": "recordings"},
            "defaults": {"interval_s": 1.0, "timeout_s": 0.5, "retries": 0},
            "storage": {
                "spool_dir": str(tmp / "spool"),
                "sink": {"type": "embedded", "path": str(tmp / "store.sqlite")},
            },
            "devices": devices,
        }
    )


def run_collector(cfg: SiteConfig, seconds: float) -> Collector:
    async def go() -> Collector:
        col = Collector(cfg)
        await col.start()
        try:
            await asyncio.sleep(seconds)
        finally:
            await col.stop()
        return col

    return asyncio.run(go())


def stored(path: Path) -> list[tuple[str, dict[str, str], str, Any]]:
    """Every point in the embedded store: (measurement, tags, field, value)."""
    con = sqlite3.connect(path)
    try:
        rows = con.execute(
            "SELECT s.measurement, s.tags, f.name, p.value FROM point p "
            "JOIN series s ON s.id = p.series_id JOIN field_key f ON f.id = p.field_id"
        ).fetchall()
    finally:
        con.close()
    return [(meas, json.loads(tags), name, value) for meas, tags, name, value in rows]


@pytest.fixture(scope="module")
def result(agent: Snmpsim, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("recordings")
    cfg = site(tmp, agent.port)
    col = run_collector(cfg, 3.5)
    metrics = {
        (s.labels["device"], s.labels["field"], s.labels["reason"]): s.value
        for fam in CollectorMetrics(col, col.poll_metrics).collect()
        if fam.name == "dcim_values_refused"
        for s in fam.samples
    }
    col.store.close()
    return {"cfg": cfg, "points": stored(tmp / "store.sqlite"), "metrics": metrics}


def test_no_implausible_value_is_stored(result: dict[str, Any]) -> None:
    cfg: SiteConfig = result["cfg"]
    profiles = cfg.profiles()
    points = result["points"]
    # the devices' readings (not the collector's own: health rows, the alerts the default
    # rule pack raised on these devices)
    data = [
        p for p in points if p[0] not in ("dcim_poll", "dcim_spool", "dcim_collector", "alerts")
    ]
    assert {p[1]["device"] for p in data} == {d.name for d in cfg.devices}
    checked = 0
    for meas, tags, name, value in data:
        dev = cfg.device(tags["device"])
        spec = dict(((m, f.name), f) for m, f in profiles[dev.profile].field_specs())[(meas, name)]
        lo, hi = spec.range or default_range(name) or (-math.inf, math.inf)
        assert lo <= value <= hi, (tags["device"], meas, name, value)
        assert value not in [raw * spec.scale + spec.offset for raw in spec.no_value], (
            tags["device"],
            meas,
            name,
            value,
        )
        checked += 1
    assert checked > 200


def values(points: list[Any], device: str, meas: str, name: str) -> set[Any]:
    return {v for m, t, f, v in points if t.get("device") == device and m == meas and f == name}


def test_what_each_recording_gives(result: dict[str, Any]) -> None:
    points = result["points"]
    # Huawei, uncorrected: its tenths of volts and hundredths of hertz are refused...
    assert values(points, "huawei-gse200m", "ups_input", "voltage_v") == set()
    assert values(points, "huawei-gse200m", "ups_input", "frequency_hz") == set()
    assert values(points, "huawei-gse200m", "ups", "battery_runtime_min") == set()
    # ... and corrected in the site file, they are what the UPS measured.
    assert values(points, HUAWEI_FIXED, "ups_input", "voltage_v") == {236.9}
    assert values(points, HUAWEI_FIXED, "ups_input", "frequency_hz") == {50.0}
    assert values(points, HUAWEI_FIXED, "ups", "output_frequency_hz") == {49.99}
    assert values(points, HUAWEI_FIXED, "ups_output", "voltage_v") == {219.9}
    assert values(points, HUAWEI_FIXED, "ups", "output_power_w") == {3400.0}
    # EastPower: rows indexed 1.0 are line 1, and row 1 scalars answered at .1.0 are read.
    lines = {
        t["line"]
        for m, t, f, v in points
        if t.get("device") == "eastpower-istars-swv053" and m == "ups_input"
    }
    assert lines == {"1", "2", "3"}
    assert values(points, "eastpower-istars-swv053", "ups", "output_load_pct") == {20.0}
    assert values(points, "eastpower-istars-swv053", "ups_input", "power_w") == set()  # zeros
    assert values(points, "eastpower-istars-swv053", "ups", "battery_runtime_min") == set()
    assert values(points, "eaton-93e-80", "ups", "battery_runtime_min") == {1092.0}
    # Phoenixtec: one input and one output line, rows 2 and 3 answering 0 are not readings.
    for meas in ("ups_input", "ups_output"):
        lines = {
            t["line"]
            for m, t, _, _ in points
            if t.get("device") == "phoenixtec-power" and m == meas
        }
        assert lines == {"1"}, meas
    # Eaton: output measured, input power (0: not measured) left out.
    assert values(points, "eaton-93e-80", "ups", "output_power_w") == {5100.0}
    assert values(points, "eaton-93e-80", "ups_input", "power_w") == set()
    # APC: the AP7902B's -1 are not figures; the AP8641's outlets are.
    assert values(points, "apc-7902b", "pdu", "power_w") == set()
    assert values(points, "apc-7902b", "pdu", "current_a") == {1.6}
    assert values(points, "apc-8641", "pdu", "power_w") == {1210.0}


def test_each_refusal_is_counted_with_its_reason(result: dict[str, Any]) -> None:
    metrics = result["metrics"]
    want = {
        ("huawei-gse200m", "battery_runtime_min", "no_value"),
        ("huawei-gse200m", "battery_charge_pct", "no_value"),
        ("huawei-gse200m", "battery_temp_c", "no_value"),
        ("huawei-gse200m", "voltage_v", "above_range"),
        ("huawei-gse200m", "frequency_hz", "above_range"),
        ("huawei-gse200m", "output_frequency_hz", "above_range"),
        ("eastpower-istars-swv053", "power_w", "no_value"),
        ("eaton-93e-80", "input_power_w", "no_value"),
        ("ingrasys-power-switch", "current_a", "no_value"),
        ("apc-7902b", "power_w", "no_value"),
        ("apc-7902b", "energy_wh_total", "no_value"),
    }
    assert want <= set(metrics), sorted(set(want) - set(metrics))
    assert all(v >= 1 for v in metrics.values())
    # the corrected Huawei has no range refusal left
    assert not any(d == HUAWEI_FIXED and r.endswith("_range") for d, _, r in metrics)
    # each cycle's dcim_poll row says how many values it refused, and the last reason
    points = result["points"]
    refused = values(points, "huawei-gse200m", "dcim_poll", "refused")
    assert refused and min(refused) >= 6
    reasons = values(points, "huawei-gse200m", "dcim_poll", "refused_reason")
    assert reasons and all(r and ":" in r for r in reasons), reasons
    assert values(points, "apc-8932", "dcim_poll", "refused") == {0}
    assert values(points, "apc-8932", "dcim_poll", "refused_reason") == {""}
