"""One delivery point's monthly heat-delivery statement as a dict of plain numbers (the JSON
file is this dict; the CSV and the PDF format the same numbers). See :mod:`heat_data`."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from dcim.config import SiteConfig
from dcim.reports import heat_data as hd
from dcim.reports.recording import RecordingStore
from dcim.reports.settings import DeliveryPoint
from dcim.storage.base import Store
from dcim.timeutil import parse_period

NS = hd.NS
HOUR = hd.HOUR
SCHEMA = "dcim.heat-statement/1"


def software_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dcim-heat")
    except PackageNotFoundError:  # a source tree never installed
        return "0+unknown"


def compute(store: Store, cfg: SiteConfig, point: DeliveryPoint, month: str) -> dict[str, Any]:
    """The statement of ``point`` for ``month`` (YYYY-MM, local at the site). Raises
    :class:`heat_data.NoData` when the period has no reading of the point's meter."""
    tz = cfg.site.timezone
    start, end = parse_period(month, tz)
    dev = cfg.device(point.device)
    rec = RecordingStore(store, frozenset({dev.name}))
    rd = hd.Reader(rec, cfg, dev)
    win = rd.windows(start, end)
    energy = rd.energy(hd.ENERGY, start, end)
    volume = rd.energy(hd.VOLUME, start, end)
    if not win.times and energy.samples == 0:
        raise hd.NoData(
            f"no reading of {dev.name} ({point.label}) between {_iso(start, tz)} and "
            f"{_iso(end, tz)}: no statement for {month}"
        )
    sensor = dev.flow_sensor
    gaps = hd.gaps(rd, win, start, end)
    # integrated once per hour; the days and the month are unions of whole hours (the site's
    # UTC offsets are whole hours)
    hours = _hours(win, sensor, start, end, gaps)
    total = hd.combine([h["sums"] for h in hours])
    meters = hd.meters_of_period(point, start, end, tz)
    serials = hd.serial_hours(rd, point, start, end, tz)
    days = _days(rd, hours, start, end, tz)
    for d in days:
        _day_serials(d, serials)
    spans = {id(m): (a, z) for m, a, z in hd.meter_spans(point, tz)}
    mwh = None if energy.value is None else energy.value / 1e6
    integ = None if total["wh"] is None else total["wh"] / 1e6
    # The check compares like with like: the register's advance over the hours with data
    # (less its advance across the gaps) against the energy integrated over those hours.
    in_gaps = sum(g["register_wh"] or 0.0 for g in gaps) / 1e6
    diff = None if mwh is None or not integ else (mwh - in_gaps - integ) / integ
    deliv = [h for h in hours if h["delivered"]]
    q_mean = total["flow_m3_per_h"] or 0.0
    dtheta = (total["supply_c"] or 0.0) - (total["return_c"] or 0.0)
    mpe = (
        max(hd.mpe_percent(m.en1434_class, m.qp_m3_per_h, q_mean, dtheta, m.dtheta_min_k)
            for m in meters) / 100.0
        if meters and q_mean > 0 and dtheta > 0 else None
    )  # fmt: skip
    peak = max((h for h in hours if h["coverage"] >= 0.9 and h["kw"] is not None),
               key=lambda h: h["kw"], default=None)  # fmt: skip
    period_s = (end - start) / NS
    covered = total["coverage"]
    swaps = hd.swaps(cfg, dev, start, end)
    start_idx = {f: hd.boundary(rd, f, start, 0.0) for f in (hd.ENERGY, hd.VOLUME)}
    end_idx = {f: hd.boundary(rd, f, end, 0.0) for f in (hd.ENERGY, hd.VOLUME)}
    y, m = int(month[:4]), int(month[5:7])
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "site": {
            "name": cfg.site.name,
            "description": cfg.site.description or "",
            "timezone": tz,
        },  # fmt: skip
        "operator": cfg.reports.heat.operator if cfg.reports.heat else "",
        "point": {
            "name": point.name,
            "label": point.label,
            "customer": point.customer,
            "device": dev.name,
            "flow_sensor": sensor,
        },  # fmt: skip
        "meters": [
            {
                "serial": mi.serial,
                "model": mi.model,
                "installed": mi.installed.isoformat(),
                "en1434_class": mi.en1434_class,
                "qp_m3_per_h": mi.qp_m3_per_h,
                # what the meter itself said in the hours it was the declared one
                "serial_read": _read_in(serials, *spans[id(mi)]),
            }
            for mi in meters
        ],  # fmt: skip
        "serial_check": hd.serial_check(serials),
        "period": {"month": month, "start_ns": start, "end_ns": end, "hours": period_s / 3600},
        "software_version": software_version(),
        "index": {
            "energy_wh": {"start": start_idx[hd.ENERGY], "end": end_idx[hd.ENERGY]},
            "volume_m3": {"start": start_idx[hd.VOLUME], "end": end_idx[hd.VOLUME]},
        },
        "totals": {
            "energy_mwh": mwh,
            "energy_integrated_mwh": integ,
            "energy_difference": diff,
            "energy_in_gaps_mwh": in_gaps,
            "mpe": mpe,
            "within_mpe": None if diff is None or mpe is None else abs(diff) <= mpe,
            "volume_m3": volume.value,
            "supply_temp_c": total["supply_c"],
            "return_temp_c": total["return_c"],
            "mean_flow_m3_per_h": total["flow_m3_per_h"],
            "peak_kw": None if peak is None else peak["kw"],
            "peak_at_ns": None if peak is None else peak["start_ns"],
            "delivery_hours": float(len(deliv)),
            "delivery_hours_in_gaps": float(sum(1 for h in deliv if h["coverage"] == 0)),
            "completeness": covered,
            "register_completeness": energy.completeness,
            "interpolated": energy.interpolated,
            "extrapolated": energy.extrapolated,
            "resets": energy.resets,
            "glitches": energy.glitches,
        },
        "contract": _contract(point, hours),
        "gaps": gaps,
        "swaps": swaps,
        "days": days,
        "hours": [
            {
                "start_ns": h["start_ns"],
                "kw": h["kw"],
                "supply_c": h["supply_c"],
                "return_c": h["return_c"],
            }
            for h in hours
        ],  # fmt: skip
        "months": _months(rd, y, m, mwh, tz),
        "queries": rec.queries(),
    }
    settings = {
        "point": point.model_dump(mode="json"),
        "device": dev.model_dump(mode="json", include={"name", "flow_sensor", "replacements",
                                                       "interval_s", "profile"}),
        "interval_s": cfg.interval_of(dev),
        "timezone": tz,
        "max_gap_extrapolation_intervals": cfg.kpi.max_gap_extrapolation_intervals,
        "month": month,
        "software_version": doc["software_version"],
    }  # fmt: skip
    doc["fingerprint"] = rec.fingerprint(settings)
    return doc


