"""The ``snmp:`` section of an SNMP device (see ``sample.yaml``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from dcim.config import Secret


class SnmpOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal["1", "2c", "3"] = "2c"
    community: Secret | None = None
    # SNMPv3
    user: str | None = None
    auth_protocol: Literal["MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512"] | None = None
    auth_key: Secret | None = None
    priv_protocol: Literal["DES", "AES", "AES192", "AES256"] | None = None
    priv_key: Secret | None = None
    max_varbinds: int = Field(default=20, ge=1, le=200)
    max_repetitions: int = Field(default=10, ge=1, le=200)

    @model_validator(mode="after")
    def _credentials(self) -> SnmpOptions:
        if self.version in ("1", "2c") and self.community is None:
            raise ValueError(
                f"SNMP v{self.version} needs 'community' (e.g. community: {{env: SNMP_COMMUNITY}})"
            )
        if self.version == "3" and not self.user:
            raise ValueError("SNMPv3 needs 'user'")
        if self.auth_protocol and self.auth_key is None:
            raise ValueError("'auth_protocol' needs 'auth_key'")
        if self.priv_protocol and not self.auth_protocol:
            raise ValueError("'priv_protocol' needs 'auth_protocol' (authPriv)")
        if self.priv_protocol and self.priv_key is None:
            raise ValueError("'priv_protocol' needs 'priv_key'")
        return self
