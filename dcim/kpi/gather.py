"""The one data-gathering step of a KPI report: every meter energy and heat integration the
figures need, read side by side (the database answers in parallel), nothing read twice.

A read that fails on its data (a ``ValueError``: values no formula accepts) does not take the
report down: its meters come back without a value and the reason is in :attr:`Inputs.failed`,
so the figures built on them say n/a and the others print. A store that cannot be reached
still raises (there is no report without it).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

from dcim.config import ROLE_FIELD, Device, SiteConfig
from dcim.kpi.energy import PARALLEL_QUERIES, MeterEnergy, counter_energies, meter_energies
from dcim.kpi.heat import FIELDS as HEAT_FIELDS
from dcim.kpi.heat import IntegratedHeat, integrated_heat
from dcim.storage.base import Store

HEAT_ROLES = ("heat_export_cpcu", "heat_export_greenhouse", "heat_recovered")
HEAT_PUMP_MEASUREMENT = "heat_pump"
T = TypeVar("T")


@dataclass
class Inputs:
    by_role: dict[str, list[MeterEnergy]]  # topology role -> its meters' energies
    hp_elec: list[MeterEnergy]  # heat pumps' own electricity counters
    hp_heat: list[MeterEnergy]  # heat pumps' own heat counters
    ups_in: list[MeterEnergy]  # kpi.ups_input_meters
    integrated: dict[str, IntegratedHeat]  # heat meter -> heat from flow and temperatures
    failed: list[str] = field(default_factory=list)  # reads that failed on their data, why

    def role(self, role: str) -> list[MeterEnergy]:
        return self.by_role.get(role, [])

    def meters(self) -> list[MeterEnergy]:
        return [m for ms in self.by_role.values() for m in ms] + (
            self.ups_in + self.hp_elec + self.hp_heat
        )


def heat_pumps(cfg: SiteConfig) -> list[Device]:
    """Enabled devices whose profile measures a heat pump (measurement ``heat_pump``)."""
    profiles = cfg.profiles()
    return [
        d
        for d in cfg.devices
        if d.enabled
        and d.profile in profiles
        and profiles[d.profile].measurement == HEAT_PUMP_MEASUREMENT
    ]


def heat_meters(cfg: SiteConfig) -> list[Device]:
    """Heat meters with a heat role whose profile has flow and both temperatures."""
    profiles = cfg.profiles()
    return [
        d
        for r in HEAT_ROLES
        for d in cfg.devices_with_role(r)
        if set(HEAT_FIELDS) <= profiles[d.profile].field_names
    ]


def gather(store: Store, cfg: SiteConfig, start_ns: int, end_ns: int) -> Inputs:
    """Every input of :func:`dcim.kpi.period.compute_kpis` over [start, end)."""
    roles = sorted({d.role for d in cfg.devices if d.role})
    hps = heat_pumps(cfg)
    ups_in_devs = [cfg.device(n) for n in cfg.kpi.ups_input_meters if cfg.device(n).enabled]
    profiles = cfg.profiles()
    failed: list[str] = []

    def counters(devs: list[Device], fld: str, label: str) -> Callable[[], list[MeterEnergy]]:
        return lambda: counter_energies(store, cfg, devs, fld, start_ns, end_ns, label=label)

    with ThreadPoolExecutor(max_workers=PARALLEL_QUERIES) as pool:
        role_f = {r: pool.submit(meter_energies, store, cfg, r, start_ns, end_ns) for r in roles}
        hp_elec_f = pool.submit(counters(hps, "electrical_energy_wh_total", "heat_pump"))
        hp_heat_f = pool.submit(counters(hps, "heat_energy_wh_total", "heat_pump"))
        ups_in_f = pool.submit(counters(ups_in_devs, "energy_wh_total", "ups_input"))
        heat_f = {
            d.name: pool.submit(
                integrated_heat,
                store,
                cfg,
                d,
                start_ns,
                end_ns,
                measurement=profiles[d.profile].measurement,
            )
            for d in heat_meters(cfg)
        }

    def read(what: str, fut: Future[T], fallback: Callable[[], T]) -> T:
        try:
            return fut.result()
        except ValueError as exc:  # bad data, not a store failure
            failed.append(f"{what} not read: {exc}")
            return fallback()

    def unread(devs: list[Device], fld: str, label: str) -> Callable[[], list[MeterEnergy]]:
        return lambda: [
            MeterEnergy(d.name, label, fld, None, 0, 1, 0.0, False, False, 0) for d in devs
        ]

    by_role: dict[str, list[MeterEnergy]] = {}
    for r, f in role_f.items():
        by_role[r] = read(f"{r} meters", f, unread(cfg.devices_with_role(r), ROLE_FIELD[r], r))
    integrated = {
        n: read(f"heat integration of {n}", f, partial(IntegratedHeat, n, None, 0, 1, 0.0))
        for n, f in heat_f.items()
    }
    elec, heat = "electrical_energy_wh_total", "heat_energy_wh_total"
    return Inputs(
        by_role,
        read("heat pumps' electricity counters", hp_elec_f, unread(hps, elec, "heat_pump")),
        read("heat pumps' heat counters", hp_heat_f, unread(hps, heat, "heat_pump")),
        read("UPS input meters", ups_in_f, unread(ups_in_devs, "energy_wh_total", "ups_input")),
        integrated,
        failed,
    )
