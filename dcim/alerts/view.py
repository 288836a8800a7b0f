"""The alert lines of the ``dcim demo`` live view."""

from __future__ import annotations

import time

from dcim.alerts.engine import AlertEngine

NS = 1_000_000_000
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


def alert_lines(
    engine: AlertEngine | None, *, limit: int = 5, now_ns: int | None = None
) -> list[str]:
    """``Alerts: none firing`` or the count and the most severe, oldest first."""
    if engine is None:
        return ["  Alerts: off (no rules)"]
    firing = engine.firing()
    if not firing:
        return ["  Alerts: none firing"]
    now = time.time_ns() if now_ns is None else now_ns
    firing.sort(key=lambda i: (SEVERITY_ORDER.get(i.labels.get("severity", ""), 3), i.fired_ns))
    lines = [f"  Alerts: {len(firing)} firing (dcim alerts CONFIG for all)"]
    for i in firing[:limit]:
        mins = max(0, (now - i.fired_ns) // NS // 60)
        value = "" if i.value is None else f" {i.value:g}"
        lines.append(
            f"    {i.labels.get('severity', ''):8} {i.rule:32} {i.labels.get('device', ''):14}"
            f"{value}  for {mins} min"
        )
    return lines
