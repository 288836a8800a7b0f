"""Plain-text table of a KPI report."""

from __future__ import annotations

from dcim.kpi.period import KpiReport
from dcim.timeutil import fmt_ns


def _fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "n/a"
    if unit == "kWh":
        return f"{v:,.1f} kWh"
    return f"{v:.4f}"


def render_table(rep: KpiReport, tz: str) -> str:
    lines = [
        f"Period {fmt_ns(rep.start_ns, tz)} .. {fmt_ns(rep.end_ns, tz)}"
        + ("  (interim: shorter than a year)" if rep.interim else ""),
        f"{'figure':<22}{'value':>20}  {'complete':>8}  note",
    ]
    for f in rep.figures:
        flag = " ESTIMATED" if f.estimated else ""
        lines.append(
            f"{f.name:<22}{_fmt(f.value, f.unit):>20}  {f.completeness:>7.1%}  {f.note}{flag}"
        )
    lines.append("")
    lines.append(f"{'meter':<22}{'role':<24}{'increase':>16}  {'samples':>13}  flags")
    for m in rep.meters:
        unit = "m3" if m.field.endswith("m3_total") else "kWh"
        val = (
            "n/a"
            if m.value is None
            else (f"{m.value:,.3f} m3" if unit == "m3" else f"{m.value / 1000:,.1f} kWh")
        )
        flags = ",".join(
            n
            for n, on in (
                ("interpolated", m.interpolated),
                ("extrapolated", m.extrapolated),
                (f"{m.resets} reset(s)", m.resets > 0),
            )
            if on
        )
        lines.append(
            f"{m.device:<22}{m.role:<24}{val:>16}  {m.samples:>6}/{m.expected:<6}  {flags}"
        )
    return "\n".join(lines)
