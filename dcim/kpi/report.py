"""The shape of a KPI report: figures with their completeness, and the rule that withholds a
value whose data is too incomplete (``kpi.min_completeness``)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from dcim.kpi.energy import MeterEnergy


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

    def failed(self, name: str, unit: str, completeness: float, why: str) -> None:
        """``name`` could not be computed from its inputs: n/a, flagged, and why;
        ``completeness``: the share of its data that was usable."""
        self.rep.figures.append(Figure(name, None, unit, completeness, False, why, True))


def kwh(wh: float | None) -> float | None:
    return None if wh is None else wh / 1000.0


def kwh_txt(wh: float | None) -> str:
    return "n/a" if wh is None else f"{wh / 1000:,.0f} kWh"
