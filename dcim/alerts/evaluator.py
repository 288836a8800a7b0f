"""The live evaluator: rules applied to readings as they pass, pure logic with an explicit
clock (``now_ns`` arguments), no I/O. :class:`dcim.alerts.engine.AlertEngine` persists what
it returns and hands it to the notifiers.

One *instance* per rule and series (the reading's tags; for ``stale`` rules, the device).
States: ``inactive`` -> ``pending`` (condition true, waiting ``for_s``) -> ``firing`` ->
``resolved`` (sent once, then inactive again). A pending instance whose condition ends
before ``for_s`` goes back to inactive without a word: nobody is woken for it.

Damping: a firing alert resolves only past its ``clear`` level (hysteresis) and not before
``min_hold_s`` after it fired, so a value hovering at the threshold gives one alert, not one a
poll.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from dcim.alerts.expr import Latest, compile_expr
from dcim.alerts.rules import Rule, Select
from dcim.reading import FieldValue, Reading

NS = 1_000_000_000
INACTIVE, PENDING, FIRING, RESOLVED = "inactive", "pending", "firing", "resolved"
DEVICE_LABELS = ("site", "room", "rack", "device", "role")
MAX_ROUTES = 500_000  # series remembered with their rules (about 200 B each)
TOTAL_MAX_AGE_S = 300.0  # total(): a device silent this long drops out of the sum


@dataclass(slots=True)  # one per rule and series (the stale rules: per device): no __dict__
class Instance:
    """One rule on one series. ``active_ns``: when the condition became true (pending
    since); ``fired_ns``: when it fired (Alertmanager's startsAt); ``value``: last value."""

    key: str
    rule: str
    labels: dict[str, str]
    state: str = INACTIVE
    active_ns: int = 0
    fired_ns: int = 0
    resolved_ns: int = 0
    value: float | None = None
    seen_ns: int = 0  # last reading (stale rules: last time the device/field arrived)
    detail: str = ""  # counter rules: what the anomaly was
    # rate and counter rules: earlier samples (t_ns, value); a list, not a deque: an empty
    # deque takes 760 bytes (its first block), and most instances never hold a sample
    samples: list[tuple[int, float]] = field(default_factory=list)


@dataclass(frozen=True)
class Transition:
    instance: Instance
    old: str
    new: str  # pending, firing, resolved, inactive (a pending that ended)
    at_ns: int


def series_key(rule: str, labels: Mapping[str, str]) -> str:
    return rule + "{" + ",".join(f"{k}={labels[k]}" for k in sorted(labels)) + "}"


class _Compiled:
    """A rule prepared for the hot path: selector and value getter as closures."""

    def __init__(self, rule: Rule, device_tags: Mapping[str, Mapping[str, str]], latest: Latest):
        self.rule = rule
        self.kind = rule.kind
        sel = rule.select or Select(measurement=["-"])  # period rules select no readings
        self.globs = [d for d in sel.device if any(c in d for c in "*?[")]
        self.names = {d for d in sel.device if d not in self.globs}
        self.roles = set(sel.role)
        self.tags = dict(sel.tags)
        self.device_tags = device_tags
        self.above = rule.above is not None
        self.level = rule.level if rule.kind in ("threshold", "rate", "period") else 0.0
        self.clear = rule.clear_level if rule.kind in ("threshold", "rate", "period") else 0.0
        self.for_ns = int(rule.for_s * NS)
        self.hold_ns = int(rule.min_hold_s * NS)
        self.get: Callable[[Mapping[str, FieldValue], Mapping[str, str]], float | None]
        self.totals: frozenset[tuple[str, str]] = frozenset()
        # the field names the rule reads of a reading (its field, or its expression's)
        self.fields: frozenset[str]
        if rule.expr is not None:
            expr = compile_expr(rule.expr, latest)
            self.get, self.totals, self.fields = expr.evaluate, expr.totals, expr.fields
        else:
            name = rule.field or ""
            self.fields = frozenset({name} if name else ())

            def get(f: Mapping[str, FieldValue], t: Mapping[str, str]) -> float | None:
                v = f.get(name)
                if v is None or isinstance(v, str):
                    return None
                x = float(v)
                return x if math.isfinite(x) else None

            self.get = get

    def selects(self, tags: Mapping[str, str]) -> bool:
        if self.names or self.globs:
            dev = tags.get("device", "")
            if dev not in self.names and not any(fnmatch.fnmatchcase(dev, g) for g in self.globs):
                return False
        if self.roles:
            role = tags.get("role") or self.device_tags.get(tags.get("device", ""), {}).get("role")
            if role not in self.roles:
                return False
        return all(tags.get(k) == v for k, v in self.tags.items())

    def is_set(self, v: float) -> bool:
        return v > self.level if self.above else v < self.level

    def is_clear(self, v: float) -> bool:
        return v <= self.clear if self.above else v >= self.clear


class Evaluator:
    """Live rules over readings. ``device_tags``: the site file's tags of each device (room,
    rack, role), added to the labels of its alerts."""

    def __init__(
        self,
        rules: Iterable[Rule],
        *,
        device_tags: Mapping[str, Mapping[str, str]] | None = None,
        instances: Iterable[Instance] = (),
        total_max_age_s: float = TOTAL_MAX_AGE_S,
    ):
        self.device_tags = dict(device_tags or {})
        # total() leaves out a device not heard from for this long (tick drops it): a silent
        # device's last value must not hold a sum up (its DeviceUnreachable says why)
        self.total_max_age_ns = int(total_max_age_s * NS)
        self._latest_ns: dict[tuple[str, str], dict[str, int]] = {}
        rules = list(rules)
        self.latest: Latest = {}  # what total() reads: kept for the pairs rules name
        self.rules = [
            _Compiled(r, self.device_tags, self.latest) for r in rules if r.kind != "period"
        ]
        self.period_rules = [
            _Compiled(r, self.device_tags, self.latest) for r in rules if r.kind == "period"
        ]
        self.tracked: dict[str, list[str]] = {}  # measurement -> fields total() sums
        for c in self.rules:
            for m, f in c.totals:
                self.tracked.setdefault(m, []).append(f)
                self.latest.setdefault((m, f), {})
        self.by_measurement: dict[str, list[tuple[int, _Compiled]]] = {}
        for i, c in enumerate(self.rules):
            for m in c.rule.select.measurement if c.rule.select else ():
                self.by_measurement.setdefault(m, []).append((i, c))
        self.by_rule = {c.rule.name: c for c in self.rules + self.period_rules}
        # The measurements observe() looks at; every other reading is passed over.
        self.measurements = frozenset(self.by_measurement) | frozenset(self.tracked)
        # (measurement, tag keys..., tag values...) -> the rules selecting it, with instances
        self._routes: dict[tuple[str, ...], list[tuple[_Compiled, Instance]]] = {}
        self.instances: dict[str, Instance] = {}
        # the instances time alone can change (pending, firing, stale rules): what tick visits
        self._watch: dict[str, Instance] = {}
        # stale and counter instances made since the caller last looked: their first
        # sighting is worth saving at once (a restart must know the device existed)
        self.created: list[Instance] = []
        for inst in instances:
            known = self.by_rule.get(inst.rule)
            dev = inst.labels.get("device")
            if self.device_tags and dev is not None and dev not in self.device_tags:
                continue  # a device since removed from the site file
            if known is not None:  # a rule since removed: its instances are dropped
                self.instances[inst.key] = inst
                if inst.state != INACTIVE or known.kind == "stale":
                    self._watch[inst.key] = inst

    # -- readings ---------------------------------------------------------------------------
    def observe(self, readings: Iterable[Reading]) -> list[Transition]:
        out: list[Transition] = []
        by_m = self.by_measurement
        routes = self._routes
        tracked = self.tracked
        for r in readings:
            if tracked and r.measurement in tracked:
                self._track(r)
            if r.measurement not in by_m:
                continue
            tags = r.tags
            key = (r.measurement, *tags.keys(), *tags.values())
            route = routes.get(key)
            if route is None:
                if len(routes) >= MAX_ROUTES:
                    routes.clear()  # bounded, whatever tags arrive
                route = routes[key] = self._route(r)
            for c, inst in route:
                kind = c.kind
                if kind == "stale":
                    self._seen(c, inst, r, out)
                    continue
                v = c.get(r.fields, tags)
                if v is None:
                    continue
                if kind == "threshold":
                    self._level(c, inst, v, r.time_ns, out)
                elif kind == "rate":
                    rate = self._rate(c, inst, v, r.time_ns)
                    if rate is not None:
                        self._level(c, inst, rate, r.time_ns, out)
                else:
                    self._counter(c, inst, v, r.time_ns, out)
        return out

    def _track(self, r: Reading) -> None:
        dev = r.tags.get("device", "")
        for f in self.tracked[r.measurement]:
            v = r.fields.get(f)
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
                self.latest[(r.measurement, f)][dev] = float(v)
                self._latest_ns.setdefault((r.measurement, f), {})[dev] = r.time_ns

    def _drop_silent(self, now_ns: int) -> None:
        """Leave out of total() the devices not heard from for ``total_max_age_s``."""
        oldest = now_ns - self.total_max_age_ns
        for pair, seen in self._latest_ns.items():
            for dev in [d for d, t in seen.items() if t < oldest]:
                del seen[dev]
                self.latest[pair].pop(dev, None)

    def _route(self, r: Reading) -> list[tuple[_Compiled, Instance]]:
        """The rules that select a series and its instance for each: worked out once per
        series (measurement and tags), so a reading costs a dict lookup, not the selectors."""
        return [
            (c, self._instance(c, r.tags))
            for _, c in self.by_measurement[r.measurement]
            if c.selects(r.tags)
        ]

    def _labels(self, c: _Compiled, tags: Mapping[str, str]) -> dict[str, str]:
        dev = tags.get("device", "")
        labels: dict[str, str] = dict(self.device_tags.get(dev, {}))
        if c.kind == "stale":  # one instance per device, whatever series it sends
            labels.update({k: tags[k] for k in DEVICE_LABELS if k in tags})
        else:
            labels.update(tags)
        labels.update(c.rule.labels)
        labels["alertname"] = c.rule.name
        labels["severity"] = c.rule.severity
        return labels

    def _instance(self, c: _Compiled, tags: Mapping[str, str]) -> Instance:
        labels = self._labels(c, tags)
        key = series_key(c.rule.name, labels)
        inst = self.instances.get(key)
        if inst is None:
            inst = self.instances[key] = Instance(key, c.rule.name, labels)
            if c.kind in ("stale", "counter"):
                self.created.append(inst)
            if c.kind == "stale":
                self._watch[key] = inst
        return inst

    def _level(self, c: _Compiled, inst: Instance, v: float, t: int, out: list[Transition]) -> None:
        inst.value, inst.seen_ns = v, t
        st = inst.state
        if st == INACTIVE:
            if c.is_set(v):
                inst.active_ns = t
                self._move(inst, PENDING, t, out)
                if t - inst.active_ns >= c.for_ns:
                    self._fire(inst, t, out)
        elif st == PENDING:
            if not c.is_set(v):
                self._move(inst, INACTIVE, t, out)
            elif t - inst.active_ns >= c.for_ns:
                self._fire(inst, t, out)
        elif st == FIRING and c.is_clear(v) and t - inst.fired_ns >= c.hold_ns:
            self._resolve(inst, t, out)

    def _rate(self, c: _Compiled, inst: Instance, v: float, t: int) -> float | None:
        s = inst.samples
        s.append((t, v))
        window = int(c.rule.per_s * NS)
        while len(s) > 2 and t - s[1][0] >= window:
            del s[0]  # a window holds a few samples: cheap
        t0, v0 = s[0]
        if t - t0 < window // 2 or t <= t0:
            return None  # not enough history yet for a rate over the window
        return (v - v0) / ((t - t0) / NS) * c.rule.per_s

    def _counter(
        self, c: _Compiled, inst: Instance, v: float, t: int, out: list[Transition]
    ) -> None:
        s = inst.samples
        prev = s[-1] if s else None
        s.clear()
        s.append((t, v))
        inst.value, inst.seen_ns = v, t
        if prev is None or t <= prev[0]:
            return
        pt, pv = prev
        why = ""
        if v < pv:
            why = f"went backwards from {pv:g} to {v:g}"
        elif c.rule.max_per_s is not None:
            per_s = (v - pv) / ((t - pt) / NS)
            if per_s > c.rule.max_per_s:
                why = (
                    f"stepped {v - pv:g} in {(t - pt) / NS:g} s ({per_s:g}/s, physically at "
                    f"most {c.rule.max_per_s:g}/s)"
                )
        if why:
            inst.detail = why
            inst.active_ns = t  # the last anomaly: the alert resolves hold_s after it
            if inst.state != FIRING:
                self._fire(inst, t, out)

    def _seen(self, c: _Compiled, inst: Instance, r: Reading, out: list[Transition]) -> None:
        name = c.rule.field
        if name is not None and name not in r.fields:
            return
        if c.rule.unchanged:
            v = c.get(r.fields, r.tags)
            if v is None:
                return
            if inst.samples and inst.samples[-1][1] == v:
                return  # the same value again: not a sign of life for a frozen sensor
            inst.samples.clear()
            inst.samples.append((r.time_ns, v))
        inst.seen_ns = max(inst.seen_ns, r.time_ns)
        if inst.state == FIRING and r.time_ns - inst.fired_ns >= c.hold_ns:
            inst.value = 0.0
            self._resolve(inst, r.time_ns, out)

    # -- period rules ---------------------------------------------------------------------
    def period(
        self, figures: Mapping[tuple[str, int], float | None], site: str, period: str, at_ns: int
    ) -> list[Transition]:
        """Period rules on the figures of one closed period (``(figure, category)`` ->
        value; None when its data was too incomplete to state it: a gap is not a breach, the
        alert stays as it was). One alert per rule; ``detail`` names the period."""
        out: list[Transition] = []
        for c in self.period_rules:
            v = figures.get((c.rule.figure or "", c.rule.category))
            if v is None:
                continue
            labels = {
                "site": site,
                **c.rule.labels,
                "alertname": c.rule.name,
                "severity": c.rule.severity,
            }
            key = series_key(c.rule.name, labels)
            inst = self.instances.get(key)
            if inst is None:
                inst = self.instances[key] = Instance(key, c.rule.name, labels)
            inst.value, inst.seen_ns, inst.detail = v, at_ns, period
            if inst.state != FIRING and c.is_set(v):
                inst.active_ns = at_ns
                self._fire(inst, at_ns, out)
            elif inst.state == FIRING and c.is_clear(v):
                self._resolve(inst, at_ns, out)
        return out

    # -- time -----------------------------------------------------------------------------
    def tick(self, now_ns: int) -> list[Transition]:
        """What time alone changes: stale data, a pending alert past ``for_s`` (on its last
        value), a firing one past its hold, a counter anomaly's hold ended; and total()
        leaves out the devices silent for ``total_max_age_s``."""
        out: list[Transition] = []
        if self._latest_ns:
            self._drop_silent(now_ns)
        for inst in list(self._watch.values()):
            c = self.by_rule[inst.rule]
            kind = c.kind
            if (inst.state == INACTIVE and kind != "stale") or kind == "period":
                del self._watch[inst.key]
                continue
            if kind == "stale":
                after = int((c.rule.after_s or 0) * NS)
                if inst.state != FIRING and inst.seen_ns and now_ns - inst.seen_ns >= after:
                    inst.value = (now_ns - inst.seen_ns) / NS
                    inst.active_ns = inst.seen_ns
                    self._fire(inst, now_ns, out)
                elif inst.state == FIRING:
                    inst.value = (now_ns - inst.seen_ns) / NS
            elif kind == "counter":
                if inst.state == FIRING and now_ns - inst.active_ns >= int(c.rule.hold_s * NS):
                    self._resolve(inst, now_ns, out)
            elif inst.value is not None:
                v = inst.value
                if inst.state == PENDING and c.is_set(v) and now_ns - inst.active_ns >= c.for_ns:
                    self._fire(inst, now_ns, out)
                elif inst.state == FIRING and c.is_clear(v) and now_ns - inst.fired_ns >= c.hold_ns:
                    self._resolve(inst, now_ns, out)
        return out

    # -- transitions ----------------------------------------------------------------------
    def _move(self, inst: Instance, new: str, t: int, out: list[Transition]) -> None:
        old, inst.state = inst.state, new
        if new in (PENDING, FIRING):
            self._watch[inst.key] = inst
        out.append(Transition(inst, old, new, t))

    def _fire(self, inst: Instance, t: int, out: list[Transition]) -> None:
        inst.fired_ns = t
        self._move(inst, FIRING, t, out)

    def _resolve(self, inst: Instance, t: int, out: list[Transition]) -> None:
        inst.resolved_ns = t
        self._move(inst, RESOLVED, t, out)
        inst.state = INACTIVE  # resolved is an event: the instance can pend again at once

    def firing(self) -> list[Instance]:
        return [i for i in self.instances.values() if i.state == FIRING]
