"""The ``snmp:`` section of an SNMP device (see ``sample.yaml``)."""

from __future__ import annotations

import re
from typing import Literal

from dcim.config import Secret
from dcim.modelbase import BaseModel, ConfigDict, Field, model_validator


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
    # SNMPv3 context: which of several devices behind one agent (a proxy agent, a chassis
    # manager, a PDU with several modules) the requests are for.
    context: str = Field(default="", max_length=32)  # contextName (SNMP-TARGET-MIB: 0..32)
    context_engine_id: str | None = None  # contextEngineID, hex; default: the agent's own
    max_varbinds: int = Field(default=20, ge=1, le=200)
    # 25 as prometheus-snmp-exporter: a 24-outlet PDU's columns in one GETBULK (an agent
    # whose answer would not fit trims it or answers tooBig: then asked half as many)
    max_repetitions: int = Field(default=25, ge=1, le=200)
    # Table columns read only as tags (outlet names): walked again after this many seconds,
    # and at once when a table's rows change; 0: every poll.
    tag_refresh_s: float = Field(default=300.0, ge=0)

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
        if self.version != "3" and (self.context or self.context_engine_id is not None):
            raise ValueError(
                "'context' and 'context_engine_id' are SNMPv3 only (with v1/v2c an agent "
                "tells its devices apart by community)"
            )
        if self.context_engine_id is not None:
            hexa = self.context_engine_id.removeprefix("0x").replace(":", "")
            if not re.fullmatch(r"(?:[0-9A-Fa-f]{2}){5,32}", hexa):
                raise ValueError(
                    f"'context_engine_id' must be 5 to 32 bytes in hex (e.g. "
                    f"80001f8880e9b1c4a0b2d6e95f), got {self.context_engine_id!r}"
                )
        return self

    @property
    def context_engine_id_bytes(self) -> bytes | None:
        if self.context_engine_id is None:
            return None
        return bytes.fromhex(self.context_engine_id.removeprefix("0x").replace(":", ""))
