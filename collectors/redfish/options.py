"""The ``redfish:`` section of a device in the site file."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from dcim.config import Secret
from dcim.modelbase import BaseModel, ConfigDict, Field, field_validator, model_validator

_HEX = re.compile(r"^[0-9a-f]{64}$")


class RedfishOptions(BaseModel):
    """How to reach one BMC. TLS is verified against ``tls_ca`` (a PEM file of the CA, or of
    the BMC's own self-signed certificate) or ``tls_fingerprint_sha256`` (the certificate's
    SHA-256, pinned); plain HTTP only with ``scheme: http`` said explicitly. There is no
    "verify off": a BMC's self-signed certificate is pinned, not ignored."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1)
    password: Secret
    # session: POST /redfish/v1/SessionService/Sessions once, then X-Auth-Token (logged in
    # again on 401, the session deleted on close); basic: HTTP basic auth on every request.
    auth: Literal["session", "basic"] = "session"
    scheme: Literal["https", "http"] = "https"
    tls_ca: Path | None = None
    tls_fingerprint_sha256: str | None = None
    # the Chassis member to read (its Id); default: the first that links to a power resource
    chassis_id: str | None = None
    # connections to this BMC, kept alive between polls; requests beyond wait for one (a BMC
    # is a small computer: iDRACs and iLOs serve a few clients at a time)
    max_connections: int = Field(default=2, ge=1, le=16)

    @field_validator("tls_fingerprint_sha256")
    @classmethod
    def _fingerprint(cls, v: str | None) -> str | None:
        if v is None:
            return None
        text = v.replace(":", "").replace(" ", "").lower()
        if not _HEX.match(text):
            raise ValueError(
                "tls_fingerprint_sha256 must be 64 hex digits (colons allowed), as printed by "
                "`openssl x509 -noout -fingerprint -sha256 -in cert.pem`"
            )
        return text

    @model_validator(mode="after")
    def _tls(self) -> RedfishOptions:
        if self.scheme == "https" and self.tls_ca is None and self.tls_fingerprint_sha256 is None:
            raise ValueError(
                "an https BMC needs 'tls_ca: PATH' (the CA or the BMC's own certificate, PEM) "
                "or 'tls_fingerprint_sha256: HEX' (its certificate pinned); certificate "
                "checks are never turned off"
            )
        if self.scheme == "https" and self.tls_ca is not None and self.tls_fingerprint_sha256:
            raise ValueError("give 'tls_ca' or 'tls_fingerprint_sha256', not both")
        if self.scheme == "http" and (self.tls_ca or self.tls_fingerprint_sha256):
            raise ValueError("'tls_ca' and 'tls_fingerprint_sha256' are for scheme: https")
        return self
