"""Values that cannot be true never pass as data: the one check every protocol goes through.

:class:`Screen` sits at the head of the pipeline (:class:`dcim.pipeline.Pipeline`), so the
readings of every polled device (through the scheduler) and of every pushed one (MQTT) are
screened against their device's profile before anything else sees them. For each field of a
device reading, in this order:

1. ``no_value`` (the profile field's vendor sentinels, raw codes such as -1, 65535,
   4294967295, -32768): a value that decodes from one of them is "no reading";
2. the device's ``corrections`` in the site file (``scale``, ``offset``: an agent serving
   tenths of a volt where its MIB says volts) are applied to what the profile decoded; a
   correction keyed ``field`` applies to every field of that name (input and output
   tables), ``measurement.field`` to that one only, and wins over the other;
3. ``absent: true`` in those corrections (a line a three-phase profile has and the device
   has not): whatever it answers is not a reading;
4. the physical range: the profile field's ``range: [min, max]``, else the default of its
   name (:data:`NAME_RANGES`) or of its unit suffix (:data:`SUFFIX_RANGES`, the glossary's
   table in docs/architecture.md). A value outside is refused.

A refused value is left out of its reading (a reading left with no field is dropped), never
stored as a figure. Each refusal is counted per device, field and reason (:meth:`totals`, the
``dcim_values_refused_total`` metric), logged at most once a minute per device, field and
reason, and the device's ``dcim_poll`` row that follows them gets ``refused`` (how many of
its values this cycle) and ``refused_reason`` (the last one, as text; "" when none): a
cycle's readings come before its row, and a batch may hold several cycles (the spool's
group commit, :mod:`dcim.spool_commit`), each row told its own cycle's.

Readings of a device the site file does not know, or of a measurement its profile does not
produce, pass unscreened (the pipeline's own checks still apply).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dcim.reading import FieldValue, Reading

if TYPE_CHECKING:
    from dcim.config import SiteConfig
    from dcim.profiles import FieldSpec, Profile

log = logging.getLogger(__name__)

LOG_EVERY_S = 60.0
POLL = "dcim_poll"

# Physical range by unit suffix, the longest matching suffix first (the glossary's table).
SUFFIX_RANGES: tuple[tuple[str, float, float], ...] = (
    ("_wh_total", 0.0, 1e15),
    ("_m3_total", 0.0, 1e12),
    ("_m3_per_h", 0.0, 10_000.0),
    ("_dbm", -40.0, 10.0),
    ("_va", 0.0, 1e7),
    ("_w", 0.0, 1e7),
    ("_v", 0.0, 1000.0),
    ("_a", 0.0, 5000.0),
    ("_hz", 40.0, 70.0),
    ("_c", -50.0, 150.0),
    ("_pct", 0.0, 100.0),
    ("_min", 0.0, 20_000.0),
    ("_s", 0.0, 1e7),
    ("_rpm", 0.0, 100_000.0),
    ("_ppm", 0.0, 50_000.0),
)
# Unitless fields with a range of their own (the other unitless ones, codes, have none).
NAME_RANGES: dict[str, tuple[float, float]] = {
    "power_factor": (-1.0, 1.0),
    "cop": (0.0, 20.0),
}

# Reasons (the metric's ``reason`` label).
SENTINEL = "no_value"
ABSENT = "absent"
BELOW = "below_range"
ABOVE = "above_range"
NOT_A_NUMBER = "not_a_number"


def default_range(name: str) -> tuple[float, float] | None:
    """The physical range of a canonical field by its name or unit suffix (None: a code)."""
    if name in NAME_RANGES:
        return NAME_RANGES[name]
    for suffix, lo, hi in SUFFIX_RANGES:
        if name.endswith(suffix):
            return lo, hi
    return None


@dataclass(frozen=True, slots=True)
class Check:
    """How one field of one device is screened."""

    sentinels: tuple[float, ...]  # decoded values of the profile's no_value codes
    scale: float = 1.0  # the device's correction, applied after decoding
    offset: float = 0.0
    absent: bool = False
    lo: float = -math.inf
    hi: float = math.inf
    plain: bool = field(init=False)  # no correction, not absent
    near: frozenset[float] = field(init=False)  # those in range rounded to 6 decimals

    def __post_init__(self) -> None:
        # The quick test of Screen: a value of a plain field (no correction, not absent) in
        # range and not within a rounding of a sentinel passes as it is. Sentinels are raw
        # codes times the profile's scale (multiples of 0.001 at the finest), far from the
        # sixth decimal's rounding boundaries: a value close to one always rounds like it.
        # Only the sentinels within the range (give or take that rounding) can be near a
        # value in range: the others (-1 for a power, a voltage) need no look-up per value.
        plain = self.scale == 1.0 and self.offset == 0.0 and not self.absent
        near = (round(s, 6) for s in self.sentinels if self.lo - 1e-6 <= s <= self.hi + 1e-6)
        object.__setattr__(self, "plain", plain)
        object.__setattr__(self, "near", frozenset(near))

    @classmethod
    def of(cls, spec: FieldSpec, correction: Mapping[str, object] | None = None) -> Check:
        rng = spec.range or default_range(spec.name)
        c = dict(correction or {})
        return cls(
            sentinels=tuple(raw * spec.scale + spec.offset for raw in spec.no_value),
            scale=float(c.get("scale", 1.0)),  # type: ignore[arg-type]
            offset=float(c.get("offset", 0.0)),  # type: ignore[arg-type]
            absent=bool(c.get("absent", False)),
            lo=rng[0] if rng else -math.inf,
            hi=rng[1] if rng else math.inf,
        )

    def apply(self, value: FieldValue) -> tuple[FieldValue | None, str, str]:
        """(value to keep, "", "") or (None, reason, why as text)."""
        if isinstance(value, str | bool):
            return value, "", ""
        if not isinstance(value, int | float):
            return value, "", ""  # the pipeline refuses what is not a value at all
        if isinstance(value, float) and not math.isfinite(value):
            return None, NOT_A_NUMBER, f"{value} is not a number"
        for s in self.sentinels:
            if math.isclose(value, s, rel_tol=1e-9, abs_tol=1e-9):
                return None, SENTINEL, f"{value:g} is the profile's no-value code"
        if self.absent:
            return None, ABSENT, f"{value:g} from a line the device does not have"
        if self.scale != 1.0 or self.offset != 0.0:
            # 12 significant digits: 499.8 * 0.1 is 49.98, not 49.980000000000004
            fixed = float(f"{value * self.scale + self.offset:.12g}")
            value = int(fixed) if isinstance(value, int) and fixed.is_integer() else fixed
        if value < self.lo:
            return None, BELOW, f"{value:g} below its range [{self.lo:g}, {self.hi:g}]"
        if value > self.hi:
            return None, ABOVE, f"{value:g} above its range [{self.lo:g}, {self.hi:g}]"
        return value, "", ""


def checks_of(
    profile: Profile, corrections: Mapping[str, Mapping[str, object]] | None = None
) -> dict[str, dict[str, Check]]:
    """measurement -> field -> Check, for every field a profile produces."""
    corrections = corrections or {}
    out: dict[str, dict[str, Check]] = {}
    for measurement, spec in profile.field_specs():
        fix = corrections.get(f"{measurement}.{spec.name}", corrections.get(spec.name))
        out.setdefault(measurement, {})[spec.name] = Check.of(spec, fix)
    return out


class Screen:
    """Screens readings against their device's profile (see the module docstring).
    Thread-safe: called from the event loop and from MQTT's network thread."""

    def __init__(
        self,
        checks: Mapping[str, Mapping[str, Mapping[str, Check]]],
        *,
        log_every_s: float = LOG_EVERY_S,
    ) -> None:
        self._checks = checks  # device -> measurement -> field -> Check
        self._log_every_s = log_every_s
        self._lock = threading.Lock()
        self._totals: Counter[tuple[str, str, str]] = Counter()
        self._last_log: dict[tuple[str, str, str], tuple[float, int]] = {}

    @classmethod
    def of(cls, cfg: SiteConfig) -> Screen:
        profiles = cfg.profiles()
        checks: dict[str, dict[str, dict[str, Check]]] = {}
        # The devices without corrections share their profile's checks (read only, Check is
        # frozen): the reference site's 362 devices hold 3 profiles' checks (32), not 1,356.
        plain: dict[str, dict[str, dict[str, Check]]] = {}
        for dev in cfg.devices:
            prof = profiles.get(dev.profile)
            if prof is None:
                continue
            if not dev.corrections:
                if prof.name not in plain:
                    plain[prof.name] = checks_of(prof)
                checks[dev.name] = plain[prof.name]
                continue
            fixes = {k: v.model_dump(exclude_none=True) for k, v in dev.corrections.items()}
            checks[dev.name] = checks_of(prof, fixes)
        return cls(checks)

    def totals(self) -> dict[tuple[str, str, str], int]:
        """Values refused since start, by (device, field, reason)."""
        with self._lock:
            return dict(self._totals)

    def __call__(self, readings: list[Reading]) -> list[Reading]:
        """The readings with every implausible value left out, each device's ``dcim_poll``
        row telling how many and why."""
        return self.screen(readings)[0]

    def screen(self, readings: list[Reading]) -> tuple[list[Reading], list[tuple[str, str]]]:
        """(the screened readings, every refusal as (device, what and why))."""
        out: list[Reading] = []
        texts: list[tuple[str, str]] = []
        refused: dict[str, tuple[int, str]] = {}  # device -> (count, last reason text)
        polls: list[tuple[int, int, str]] = []  # (place in out, refused, last reason)
        for r in readings:
            try:
                tags, fields = r.tags, r.fields
                device = tags.get("device") if isinstance(tags, dict) else None
                if r.measurement == POLL:
                    # the refusals since the device's last row: this cycle's
                    n, text = refused.pop(device, (0, "")) if device in refused else (0, "")
                    polls.append((len(out), n, text))
                    out.append(r)
                    continue
                checks = self._checks.get(device, {}).get(r.measurement)  # type: ignore[arg-type]
                if not checks or not isinstance(fields, dict):
                    out.append(r)
                    continue
            except (AttributeError, TypeError):  # not a Reading: the pipeline says so
                out.append(r)
                continue
            for name, value in fields.items():  # the usual case: every value passes as it is
                check = checks.get(name)
                if check is None or type(value) is str:
                    continue
                if (
                    (type(value) is float or type(value) is int)
                    and check.plain
                    and check.lo <= value <= check.hi
                    and (not check.near or round(value, 6) not in check.near)
                ):
                    continue
                break
            else:
                out.append(r)
                continue
            kept: dict[str, FieldValue] = {}
            changed = False
            for name, value in fields.items():
                check = checks.get(name)
                if check is None:
                    kept[name] = value
                    continue
                new, reason, why = check.apply(value)
                if new is None:
                    assert device is not None
                    n, _ = refused.get(device, (0, ""))
                    text = f"{r.measurement}.{name}: {why}"
                    refused[device] = (n + 1, text)
                    texts.append((device, text))
                    self._count(device, name, reason, text)
                    changed = True
                    continue
                changed = changed or new is not value
                kept[name] = new
            if not changed:
                out.append(r)
            elif kept:
                out.append(Reading(r.measurement, dict(tags), kept, r.time_ns))
        for i, n, text in polls:
            r = out[i]
            device = r.tags.get("device", "") if isinstance(r.tags, dict) else ""
            if device not in self._checks or not isinstance(r.fields, dict):
                continue
            out[i] = Reading(
                r.measurement,
                r.tags,
                {**r.fields, "refused": n, "refused_reason": text},
                r.time_ns,
            )
        return out, texts

    def _count(self, device: str, name: str, reason: str, text: str) -> None:
        key = (device, name, reason)
        now = time.monotonic()
        with self._lock:
            self._totals[key] += 1
            last, suppressed = self._last_log.get(key, (-math.inf, 0))
            if now - last < self._log_every_s:
                self._last_log[key] = (last, suppressed + 1)
                return
            if len(self._last_log) > 10_000:
                self._last_log.clear()
            self._last_log[key] = (now, 0)
        more = f" ({suppressed} more since the last message)" if suppressed else ""
        log.warning("refused a value of device %s: %s%s", device, text, more)
