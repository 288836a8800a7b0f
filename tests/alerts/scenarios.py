"""The twin's fault scenarios (:mod:`dcim.twin.scenarios`) as reading batches in virtual
time, to show each default rule fire and resolve in the evaluator within seconds of test
(the live path, twin servers -> collector -> Alertmanager, is in test_twin_scenarios.py).

The baseline is the twin's own model (``SiteModel.values``: physically consistent values of
every device at any time). Four readings the twin does not simulate are derived from it:
``pdu_phase`` (the PDU's current on phase 1, with the site-file tag ``rated_current_a``),
``ups_input`` (230 V, 50 Hz), ``rack_env`` (a rack probe 0.3 K above the mean inlet of its
servers, 45 % RH) and the collector's ``dcim_spool`` / ``dcim_poll``; the scenario's effect
reshapes them as it does the twin's own devices.
"""

from __future__ import annotations

import math

from dcim.config import SiteConfig
from dcim.reading import FieldValue, Reading
from dcim.twin.model import SiteModel
from dcim.twin.scenarios import FAULTS, Scenario

NS = 1_000_000_000
Fields = dict[str, FieldValue]


def total_s(sc: Scenario) -> float:
    """How long a run of ``sc`` lasts: its end, plus time to resolve (an hour for the
    counter rules' hold)."""
    return sc.end_s + max(3600.0, 0.5 * sc.duration_s)


def scenarios() -> list[Scenario]:
    """Every fault at its default place and duration."""
    return [Scenario(f, f.start_s, f.duration_s) for f in FAULTS.values()]


def baseline(model: SiteModel, cfg: SiteConfig, t: float) -> list[tuple[str, Reading]]:
    """(device, reading) of every device at ``t``, the derived readings included."""
    profiles = cfg.profiles()
    ns = int(t * NS)
    out: list[tuple[str, Reading]] = []
    inlets: dict[str, list[float]] = {}
    for d in cfg.devices:
        v: Fields = dict(model.values(d.name, t))
        tags = cfg.tags_of(d)
        out.append((d.name, Reading(profiles[d.profile].measurement, tags, v, ns)))
        if d.profile == "bmc_server" and d.rack:
            inlets.setdefault(d.rack, []).append(float(v["inlet_temp_c"]))
        if d.profile == "apc_rpdu2":
            phase = {**tags, "phase": "1", "rated_current_a": "16"}
            out.append((d.name, Reading("pdu_phase", phase, {"current_a": v["current_a"]}, ns)))
        if d.profile == "ups_rfc1628":
            wobble = 0.5 * math.sin(t / 600)
            inp: Fields = {"voltage_v": 230.0 + wobble, "frequency_hz": 50.0 + wobble / 100}
            out.append((d.name, Reading("ups_input", {**tags, "line": "1"}, inp, ns)))
    for rack, temps in inlets.items():
        name = f"env-{rack}"
        tags = {"site": cfg.site.name, "device": name, "rack": rack, "probe": "1"}
        env: Fields = {"temp_c": sum(temps) / len(temps) + 0.3, "humidity_pct": 45.0}
        out.append((name, Reading("rack_env", tags, env, ns)))
    spool: Fields = {"used_pct": 2.0, "full": 0, "pending": 10}
    out.append(("collector", Reading("dcim_spool", {"site": cfg.site.name}, spool, ns)))
    return out


def run(sc: Scenario, model: SiteModel, cfg: SiteConfig, t0: float) -> list[list[Reading]]:
    """The batches of readings of the scenario, one per ``step_s``, with a ``dcim_poll``
    reading per device (``up=0`` while it is silent), as the collector writes them."""
    batches = []
    step = sc.fault.step_s
    k = 0
    while k * step <= total_s(sc):
        t_s = k * step
        t = t0 + t_s
        batch: list[Reading] = []
        for dev, r in baseline(model, cfg, t):
            if sc.silent(dev, t_s):
                continue
            fields = sc.apply(dev, r.measurement, dict(r.fields), t_s)
            if fields is not None:
                batch.append(Reading(r.measurement, r.tags, fields, r.time_ns))
        for d in cfg.devices:  # MQTT too: a row per message, a gap row per silent interval
            tags = {"site": cfg.site.name, "device": d.name, "protocol": d.protocol}
            poll = sc.apply(d.name, "dcim_poll", {"up": 1, "late_s": 0.01}, t_s)
            if sc.silent(d.name, t_s) or poll is None:
                poll = {"up": 0, "late_s": 0.01}
            batch.append(Reading("dcim_poll", tags, poll, int(t * NS)))
        batches.append(batch)
        k += 1
    return batches
