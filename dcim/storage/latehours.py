"""The hours an InfluxDB store must roll up again (:class:`dcim.storage.influx.InfluxStore`):
which measurement got late points in which hour, kept in a file across restarts, and grouped
into rollup statements.

An entry is ``(measurement, hour start in ns)``; the measurement ``ALL`` (None) stands for
every measurement of the hour (what a due file of the first format holds: it kept hours
only). A late ``kpi`` point (written an hour or a day after its period) then rolls up the
``kpi`` series of its hour, not the whole site's hour (measured: benchmarks/late_rollup.py).

The due file (``influxdb-rollups-due.json`` in the collector's spool directory), format 2::

    {"format": 2, "all": [hour, ...], "measurements": {"pdu": [hour, ...], ...}}

Format 1 (before): a JSON list of hours, read as hours due for every measurement.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

ALL: None = None  # every measurement of the hour
Entry = tuple[str | None, int]
FORMAT = 2

# The measurement of each line (up to the first unescaped comma or space: line protocol
# escapes both in a measurement with a backslash, see dcim.storage.lineprotocol), found after
# each newline: a literal the regex engine searches for fast (0.2 us a line of the reference
# site's PDUs, against 0.9 with ``^`` and re.M, tried at every byte).
_MEASUREMENT = re.compile(rb"\n((?:[^,\\ \n]+|\\.)+)")
_UNESCAPE = re.compile(r"\\([, ])")


def measurements_of(body: bytes) -> frozenset[str]:
    """The measurements of a line protocol body (one line per point, as the spool holds
    it), unescaped."""
    found = set(_MEASUREMENT.findall(b"\n" + body))
    return frozenset(_UNESCAPE.sub(r"\1", m.decode("utf-8", "replace")) for m in found)


def entries(measurements: Iterable[str], hours: Iterable[int]) -> set[Entry]:
    """Every measurement of ``measurements`` in every hour of ``hours``."""
    hs = list(hours)
    return {(m, h) for m in measurements for h in hs}


def hours_of(due: Iterable[Entry]) -> set[int]:
    return {h for _, h in due}


def statements(due: Iterable[Entry]) -> list[tuple[str | None, list[int]]]:
    """The rollup work for ``due``: (measurement, its hours ascending), a statement per
    measurement (None: every measurement, InfluxDB's ``/.*/``; an hour due for every
    measurement is not rolled up again for one of them). Ordered by first hour, then name.

    One statement per measurement, not one over several (``FROM "a", "b"`` or ``/.*/``):
    InfluxDB evaluates ``mean(*)`` and the others over the union of the sources' field names
    for each series, and so took 2-2.5x the CPU of the measurements one by one (the reference
    site's hour: rp_1m 8.2-8.9 s against 3.4 s, rp_1h 1.8 against 0.7, rp_1d 1.9 against
    0.8; benchmarks/late_rollup.py's set-up)."""
    every = {h for m, h in due if m is ALL}
    per: dict[str | None, set[int]] = {ALL: every} if every else {}
    for m, h in due:
        if m is not ALL and h not in every:
            per.setdefault(m, set()).add(h)
    out = [(m, sorted(hs)) for m, hs in per.items()]
    return sorted(out, key=lambda kv: (kv[1][0], kv[0] or ""))


def load(path: Path) -> set[Entry]:
    """The entries kept in a due file (of either format); empty when absent or unreadable
    (logged: the raw points are written, ``InfluxStore.rollup`` over the range redoes them)."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return set()
    except (OSError, ValueError) as exc:
        log.warning("ignoring the hours due for rollup in %s: %s", path, exc)
        return set()
    if isinstance(doc, list):  # format 1: hours, every measurement
        return {(ALL, h) for h in doc if isinstance(h, int)}
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        log.warning("ignoring the hours due for rollup in %s: not a format %d file", path, FORMAT)
        return set()
    every = doc.get("all")
    out: set[Entry] = set()
    if isinstance(every, list):
        out.update((ALL, h) for h in every if isinstance(h, int))
    by = doc.get("measurements", {})
    if isinstance(by, dict):
        for m, hours in by.items():
            if isinstance(hours, list):
                out.update((str(m), h) for h in hours if isinstance(h, int))
    return out


def dump(due: Iterable[Entry]) -> dict[str, object]:
    """The file's document for ``due`` (format 2)."""
    every: set[int] = set()
    by: dict[str, set[int]] = {}
    for m, h in due:
        if m is ALL:
            every.add(h)
        else:
            by.setdefault(m, set()).add(h)
    return {
        "format": FORMAT,
        "all": sorted(every),
        "measurements": {m: sorted(hs) for m, hs in sorted(by.items())},
    }


def save(path: Path, due: Iterable[Entry]) -> None:
    """Write the due file atomically (a new file, synced, renamed over the old one), mode
    0600. Raises OSError."""
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:  # mkstemp: mode 0600, a name of its own
            json.dump(dump(due), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
