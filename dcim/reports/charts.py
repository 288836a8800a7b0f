"""The statement's charts (matplotlib, Agg, SVG with text as paths so the PDF's text is the
statement's only): daily energy, hourly power as a day-by-hour heat map, the flow and return
temperature duration curve, and the year's months against last year's."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from dcim.reports.l10n import fmt_month, fmt_number  # noqa: E402

NS = 1_000_000_000
_RC: dict[str, Any] = {"svg.hashsalt": "dcim-statement", "font.size": 8, "axes.spines.top": False,
       "axes.spines.right": False, "svg.fonttype": "path"}  # fmt: skip
BLUE, RED, GREY = "#1f5f99", "#c0392b", "#9aa5b1"


def _svg(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _fmt(decimals: int, lang: str) -> FuncFormatter:
    return FuncFormatter(lambda v, _pos: fmt_number(v, decimals, lang))


def charts(doc: dict[str, Any], lang: str, words: Callable[[str], str]) -> dict[str, bytes]:
    """SVG files by name: ``daily.svg``, ``heatmap.svg``, ``duration.svg``, ``months.svg``."""
    tz = doc["site"]["timezone"]
    zone = ZoneInfo(tz)
    with plt.rc_context(_RC):  # type: ignore[arg-type]
        out = {
            "daily.svg": _daily(doc, lang, words),
            "heatmap.svg": _heatmap(doc, zone, lang, words),
        }
        out["duration.svg"] = _duration(doc, lang, words)
        out["months.svg"] = _months(doc, lang, words)
    return out


def _daily(doc: dict[str, Any], lang: str, words: Callable[[str], str]) -> bytes:
    fig, ax = plt.subplots(figsize=(7.0, 2.2))
    days = doc["days"]
    x = [int(d["date"][8:10]) for d in days]
    y = [d["energy_mwh"] or 0.0 for d in days]
    ax.bar(x, y, color=BLUE, width=0.75)
    for xi, d in zip(x, days, strict=True):
        if d["completeness"] < 0.999:
            ax.annotate("*", (xi, (d["energy_mwh"] or 0.0)), ha="center", va="bottom", color=RED)
    ax.set_xticks(x[::2] if len(x) > 16 else x)
    ax.set_ylabel("MWh")
    ax.yaxis.set_major_formatter(_fmt(1, lang))
    ax.set_xlabel(words("day_of_month"))
    return _svg(fig)


def _heatmap(doc: dict[str, Any], zone: ZoneInfo, lang: str, words: Callable[[str], str]) -> bytes:
    import numpy as np

    days = [d["date"] for d in doc["days"]]
    grid = np.full((len(days), 24), np.nan)
    count = np.zeros((len(days), 24))
    row = {d: i for i, d in enumerate(days)}
    for h in doc["hours"]:
        if h["kw"] is None:
            continue
        t = datetime.fromtimestamp(h["start_ns"] / NS, zone)
        i, j = row[t.date().isoformat()], t.hour
        grid[i, j] = (
            h["kw"]
            if count[i, j] == 0
            else (grid[i, j] * count[i, j] + h["kw"]) / (count[i, j] + 1)
        )
        count[i, j] += 1
    fig, ax = plt.subplots(figsize=(7.0, 3.6))
    cmap = matplotlib.colormaps["inferno"].with_extremes(bad="#e6e6e6")
    im = ax.imshow(grid, aspect="auto", cmap=cmap, interpolation="nearest",
                   extent=(-0.5, 23.5, len(days) + 0.5, 0.5))  # fmt: skip
    ax.set_xticks(range(0, 24, 3))
    ax.set_xlabel(words("hour_of_day"))
    ax.set_ylabel(words("day_of_month"))
    cb = fig.colorbar(im, ax=ax, pad=0.01)
    cb.set_label("kW")
    cb.ax.yaxis.set_major_formatter(_fmt(0, lang))
    return _svg(fig)


def _duration(doc: dict[str, Any], lang: str, words: Callable[[str], str]) -> bytes:
    sup = sorted((h["supply_c"] for h in doc["hours"] if h["supply_c"] is not None), reverse=True)
    ret = sorted((h["return_c"] for h in doc["hours"] if h["return_c"] is not None), reverse=True)
    fig, ax = plt.subplots(figsize=(3.4, 2.4))
    ax.plot(range(1, len(sup) + 1), sup, color=RED, label=words("supply"))
    ax.plot(range(1, len(ret) + 1), ret, color=BLUE, label=words("return"))
    ax.set_xlabel(words("hours_at_or_above"))
    ax.set_ylabel("°C")
    ax.yaxis.set_major_formatter(_fmt(0, lang))
    ax.xaxis.set_major_formatter(_fmt(0, lang))
    ax.legend(frameon=False)
    return _svg(fig)


def _months(doc: dict[str, Any], lang: str, words: Callable[[str], str]) -> bytes:
    ms = doc["months"]
    year = max(m["year"] for m in ms)
    this = [m for m in ms if m["year"] == year]
    last = {m["month"]: m["energy_mwh"] for m in ms if m["year"] == year - 1}
    fig, ax = plt.subplots(figsize=(3.4, 2.4))
    x = [m["month"] for m in this]
    ax.bar([i - 0.2 for i in x], [last.get(i) or 0.0 for i in x], width=0.4, color=GREY,
           label=str(year - 1))  # fmt: skip
    ax.bar([i + 0.2 for i in x], [m["energy_mwh"] or 0.0 for m in this], width=0.4, color=BLUE,
           label=str(year))  # fmt: skip
    ax.set_xticks(x)
    ax.set_xticklabels([fmt_month(year, i, lang)[:3] for i in x])
    ax.set_ylabel("MWh")
    ax.yaxis.set_major_formatter(_fmt(0, lang))
    ax.legend(frameon=False)
    return _svg(fig)
