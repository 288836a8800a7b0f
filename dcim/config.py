"""Site configuration: pydantic models loaded from YAML, with errors that name their place.

``load_config(path)`` returns a :class:`SiteConfig` or raises :class:`ConfigError`, which
holds *every* problem found (schema and cross-field), each with file, line, the path in
the document and what is expected.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dcim import protocols
from dcim.alerts.rules import AlertsSettings
from dcim.configerror import ConfigError as ConfigError
from dcim.configerror import ConfigIssue as ConfigIssue
from dcim.modelbase import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)
from dcim.profiles import Profile, ProfileError, load_profiles
from dcim.reports.settings import ReportsSettings
from dcim.urls import has_credentials, redact_url
from dcim.yamlload import load_yaml as load_yaml
from dcim.yamlload import yaml_loader

if TYPE_CHECKING:  # pydantic_core: imported where a file is validated (dcim.modelbase)
    import yaml
    from pydantic_core import ErrorDetails, InitErrorDetails

M = TypeVar("M", bound=BaseModel)

Role = Literal[
    "grid_incomer",  # site main meter(s): E_DC (less heat-pump boards downstream of it)
    "ups_output",  # IT energy, PUE category 1
    "pdu_output",  # IT energy, PUE category 2
    "it_input",  # IT energy, PUE category 3
    "cooling_board",
    "heat_pump_board",  # electricity only used to upgrade waste heat: outside E_DC
    "heat_recovered",  # heat meter at the heat exchanger (IT heat taken out)
    "heat_export_cpcu",
    "heat_export_greenhouse",
    "water",
    "renewable_onsite",
]

# Which counter field a role is measured with.
ROLE_FIELD: dict[str, str] = {
    "grid_incomer": "energy_wh_total",
    "ups_output": "energy_wh_total",
    "pdu_output": "energy_wh_total",
    "it_input": "energy_wh_total",
    "cooling_board": "energy_wh_total",
    "heat_pump_board": "energy_wh_total",
    "renewable_onsite": "energy_wh_total",
    "heat_recovered": "heat_energy_wh_total",
    "heat_export_cpcu": "heat_energy_wh_total",
    "heat_export_greenhouse": "heat_energy_wh_total",
    "water": "volume_m3_total",
}


# Seconds a poll's deadline leaves beyond its requests' timeouts (connect, decode).
DEADLINE_MARGIN_S = 0.5


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Secret(_Model):
    """A credential given by reference: ``{env: NAME}`` or ``{file: PATH}``; ``{value: ...}``
    only for non-secrets such as the demo's ``public`` community."""

    env: str | None = None
    file: Path | None = None
    value: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Secret:
        given = [k for k in ("env", "file", "value") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'env: VAR', 'file: PATH' or 'value: TEXT'")
        return self

    def resolve(self) -> str:
        if self.value is not None:
            return self.value
        if self.env is not None:
            val = os.environ.get(self.env)
            if val is None:
                raise ConfigError(
                    [ConfigIssue("", None, "secret", f"environment variable {self.env} is not set")]
                )
            return val
        assert self.file is not None
        return self.file.read_text().strip()


class Correction(_Model):
    """A correction of one field of one device, for an agent that does not follow its own
    MIB or register map: ``scale``/``offset`` applied to what the profile decoded (tenths of
    a volt where the MIB says volts: ``scale: 0.1``), ``absent: true`` for a line the device
    does not have (a three-phase profile on a single-phase meter). See dcim.plausible."""

    scale: float | None = Field(default=None, gt=0)
    offset: float | None = None
    absent: bool | None = None


class MeterReplacement(_Model):
    """A meter swapped for another under the same device name. ``at``: when (without an offset
    it is local time at the site); the old meter's last index and the new one's first, in the
    counter's canonical unit (Wh, m3), as read on the two meters' displays."""

    at: datetime
    field: str | None = None  # default: the counter the device's role is measured by
    old_last_index: float = Field(ge=0)
    new_first_index: float = Field(ge=0)


class Device(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    protocol: str  # a registered protocol plugin (dcim.protocols)
    profile: str
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    room: str | None = None
    rack: str | None = None
    role: Role | None = None
    upstream: str | None = None  # the meter this one is downstream of (heat-pump board)
    # Heat meters: the pipe the flow sensor sits in (EN 1434: the volume is measured there,
    # so the water density is taken at that pipe's temperature).
    flow_sensor: Literal["supply", "return"] = "return"
    replacements: list[MeterReplacement] = []
    # field -> its correction for this device: "voltage_v" (every field of that name in the
    # profile) or "ups_input.voltage_v" (that measurement's only); see dcim.plausible
    corrections: dict[str, Correction] = {}
    interval_s: float | None = Field(default=None, gt=0, le=86400)
    timeout_s: float | None = Field(default=None, gt=0, le=300)
    retries: int | None = Field(default=None, ge=0, le=10)
    # Per-device jitter (at most half the interval) and poll deadline (plus the jitter, less
    # than the interval); see SiteConfig.jitter_of / deadline_of for what applies when unset.
    jitter_s: float | None = Field(default=None, ge=0, le=60)
    deadline_s: float | None = Field(default=None, gt=0, le=86400)
    enabled: bool = True
    tags: dict[str, str] = {}
    # The device's '<protocol>:' section, validated by its plugin's options model (see
    # _protocol_section); None for a protocol without options.
    _options: BaseModel | None = PrivateAttr(default=None)

    @field_validator("protocol")
    @classmethod
    def _registered(cls, value: str) -> str:
        if value not in protocols.names():
            raise ValueError(str(protocols.UnknownProtocol(value, protocols.names())))
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _protocol_section(cls, data: Any, handler: ModelWrapValidatorHandler[Device]) -> Device:
        """The device's keys, and its ``<protocol>:`` section validated by the protocol's
        plugin, every error of both at once with its place under the device."""
        if not isinstance(data, dict):
            return handler(data)
        # (a protocol named like a device key could not have its section: it is not one)
        known = set(protocols.names()) - set(cls.model_fields)
        sections = {k: v for k, v in data.items() if k in known}
        errors: list[InitErrorDetails] = []
        dev: Device | None = None
        try:
            dev = handler({k: v for k, v in data.items() if k not in sections})
        except ValidationError as exc:
            errors += _details(exc.errors())
        proto = data.get("protocol")
        options: BaseModel | None = None
        if isinstance(proto, str) and proto in known:
            try:
                plugin = protocols.plugin(proto)
            except protocols.PluginError as exc:
                errors.append(_value_error(("protocol",), str(exc), proto))
            else:
                options, problems = _options_of(plugin, data, sections)
                errors += problems
        if errors or dev is None:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        dev._options = options
        return dev

    @model_serializer(mode="wrap")
    def _with_section(
        self, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> dict[str, Any]:
        out: dict[str, Any] = handler(self)
        if self._options is not None:  # as written (a default section stays implicit)
            out[self.protocol] = self._options.model_dump(
                mode=info.mode, exclude_unset=True, by_alias=True
            )
        return out

    @property
    def options(self) -> BaseModel | None:
        """The validated ``<protocol>:`` section (its plugin's options model), if any."""
        return self._options

    def options_as(self, model: type[M]) -> M:
        """The ``<protocol>:`` section as the plugin's options ``model`` (TypeError if the
        device has another protocol's, or none)."""
        if not isinstance(self._options, model):
            raise TypeError(
                f"device {self.name!r} ({self.protocol}) has no {model.__name__} options"
            )
        return self._options

    def with_options(self, options: BaseModel) -> Device:
        """A copy of the device with another ``<protocol>:`` section (tests, tools)."""
        out = self.model_copy()
        out._options = options
        return out


def _options_of(
    plugin: protocols.ProtocolPlugin, data: dict[str, Any], sections: dict[str, Any]
) -> tuple[BaseModel | None, list[InitErrorDetails]]:
    """The device's options section validated by ``plugin``, and the problems found."""
    name = plugin.name
    errors: list[InitErrorDetails] = []
    for other in sections:
        if other != name:
            errors.append(
                _value_error((other,), f"'{other}:' options do not apply to a {name} device")
            )
    if plugin.needs_endpoint and (data.get("host") is None or data.get("port") is None):
        errors.append(_value_error((), f"a {name} device needs 'host' and 'port'"))
    section = sections.get(name)
    options: BaseModel | None = None
    if plugin.options is None:
        if section is not None:
            errors.append(_value_error((name,), f"a {name} device takes no '{name}:' options"))
    elif section is None:
        required = [k for k, f in plugin.options.model_fields.items() if f.is_required()]
        if plugin.options_required or required:
            what = f" ({', '.join(required)}: ...)" if required else ""
            errors.append(
                _value_error(
                    (), f"a {name} device needs a '{name}:' section{what}; see its sample config"
                )
            )
        else:
            options = plugin.options()
    else:
        try:
            options = plugin.options.model_validate(section)
        except ValidationError as exc:
            errors += _details(exc.errors(), (name,))
    return options, errors


def _details(
    errors: Iterable[ErrorDetails], prefix: tuple[str | int, ...] = ()
) -> list[InitErrorDetails]:
    """pydantic errors raised again (under ``prefix``) with their type, place and message (a
    known type keeps its type: the config report words some of them)."""
    from pydantic_core import InitErrorDetails
    from pydantic_core.core_schema import ErrorType

    known = frozenset(get_args(ErrorType))
    out: list[InitErrorDetails] = []
    for e in errors:
        loc = (*prefix, *e["loc"])
        if e["type"] in known:
            out.append(
                InitErrorDetails(
                    type=e["type"],
                    loc=loc,
                    input=e["input"],
                    ctx=e.get("ctx", {}),
                )
            )
        else:
            out.append(_value_error(loc, e["msg"].removeprefix("Value error, "), e["input"]))
    return out


def _value_error(loc: tuple[str | int, ...], message: str, value: Any = None) -> InitErrorDetails:
    from pydantic_core import InitErrorDetails, PydanticCustomError

    return InitErrorDetails(
        type=PydanticCustomError("value_error", "Value error, {reason}", {"reason": message}),
        loc=loc,
        input=value,
    )


COALESCE_S = 1.0  # defaults.coalesce_s unless written


class Defaults(_Model):
    interval_s: float = Field(default=10.0, gt=0, le=86400)
    timeout_s: float = Field(default=2.0, gt=0, le=300)
    retries: int = Field(default=1, ge=0, le=10)
    jitter_s: float = Field(default=0.0, ge=0, le=60)
    # Poll starts due within this window share one wake-up of the scheduler (each starts at
    # most this late, slots never move); 0 = every poll on its own timer. At most a tenth of
    # interval_s; see SiteConfig.coalesce_of for a device's own cap. 1 s (a 10 s device's
    # tenth): 50 rack PDUs every 10 s (a poll every 0.2 s) start 5 at a time, once a second:
    # about 40 % less CPU per value than 0.05 s (benchmarks/profile_collect.py --coalesce),
    # each poll started at most 1 s after its slot (late_s).
    coalesce_s: float = Field(default=COALESCE_S, ge=0, le=10)

    @model_validator(mode="after")
    def _coalesce_under_interval(self) -> Defaults:
        # checked as written (the built-in default, written or not, is capped per device by
        # coalesce_of: a dumped config validates again)
        if (
            "coalesce_s" in self.model_fields_set
            and self.coalesce_s != COALESCE_S
            and self.coalesce_s > 0.1 * self.interval_s
        ):
            raise ValueError(
                f"coalesce_s {self.coalesce_s:g} is more than a tenth of interval_s "
                f"({self.interval_s:g}): write coalesce_s: {0.1 * self.interval_s:g} or less"
            )
        return self

    @field_validator("jitter_s")
    @classmethod
    def _jitter_under_half_interval(cls, value: float, info: ValidationInfo) -> float:
        interval = info.data.get("interval_s")  # absent when itself invalid
        if interval is not None and value > 0.5 * interval:  # else capped per device, silently
            raise ValueError(
                f"jitter_s {value:g} is more than half interval_s ({interval:g}): "
                f"write jitter_s: {0.5 * interval:g} or less, or a longer interval_s"
            )
        return value


class Site(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    timezone: str = "Europe/Paris"
    description: str = ""

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                "not a time zone of the IANA database: write one such as Europe/Paris or UTC"
            ) from None
        return value


class Room(_Model):
    name: str


class Rack(_Model):
    name: str
    room: str


class MqttBroker(_Model):
    """The broker, and what the collector accepts from its publishers (see
    ``collectors/mqtt/README.md``): payload timestamps at most ``max_clock_skew_s`` ahead of the
    collector's clock and ``max_age_s`` behind it; payloads up to ``max_payload_bytes`` and
    ``max_json_depth`` levels of nesting. TLS with ``tls_ca`` and/or a client certificate
    (``tls_cert``, and ``tls_key`` unless the key is in the certificate file)."""

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: Secret | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    client_id: str | None = None
    qos: Literal[0, 1, 2] = 1
    keepalive_s: int = Field(default=30, ge=1, le=65535)
    max_clock_skew_s: float = Field(default=300.0, ge=0)
    max_age_s: float = Field(default=86400.0, gt=0)
    max_payload_bytes: int = Field(default=65536, ge=64)
    max_json_depth: int = Field(default=32, ge=1, le=1000)

    @model_validator(mode="after")
    def _key_needs_cert(self) -> MqttBroker:
        if self.tls_key is not None and self.tls_cert is None:
            raise ValueError("tls_key is the key of a client certificate: give tls_cert too")
        return self


class EmbeddedSink(_Model):
    """The embedded SQLite store. Raw rows older than ``retention_raw_days`` (``null``: keep
    them) are deleted by ``SqliteStore.maintain()`` once rolled up into the 1-minute,
    1-hour and 1-day rollup tables; the 1-minute rollups are kept ``retention_1m_days``, the
    others for ever. Raw points of rolled-up hours are stored compressed."""

    type: Literal["embedded"] = "embedded"
    path: Path = Path("var/dcim.sqlite")
    retention_raw_days: int | None = Field(default=400, ge=1)
    # 1-minute rollups: the monthly statement's heat integration reads a month at 1-minute
    # windows; older periods are read at coarser ones (``null``: keep them)
    retention_1m_days: int | None = Field(default=62, ge=1)


class InfluxSink(_Model):
    """InfluxDB. ``dcim db init`` (v1 API) creates the database, the raw retention policy
    (named ``retention_policy``, default ``raw``, made the DEFAULT one, kept
    ``retention_raw``), ``rp_1m`` (kept ``retention_1m``), ``rp_1h`` (``retention_1h``) and
    ``rp_1d`` (``retention_1d``, UTC days, for the dashboards' long ranges), and the continuous
    queries that fill them. Durations are InfluxQL ones (``30d``, ``52w``,
    ``INF``). ``precision``: the timestamp precision of writes (times are truncated to it).
    Writes go to ``retention_policy`` when given, else to the database's default policy.
    ``gzip``: compress write bodies (default; ``false`` spends less CPU where the link to the
    database is local or fast). With ``https://``: ``tls_ca``, a CA bundle (PEM) to verify
    the server with instead of the system's; ``tls_cert`` and ``tls_key``, a client
    certificate and its key (PEM) for a server or proxy that asks for one."""

    type: Literal["influxdb"]
    url: str = Field(pattern=r"^https?://")
    database: str = "dcim"
    retention_policy: str | None = None
    retention_raw: str = "30d"
    retention_1m: str = "400d"
    retention_1h: str = "INF"
    retention_1d: str = "INF"
    precision: Literal["ns", "us", "ms", "s"] = "ns"
    username: str | None = None
    password: Secret | None = None
    token: Secret | None = None
    api: Literal["v1", "v2"] = "v1"
    org: str | None = None
    bucket: str | None = None
    timeout_s: float = Field(default=10.0, gt=0)
    gzip: bool = True
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @model_validator(mode="after")
    def _tls(self) -> InfluxSink:
        given = [k for k in ("tls_ca", "tls_cert", "tls_key") if getattr(self, k) is not None]
        if given and not self.url.startswith("https://"):
            raise ValueError(f"{', '.join(given)}: only with an https:// url")
        if self.tls_key is not None and self.tls_cert is None:
            raise ValueError("tls_key: give the client certificate too ('tls_cert: PATH')")
        return self

    @field_validator("url")
    @classmethod
    def _no_credentials(cls, url: str) -> str:
        if has_credentials(url):
            raise ValueError(
                "credentials inside the URL would be shown in clear wherever the URL is "
                "(logs, errors): give 'username: NAME' and 'password: {env: VAR}' (or "
                "'token: {env: VAR}') instead"
            )
        return url

    @model_validator(mode="after")
    def _v2(self) -> InfluxSink:
        if self.api == "v2" and (not self.org or not self.bucket or self.token is None):
            raise ValueError("api: v2 needs 'org', 'bucket' and 'token'")
        return self

    @model_validator(mode="after")
    def _retention(self) -> InfluxSink:
        for key, least in (
            ("retention_raw", 2),
            ("retention_1m", 1),
            ("retention_1h", 1),
            ("retention_1d", 1),
        ):
            text = getattr(self, key)
            try:
                secs = self.duration_s(text)
            except ValueError as exc:
                raise ValueError(f"{key}: {exc}") from None
            if secs is not None and secs < least * 3600:
                why = "the hourly rollups read 2h of raw points" if least == 2 else "InfluxDB's"
                raise ValueError(f"{key}: {text!r} is shorter than the minimum {least}h ({why})")
            setattr(self, key, text.strip().upper() if secs is None else text.strip())
        if self.retention_policy in ("rp_1m", "rp_1h", "rp_1d"):
            raise ValueError(
                f"retention_policy: {self.retention_policy!r} is the name of a rollup policy"
            )
        return self

    @property
    def raw_policy(self) -> str:
        """The retention policy raw points are written to (and rolled up from)."""
        return self.retention_policy or "raw"

    @staticmethod
    def duration_s(text: str) -> int | None:
        """An InfluxQL duration (``30d``, ``1h30m``, ``52w``) in seconds, None for ``INF``.
        Raises ValueError naming the accepted forms."""
        import re

        t = text.strip()
        if t.upper() == "INF":
            return None
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
        parts = re.findall(r"(\d+)([smhdw])", t)
        if not parts or "".join(n + u for n, u in parts) != t:
            raise ValueError(
                f"{text!r} is not an InfluxQL retention duration: use a number with "
                "s, m, h, d or w (e.g. 30d, 52w, 1h30m) or INF (keep forever)"
            )
        return sum(int(n) * units[u] for n, u in parts)


class Storage(_Model):
    spool_dir: Path = Path("var/spool")
    sink: EmbeddedSink | InfluxSink = Field(default_factory=EmbeddedSink, discriminator="type")
    batch_size: int = Field(default=5000, ge=1, le=1_000_000)
    flush_interval_s: float = Field(default=1.0, gt=0, le=3600)
    # Longest back-off between attempts while the sink is down (jittered: half to all of it):
    # how late a recovered database is written to again at most.
    retry_max_s: float = Field(default=60.0, gt=0, le=3600)
    # Disk budget of the spool (MiB, data pages + WAL). When full, "refuse_new" keeps every
    # accepted reading and refuses new ones (counted, logged); "drop_oldest" deletes the
    # oldest unforwarded readings to make room: data loss, only when configured.
    spool_max_mb: float = Field(default=1024, ge=1)
    spool_on_full: Literal["refuse_new", "drop_oldest"] = "refuse_new"
    spool_warn_pct: float = Field(default=80, gt=0, le=100)  # WARNING log once above this
    # Seconds `dcim run` spends stopping (SIGTERM, SIGINT): polls end, then the spool is
    # forwarded until this bound; what is not forwarded stays spooled for the next start.
    # 8 s: inside the 10 s `docker stop` waits before SIGKILL (systemd waits 90 s).
    stop_timeout_s: float = Field(default=8.0, gt=0, le=3600)


class RenewableDeclaration(_Model):
    """Renewable electricity claimed for REF and CUE: ``kwh_per_year`` (pro rata over the
    report's period) or ``share`` (0..1 of E_DC). Onsite generation can instead be metered
    by devices with role ``renewable_onsite``."""

    kind: Literal["guarantees_of_origin", "ppa", "onsite"]
    kwh_per_year: float | None = Field(default=None, ge=0)
    share: float | None = Field(default=None, ge=0, le=1)

    @model_validator(mode="after")
    def _one_amount(self) -> RenewableDeclaration:
        if (self.kwh_per_year is None) == (self.share is None):
            raise ValueError(
                f"a {self.kind!r} declaration needs exactly one of 'kwh_per_year' "
                "(energy per year) or 'share' (0..1 of E_DC)"
            )
        return self


class KpiSettings(_Model):
    """How the KPI report computes and qualifies its figures (``kpi:`` section)."""

    # French electricity mix, average: 0.052 kgCO2eq/kWh (ADEME Base Empreinte 2022).
    grid_carbon_kg_per_kwh: float = Field(default=0.052, ge=0, le=2)
    renewable: list[RenewableDeclaration] = []
    # A figure whose data completeness is below this is reported as n/a, not as a number.
    min_completeness: float = Field(default=0.9, ge=0, le=1)
    # How far (in poll intervals) a meter index at a period boundary may be extrapolated.
    max_gap_extrapolation_intervals: float = Field(default=3.0, ge=0, le=1000)
    # Heat removed vs IT energy: |heat / E_IT - 1| above this flags a possibly broken meter.
    balance_tolerance: float = Field(default=0.15, gt=0, le=1)
    # A heat meter's register vs the heat integrated from its flow and temperatures: a larger
    # relative difference is flagged (a class 2 meter alone may be off by 2-3 %).
    heat_reconcile_tolerance: float = Field(default=0.03, gt=0, le=1)
    # Energy meters at the UPS input(s), for the distribution partial PUE.
    ups_input_meters: list[str] = []

    @model_validator(mode="after")
    def _shares(self) -> KpiSettings:
        total = sum(r.share or 0.0 for r in self.renewable)
        if total > 1.0 + 1e-9:
            raise ValueError(
                f"the renewable 'share's add up to {total:g}, more than all of E_DC (at most 1)"
            )
        return self


class MetricsEndpoint(_Model):
    """The collector's own metrics, Prometheus text format, at ``http://HOST:PORT/metrics``.
    Off unless the site file has a ``metrics:`` section (``metrics: {}`` serves on
    127.0.0.1:9108). Keep it on loopback (or behind a proxy): it has no authentication."""

    host: str = "127.0.0.1"
    port: int = Field(default=9108, ge=0, le=65535)  # 0: any free port


class SiteConfig(_Model):
    site: Site
    defaults: Defaults = Defaults()
    rooms: list[Room] = []
    racks: list[Rack] = []
    devices: list[Device] = []
    mqtt: MqttBroker | None = None
    storage: Storage = Storage()
    profile_dirs: list[Path] = []
    kpi: KpiSettings = KpiSettings()
    metrics: MetricsEndpoint | None = None  # the collector's /metrics endpoint; None: off
    alerts: AlertsSettings | None = None  # alert rules and receivers (dcim.alerts)
    reports: ReportsSettings = ReportsSettings()  # statements, EU report (dcim.reports)

    # -- helpers -------------------------------------------------------------------------
    def device(self, name: str) -> Device:
        for d in self.devices:
            if d.name == name:
                return d
        raise KeyError(name)

    def devices_with_role(self, role: str) -> list[Device]:
        return [d for d in self.devices if d.role == role and d.enabled]

    def interval_of(self, dev: Device) -> float:
        return dev.interval_s if dev.interval_s is not None else self.defaults.interval_s

    def timeout_of(self, dev: Device) -> float:
        return dev.timeout_s if dev.timeout_s is not None else self.defaults.timeout_s

    def retries_of(self, dev: Device) -> int:
        return dev.retries if dev.retries is not None else self.defaults.retries

    def jitter_of(self, dev: Device) -> float:
        """Seconds a poll may start after its slot: the device's ``jitter_s`` (validated to at
        most half its interval), else ``defaults.jitter_s`` capped to half the interval."""
        if dev.jitter_s is not None:
            return dev.jitter_s
        return min(self.defaults.jitter_s, 0.5 * self.interval_of(dev))

    def deadline_of(self, dev: Device) -> float:
        """Seconds a poll may take before it is cancelled: the device's ``deadline_s``
        (validated: plus the jitter, less than the interval), else
        ``min(timeout * (retries + 1) + margin, 0.9 * interval - jitter)``, at least a tenth of
        the interval: a cancelled poll has ended before the next one is due."""
        if dev.deadline_s is not None:
            return dev.deadline_s
        interval = self.interval_of(dev)
        budget = self.timeout_of(dev) * (self.retries_of(dev) + 1) + DEADLINE_MARGIN_S
        return max(0.1 * interval, min(budget, 0.9 * interval - self.jitter_of(dev)))

    def coalesce_of(self, dev: Device) -> float:
        """Seconds a poll of ``dev`` may start late to share a wake-up with others:
        ``defaults.coalesce_s``, at most a tenth of the device's interval and less than what
        its deadline and jitter leave of it (``interval - jitter - deadline``, halved), so a
        poll started that late and cancelled at its deadline still ends before its next slot."""
        c = self.defaults.coalesce_s
        if not c:
            return 0.0
        interval = self.interval_of(dev)
        room = interval - self.jitter_of(dev) - self.deadline_of(dev)
        return max(0.0, min(c, 0.1 * interval, 0.5 * room))

    def tags_of(self, dev: Device) -> dict[str, str]:
        """The tags every reading of this device carries."""
        tags = {"site": self.site.name, "device": dev.name}
        room = dev.room
        if dev.rack:
            tags["rack"] = dev.rack
            room = room or next((r.room for r in self.racks if r.name == dev.rack), None)
        if room:
            tags["room"] = room
        if dev.role:
            tags["role"] = dev.role
        tags.update(dev.tags)
        return tags

    def profiles(self) -> dict[str, Profile]:
        return load_profiles(tuple(self.profile_dirs))


# -- YAML with line numbers -----------------------------------------------------------------


def _compose_lines(text: str) -> dict[tuple[str | int, ...], int]:
    """Map each path in the YAML document (keys and list indexes) to its 1-based line."""
    import yaml

    lines: dict[tuple[str | int, ...], int] = {}
    root = yaml.compose(text, Loader=yaml_loader())

    def walk(node: yaml.Node, path: tuple[str | int, ...]) -> None:
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = k.value
                lines[(*path, key)] = k.start_mark.line + 1
                walk(v, (*path, key))
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                walk(v, (*path, i))

    if root is not None:
        walk(root, ())
    return lines


def _line_for(lines: dict[tuple[str | int, ...], int], loc: tuple[str | int, ...]) -> int | None:
    loc = tuple(loc)
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return lines.get(())


def _path_str(loc: tuple[str | int, ...], data: Any) -> str:
    out = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            name = (
                node[part].get("name")
                if isinstance(node, list) and part < len(node) and isinstance(node[part], dict)
                else None
            )
            if name:
                out += f"({name})"
        else:
            out += f".{part}" if out else str(part)
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            node = None
    return out


def _cross_checks(
    cfg: SiteConfig, *, timing: bool = True
) -> list[tuple[tuple[str | int, ...], str]]:
    """Checks that need the whole document. Returns (location, message) pairs. ``timing``:
    also check the devices' jitter and deadline (needs valid ``defaults``)."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    try:
        profiles = cfg.profiles()
    except ProfileError as exc:
        return [(("profile_dirs",), str(exc))]
    rooms = {r.name for r in cfg.rooms}
    racks = {r.name for r in cfg.racks}
    for i, rack in enumerate(cfg.racks):
        if rack.room not in rooms:
            problems.append(
                (
                    ("racks", i, "room"),
                    f"room {rack.room!r} is not defined under 'rooms:' (known: {sorted(rooms)})",
                )
            )
    if timing:
        problems += _timing_checks(cfg)
    names = {dev.name for dev in cfg.devices}
    endpoints: dict[tuple[str, str], str] = {}
    for i, dev in enumerate(cfg.devices):
        problems += _references(i, dev.rack, dev.room, dev.profile, racks, rooms, profiles)
        prof = profiles.get(dev.profile)
        if prof is not None:
            if prof.protocol != dev.protocol:
                problems.append(
                    (
                        ("devices", i, "profile"),
                        f"profile {dev.profile!r} is for {prof.protocol}, "
                        f"but the device's protocol is {dev.protocol}",
                    )
                )
            if dev.role and ROLE_FIELD[dev.role] not in prof.field_names:
                problems.append(
                    (
                        ("devices", i, "role"),
                        f"role {dev.role!r} is measured by field {ROLE_FIELD[dev.role]!r}, "
                        f"which profile {dev.profile!r} does not provide",
                    )
                )
            known = {f.name for _, f in prof.field_specs()}
            known |= {f"{m}.{f.name}" for m, f in prof.field_specs()}
            for name in dev.corrections:
                if name not in known:
                    problems.append(
                        (
                            ("devices", i, "corrections", name),
                            f"profile {dev.profile!r} has no field {name!r} (a field, or "
                            f"measurement.field: {', '.join(sorted(known))})",
                        )
                    )
            for j, rep in enumerate(dev.replacements):
                fld = rep.field or (ROLE_FIELD[dev.role] if dev.role else None)
                counters = sorted(f.name for f in prof.fields if f.kind == "counter")
                if fld not in counters:
                    problems.append(
                        (
                            ("devices", i, "replacements", j, "field"),
                            f"give the counter replaced ('field:'), one of {counters}"
                            if fld is None
                            else f"{fld!r} is not a counter of profile {dev.profile!r} "
                            f"(counters: {counters})",
                        )
                    )
        try:
            plugin = protocols.plugin(dev.protocol)
        except (protocols.UnknownProtocol, protocols.PluginError):
            continue  # reported by the schema
        if plugin.check is not None:
            try:
                found = list(plugin.check(cfg, dev))
            except Exception as exc:  # noqa: BLE001 - a plugin's bug is reported, not raised
                found = [(("protocol",), f"the {dev.protocol} plugin's check failed: {exc!r}")]
            problems += [(("devices", i, *loc), msg) for loc, msg in found]
        endpoint = plugin.endpoint_of(dev)
        if endpoint is not None:
            key = (dev.protocol, endpoint)
            if key in endpoints and dev.enabled:
                problems.append(
                    (
                        ("devices", i, "port"),
                        f"{endpoint} is already polled as device {endpoints[key]!r}",
                    )
                )
            endpoints.setdefault(key, dev.name)
    for i, dev in enumerate(cfg.devices):
        if dev.upstream is not None:
            if dev.upstream not in names:
                problems.append(
                    (
                        ("devices", i, "upstream"),
                        f"upstream meter {dev.upstream!r} is not a device of this site",
                    )
                )
            elif dev.upstream == dev.name:
                problems.append(
                    (("devices", i, "upstream"), "a meter cannot be upstream of itself")
                )
    for i, meter in enumerate(cfg.kpi.ups_input_meters):
        at: tuple[str | int, ...] = ("kpi", "ups_input_meters", i)
        if meter not in names:
            problems.append((at, f"UPS input meter {meter!r} is not a device of this site"))
            continue
        prof = profiles.get(cfg.device(meter).profile)
        if prof is not None and "energy_wh_total" not in prof.field_names:
            problems.append(
                (
                    at,
                    f"UPS input meter {meter!r} needs an energy counter (energy_wh_total), "
                    f"which profile {prof.name!r} does not provide",
                )
            )
    metered_onsite = [d.name for d in cfg.devices_with_role("renewable_onsite")]
    for i, decl in enumerate(cfg.kpi.renewable):
        if decl.kind == "onsite" and metered_onsite:
            problems.append(
                (
                    ("kpi", "renewable", i, "kind"),
                    f"onsite generation is already metered by {', '.join(metered_onsite)} "
                    "(role renewable_onsite): declaring it too would count it twice",
                )
            )
    problems += _report_checks(cfg, names, profiles)
    return problems


def _report_checks(
    cfg: SiteConfig, names: set[str], profiles: dict[str, Profile]
) -> list[tuple[tuple[str | int, ...], str]]:
    """``reports.heat.points``: each names a heat meter of this site."""
    out: list[tuple[tuple[str | int, ...], str]] = []
    heat = cfg.reports.heat
    for i, point in enumerate(heat.points if heat is not None else []):
        at: tuple[str | int, ...] = ("reports", "heat", "points", i, "device")
        if point.device not in names:
            out.append((at, f"delivery point meter {point.device!r} is not a device of this site"))
            continue
        prof = profiles.get(cfg.device(point.device).profile)
        need = {"heat_energy_wh_total", "volume_m3_total", "flow_m3_per_h", "supply_temp_c"}
        if prof is not None and not need | {"return_temp_c"} <= prof.field_names:
            out.append(
                (
                    at,
                    f"delivery point meter {point.device!r}: profile {prof.name!r} is not a heat "
                    "meter (needs heat_energy_wh_total, volume_m3_total, flow_m3_per_h, "
                    "supply_temp_c, return_temp_c)",
                )
            )
    return out


def _references(
    i: int,
    rack: Any,
    room: Any,
    profile: Any,
    racks: set[str],
    rooms: set[str],
    profiles: dict[str, Profile],
) -> list[tuple[tuple[str | int, ...], str]]:
    """Device ``i``'s rack, room and profile that name nothing defined (the values as
    written: also run on a device that failed the schema)."""
    out: list[tuple[tuple[str | int, ...], str]] = []
    if isinstance(rack, str) and rack not in racks:
        out.append((("devices", i, "rack"), f"rack {rack!r} is not defined under 'racks:'"))
    if isinstance(room, str) and room not in rooms:
        out.append((("devices", i, "room"), f"room {room!r} is not defined under 'rooms:'"))
    if isinstance(profile, str) and profile not in profiles:
        out.append(
            (
                ("devices", i, "profile"),
                f"unknown profile {profile!r}; available: {', '.join(sorted(profiles))}",
            )
        )
    return out


def _timing_checks(cfg: SiteConfig) -> list[tuple[tuple[str | int, ...], str]]:
    """A device's own jitter and deadline against its interval (its own or the default's).

    A jitter of at most half the interval keeps every jittered start closer to its own slot
    than to a neighbour's; a poll started a whole jitter late must have met its deadline
    before the next slot, or that run is skipped (``missed``)."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    for i, dev in enumerate(cfg.devices):
        interval = cfg.interval_of(dev)
        of = f"{interval:g} s" + ("" if dev.interval_s is not None else " from defaults.interval_s")
        if dev.jitter_s is not None and dev.jitter_s > interval / 2:
            problems.append(
                (
                    ("devices", i, "jitter_s"),
                    f"jitter_s {dev.jitter_s:g} is more than half the poll interval ({of}): "
                    f"write jitter_s: {interval / 2:g} or less, or a longer interval_s",
                )
            )
        if dev.deadline_s is not None:
            jitter = min(cfg.jitter_of(dev), interval / 2)
            if dev.deadline_s + jitter >= interval:
                src = "" if dev.jitter_s is not None else " from defaults.jitter_s"
                plus = f" plus the jitter ({jitter:g} s{src})" if jitter else ""
                problems.append(
                    (
                        ("devices", i, "deadline_s"),
                        f"deadline_s {dev.deadline_s:g}{plus} is not less than the poll "
                        f"interval ({of}): the poll could still run when the next one is due; "
                        f"write deadline_s: {round(0.9 * interval - jitter, 3):g} or less, "
                        "or a longer interval_s",
                    )
                )
    return problems


def _duplicate_names(raw_devices: Any) -> list[tuple[tuple[str | int, ...], str]]:
    """Device names used twice, checked on the raw document so that a device that fails the
    schema for another reason still counts."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    first: dict[str, int] = {}
    for i, raw in enumerate(raw_devices if isinstance(raw_devices, list) else []):
        name = raw.get("name") if isinstance(raw, dict) else None
        if not isinstance(name, str):
            continue
        if name in first:
            problems.append(
                (
                    ("devices", i, "name"),
                    f"device name {name!r} is already used by devices[{first[name]}]; "
                    "names must be unique",
                )
            )
        first.setdefault(name, i)
    return problems


def parse_config(
    text: str, *, filename: str = "<config>", base_dir: Path | None = None
) -> SiteConfig:
    """Validate a YAML document; raise ConfigError with every problem found."""
    import yaml

    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(
            [ConfigIssue(filename, line, "", f"not valid YAML: {getattr(exc, 'problem', exc)}")]
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError(
            [
                ConfigIssue(
                    filename,
                    1,
                    "",
                    "the file must be a mapping with at least 'site:' and 'devices:'",
                )
            ]
        )
    if base_dir is not None:
        data = _resolve_paths(data, base_dir)
    try:
        cfg = SiteConfig.model_validate(data)
    except ValidationError as exc:
        lines = _compose_lines(text)  # the lines of the paths, only to report errors
        issues = []
        for err in exc.errors():
            loc = tuple(
                p
                for p in err["loc"]
                if not (
                    isinstance(p, str)
                    and p in ("embedded", "influxdb", "function-after[_exactly_one(), Secret]")
                )
            )
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key (check its spelling and indentation)"
            elif err["type"] == "missing":
                msg = "required key is missing"
            elif err["type"] == "string_pattern_mismatch" and loc[-1] == "url":
                msg = (
                    "must start with http:// or https:// (e.g. http://127.0.0.1:8086), "
                    f"got {err['input']!r}"
                )
            elif loc and loc[-1] == "url" and isinstance(err.get("input"), str):
                msg = f"{msg}, got {redact_url(err['input'])!r}"
            elif isinstance(err.get("input"), str | int | float | bool):
                msg = f"{msg}, got {err['input']!r}"
            issues.append(ConfigIssue(filename, _line_for(lines, loc), _path_str(loc, data), msg))
        # Cross-field checks can still run on the parts that validated.
        raise ConfigError(issues + _partial_cross_checks(data, filename, lines)) from exc
    problems = _duplicate_names(data.get("devices")) + _cross_checks(cfg)
    if problems:
        lines = _compose_lines(text)
        raise ConfigError(
            ConfigIssue(filename, _line_for(lines, loc), _path_str(loc, data), msg)
            for loc, msg in problems
        )
    return cfg


def _partial_cross_checks(
    data: dict[str, Any], filename: str, lines: dict[tuple[str | int, ...], int]
) -> list[ConfigIssue]:
    """When the schema fails somewhere, still report cross-field problems among the devices
    that are individually valid, so one run shows every error."""
    try:
        devices = []
        index: list[int] = []
        for i, raw in enumerate(data.get("devices") or []):
            try:
                devices.append(Device.model_validate(raw))
                index.append(i)
            except ValidationError:
                continue
        try:  # the timing checks need the document's defaults: skipped when those are wrong
            defaults, timing = Defaults.model_validate(data.get("defaults") or {}), True
        except ValidationError:
            defaults, timing = Defaults(), False
        skeleton = SiteConfig.model_construct(
            site=Site(name="x"),
            defaults=defaults,
            rooms=[
                Room.model_validate(r)
                for r in data.get("rooms") or []
                if isinstance(r, dict) and "name" in r
            ],
            racks=[
                Rack.model_validate(r)
                for r in data.get("racks") or []
                if isinstance(r, dict) and {"name", "room"} <= r.keys()
            ],
            devices=devices,
            mqtt=MqttBroker() if data.get("mqtt") is not None else None,
            storage=Storage(),
            profile_dirs=[Path(p) for p in data.get("profile_dirs") or []],
        )
        out = [
            ConfigIssue(filename, _line_for(lines, loc), _path_str(loc, data), msg)
            for loc, msg in _duplicate_names(data.get("devices"))
        ]
        raw_devices = [r for r in data.get("devices") or [] if isinstance(r, dict)]
        raw_names = {r.get("name") for r in raw_devices}
        found = []
        for loc, msg in _cross_checks(skeleton, timing=timing):
            if loc and loc[0] == "devices" and isinstance(loc[1], int):
                loc = ("devices", index[loc[1]], *loc[2:])
                # a meter named upstream that failed the schema is still a device of the site
                if loc[-1] == "upstream" and data["devices"][loc[1]]["upstream"] in raw_names:
                    continue
            found.append((loc, msg))
        # The devices that failed the schema: what their references name, as written.
        with contextlib.suppress(ProfileError):  # a bad profile_dirs is reported above
            profiles = skeleton.profiles()
            racks = {r.name for r in skeleton.racks}
            rooms = {r.name for r in skeleton.rooms}
            for i, raw in enumerate(data.get("devices") or []):
                if i in index or not isinstance(raw, dict):
                    continue
                refs = (raw.get("rack"), raw.get("room"), raw.get("profile"))
                found += _references(i, *refs, racks, rooms, profiles)
        out += [
            ConfigIssue(filename, _line_for(lines, loc), _path_str(loc, data), msg)
            for loc, msg in found
        ]
        return out
    except Exception:  # noqa: BLE001 - best effort only; the schema errors are already reported
        return []


def _resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Relative paths in the file are relative to the file, not to the working directory."""
    storage = data.get("storage")
    if isinstance(storage, dict):
        for key in ("spool_dir",):
            if isinstance(storage.get(key), str) and not Path(storage[key]).is_absolute():
                storage[key] = str(base / storage[key])
        sink = storage.get("sink")
        for key in ("path", "tls_ca", "tls_cert", "tls_key"):
            if (
                isinstance(sink, dict)
                and isinstance(sink.get(key), str)
                and not Path(sink[key]).is_absolute()
            ):
                sink[key] = str(base / sink[key])
    mqtt = data.get("mqtt")
    for key in ("tls_ca", "tls_cert", "tls_key"):
        value = mqtt.get(key) if isinstance(mqtt, dict) else None
        if isinstance(mqtt, dict) and isinstance(value, str) and not Path(value).is_absolute():
            mqtt[key] = str(base / value)
    alerts = data.get("alerts")
    if isinstance(alerts, dict) and isinstance(alerts.get("rule_files"), list):
        alerts["rule_files"] = [
            str(base / p) if isinstance(p, str) else p for p in alerts["rule_files"]
        ]
    if isinstance(data.get("profile_dirs"), list):
        data["profile_dirs"] = [
            str(base / p) if isinstance(p, str) and not Path(p).is_absolute() else p
            for p in data["profile_dirs"]
        ]
    return data


DEMO_COMMUNITY = "public"  # the demo's SNMP community: not a secret


def inline_secrets(cfg: BaseModel) -> list[str]:
    """Warnings for the credentials written in the site file (``{value: ...}``) rather than
    given by reference (the demo's ``public`` community excepted), each with its path."""
    out: list[str] = []

    def walk(node: object, path: str, key: str) -> None:
        if isinstance(node, Secret):
            if node.value is not None and not (key == "community" and node.value == DEMO_COMMUNITY):
                out.append(
                    f"{path}: the secret is written in the site file ('value:'); whoever reads "
                    "the file (a copy in git, a backup, a support ticket) has it: give it as "
                    "'{env: VAR}' or '{file: PATH}' (a file readable by the collector only)"
                )
        elif isinstance(node, BaseModel):
            for name in type(node).model_fields:
                walk(getattr(node, name), f"{path}.{name}" if path else name, name)
            if isinstance(node, Device) and node.options is not None:  # its protocol's section
                walk(node.options, f"{path}.{node.protocol}", node.protocol)
        elif isinstance(node, list | tuple):
            for i, item in enumerate(node):
                walk(item, f"{path}[{i}]", key)
        elif isinstance(node, dict):
            for k, item in node.items():
                walk(item, f"{path}.{k}", str(k))

    walk(cfg, "", "")
    return out


def load_config(path: str | Path) -> SiteConfig:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError([ConfigIssue(str(p), None, "", f"cannot read: {exc.strerror}")]) from exc
    return parse_config(text, filename=str(p), base_dir=p.resolve().parent)
