"""docs/architecture.md's glossary against the code: every profile's measurements, row tags
and fields, the collector's own measurements (``dcim_poll``, ``dcim_spool``, ``kpi``) and the
Prometheus metrics. A name added, renamed or removed in the code fails here until the
glossary says the same (dashboards and queries are written from it)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from collectors.mqtt.source import MqttCollector
from dcim.config import SiteConfig
from dcim.kpi.series import kpi_series
from dcim.metrics import CollectorMetrics
from dcim.profiles import load_profiles
from dcim.reading import Reading
from dcim.runtime import Collector
from dcim.twin.site import paris_chapelle

DOC = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"
NAME = re.compile(r"`([a-z][a-z0-9_<>]*)`")


def table_after(heading: str) -> list[list[str]]:
    """The rows (cells) of the first Markdown table after the line ``heading`` (or of the
    table whose header line that is)."""
    lines = DOC.read_text().splitlines()
    assert heading in lines, f"{DOC.name} has no heading {heading!r}"
    rows: list[list[str]] = []
    for line in lines[lines.index(heading) + 1 :]:
        if line.startswith("|"):
            rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])])
        elif rows:
            break
    skip = 1 if heading.startswith("|") else 2  # the header and the |---| line
    assert len(rows) > skip, f"no table after {heading!r}"
    return rows[skip:]


def names(cell: str) -> list[str]:
    """The `names` of a cell, leaving out those inside parentheses (notes, values)."""
    while True:
        plain = re.sub(r"\([^()]*\)", "", cell)
        if plain == cell:
            return NAME.findall(plain)
        cell = plain


def documented_profiles() -> dict[tuple[str, str], tuple[set[str], set[str]]]:
    """(profile, measurement) -> (row tags, fields), from the glossary."""
    out: dict[tuple[str, str], tuple[set[str], set[str]]] = {}
    for cells in table_after("### Device measurements"):
        profile, _source, measurement, tags, fields = cells
        key = (names(profile)[0], names(measurement)[0])
        assert key not in out, f"two glossary rows for {key}"
        out[key] = (set(names(tags)), set(names(fields)))
    return out


def profile_readings() -> dict[tuple[str, str], tuple[set[str], set[str]]]:
    """(profile, measurement) -> (row tags, fields), from the built-in profiles."""
    out: dict[tuple[str, str], tuple[set[str], set[str]]] = {}
    for name, prof in load_profiles().items():
        for shape in prof.shapes():
            out[(name, shape.measurement)] = (set(shape.tags), set(shape.fields))
    return out


def test_every_profile_reading_is_in_the_glossary() -> None:
    doc, code = documented_profiles(), profile_readings()
    assert sorted(set(code) - set(doc)) == [], "profile readings missing from the glossary"
    assert sorted(set(doc) - set(code)) == [], "glossary rows no profile produces"
    for key, (tags, fields) in code.items():
        doc_tags, doc_fields = doc[key]
        assert sorted(fields - doc_fields) == [], f"{key}: fields missing from the glossary"
        assert sorted(doc_fields - fields) == [], f"{key}: glossary fields not in the profile"
        assert doc_tags == tags, f"{key}: row tags"


def test_field_names_carry_a_known_unit_suffix() -> None:
    cells = " ".join(c for row in table_after("| suffix | unit | physical range |") for c in row)
    suffixes = set(re.findall(r"`(_[a-z0-9_]+)`", cells))
    assert {"_w", "_wh_total", "_c", "_pct"} <= suffixes
    for _key, (_tags, fields) in profile_readings().items():
        for f in fields:
            ok = any(f.endswith(s) for s in suffixes) or f in UNITLESS
            assert ok, f"{f}: no unit suffix of the glossary (add one, or make it unitless here)"


# Ratios, codes and identifiers: what they hold is said in their glossary row.
UNITLESS = {
    "power_factor",
    "cop",
    "status",
    "running",
    "fault_code",
    "battery_status",
    "on_battery",
    "meter_serial",
    "health",  # Redfish Status.Health as a code: 0 OK, 1 Warning, 2 Critical
}


# -- the collector's own measurements and metrics ---------------------------------------------


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    tmp = tmp_path_factory.mktemp("docs")
    doc = paris_chapelle(
        racks=1,
        servers_per_rack=1,
        spool_dir=str(tmp / "spool"),
        sink={"type": "embedded", "path": str(tmp / "store.sqlite")},
    )
    col = Collector(SiteConfig.model_validate(doc))
    yield col
    col.spool.close()
    col.store.close()


def collector_rows() -> dict[str, tuple[set[str], list[str]]]:
    """measurement -> (tags, fields cell's names), from the glossary."""
    return {
        names(cells[0])[0]: (set(names(cells[2])), names(cells[3]))
        for cells in table_after("### Collector measurements")
    }


def test_health_measurements_are_in_the_glossary(collector: Collector) -> None:
    doc = collector_rows()
    assert set(doc) == {"alerts", "dcim_collector", "dcim_poll", "dcim_spool", "kpi"}
    sched = collector.scheduler
    name, st = next(iter(sched.status().items()))
    polls = [sched._health(st, 0.0, up=True, duration=0.1, values=3, error="", late=0.0)]
    mqtt = collector.sources["mqtt"]
    assert isinstance(mqtt, MqttCollector)
    dev = mqtt.devices[0]
    polls.append(mqtt._health(dev, 0, up=False, values=0, error="gap", late_s=0.0))
    # as they reach the database: the pipeline's screen adds refused, refused_reason
    screen = collector.pipeline.screen
    assert screen is not None
    polls = screen(polls)
    spool = collector.spool_health()
    for r in [*polls, spool, collector.collector_health()]:
        tags, fields = doc[r.measurement]
        assert set(r.tags) == tags, r.measurement
        assert set(r.fields) == set(fields), r.measurement


def test_alerts_measurement_is_in_the_glossary() -> None:
    from dcim.alerts.engine import AlertEngine
    from dcim.alerts.evaluator import Instance, Transition

    tags, fields = collector_rows()["alerts"]
    labels = {k: "x" for k in ("alertname", "severity", "site", "device", "room", "rack", "role")}
    inst = Instance("k", "R", {**labels, "phase": "1"}, value=1.0)
    r = AlertEngine._reading(Transition(inst, "pending", "firing", 1), {"summary": "s"})
    assert r.measurement == "alerts"
    assert set(r.tags) == tags and set(r.fields) == set(fields)


def test_influx_rollup_marker_is_in_the_glossary() -> None:
    from dcim.storage.influx import MARKER, MARKER_FIELD

    text = DOC.read_text()
    assert f"`{MARKER}`" in text and f"`{MARKER_FIELD}`" in text


def test_kpi_series_figures_are_in_the_glossary() -> None:
    from tests.kpi.test_period import END, START, S, site, store_for

    tags, _ = collector_rows()["kpi"]
    cfg = site(renewable=[{"kind": "ppa", "share": 0.5}])
    [r] = kpi_series(store_for(cfg), cfg, START * S, END * S, "hourly")
    assert set(r.tags) == tags
    patterns = {
        n: re.compile(re.sub(r"<[a-z]+>", "[a-z0-9_]+", n) + r"\Z")
        for cells in table_after("| figure | what |")
        for n in names(cells[0])
    }
    figures = {f for f in r.fields if not f.endswith("_completeness")}
    assert {f"{f}_completeness" for f in figures} <= set(r.fields)
    for f in {f.removesuffix("_completeness") for f in r.fields}:
        assert any(p.match(f) for p in patterns.values()), f"kpi figure {f} not in the glossary"
    unused = [n for n, p in patterns.items() if not any(p.match(f) for f in r.fields)]
    assert unused == [], "glossary figures the KPI series does not produce"


def test_prometheus_metrics_are_in_the_glossary(collector: Collector) -> None:
    rows = table_after("| metric | type | labels | what |")
    doc = {names(c[0])[0]: (c[1], set(names(c[2]))) for c in rows if names(c[0])}
    assert any(c[0] == "`process_*`" for c in rows)
    tags = {"device": "d", "protocol": "snmp"}
    collector.poll_metrics.observe(
        [
            Reading("dcim_poll", tags, {"up": 0, "error": "timeout"}, 1),
            Reading("dcim_poll", tags, {"up": 1, "error": ""}, 2),
        ]
    )
    mqtt = collector.sources["mqtt"]
    assert isinstance(mqtt, MqttCollector)
    mqtt.received[mqtt.devices[0].name] += 1
    # one value refused as implausible (dcim_values_refused_total has a sample)
    dev = collector.cfg.devices[0]
    meas, spec = collector.cfg.profiles()[dev.profile].field_specs()[0]
    screen = collector.pipeline.screen
    assert screen is not None
    screen([Reading(meas, {"device": dev.name}, {spec.name: 1e30}, 1)])
    got: dict[str, tuple[str, set[str]]] = {}
    for fam in CollectorMetrics(collector, collector.poll_metrics).collect():
        exposed = fam.name + ("_total" if fam.type == "counter" else "")
        got[exposed] = (fam.type, {k for s in fam.samples for k in s.labels})
    # every source answered (a failing one is skipped silently by the endpoint)
    for prefix in ("dcim_poll_", "dcim_spool_", "dcim_pipeline_", "dcim_forwarder_", "dcim_mqtt_"):
        assert any(n.startswith(prefix) for n in got), prefix
    assert sorted(set(got) - set(doc)) == [], "metrics missing from the glossary"
    assert sorted(set(doc) - set(got)) == [], "glossary metrics the endpoint does not serve"
    assert got == doc
