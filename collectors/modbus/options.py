"""The ``modbus:`` section of a Modbus TCP device (optional: every key has a default)."""

from __future__ import annotations

from dcim.modelbase import BaseModel, ConfigDict, Field


class ModbusOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    unit_id: int = Field(default=1, ge=0, le=255)
    max_registers_per_request: int = Field(default=100, ge=1, le=125)
    max_hole: int = Field(default=10, ge=0, le=125)  # registers read across to merge requests
    single_value_reads: bool = False
