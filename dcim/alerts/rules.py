"""Alert rules as data: the pydantic models of a rule and of the site file's ``alerts:``.

One model for every kind (``kind:`` says which options apply, checked by a validator), so an
error points at the key that is wrong (``rules[3].clear``), not at a union branch.

Kinds (see docs/alerts.md):
- ``threshold``: a field or an expression ``above``/``below`` a set level, resolved past the
  ``clear`` level (hysteresis), after ``for_s`` seconds true, held at least ``min_hold_s``.
- ``rate``: the change of a field or expression per ``per_s`` seconds, above/below a level.
- ``stale``: no reading of the selected devices (or no ``field`` in them) for ``after_s``;
  with ``unchanged: true``, a ``field`` whose value has not changed for ``after_s`` (a
  frozen sensor).
- ``counter``: a ``*_total`` register going backwards, or stepping more than ``max_per_s``
  (units per second) allows; fires for ``hold_s`` after the last anomaly.
- ``period``: a figure over stored data (``pue``, ``erf``) for each day, against a level.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from dcim.alerts.expr import ExprError, compile_expr
from dcim.modelbase import BaseModel, ConfigDict, Field, field_validator, model_validator

NAME = r"^[A-Za-z][A-Za-z0-9_]*$"
Severity = Literal["critical", "warning", "info"]
Kind = Literal["threshold", "rate", "stale", "counter", "period"]
_PLACEHOLDER = re.compile(r"\{(\w+)(?::([^{}]*))?\}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Select(_Model):
    """Which readings a rule looks at: all of the given conditions hold. ``device``: names or
    shell patterns (``srv-R0*``); ``role``: site-file roles; ``tags``: exact tag values."""

    measurement: list[str] = Field(min_length=1)
    device: list[str] = []
    role: list[str] = []
    tags: dict[str, str] = {}

    @field_validator("measurement", "device", "role", mode="before")
    @classmethod
    def _one_or_list(cls, v: object) -> object:
        return [v] if isinstance(v, str) else v


class Annotations(_Model):
    """Text sent with the alert. ``{value}``, ``{threshold}``, ``{clear}``, ``{unit}``,
    ``{for_s}`` and any label (``{device}``, ``{rack}``) are filled in; a format spec is
    allowed (``{value:.1f}``)."""

    summary: str = Field(min_length=1)
    description: str = Field(min_length=1)
    runbook: str = Field(min_length=1)

    @field_validator("summary", "description", "runbook")
    @classmethod
    def _placeholders(cls, text: str) -> str:
        for m in _PLACEHOLDER.finditer(text):
            if m.group(2):
                try:
                    format(1.5, m.group(2))
                except ValueError:
                    raise ValueError(
                        f"{{{m.group(1)}:{m.group(2)}}}: {m.group(2)!r} is not a number format "
                        "(e.g. .1f)"
                    ) from None
        return text


class Rule(_Model):
    name: str = Field(pattern=NAME)
    kind: Kind
    severity: Severity
    select: Select | None = None  # every kind but period
    annotations: Annotations
    labels: dict[str, str] = {}
    unit: str = ""  # of the value, for the annotations
    field: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]*$")
    expr: str | None = None
    above: float | None = None
    below: float | None = None
    clear: float | None = None  # the level past which a firing alert resolves (hysteresis)
    for_s: float = Field(default=0.0, ge=0, le=86400)
    min_hold_s: float = Field(default=0.0, ge=0, le=86400)
    per_s: float = Field(default=60.0, gt=0, le=86400)  # rate: change per this many seconds
    after_s: float | None = Field(default=None, gt=0, le=7 * 86400)  # stale
    unchanged: bool = False  # stale: the field's value has not changed (frozen sensor)
    max_per_s: float | None = Field(default=None, gt=0)  # counter: largest physical step rate
    hold_s: float = Field(default=3600.0, gt=0, le=7 * 86400)  # counter: firing after anomaly
    figure: Literal["pue", "erf"] | None = None  # period
    category: Literal[1, 2, 3] = 1  # period: PUE measurement category

    @field_validator("labels")
    @classmethod
    def _label_names(cls, labels: dict[str, str]) -> dict[str, str]:
        for k in labels:
            if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", k) or k in ("alertname", "severity"):
                raise ValueError(
                    f"label {k!r}: a label name is letters, digits and '_', not starting with a "
                    "digit (Alertmanager's rule), and not alertname or severity (set by the rule)"
                )
        return labels

    @field_validator("expr")
    @classmethod
    def _expr(cls, text: str | None) -> str | None:
        if text is None:
            return None
        try:
            compile_expr(text)
        except ExprError as exc:
            raise ValueError(f"{exc} in {text!r}") from None
        return text

    @model_validator(mode="after")
    def _kind_options(self) -> Rule:
        k = self.kind
        if k != "period" and self.select is None:
            raise ValueError(f"a {k} rule needs 'select:' (at least a measurement)")
        if k in ("threshold", "rate"):
            if (self.field is None) == (self.expr is None):
                raise ValueError(f"a {k} rule needs exactly one of 'field:' or 'expr:'")
            self._levels()
        elif k == "stale":
            if self.after_s is None:
                raise ValueError("a stale rule needs 'after_s:' (seconds without data)")
            if self.unchanged and self.field is None:
                raise ValueError("'unchanged: true' needs the 'field:' that must keep changing")
        elif k == "counter":
            if self.field is None or not self.field.endswith("_total"):
                raise ValueError("a counter rule needs 'field:' naming a *_total register")
        elif k == "period":
            if self.figure is None:
                raise ValueError("a period rule needs 'figure:' (pue or erf)")
            self._levels()
        for key, kinds in (("after_s", {"stale"}), ("max_per_s", {"counter"})):
            if getattr(self, key) is not None and k not in kinds:
                raise ValueError(f"'{key}' does not apply to a {k} rule")
        return self

    def _levels(self) -> None:
        if (self.above is None) == (self.below is None):
            raise ValueError(f"a {self.kind} rule needs exactly one of 'above:' or 'below:'")
        if self.above is not None and self.clear is not None and self.clear > self.above:
            raise ValueError(
                f"'clear: {self.clear:g}' must be at or below 'above: {self.above:g}' "
                "(the alert resolves once the value falls back under it)"
            )
        if self.below is not None and self.clear is not None and self.clear < self.below:
            raise ValueError(
                f"'clear: {self.clear:g}' must be at or above 'below: {self.below:g}' "
                "(the alert resolves once the value rises back over it)"
            )

    @property
    def level(self) -> float:
        lv = self.above if self.above is not None else self.below
        assert lv is not None
        return lv

    @property
    def clear_level(self) -> float:
        return self.clear if self.clear is not None else self.level


class Alertmanager(_Model):
    """Prometheus Alertmanager, v2 API. ``resend_s``: how often a firing alert is sent again
    (Alertmanager resolves an alert that is not re-sent before its ``endsAt``, which is set
    ``4 * resend_s`` ahead, as Prometheus does)."""

    url: str = Field(pattern=r"^https?://")
    resend_s: float = Field(default=60.0, ge=1, le=3600)
    timeout_s: float = Field(default=5.0, gt=0, le=60)


class Webhook(_Model):
    """A webhook receiving Alertmanager-compatible JSON (version 4), its body signed with
    HMAC-SHA256 in the ``X-Dcim-Signature: sha256=HEX`` header. The key is given by
    reference: ``secret_env`` (an environment variable) or ``secret_file``."""

    url: str = Field(pattern=r"^https?://")
    secret_env: str | None = None
    secret_file: Path | None = None
    timeout_s: float = Field(default=5.0, gt=0, le=60)

    @model_validator(mode="after")
    def _one_secret(self) -> Webhook:
        if (self.secret_env is None) == (self.secret_file is None):
            raise ValueError("give exactly one of 'secret_env: VAR' or 'secret_file: PATH'")
        return self


class MqttAlerts(_Model):
    """Alerts published on the site file's ``mqtt:`` broker (QoS 1):
    ``{topic_prefix}/{site}/state/{alertname}/{fingerprint}``, retained, the JSON of an alert
    while it fires (cleared, an empty retained message, once it resolves: subscribing to
    ``.../state/#`` gives exactly the alerts firing now), and
    ``{topic_prefix}/{site}/events``, not retained, one JSON message per firing and per
    resolve. See docs/alerts.md for the JSON."""

    topic_prefix: str = Field(default="dcim/alerts", pattern=r"^[^#+]+$")
    client_id: str | None = None  # default: dcim-alerts-<site>


class AlertsSettings(_Model):
    """The site file's ``alerts:`` section. ``default_pack``: load the rules shipped with the
    package (``disable:`` names the ones not wanted); ``rule_files``: more YAML files with a
    ``rules:`` list; ``rules``: rules written here. ``state_path``: the alert state database
    (default ``alerts.sqlite`` beside the spool)."""

    default_pack: bool = True
    disable: list[str] = []
    rule_files: list[Path] = []
    rules: list[Rule] = []
    state_path: Path | None = None
    alertmanager: list[Alertmanager] = []
    webhooks: list[Webhook] = []
    mqtt: MqttAlerts | None = None
    retry_max_s: float = Field(default=60.0, ge=1, le=3600)  # longest wait between retries
    history_days: int = Field(default=90, ge=1)  # resolved alerts kept for `dcim alerts`

    @field_validator("alertmanager", mode="before")
    @classmethod
    def _one_or_list(cls, v: object) -> object:
        return [v] if isinstance(v, dict) else v
