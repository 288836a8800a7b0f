"""The collector's alerting: live rules on the readings that pass (``observe``), a thread that
handles what time alone changes (stale data, ``for_s``, holds) and saves last values, the
durable state, and the notifier threads. Alert transitions also go through the pipeline as
readings of the ``alerts`` measurement (so the embedded store and InfluxDB keep them).

Never raises into the collector: a failing rule or state write is logged (once a minute).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from dcim.alerts.evaluator import FIRING, RESOLVED, Evaluator, Instance, Transition
from dcim.alerts.notify import AlertmanagerNotifier, Notifier, WebhookNotifier
from dcim.alerts.rules import AlertsSettings, Rule
from dcim.alerts.state import AlertState
from dcim.config import ConfigError, ConfigIssue
from dcim.reading import FieldValue, Reading

log = logging.getLogger(__name__)
# (figure, PUE category, start_ns, end_ns) -> the figure, None when too incomplete to state
KpiFn = Callable[[str, int, int, int], float | None]
NS = 1_000_000_000
_PLACEHOLDER = re.compile(r"\{(\w+)(?::([^{}]*))?\}")
SAVE_EVERY_S = 10.0
LOG_PER_MIN = 20
# The fields the screen (dcim.plausible) adds to a device's dcim_poll row: its count of the
# values refused among the readings before it in the same batch.
POLL, POLL_SCREEN_FIELDS = "dcim_poll", frozenset({"refused", "refused_reason"})


def render(text: str, values: Mapping[str, object]) -> str:
    """Fill ``{name}`` / ``{name:.1f}`` placeholders; an unknown name is left as written."""

    def one(m: re.Match[str]) -> str:
        v = values.get(m.group(1))
        if v is None:
            return m.group(0) if m.group(1) not in values else "n/a"
        if m.group(2) and isinstance(v, int | float):
            return format(v, m.group(2))
        return f"{v:g}" if isinstance(v, float) else str(v)

    return _PLACEHOLDER.sub(one, text)


def annotations_of(rule: Rule, inst: Instance) -> dict[str, str]:
    values: dict[str, object] = dict(inst.labels)
    values.update(
        value=inst.value,
        unit=rule.unit,
        threshold=rule.level if rule.kind in ("threshold", "rate", "period") else None,
        clear=rule.clear_level if rule.kind in ("threshold", "rate", "period") else None,
        for_s=rule.for_s,
        after_s=rule.after_s,
        detail=inst.detail,
    )
    a = rule.annotations
    out = {
        "summary": render(a.summary, values),
        "description": render(a.description, values),
        "runbook": render(a.runbook, values),
    }
    if inst.value is not None:
        out["value"] = f"{inst.value:g}" + (f" {rule.unit}" if rule.unit else "")
    return out


class AlertEngine:
    def __init__(
        self,
        rules: Iterable[Rule],
        settings: AlertsSettings,
        *,
        state_path: Path,
        device_tags: Mapping[str, Mapping[str, str]] | None = None,
        emit: Callable[[list[Reading]], object] | None = None,
        tick_s: float = 1.0,
        mqtt_client: Any = None,
        site: str = "site",
        kpi: KpiFn | None = None,
        timezone: str = "UTC",
        screen: Callable[[list[Reading]], list[Reading]] | None = None,
    ):
        # the readings as the pipeline will keep them (dcim.plausible: no-value codes, the
        # site's corrections, physical ranges), so no rule fires on what is not a reading
        self.screen = screen
        self.rules = {r.name: r for r in rules}
        self.state = AlertState(state_path)
        saved = self.state.load()
        self.evaluator = Evaluator(self.rules.values(), device_tags=device_tags, instances=saved)
        self._screened = _screened(self.evaluator)
        # A rule (or a device) removed while its alert fired: resolve it, or the receivers
        # would be told it fires until someone clears the state by hand.
        now = time.time_ns()
        orphans = [
            Transition(i, FIRING, RESOLVED, now)
            for i in saved
            if i.key not in self.evaluator.instances and i.state == FIRING
        ]
        for t in orphans:
            t.instance.resolved_ns = now
        if orphans:
            self.state.record(
                (
                    t,
                    {
                        "summary": f"{t.instance.rule}: rule or device removed",
                        "description": "",
                        "runbook": "",
                    },
                )
                for t in orphans
            )
        self.emit = emit
        self.tick_s = tick_s
        self.site = site
        self.kpi = kpi if self.evaluator.period_rules else None
        self.tz = timezone
        self._period_done = ""  # the last day the period rules were evaluated for
        self._period_next = 0.0  # monotonic time of the next look (hourly)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_error_log = 0.0
        self._log_window, self._log_count, self._log_skipped = 0.0, 0, 0
        self._last_save = 0.0
        self._saved: dict[str, tuple[int, int, float | None, str]] = {}  # key -> what was saved
        self.errors_total = 0
        n = len(settings.alertmanager) + len(settings.webhooks) + (mqtt_client is not None)
        retry = settings.retry_max_s
        self.notifiers: list[Notifier] = [
            AlertmanagerNotifier(
                am.url,
                self.state,
                resend_s=am.resend_s,
                timeout_s=am.timeout_s,
                receivers=n,
                retry_max_s=retry,
            )
            for am in settings.alertmanager
        ]
        for wh in settings.webhooks:
            try:
                key = (
                    os.environ.get(wh.secret_env, "")
                    if wh.secret_env
                    else Path(str(wh.secret_file)).read_text().strip()
                )
            except OSError:
                key = ""
            if not key:
                where = f"${wh.secret_env}" if wh.secret_env else str(wh.secret_file)
                raise ConfigError(
                    [ConfigIssue("", None, "alerts.webhooks", f"{wh.url}: no HMAC key in {where}")]
                )
            self.notifiers.append(
                WebhookNotifier(
                    wh.url,
                    key.encode(),
                    self.state,
                    timeout_s=wh.timeout_s,
                    receivers=n,
                    retry_max_s=retry,
                )
            )

        if mqtt_client is not None:
            from dcim.alerts.notify_mqtt import MqttNotifier

            prefix = settings.mqtt.topic_prefix if settings.mqtt else "dcim/alerts"
            self.notifiers.append(
                MqttNotifier(
                    mqtt_client,
                    self.state,
                    prefix=prefix,
                    site=site,
                    receivers=n,
                    retry_max_s=retry,
                )
            )

    # -- the hot path -----------------------------------------------------------------------
    def observe(self, readings: list[Reading]) -> None:
        try:
            if self.screen is not None:
                # Only what the rules look at is screened (a PDU poll: 4 readings of 28)
                mine = self._screened
                if mine is not None:
                    readings = [r for r in readings if r.measurement in mine]
                    if not readings:
                        return
                readings = self.screen(readings)
            with self._lock:
                out = self.evaluator.observe(readings)
                if out:
                    self._handle(out)
        except Exception:  # noqa: BLE001 - alerting must never stop collection
            self._error("evaluating alert rules failed")

    def tick(self, now_ns: int | None = None) -> None:
        now = time.time_ns() if now_ns is None else now_ns
        try:
            with self._lock:
                out = self.evaluator.tick(now)
                if out:
                    self._handle(out)
                if self.evaluator.created:  # first sightings: a restart must know them
                    self.state.save_values(self.evaluator.created)
                    self.evaluator.created = []
                if time.monotonic() - self._last_save >= SAVE_EVERY_S:
                    self._save()
        except Exception:  # noqa: BLE001
            self._error("the alert tick failed")

    def evaluate_periods(self, now_ns: int | None = None) -> None:
        """Period rules on the last closed day (site time), once per day; retried hourly
        while the store does not answer (the live rules are not held up by it)."""
        if self.kpi is None:
            return
        now = time.time_ns() if now_ns is None else now_ns
        tz = ZoneInfo(self.tz)
        today = datetime.fromtimestamp(now / NS, tz).date()
        day = today - timedelta(days=1)
        if day.isoformat() == self._period_done:
            return
        start = int(datetime.combine(day, datetime.min.time(), tz).timestamp() * NS)
        end = int(datetime.combine(today, datetime.min.time(), tz).timestamp() * NS)
        wanted: set[tuple[str, int]] = {
            (c.rule.figure or "", c.rule.category) for c in self.evaluator.period_rules
        }
        figures = {k: self.kpi(k[0], k[1], start, end) for k in wanted}
        with self._lock:
            out = self.evaluator.period(figures, self.site, day.isoformat(), now)
            if out:
                self._handle(out)
        self._period_done = day.isoformat()

    def _save(self) -> None:
        """Save what changed since the last save (an instance seen again, or moved): at 10x
        the site polled every 100 s, saving every instance every 10 s cost more than the
        rules themselves."""
        self._last_save = time.monotonic()
        saved = self._saved
        keep = []
        for i in self.evaluator.instances.values():
            if i.state == "inactive" and self.rules[i.rule].kind not in ("stale", "counter"):
                continue
            mark = (i.seen_ns, i.active_ns, i.value, i.state)
            if saved.get(i.key) != mark:
                saved[i.key] = mark
                keep.append(i)
        if len(saved) > 2 * len(self.evaluator.instances) + 1000:  # instances since dropped
            live = self.evaluator.instances
            self._saved = {k: v for k, v in saved.items() if k in live}
        if keep:
            self.state.save_values(keep)

    def _handle(self, transitions: list[Transition]) -> None:
        rows = [(t, annotations_of(self.rules[t.instance.rule], t.instance)) for t in transitions]
        self.state.record(rows)  # durable before anyone is told
        for t, ann in rows:
            if t.new in (FIRING, RESOLVED):
                self._log(t, ann)
        for n in self.notifiers:
            n.wake()
        if self.emit is not None:
            readings = [self._reading(t, ann) for t, ann in rows if t.new in (FIRING, RESOLVED)]
            if readings:
                try:
                    self.emit(readings)
                except Exception:  # noqa: BLE001 - a full spool must not lose the state
                    self._error("writing the alerts measurement failed")

    def _log(self, t: Transition, ann: dict[str, str]) -> None:
        """One line per firing/resolve, at most LOG_PER_MIN a minute (an alert storm is
        counted, and listed by ``dcim alerts``)."""
        now = time.monotonic()
        if now - self._log_window >= 60:
            if self._log_skipped:
                log.warning("%d more alert transitions (see dcim alerts)", self._log_skipped)
            self._log_window, self._log_count, self._log_skipped = now, 0, 0
        self._log_count += 1
        if self._log_count > LOG_PER_MIN:
            self._log_skipped += 1
            return
        level = logging.WARNING if t.new == FIRING else logging.INFO
        log.log(level, "alert %s %s: %s", t.instance.rule, t.new, ann["summary"])

    @staticmethod
    def _reading(t: Transition, ann: dict[str, str]) -> Reading:
        labels = t.instance.labels
        tags = {
            k: v
            for k, v in labels.items()
            if k in ("alertname", "severity", "site", "room", "rack", "device", "role")
        }
        fields: dict[str, FieldValue] = {
            "firing": int(t.new == FIRING),
            "state": t.new,
            "summary": ann["summary"][:1000],
        }
        if t.instance.value is not None:
            fields["value"] = float(t.instance.value)
        return Reading("alerts", tags, fields, t.at_ns)

    def _error(self, what: str) -> None:
        self.errors_total += 1
        if time.monotonic() - self._last_error_log >= 60:
            self._last_error_log = time.monotonic()
            log.exception(what)

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        for n in self.notifiers:
            n.start()
        self._thread = threading.Thread(target=self._run, name="alerts-tick", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.tick_s):
            self.tick()
            if self.kpi is not None and time.monotonic() >= self._period_next:
                self._period_next = time.monotonic() + 3600
                try:
                    self.evaluate_periods()
                except Exception:  # noqa: BLE001 - the store may be down: next hour
                    self._error("evaluating the period rules failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            try:
                self._save()
            except Exception:  # noqa: BLE001
                log.exception("saving the alert values failed")
        for n in self.notifiers:
            n.stop()
        self.state.close()

    def firing(self) -> list[Instance]:
        with self._lock:
            return self.evaluator.firing()


def build_engine(
    cfg: object,
    emit: Callable[[list[Reading]], object],
    config_path: str | None = None,
    *,
    rules: list[Rule] | None = None,
) -> AlertEngine | None:
    """The engine of a site (None with ``alerts: {default_pack: false}`` and no rules).
    ``rules``: the site's rules, loaded already (by dcim.runconfig's child process)."""
    from dcim.config import SiteConfig

    assert isinstance(cfg, SiteConfig)
    settings = cfg.alerts or AlertsSettings()
    if rules is None:
        from dcim.alerts.loader import load_rules

        rules = load_rules(cfg, config_path)
    if not rules:
        return None
    device_tags = {d.name: cfg.tags_of(d) for d in cfg.devices}
    path = settings.state_path or (cfg.storage.spool_dir / "alerts.sqlite")
    client = None
    if settings.mqtt is not None and cfg.mqtt is not None:
        from dcim.mqttclient import make_client

        cid = settings.mqtt.client_id or f"dcim-alerts-{cfg.site.name}"
        client = make_client(cfg.mqtt, cid, clean_session=True)
        client.connect_async(cfg.mqtt.host, cfg.mqtt.port, keepalive=30)
    return AlertEngine(
        rules,
        settings,
        state_path=path,
        device_tags=device_tags,
        emit=emit,
        mqtt_client=client,
        site=cfg.site.name,
        kpi=_kpi_of(cfg),
        timezone=cfg.site.timezone,
        screen=quiet_screen(cfg),
    )


def _screened(ev: Evaluator) -> frozenset[str] | None:
    """The measurements :meth:`AlertEngine.observe` screens and evaluates (the others pass
    unseen by the evaluator); None: every reading, when a rule reads what the screen adds to a
    ``dcim_poll`` row (its count of the refusals among the readings before it)."""
    for c in ev.rules:
        if c.fields & POLL_SCREEN_FIELDS and POLL in (
            c.rule.select.measurement if c.rule.select else ()
        ):
            return None
    if any(f in POLL_SCREEN_FIELDS for f in ev.tracked.get(POLL, ())):
        return None
    return ev.measurements


def quiet_screen(cfg: Any) -> Callable[[list[Reading]], list[Reading]]:
    """The pipeline's screen of ``cfg``'s readings (:class:`dcim.plausible.Screen`), without
    its counting and logging: the pipeline's own instance counts and logs each refusal once."""
    from dcim.plausible import Screen

    class Quiet(Screen):
        def _count(self, device: str, name: str, reason: str, text: str) -> None:
            return None

    return Quiet.of(cfg)


def _kpi_of(cfg: Any) -> KpiFn:
    """Figures over stored data for the period rules, from the same code as ``dcim kpi``
    (its completeness rule included: below ``kpi.min_completeness`` a figure is None)."""

    def kpi(figure: str, category: int, start_ns: int, end_ns: int) -> float | None:
        from dcim.kpi.period import compute_kpis
        from dcim.storage import make_store

        store = make_store(cfg.storage, read_only=True)
        try:
            rep = compute_kpis(store, cfg, start_ns, end_ns, category=category)
            return rep.figure(figure).value
        finally:
            store.close()

    return kpi
