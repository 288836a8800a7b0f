"""The EU data-centre report as files: JSON and CSV in the annexes' structure (the values as
computed, machine-readable), and a one-page PDF summary (Typst) with a chart (matplotlib),
numbers and dates in French or English (Babel).

The indicators keep the annexes' English wording in both languages (the European database's
own); headings, statuses and notes around them follow ``lang``.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from dcim.reports.eed import EedReport, Entry
from dcim.reports.eed_annex import SECTIONS
from dcim.reports.l10n import fmt_day, fmt_moment, fmt_number, fmt_percent
from dcim.reports.typeset import render_pdf

CSV_COLUMNS = (
    "section", "key", "indicator", "symbol", "unit", "value", "status", "completeness",
    "estimated", "flagged", "source", "note",
)  # fmt: skip
DECIMALS = {"kWh": 0, "m3": 1, "°C": 1, "L/kWh": 3, "": 3, "m2": 0, "kW": 0, "PB": 2,
            "EB": 4, "Gbps": 1, "degree days": 0}  # fmt: skip
NOTE_MAX = 120

TEXT: dict[str, dict[str, str]] = {
    "title": {"en": "EU data centre report {year}", "fr": "Rapport UE du centre de données {year}"},
    "subtitle": {
        "en": "Site {site}: information and key performance indicators, {regulation}",
        "fr": "Site {site} : informations et indicateurs clés de performance, {regulation}",
    },
    "period": {
        "en": "Period: {start} to {end} ({tz})",
        "fr": "Période : du {start} au {end} ({tz})",
    },
    "generated": {"en": "Generated {at}", "fr": "Établi le {at}"},
    "columns": {
        "en": "Indicator|Symbol|Value|Status|Compl.|Source or reason",
        "fr": "Indicateur|Symbole|Valeur|Statut|Compl.|Source ou motif",
    },
    "scope_title": {"en": "How to read it", "fr": "Lecture"},
    "scope": {
        "en": "Energies are the meters' register increases over the calendar year (dcim kpi, "
        "same computation); Compl. is the share of expected samples present. EDC excludes the "
        "heat pumps' electricity (EnEfG boundary); EREUSE is the heat exported less that "
        "electricity. A figure the meters cannot give says so, with the reason: none is "
        "estimated here.",
        "fr": "Les énergies sont les accroissements des index des compteurs sur l'année civile "
        "(même calcul que dcim kpi) ; Compl. est la part des relevés attendus présents. EDC "
        "exclut l'électricité des pompes à chaleur (périmètre EnEfG) ; EREUSE est la chaleur "
        "exportée moins cette électricité. Un chiffre que les compteurs ne donnent pas est "
        "signalé avec son motif : aucun n'est estimé ici.",
    },
    "warnings_title": {"en": "Warnings", "fr": "Avertissements"},
    "sign_name": {"en": "Checked by (name, signature)", "fr": "Vérifié par (nom, signature)"},
    "sign_date": {"en": "Date", "fr": "Date"},
    "footer": {
        "en": "{site} - EED report {year} - every figure with its completeness; "
        "JSON and CSV beside this PDF carry the full notes",
        "fr": "{site} - rapport EED {year} - chaque chiffre avec sa complétude ; "
        "les fichiers JSON et CSV joints portent les notes complètes",
    },
    "chart_title": {"en": "Energy over the year, MWh", "fr": "Énergie sur l'année, MWh"},
    "not_measured": {"en": "not measured", "fr": "non mesuré"},
    "declare": {
        "en": "no meter gives it: declare reports.eed.{key} in the site file",
        "fr": "aucun compteur ne le donne : à déclarer dans le fichier du site, reports.eed.{key}",
    },
}
STATUS = {
    "measured": {"en": "measured", "fr": "mesuré"},
    "declared": {"en": "declared", "fr": "déclaré"},
    "derived": {"en": "derived", "fr": "calculé"},
    "not measured": {"en": "not measured", "fr": "non mesuré"},
    "not declared": {"en": "not declared", "fr": "non déclaré"},
    "insufficient data": {"en": "insufficient data", "fr": "données insuffisantes"},
}
SECTION_TITLE = {
    "I": {"fr": "Annexe I - Informations sur le centre de données"},
    "II.1": {"fr": "Annexe II.1 - Indicateurs énergie et durabilité"},
    "II.2": {"fr": "Annexe II.2 - Capacité TIC"},
    "II.3": {"fr": "Annexe II.3 - Trafic de données"},
    "III": {"fr": "Annexe III - Indicateurs de durabilité"},
}
HEADLINE = (("EDC", 1e-3, "MWh"), ("PUE", 1, ""), ("ERF", 1, ""), ("REF", 1, ""),
            ("WUE", 1, "L/kWh"), ("TWH", 1, "°C"))  # fmt: skip
CHART = ("EDC", "EIT", "EREUSE", "ERES_TOT")


def t(name: str, lang: str, **kw: Any) -> str:
    return TEXT[name][lang].format(**kw)


# -- JSON and CSV ----------------------------------------------------------------------------
def to_json(rep: EedReport) -> str:
    return json.dumps(rep.to_dict(), indent=2, ensure_ascii=False)


def to_csv(rep: EedReport) -> str:
    """One row per indicator, the annexes' order; values as computed (``.`` decimals, no
    grouping), empty where there is none; completeness 0..1, empty for a declared value."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for e in rep.entries:
        w.writerow(
            [e.section, e.key, e.indicator, e.symbol, e.unit,
             "" if e.value is None else e.value, e.status,
             "" if e.completeness is None else e.completeness,
             str(e.estimated).lower(), str(e.flagged).lower(), e.source, e.note]
        )  # fmt: skip
    return buf.getvalue()


