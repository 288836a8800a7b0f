"""The site file's ``reports:`` section: what the statements need that the devices do not say
(delivery points, the operator, each meter's identity and EN 1434 class, contract terms;
for the EU report, floor areas, installed power, capacity and traffic).

Only pydantic here: :mod:`dcim.config` imports this module for its ``SiteConfig``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

from dcim.modelbase import BaseModel, ConfigDict, Field, model_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MeterIdentity(_Model):
    """One physical heat meter that served a delivery point from ``installed`` on (until the
    next one's ``installed``). ``en1434_class``: the flow sensor's accuracy class (1, 2, 3);
    ``qp_m3_per_h``: its permanent flow rate; ``dtheta_min_k``: the smallest temperature
    difference of its calculator (EN 1434-1, usually 3 K); the three set its maximum
    permissible error."""

    serial: str = Field(min_length=1)
    model: str = Field(min_length=1)
    installed: datetime
    en1434_class: Literal[1, 2, 3] = 2
    qp_m3_per_h: float = Field(gt=0)
    dtheta_min_k: float = Field(default=3.0, gt=0, le=20)


class ContractTerms(_Model):
    """The delivery contract's terms checked hour by hour (hourly means); a term left out is
    not checked. ``availability_min``: the share of the period's hours heat must be
    delivered (0..1)."""

    min_supply_temp_c: float | None = Field(default=None, ge=0, le=150)
    min_power_kw: float | None = Field(default=None, ge=0)
    max_power_kw: float | None = Field(default=None, gt=0)
    availability_min: float | None = Field(default=None, ge=0, le=1)

    @model_validator(mode="after")
    def _powers(self) -> ContractTerms:
        lo, hi = self.min_power_kw, self.max_power_kw
        if lo is not None and hi is not None and lo >= hi:
            raise ValueError(f"min_power_kw {lo:g} must be below max_power_kw {hi:g}")
        return self


class DeliveryPoint(_Model):
    """A point where heat leaves the site and is invoiced: ``device`` is its heat meter in
    ``devices:`` (under one name across meter swaps, declared there as ``replacements``)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")  # used in file names and numbers
    label: str = Field(min_length=1)  # as printed: "Réseau CPCU, sous-station Chapelle"
    device: str
    customer: str = ""  # the party receiving the heat (signs the statement)
    meters: list[MeterIdentity] = Field(min_length=1)
    contract: ContractTerms = ContractTerms()

    @model_validator(mode="after")
    def _meters_in_order(self) -> DeliveryPoint:
        # a time without an offset is local at the site: compared as written
        key = [m.installed.replace(tzinfo=None) for m in self.meters]
        ordered = key == sorted(key)
        if not ordered:
            raise ValueError("meters: list them in the order they were installed")
        return self


class HeatSchedule(_Model):
    """The collector renders last month's statements from ``day`` of the month (local time)
    into ``folder``, and again, as a new revision, whenever late data change their inputs;
    each new statement is announced (log line, ``webhook_url`` when given)."""

    day: int = Field(default=2, ge=1, le=28)
    folder: Path = Path("var/reports")
    lang: Literal["fr", "en"] = "fr"
    webhook_url: str | None = Field(default=None, pattern=r"^https?://")
    check_every_s: float = Field(default=3600.0, ge=60, le=86400)


class HeatReports(_Model):
    """``reports.heat``: the monthly heat-delivery statements."""

    operator: str = Field(min_length=1)  # who runs the site and issues the statements
    points: list[DeliveryPoint] = Field(min_length=1)
    schedule: HeatSchedule | None = None  # None: only on demand (`dcim report heat`)

    @model_validator(mode="after")
    def _unique(self) -> HeatReports:
        names = [p.name for p in self.points]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"delivery point name(s) {', '.join(dup)} used twice")
        return self


class EedSettings(_Model):
    """Inputs of the EU data-centre report (Delegated Regulation (EU) 2024/1364, Annexes I
    and II) that the meters cannot give, as the annexes ask them (units in the names). Every
    one is optional: one not given is "not declared" in the report, with the key to set."""

    # Annex I: information on the data centre
    total_floor_area_m2: float | None = Field(default=None, gt=0)
    computer_room_floor_area_m2: float | None = Field(default=None, gt=0)
    installed_power_kw: float | None = Field(default=None, gt=0)  # Pinstalled
    installed_it_power_kw: float | None = Field(default=None, gt=0)  # PDIT
    # Annex II point 1, declared
    potable_water_share: float | None = Field(default=None, ge=0, le=1)  # of the metered water
    it_intake_setpoint_c: float | None = Field(default=None, ge=5, le=45)  # TIN
    refrigerants: list[str] | None = None  # e.g. [R-1234ze, R-513A]
    cooling_degree_days: float | None = Field(default=None, ge=0)  # CDD, from a weather service
    # Annex II point 2: ICT capacity
    server_capacity: float | None = Field(default=None, ge=0)  # CSERV (SERT-based figure)
    storage_capacity_pb: float | None = Field(default=None, ge=0)  # CSTOR, petabytes
    # Annex II point 3: data traffic
    incoming_bandwidth_gbps: float | None = Field(default=None, ge=0)
    outgoing_bandwidth_gbps: float | None = Field(default=None, ge=0)
    incoming_traffic_eb: float | None = Field(default=None, ge=0)  # exabytes in the year
    outgoing_traffic_eb: float | None = Field(default=None, ge=0)


class ReportsSettings(_Model):
    """The ``reports:`` section (absent: no statements configured, nothing declared for the
    EU report)."""

    heat: HeatReports | None = None
    eed: EedSettings = EedSettings()
