"""The site file's ``reports:`` section: what the reports need that no meter can know.

Kept free of :mod:`dcim.config` (which imports this module for its ``reports:`` field).
Every ``eed`` input is optional: one not given is "not declared" in the report, with the
key to set, never a number made up.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EedSettings(_Model):
    """Inputs of the EU data-centre report (Delegated Regulation (EU) 2024/1364, Annexes I
    and II) that the meters cannot give, as the annexes ask them (units in the names)."""

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
    """``reports:`` section of the site file."""

    eed: EedSettings = EedSettings()
