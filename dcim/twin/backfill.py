"""History from the twin: the readings the collectors would have produced over a period.

:func:`backfill` evaluates each device's series over a chunk of poll times at once (numpy),
so a week of the site's meters at 10 s is seconds of CPU, and yields lists of
:class:`~dcim.reading.Reading` in time order. Poll times are the multiples of the interval
(UNIX time) in [max(start, t0), end], each delayed by a deterministic 1-24 ms per device and
tick like a real poll; the values are the model's at that exact instant
(``time_ns / 1e9``, float division), so ``model.values(dev, r.time_ns / 1e9) == r.fields``.

The second half of the module are the instruments: each device kind's canonical fields
computed from the site state (:class:`dcim.twin.physics.At`).
"""

from __future__ import annotations

import gc
import math
import zlib
from collections.abc import Iterable, Iterator, Sequence
from itertools import repeat
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import numpy as np

from dcim.config import SiteConfig
from dcim.reading import Reading
from dcim.twin.physics import EPOCH, Arr, At, daylight, dot, solar_hour, supply_air

if TYPE_CHECKING:
    from dcim.twin.model import SiteModel, _Dev

NS = 1_000_000_000
CHUNK_READINGS = 250_000  # readings built per numpy pass (~800 B each in memory)


def poll_jitter_ns(device: str, ticks_ns: np.ndarray) -> np.ndarray:
    """Deterministic poll delay, 1-24 ms, from the device name and the tick time."""
    h = (ticks_ns // 1_000_000).astype(np.uint64) * np.uint64(2654435761)
    h ^= np.uint64(zlib.crc32(device.encode()))
    h = (h ^ (h >> np.uint64(13))) * np.uint64(0x9E3779B97F4A7C15)
    h ^= h >> np.uint64(29)
    return np.asarray(1_000_000 + (h % np.uint64(23_000)).astype(np.int64) * 1000)


def _measurements(
    cfg: SiteConfig, model: SiteModel, names: list[str]
) -> dict[str, tuple[str, list[str]]]:
    """Measurement and fields of each device: its profile's, else the glossary's."""
    profiles = model._profiles
    out: dict[str, tuple[str, list[str]]] = {}
    for n in names:
        dev = cfg.device(n)
        kind = model.devices[n].kind
        meas, fields = model.glossary[kind]
        prof = profiles.get(dev.profile)
        if prof is not None:
            meas = prof.measurement
            fields = tuple(f for f in fields if f in prof.field_names)
        out[n] = (meas, list(fields))
    return out


def device_names(model: SiteModel, devices: Iterable[str] | None) -> list[str]:
    """The simulated devices among ``devices`` (all enabled ones of the config by default)."""
    if devices is None:
        devices = [d.name for d in model.cfg.devices if d.enabled]
    return [d for d in devices if d in model.devices]


def backfill(
    cfg: SiteConfig,
    model: SiteModel,
    start: float,
    end: float,
    *,
    interval_s: float,
    devices: Iterable[str] | None = None,
    batch: int = 10_000,
    outages: Sequence[tuple[float, float]] = (),
    meter_swaps: bool = False,
) -> Iterator[list[Reading]]:
    """Readings of ``devices`` (default: every enabled simulated device) polled every
    ``interval_s`` over [start, end] (UNIX s), in lists of at most ``batch``, time ordered.

    ``outages``: [from, to) spans (UNIX s) the collector was down: no reading of any device.
    ``meter_swaps``: the meter swaps declared on the devices (``replacements:`` in the site
    file) show as real ones would: from each one's time on, the counter reads the new meter's
    first index plus what flowed since (:func:`swapped`); off, the counters run on as one."""
    names = device_names(model, devices)
    if not names or end < start:
        return
    meta = _measurements(cfg, model, names)
    tags = {n: cfg.tags_of(cfg.device(n)) for n in names}
    step = int(round(interval_s * NS))
    first = math.ceil(round(max(start, model.t0) * NS) / step) * step
    last = int(round(end * NS))
    if first > last:
        return
    n_ticks = (last - first) // step + 1
    cuts = [(int(round(a * NS)), int(round(b * NS))) for a, b in outages]
    out: list[Reading] = []
    chunk = max(64, min(8192, CHUNK_READINGS // len(names)))
    for c0 in range(0, n_ticks, chunk):
        ticks = first + step * np.arange(c0, min(n_ticks, c0 + chunk), dtype=np.int64)
        times = {n: ticks + poll_jitter_ns(n, ticks) for n in names}
        # one pass over the integration blocks for all the devices with counters: the model
        # caches a few blocks only, so a pass per device (or per group) over a long chunk
        # computed every block again each time
        counted = [n for n in names if model.devices[n].counters]
        integ: dict[str, np.ndarray] = {}
        if counted:
            rws = sorted({r for n in counted for r in model.counter_rows(n)})
            allt = np.concatenate([times[n] for n in counted]).astype(np.float64) / 1e9
            got = model.integrals(allt, rws)
            for i, n in enumerate(counted):
                integ[n] = got[:, i * len(ticks) : (i + 1) * len(ticks)]
        rows: list[list[Reading]] = []
        was = gc.isenabled()
        gc.disable()  # millions of acyclic objects: no point in collecting while building
        try:
            for n in names:
                tns = times[n]
                series = model.series(n, tns.astype(np.float64) / 1e9, integ.get(n))
                if meter_swaps:
                    swapped(cfg, model, n, tns, series)
                meas, fields = meta[n]
                k = len(tns)
                dicts = map(
                    dict,
                    map(
                        zip, repeat(fields), zip(*(series[f].tolist() for f in fields), strict=True)
                    ),
                )
                rows.append(
                    list(
                        map(
                            Reading,
                            repeat(meas, k),
                            map(dict.copy, repeat(tags[n], k)),
                            dicts,
                            tns.tolist(),
                        )
                    )
                )
            merged = [r for group in zip(*rows, strict=True) for r in group]  # time order
            if cuts:
                merged = [r for r in merged if not any(a <= r.time_ns < b for a, b in cuts)]
        finally:
            if was:
                gc.enable()
        out.extend(merged)
        full = len(out) // batch * batch
        for i in range(0, full, batch):
            yield out[i : i + batch]
        out = out[full:]
    if out:
        yield out


def swapped(cfg: SiteConfig, model: SiteModel, name: str, tns: Arr, series: dict[str, Arr]) -> None:
    """Counters of ``name`` after each meter swap declared on it, in place: from the swap on,
    the new meter's ``new_first_index`` plus the true increase since the swap."""
    dev = cfg.device(name)
    if not dev.replacements:
        return
    from dcim.config import ROLE_FIELD

    zone = ZoneInfo(cfg.site.timezone)
    true = {k: v.copy() for k, v in series.items()}
    for rep in sorted(dev.replacements, key=lambda r: r.at.replace(tzinfo=r.at.tzinfo or zone)):
        fld = rep.field or (ROLE_FIELD[dev.role] if dev.role else None)
        if fld not in series:
            continue
        at = rep.at if rep.at.tzinfo is not None else rep.at.replace(tzinfo=zone)
        at_ns = int(round(at.timestamp() * NS))
        after = tns >= at_ns
        if after.any():
            at_value = float(model.values(name, at_ns / NS)[fld])
            series[fld] = np.where(after, true[fld] - at_value + rep.new_first_index, series[fld])


# -- instruments: each device kind's canonical fields from the site state ----------------------


def device_series(m: SiteModel, dev: _Dev, at: At) -> dict[str, Arr]:
    """Every canonical field of one simulated device at the times of ``at`` (arrays)."""
    fn = _KINDS[dev.kind]
    out = fn(m, dev, at)
    return {
        k: (v.astype(np.int64) if k in _INT else np.asarray(v, dtype=np.float64))
        for k, v in out.items()
    }


def _phase_values(m: SiteModel, name: str, at: At, p: Arr) -> dict[str, Arr]:
    """A three-phase meter's per-phase values for total active power ``p`` (W): the phases
    share it unevenly (a few %), their powers add up to ``p``, and each phase's current is
    its power over its voltage and the power factor."""
    r = m._rng("meter", name)
    pf0 = r.uniform(0.95, 0.99)
    d = r.uniform(-0.04, 0.04, 3)
    d -= d.mean()
    v_off = r.uniform(-1.5, 1.5, 3)
    rel = 1.0 + m.grid_v(at.ts)
    out: dict[str, Arr] = {}
    pf = pf0 - 0.01 * np.exp(-np.abs(p) / (0.05 * m.plant.nom))
    for k in range(3):
        v = 230.0 * rel + v_off[k]
        out[f"voltage_l{k + 1}_v"] = v
        out[f"current_l{k + 1}_a"] = np.abs(p) * (1.0 + d[k]) / 3.0 / (v * pf)
        out[f"power_l{k + 1}_w"] = p * (1.0 + d[k]) / 3.0
    out["frequency_hz"] = 50.0 + m.grid_f(at.ts)
    out["power_factor"] = pf
    return out


def _energy_meter(m: SiteModel, dev: _Dev, at: At) -> dict[str, Arr]:
    assert dev.rate is not None
    p = at.rate(dev.rate)
    return {
        "energy_wh_total": at.counter(dev.rate),
        "power_w": p,
        **_phase_values(m, dev.name, at, p),
    }


def _pdu(m: SiteModel, dev: _Dev, at: At) -> dict[str, Arr]:
    assert dev.rate is not None
    p = at.rate(dev.rate)
    v = 230.0 * (1.0 + m.grid_v(at.ts)) + 1.0 - 0.3 * p / 4000.0
    return {
        "power_w": p,
        "energy_wh_total": at.counter(dev.rate),
        "current_a": p / (v * 0.98),
        "voltage_v": v,
    }


def _server(m: SiteModel, dev: _Dev, at: At) -> dict[str, Arr]:
    i = dev.unit
    x = m.srv_g[i] * at.u + dot(m.srv_w[i], at.S)
    inlet = supply_air(at.t_out) + m.rack_inlet[m.srv_rack[i]] + m.srv_pos[i] + 1.5 * (x - 0.5)
    return {
        "inlet_temp_c": np.clip(inlet, 18.0, 32.0),
        "power_w": m.srv_idle[i] + m.srv_span[i] * x,
    }


def _ups(m: SiteModel, dev: _Dev, at: At) -> dict[str, Arr]:
    j = dev.unit % m.n_ups
    out, inp = at.ups_out[j], at.plant["ups_in"][j]
    x = out / m.plant.ups_rated
    one = np.ones_like(out)
    return {
        "input_power_w": inp,
        "output_power_w": out,
        "output_load_pct": 100.0 * x,
        "battery_charge_pct": 100.0 * one,
        "battery_status": 2 * one,
        "on_battery": 0 * one,
        "battery_runtime_min": 25.0 * (0.4 / np.maximum(x, 0.05)) ** 1.15,
    }


def _crah(m: SiteModel, dev: _Dev, at: At) -> dict[str, Arr]:
    c = dev.unit % m.plant.crah_nom.size
    p = at.plant
    lf = p["crah_lf"][c]
    return {
        "supply_air_temp_c": p["t_sa"][c],
        "return_air_temp_c": p["t_ra"][c],
        "fan_power_w": p["crah_fan"][c],
        "cooling_power_w": p["crah_cool"][c],
        "valve_pct": np.clip(15.0 + 60.0 * lf, 0.0, 100.0),
    }


def _heat_meter(m: SiteModel, dev: _Dev, at: At) -> dict[str, Arr]:
    p = at.plant
    loop = int(dev.extra["loop"])
    q, v, ts_, tr = [
        ("q_loop", "v_loop", "t_ps", "t_pr"),
        ("heat_cpcu", "v_cpcu", "t_supply", "t_rc"),
        ("heat_gh", "v_gh", "t_supply", "t_rg"),
    ][loop]
    return {
        "heat_energy_wh_total": at.counter(dev.counters["heat_energy_wh_total"]),
        "volume_m3_total": at.counter(dev.counters["volume_m3_total"]),
        "heat_power_w": p[q] * dev.share,
        "flow_m3_per_h": p[v] * dev.share,
        "supply_temp_c": p[ts_],
        "return_temp_c": p[tr],
        "status": 0 * p[q],
    }


def _hx(m: SiteModel, dev: _Dev, at: At) -> dict[str, Arr]:
    p = at.plant
    return {
        "primary_supply_temp_c": p["t_ps"],
        "primary_return_temp_c": p["t_pr"],
        "secondary_supply_temp_c": p["t_ss"],
        "secondary_return_temp_c": p["t_sr"],
        "heat_power_w": p["q_loop"],
        "primary_flow_m3_per_h": p["v_loop"],
    }


def _heat_pump(m: SiteModel, dev: _Dev, at: At) -> dict[str, Arr]:
    i = dev.unit % m.n_hp
    p = at.plant
    run = p["running"][i]
    return {
        "electrical_power_w": p["hp_elec"][i],
        "heat_output_w": p["hp_heat"][i],
        "electrical_energy_wh_total": at.counter(dev.counters["electrical_energy_wh_total"]),
        "heat_energy_wh_total": at.counter(dev.counters["heat_energy_wh_total"]),
        "source_inlet_temp_c": p["t_ss"],
        "source_outlet_temp_c": p["t_eo"][i],
        "supply_temp_c": p["t_supply"],
        "return_temp_c": p["t_hp_ret"],
        "cop": p["cop"][i] * run,
        "running": run,
        "fault_code": 0 * run,  # a healthy plant: no alarm (dcim.twin.scenarios trips one)
    }


def _dry_cooler(m: SiteModel, dev: _Dev, at: At) -> dict[str, Arr]:
    p = at.plant
    n = m.n_dc
    return {
        "power_w": p["dc_power"] / n,
        "heat_rejected_w": p["q_rej"] / n,
        "fan_speed_pct": 100.0 * p["dc_speed"],
        "water_inlet_temp_c": p["t_mid"],
        "water_outlet_temp_c": p["t_dco"],
        "outdoor_temp_c": at.t_out + m._rng("dc", str(dev.unit)).uniform(-0.3, 0.3),
    }


def _water(m: SiteModel, dev: _Dev, at: At) -> dict[str, Arr]:
    return {"volume_m3_total": at.counter(dev.counters["volume_m3_total"])}


def _greenhouse(m: SiteModel, dev: _Dev, at: At) -> dict[str, Arr]:
    r = m._rng("zone", str(dev.unit))
    off, wob = r.uniform(-1.0, 1.0), r.uniform(0, 2 * np.pi)
    light = daylight(solar_hour(at.ts), at.ts)
    wave = np.sin(2 * np.pi * (at.ts - EPOCH) / 5400.0 + wob)
    air = 17.5 + 5.0 * light + 0.25 * (at.t_out - 12.0) + off + 0.4 * wave
    vent = np.clip((air - 24.0) / 4.0, 0.0, 1.0)
    hum = np.clip(80.0 - 18.0 * light - 6.0 * vent + 2.0 * off + 1.5 * wave, 35.0, 98.0)
    co2 = 430.0 + 480.0 * light * (1.0 - 0.8 * vent) + 30.0 * (1 - light) + 20.0 * wave
    return {"air_temp_c": air, "humidity_pct": hum, "co2_ppm": co2}


_INT = frozenset({"battery_status", "on_battery", "status", "running", "fault_code"})
_KINDS = {
    "energy_meter_3ph": _energy_meter,
    "apc_rpdu2": _pdu,
    "bmc_server": _server,
    "ups_rfc1628": _ups,
    "crah": _crah,
    "heat_meter_en1434": _heat_meter,
    "plate_heat_exchanger": _hx,
    "heat_pump": _heat_pump,
    "dry_cooler": _dry_cooler,
    "water_meter": _water,
    "greenhouse_climate": _greenhouse,
}
