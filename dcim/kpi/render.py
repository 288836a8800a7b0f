"""Plain-text table of a KPI report."""

from __future__ import annotations

from dcim.kpi.period import KpiReport
from dcim.timeutil import fmt_ns


def _fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "n/a"
    if unit == "kWh":
        return f"{v:,.1f} kWh"
    if unit == "m3":
        return f"{v:,.3f} m3"
    if unit == "kgCO2eq":
        return f"{v:,.1f} kgCO2eq"
    if unit:
        return f"{v:.4f} {unit}"
    return f"{v:.4f}"


def _settings_line(rep: KpiReport) -> str:
    s = rep.settings
    if not s:
        return ""
    return (
        f"Grid factor {s.get('grid_carbon_kg_per_kwh')} kgCO2eq/kWh; figures below "
        f"{100 * float(s.get('min_completeness', 0)):g} % complete are withheld; "
        f"energy balance tolerance {s.get('balance_tolerance')}"
    )


def render_table(rep: KpiReport, tz: str) -> str:
    width = max([22, *(len(f.name) + 2 for f in rep.figures)])
    lines = [
        f"Period {fmt_ns(rep.start_ns, tz)} .. {fmt_ns(rep.end_ns, tz)}"
        + ("  (interim: shorter than a year)" if rep.interim else ""),
        _settings_line(rep),
        f"{'figure':<{width}}{'value':>26}  {'complete':>8}  note",
    ]
    for f in rep.figures:
        flag = (" ESTIMATED" if f.estimated else "") + (" CHECK" if f.flagged else "")
        lines.append(
            f"{f.name:<{width}}{_fmt(f.value, f.unit):>26}  {f.completeness:>7.1%}  {f.note}{flag}"
        )
    if rep.warnings:
        lines.append("")
        lines.extend(f"warning: {w}" for w in rep.warnings)
    lines.append("")
    mwidth = max([22, *(len(m.device) + 2 for m in rep.meters)])
    lines.append(f"{'meter':<{mwidth}}{'role':<24}{'increase':>16}  {'samples':>13}  flags")
    for m in rep.meters:
        unit = "m3" if m.field.endswith("m3_total") else "kWh"
        val = (
            "n/a"
            if m.value is None
            else (f"{m.value:,.3f} m3" if unit == "m3" else f"{m.value / 1000:,.1f} kWh")
        )
        role = m.role
        if m.role == "heat_pump":
            role = f"heat_pump {'heat' if m.field.startswith('heat') else 'electricity'}"
        flags = ",".join(
            n
            for n, on in (
                ("interpolated", m.interpolated),
                ("extrapolated", m.extrapolated),
                (f"{m.resets} reset(s)", m.resets > 0),
                (f"{m.glitches} glitch(es) ignored", m.glitches > 0),
            )
            if on
        )
        lines.append(
            f"{m.device:<{mwidth}}{role:<24}{val:>16}  {m.samples:>6}/{m.expected:<6}  {flags}"
        )
    return "\n".join(lines)