# -- PDF --------------------------------------------------------------------------------------
def fmt_value(e: Entry, lang: str) -> str:
    if e.value is None:
        return "-"
    if isinstance(e.value, str):
        return e.value
    text = fmt_number(e.value, DECIMALS.get(e.unit, 2), lang)
    return f"{text} {e.unit}".strip()


def _short(note: str) -> str:
    return note if len(note) <= NOTE_MAX else note[: NOTE_MAX - 1].rstrip() + "\u2026"


def _row(e: Entry, lang: str) -> dict[str, Any]:
    c = "" if e.completeness is None else fmt_percent(e.completeness, 1, lang)
    flag = " *" if e.estimated or e.flagged else ""
    return {
        "indicator": e.indicator,
        "symbol": e.symbol,
        "value": fmt_value(e, lang) + flag,
        "status": STATUS[e.status][lang],
        "ok": e.status in ("measured", "declared", "derived"),
        "completeness": c,
        "note": _short(_note(e, lang)),
    }


def _note(e: Entry, lang: str) -> str:
    kind, _, key = e.source.partition(":")
    if e.status == "not declared" and kind == "declared":
        return t("declare", lang, key=key)
    return e.note


def _headline(rep: EedReport, lang: str) -> list[dict[str, Any]]:
    out = []
    for key, scale, unit in HEADLINE:
        e = rep.entry(key)
        ok = isinstance(e.value, float)
        decimals = 0 if unit == "MWh" else (1 if unit == "°C" else 3)
        value = fmt_number(e.value * scale, decimals, lang) if isinstance(e.value, float) else "-"
        sub = (
            fmt_percent(e.completeness, 1, lang) if ok and e.completeness is not None
            else STATUS[e.status][lang]
        )  # fmt: skip
        label = e.symbol + (f" (cat. {rep.pue_category})" if key == "PUE" else "")
        out.append({"label": label, "value": value, "unit": unit, "sub": sub, "ok": ok})
    return out


def chart_svg(rep: EedReport, lang: str) -> bytes:
    """Horizontal bars of the year's energies (MWh); one the meters cannot give is labelled
    so, with no bar."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    entries = [rep.entry(k) for k in CHART]
    fig, ax = plt.subplots(figsize=(4.6, 1.5))
    try:
        labels = [e.symbol for e in entries]
        vals = [e.value / 1000 if isinstance(e.value, float) else 0.0 for e in entries]
        ax.barh(labels, vals, color=["#4a6fa5", "#6b8fc7", "#d08a3c", "#5c9e5c"])
        ax.invert_yaxis()
        top = max(vals) if any(vals) else 1.0
        for i, e in enumerate(entries):
            txt = (
                fmt_number(vals[i], 0, lang) if isinstance(e.value, float)
                else t("not_measured", lang)
            )  # fmt: skip
            ax.text(vals[i] + top * 0.01, i, txt, va="center", fontsize=7)
        ax.set_xlim(0, top * 1.18)
        ax.set_title(t("chart_title", lang), fontsize=8, loc="left")
        ax.tick_params(labelsize=7)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        fig.tight_layout(pad=0.3)
        buf = io.BytesIO()
        fig.savefig(buf, format="svg", metadata={"Date": None})
    finally:
        plt.close(fig)
    return buf.getvalue()


def pdf_data(rep: EedReport, lang: str) -> dict[str, Any]:
    tz = ZoneInfo(rep.timezone)
    start = datetime.fromtimestamp(rep.start_ns / 1e9, tz)
    last = datetime.fromtimestamp(rep.end_ns / 1e9 - 1, tz)
    generated = datetime.fromtimestamp(rep.generated_ns / 1e9, tz)
    sections = []
    for s in SECTIONS:
        title = SECTION_TITLE[s.ref].get(lang, f"Annex {s.ref} - {s.title}")
        rows = [_row(e, lang) for e in rep.entries if e.section == s.ref]
        sections.append({"title": title, "rows": rows})
    return {
        "lang": lang,
        "title": t("title", lang, year=rep.year),
        "subtitle": t("subtitle", lang, site=rep.site, regulation=rep.regulation),
        "period": t(
            "period",
            lang,
            start=fmt_day(start.date(), lang),
            end=fmt_day(last.date(), lang),
            tz=rep.timezone,
        ),  # fmt: skip
        "generated": t("generated", lang, at=fmt_moment(generated, lang)),
        "headline": _headline(rep, lang),
        "scope_title": t("scope_title", lang),
        "scope": t("scope", lang),
        "columns": t("columns", lang).split("|"),
        "sections": sections,
        "warnings_title": t("warnings_title", lang),
        "warnings": [_short(w) for w in rep.warnings],
        "sign_name": t("sign_name", lang),
        "sign_date": t("sign_date", lang),
        "footer": t("footer", lang, site=rep.site, year=rep.year),
    }


def to_pdf(rep: EedReport, lang: str) -> bytes:
    return render_pdf("eed.typ", pdf_data(rep, lang), {"chart.svg": chart_svg(rep, lang)})