def _read_in(serials: list[dict[str, Any]], a: int, z: int | None) -> list[str]:
    """The serials read in the hours within [a, z) (z None: open)."""
    out: list[int] = []
    for h in serials:
        if h["start_ns"] >= a and (z is None or h["end_ns"] <= z):
            out += [x for x in h["read"] if x not in out]
    return [str(x) for x in out]


def _day_serials(day: dict[str, Any], serials: list[dict[str, Any]]) -> None:
    """The day's serials read and whether they are the declared ones (None: none read)."""
    mine = [h for h in serials if day["start_ns"] <= h["start_ns"] < day["end_ns"]]
    day["meter_serial_read"] = _read_in(mine, day["start_ns"], day["end_ns"])
    day["meter_serial_ok"] = all(h["ok"] for h in mine) if mine else None


def _iso(ns: int, tz: str) -> str:
    return datetime.fromtimestamp(ns / NS, ZoneInfo(tz)).isoformat(timespec="minutes")


def _hours(
    win: hd.Windows, sensor: Any, start: int, end: int, gaps: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Per hour of the period: integrated energy, mean power (kW, over its windows with
    data), temperatures, coverage, delivered. An hour without any data counts as delivered
    when the register advanced across the gap it is in (the statement says how many)."""
    out = []
    for h0 in range(start, end, HOUR):
        got = hd.integrate(win, sensor, h0, min(end, h0 + HOUR))
        wh, n = got["wh"], got["windows"]
        kw = None if wh is None or n == 0 else wh / (n * win.step_ns / HOUR) / 1000.0
        if n:
            delivered = kw is not None and kw > 0
        else:
            delivered = any(
                g["start_ns"] <= h0 and h0 + HOUR <= g["end_ns"] and (g["register_wh"] or 0) > 0
                for g in gaps
            )
        out.append({"start_ns": h0, "kw": kw, "wh": wh, "supply_c": got["supply_c"],
                    "return_c": got["return_c"], "coverage": got["coverage"],
                    "delivered": delivered, "sums": got})  # fmt: skip
    return out


def _contract(point: DeliveryPoint, hours: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each contract term: the hours outside it among the hours with data, and the share."""
    c = point.contract
    seen = [h for h in hours if h["coverage"] > 0 and h["kw"] is not None]
    n = len(seen)
    out: list[dict[str, Any]] = []

    def term(name: str, limit: float, outside: int, basis: int) -> None:
        out.append({"term": name, "limit": limit, "hours_outside": float(outside),
                    "hours_checked": float(basis), "share_outside": outside / basis if basis
                    else None})  # fmt: skip

    if c.min_supply_temp_c is not None:
        lim = c.min_supply_temp_c
        term("min_supply_temp_c", lim,
             sum(1 for h in seen if (h["supply_c"] or math.inf) < lim), n)  # fmt: skip
    if c.min_power_kw is not None:
        lo = c.min_power_kw
        term("min_power_kw", lo, sum(1 for h in seen if h["kw"] < lo), n)
    if c.max_power_kw is not None:
        hi = c.max_power_kw
        term("max_power_kw", hi, sum(1 for h in seen if h["kw"] > hi), n)
    if c.availability_min is not None:
        total = len(hours)
        off = sum(1 for h in hours if not h["delivered"])
        out.append({"term": "availability_min", "limit": c.availability_min,
                    "hours_outside": float(off), "hours_checked": float(total),
                    "share_outside": off / total if total else None,
                    "availability": 1 - off / total if total else None,
                    "ok": (1 - off / total) >= c.availability_min if total else None})  # fmt: skip
    for t in out:
        t.setdefault("ok", t["hours_outside"] == 0)
    return out


def _days(
    rd: hd.Reader, hours: list[dict[str, Any]], start: int, end: int, tz: str
) -> list[dict[str, Any]]:
    """Per local day: register energy and volume (from the readings around each midnight,
    :func:`heat_data.day_registers`), integrated energy, temperatures, coverage (its hours'
    figures combined)."""
    b = hd.day_bounds(start, end, tz)
    energy = hd.day_registers(rd, hd.ENERGY, b)
    volume = hd.day_registers(rd, hd.VOLUME, b)
    out = []
    for i, (a, z) in enumerate(zip(b, b[1:], strict=False)):
        got = hd.combine([h["sums"] for h in hours if a <= h["start_ns"] < z])
        e = energy[i]
        out.append(
            {
                "start_ns": a,
                "end_ns": z,
                "date": datetime.fromtimestamp(a / NS, ZoneInfo(tz)).date().isoformat(),
                "hours": (z - a) / HOUR,
                "energy_mwh": None if e is None else e / 1e6,
                "energy_integrated_mwh": None if got["wh"] is None else got["wh"] / 1e6,
                "volume_m3": volume[i],
                "supply_temp_c": got["supply_c"],
                "return_temp_c": got["return_c"],
                "completeness": got["coverage"],
            }
        )
    return out


def _months(rd: hd.Reader, y: int, m: int, this: float | None, tz: str) -> list[dict[str, Any]]:
    """Register energy (MWh) of each month of the year so far and the same month a year
    before (None: no data). One query finds the days with data; only their months are read."""
    first, _ = parse_period(f"{y - 1}-01", tz)
    current, _ = parse_period(f"{y}-{m:02d}", tz)
    rows = rd.store.aggregate(
        measurement=rd.measurement, field=hd.ENERGY, start_ns=first - 86400 * NS,
        end_ns=current, fn="count", every_s=86400, where=rd.where,
    )  # fmt: skip
    days = [r.time_ns for r in rows if r.value]
    out = []
    for year in (y - 1, y):
        for mo in range(1, m + 1):
            if (year, mo) == (y, m):
                out.append({"year": year, "month": mo, "energy_mwh": this})
                continue
            a, z = parse_period(f"{year}-{mo:02d}", tz)
            value = None
            if any(a - 86400 * NS < d < z for d in days):  # UTC days around local months
                e = rd.energy(hd.ENERGY, a, z)
                value = None if e.value is None else e.value / 1e6
            out.append({"year": year, "month": mo, "energy_mwh": value})
    return out
