"""The shape of a KPI report: figures with their completeness, and the rule that withholds a
value whose data is too incomplete (``kpi.min_completeness``)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from dcim.kpi.energy import Energy, MeterEnergy


@dataclass(frozen=True)
class Figure:
    name: str
    value: float | None
    unit: str
    completeness: float  # share of expected samples present, 0..1
    estimated: bool = False  # some part was interpolated/extrapolated across a gap
    note: str = ""
    flagged: bool = False  # a check failed (boundary error, energy balance): read the note


@dataclass
class KpiReport:
    start_ns: int
    end_ns: int
    figures: list[Figure] = field(default_factory=list)
    meters: list[MeterEnergy] = field(default_factory=list)
    pue_category: int | None = None
    interim: bool = True
    warnings: list[str] = field(default_factory=list)  # configuration problems for the figures
    settings: dict[str, Any] = field(default_factory=dict)  # the ``kpi:`` settings used

    def figure(self, name: str) -> Figure:
        for f in self.figures:
            if f.name == name:
                return f
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Figures:
    """Appends figures to a report, withholding values whose data is too incomplete."""

    def __init__(self, rep: KpiReport, min_completeness: float) -> None:
        self.rep = rep
        self.min = min_completeness

    def add(
        self,
        name: str,
        value: float | None,
        unit: str,
        completeness: float,
        estimated: bool = False,
        note: str = "",
        *,
        flagged: bool = False,
        metered: bool = True,
    ) -> None:
        """``metered=False``: the figure is not available for want of a meter (its note says
        so), not for want of data: no completeness judgement."""
        if metered and completeness < self.min:
            pct = math.floor(completeness * 100 + 1e-9)
            head = f"insufficient data: {pct} % of expected samples (minimum {self.min * 100:g} %)"
            value, note = None, f"{head}; {note}" if note else head
        self.rep.figures.append(Figure(name, value, unit, completeness, estimated, note, flagged))

    def ratio(
        self,
        name: str,
        value: float | None,
        parts: list[tuple[str, Energy]],
        completeness: float,
        estimated: bool = False,
        note: str = "",
        *,
        flagged: bool = False,
    ) -> None:
        """A ratio of energies (``parts``: its numerator and denominator, named) with the bound
        their registers' resolution puts on it: noted from 1 %, and the value withheld beyond
        ``RATIO_MAX_UNCERTAINTY`` (the period is too short for the meters), saying how long a
        period would do."""
        rel = relative_uncertainty([e for _, e in parts])
        if value is None and any(e.value == 0 and e.uncertainty for _, e in parts):
            zero = ", ".join(f"{n} 0 \u00b1 {_wh(e.uncertainty)}" for n, e in parts if e.value == 0)
            note = f"n/a: {zero} from the registers' resolution: too short a period; {note}"
        if value is not None and rel is not None and rel >= RESOLUTION_NOTE_MIN:
            bounds = ", ".join(f"{n} \u00b1 {_wh(e.uncertainty)}" for n, e in parts)
            if rel > RATIO_MAX_UNCERTAINTY:
                span = (self.rep.end_ns - self.rep.start_ns) / 1e9 * rel / RESOLUTION_NOTE_MIN
                note = (
                    f"n/a: {value:.2f} \u00b1 {value * rel:.2f} ({rel:.0%}) from the registers' "
                    f"resolution ({bounds}); a period of {_duration(span)} or more gives "
                    f"\u00b1 1 %; {note}"
                )
                value = None
            else:
                note = f"{note}; \u00b1 {value * rel:.3f} from the registers' resolution ({bounds})"
        self.add(name, value, "", completeness, estimated, note, flagged=flagged)

    def failed(self, name: str, unit: str, completeness: float, why: str) -> None:
        """``name`` could not be computed from its inputs: n/a, flagged, and why;
        ``completeness``: the share of its data that was usable."""
        self.rep.figures.append(Figure(name, None, unit, completeness, False, why, True))


RESOLUTION_NOTE_MIN = 0.01  # the registers' resolution is noted from 1 % of a figure
RATIO_MAX_UNCERTAINTY = 0.05  # a ratio known to worse than +-5 % is withheld


def relative_uncertainty(parts: list[Energy]) -> float | None:
    """Worst-case relative bound on a product or ratio of ``parts``: the sum of each one's
    resolution bound over its value; None if a value is missing or zero."""
    if any(e.value is None or e.value == 0 for e in parts):
        return None
    return sum(e.uncertainty / abs(e.value or 1.0) for e in parts)


def resolution_note(e: Energy) -> str:
    """ "; +- x kWh (y %) from the registers' resolution" once it is 1 % of the value."""
    if e.value and e.uncertainty and e.uncertainty / abs(e.value) >= RESOLUTION_NOTE_MIN:
        return (
            f"; \u00b1 {_wh(e.uncertainty)} ({e.uncertainty / abs(e.value):.0%}) "
            "from the registers' resolution"
        )
    return ""


def _wh(wh: float) -> str:
    return f"{wh / 1000:,.1f} kWh" if wh >= 100 else f"{wh:g} Wh"


def _duration(seconds: float) -> str:
    if seconds < 3600:
        return f"{max(1, math.ceil(seconds / 60))} min"
    if seconds < 2 * 86400:
        return f"{math.ceil(seconds / 3600)} h"
    return f"{math.ceil(seconds / 86400)} days"


def kwh(wh: float | None) -> float | None:
    return None if wh is None else wh / 1000.0


def kwh_txt(wh: float | None) -> str:
    return "n/a" if wh is None else f"{wh / 1000:,.0f} kWh"
