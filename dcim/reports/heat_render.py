"""The statement's three files from one dict of figures: JSON (the figures), CSV (the daily
table and the totals, numbers with a dot, as a spreadsheet reads them), PDF (the same numbers
formatted in the reader's language, charts, sign-off)."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dcim.reports import l10n
from dcim.reports.charts import charts
from dcim.reports.heat_words import word
from dcim.reports.typeset import render_pdf

CSV_COLUMNS = ("date", "energy_mwh", "energy_integrated_mwh", "volume_m3", "supply_temp_c",
               "return_temp_c", "completeness")  # fmt: skip
# the serials the meter gave (space-separated) and whether they are the site file's: 1, 0,
# empty when none was read
SERIAL_COLUMNS = ("meter_serial_read", "meter_serial_ok")


def statement_number(point: str, month: str, revision: int) -> str:
    """``CPCU-2026-10-R1``: the point, the month and the revision (deterministic)."""
    return f"{point.upper()}-{month}-R{revision}"


def revision(out: Path, point: str, month: str, fingerprint: str) -> int:
    """1 for a first statement; the same revision when the statement in ``out`` has the same
    fingerprint (the same figures again); the next one when the inputs changed (late data)."""
    revs: dict[int, str] = {}
    for f in out.glob(f"heat-{point}-{month}-r*.json"):
        m = re.fullmatch(rf"heat-{re.escape(point)}-{month}-r(\d+)\.json", f.name)
        if m:
            try:
                revs[int(m[1])] = json.loads(f.read_text())["fingerprint"]
            except (ValueError, KeyError):
                continue
    for r, fp in revs.items():
        if fp == fingerprint:
            return r
    return max(revs, default=0) + 1


def to_csv(doc: dict[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS + SERIAL_COLUMNS)
    for d in doc["days"]:
        w.writerow([d["date"], *(_num(d[c]) for c in CSV_COLUMNS[1:]),
                    " ".join(d["meter_serial_read"]), _flag(d["meter_serial_ok"])])  # fmt: skip
    t, sc = doc["totals"], doc["serial_check"]
    ok = None if sc["status"] == "not_read" else sc["status"] == "ok"
    w.writerow(["total", _num(t["energy_mwh"]), _num(t["energy_integrated_mwh"]),
                _num(t["volume_m3"]), _num(t["supply_temp_c"]), _num(t["return_temp_c"]),
                _num(t["completeness"]), " ".join(sc["read"]), _flag(ok)])  # fmt: skip
    return buf.getvalue()


def _flag(v: bool | None) -> str:
    return "" if v is None else str(int(v))


def _num(v: float | None) -> str:
    return "" if v is None else repr(float(v))


def write(doc: dict[str, Any], out: Path, lang: str) -> list[Path]:
    """Number the statement, write its PDF, CSV and JSON into ``out``; the paths."""
    point, month = doc["point"]["name"], doc["period"]["month"]
    rev = revision(out, point, month, doc["fingerprint"])
    doc["revision"] = rev
    doc["number"] = statement_number(point, month, rev)
    doc["lang"] = lang
    base = out / f"heat-{point}-{month}-r{rev}"
    pdf = render_pdf(
        "heat_statement.typ", view(doc, lang), charts(doc, lang, lambda k: word(k, lang))
    )
    paths = [base.with_suffix(".pdf"), base.with_suffix(".csv"), base.with_suffix(".json")]
    paths[0].write_bytes(pdf)
    paths[1].write_text(to_csv(doc), encoding="utf-8")
    paths[2].write_text(json.dumps(doc, indent=1, ensure_ascii=False), encoding="utf-8")
    return paths


def view(doc: dict[str, Any], lang: str) -> dict[str, Any]:
    """Every string the PDF prints, formatted for ``lang``."""
    tz = doc["site"]["timezone"]

    def w(k: str) -> str:
        return word(k, lang)

    def n(v: float | None, d: int) -> str:
        return l10n.fmt_number(v, d, lang)

    def dt(ns: int | None, seconds: bool = True) -> str:
        return l10n.fmt_datetime(ns, tz, lang, seconds=seconds)

    t = doc["totals"]
    y, m = int(doc["period"]["month"][:4]), int(doc["period"]["month"][5:7])
    per = doc["period"]
    words = {k: w(k) for k in (
        "title", "site", "operator", "point", "customer", "meter", "serial", "installed", "class",
        "flow_sensor", "period", "number", "version", "fingerprint", "indexes", "boundary",
        "reading_before", "reading_after", "index_at", "how", "figures", "contract", "term",
        "limit", "hours_outside", "share", "result", "gaps", "gap_from", "gap_to", "duration",
        "cause", "across", "gap_effect", "swaps", "swap_at", "register", "old_last", "new_first",
        "daily", "date", "energy_short", "integrated_short", "volume_short", "supply_short",
        "return_short", "complete_short", "total", "charts", "chart_daily", "chart_heatmap",
        "chart_duration", "chart_months", "signatures", "for_operator", "for_customer",
        "name_date_sign", "page", "verify", "equation", "model", "serial_read")}  # fmt: skip

    def idx(which: str, key: str, decimals: int, scale: float) -> list[Any]:
        b = doc["index"][key][which]

        def r(x: dict[str, Any] | None) -> list[str]:
            return ["—", ""] if x is None else [n(x["index"] * scale, decimals), dt(x["time_ns"])]

        return [w(which), w(f"{key.split('_')[0]}_index"), r(b["before"]), r(b["after"]),
                n(None if b["index"] is None else b["index"] * scale, decimals),
                w(f"how_{b['how']}")]  # fmt: skip

    index_rows = [idx("start", "energy_wh", 3, 1e-3), idx("end", "energy_wh", 3, 1e-3),
                  idx("start", "volume_m3", 3, 1.0), idx("end", "volume_m3", 3, 1.0)]  # fmt: skip
    within = t["within_mpe"]
    figures = [
        [w("energy"), n(t["energy_mwh"], 3) + "\u00a0MWh"],
        [w("energy_integrated"), n(t["energy_integrated_mwh"], 3) + "\u00a0MWh"],
        [w("difference"), l10n.fmt_signed_percent(t["energy_difference"], 2, lang)],
        [w("mpe"), "± " + l10n.fmt_percent(t["mpe"], 2, lang) + " — "
         + (w("within") if within else w("outside") if within is not None else "—")],
        [w("in_gaps"), n(t["energy_in_gaps_mwh"], 3) + "\u00a0MWh"],
        [w("volume"), n(t["volume_m3"], 3) + "\u00a0m³"],
        [w("supply_mean"), n(t["supply_temp_c"], 2) + "\u00a0°C"],
        [w("return_mean"), n(t["return_temp_c"], 2) + "\u00a0°C"],
        [w("peak"), n(t["peak_kw"], 1) + "\u00a0kW — " + dt(t["peak_at_ns"], False)],
        [w("hours"), n(t["delivery_hours"], 0) + "\u00a0h / " + n(per["hours"], 0) + "\u00a0h"
         + (" (" + w("hours_gap").format(n=n(t["delivery_hours_in_gaps"], 0)) + ")"
            if t["delivery_hours_in_gaps"] else "")],
        [w("completeness"), l10n.fmt_percent(t["completeness"], 2, lang)],
        [w("serial_check"), _serial_verdict(doc["serial_check"], w)],
    ]  # fmt: skip
    unit = {"min_supply_temp_c": "\u00a0°C", "min_power_kw": "\u00a0kW", "max_power_kw": "\u00a0kW"}
    contract = [
        [w(c["term"]),
         l10n.fmt_percent(c["limit"], 1, lang) if c["term"] == "availability_min"
         else n(c["limit"], 1) + unit[c["term"]],
         n(c["hours_outside"], 0) + " / " + n(c["hours_checked"], 0) + "\u00a0h",
         l10n.fmt_percent(c["share_outside"], 1, lang), w("ok") if c["ok"] else w("not_ok")]
        for c in doc["contract"]
    ]  # fmt: skip
    gaps = [[dt(g["start_ns"]), dt(g["end_ns"]), l10n.fmt_duration(g["duration_s"], lang),
             w(f"cause_{g['cause']}"),
             n(None if g["register_wh"] is None else g["register_wh"] / 1e3, 1) + "\u00a0kWh"]
            for g in doc["gaps"]]  # fmt: skip
    swaps = [[dt(s["time_ns"], False), w("energy_index" if s["field"].startswith("heat")
              else "volume_index"),
              n(s["old_last"] / (1e3 if s["field"].startswith("heat") else 1), 3),
              n(s["new_first"] / (1e3 if s["field"].startswith("heat") else 1), 3)]
             for s in doc["swaps"]]  # fmt: skip
    days = [[l10n.fmt_date(d["start_ns"], tz, lang, "EEE dd/MM"), n(d["hours"], 0),
             n(d["energy_mwh"], 3),
             n(d["energy_integrated_mwh"], 3), n(d["volume_m3"], 2), n(d["supply_temp_c"], 2),
             n(d["return_temp_c"], 2), l10n.fmt_percent(d["completeness"], 1, lang)]
            for d in doc["days"]]  # fmt: skip
    total = [w("total"), n(per["hours"], 0), n(t["energy_mwh"], 3),
             n(t["energy_integrated_mwh"], 3),
             n(t["volume_m3"], 2), n(t["supply_temp_c"], 2), n(t["return_temp_c"], 2),
             l10n.fmt_percent(t["completeness"], 1, lang)]  # fmt: skip
    meters = [
        [mi["serial"], ", ".join(mi["serial_read"]) or "—", mi["model"],
         str(mi["en1434_class"]), l10n.fmt_date(_iso_ns(mi["installed"], tz), tz, lang)]
        for mi in doc["meters"]
    ]  # fmt: skip
    colon = "\u00a0: " if lang == "fr" else ": "
    serial_notes = [
        w("serial_mismatch").format(frm=dt(r["start_ns"], False), to=dt(r["end_ns"], False),
                                    read=", ".join(r["read"]),
                                    declared=", ".join(r["declared"]))
        for r in doc["serial_check"]["mismatches"]
    ]  # fmt: skip
    notes = []
    if t["resets"]:
        notes.append(w("resets").format(n=t["resets"]))
    if not doc["swaps"] and not t["resets"]:
        notes.append(word("no_swaps", lang))
    return {
        "lang": lang,
        "w": words,
        "site": doc["site"]["description"] or doc["site"]["name"],
        "operator": doc["operator"],
        "point": doc["point"]["label"],
        "customer": doc["point"]["customer"],
        "flow_sensor": w(
            "supply_pipe" if doc["point"]["flow_sensor"] == "supply" else "return_pipe"
        ),
        "meters": meters,
        "period": f"{l10n.fmt_month(y, m, lang)}{colon}{dt(per['start_ns'], False)} → "
        f"{dt(per['end_ns'], False)}, {w('period_note').format(h=n(per['hours'], 0))}",
        "number": doc["number"],
        "version": f"dcim {doc['software_version']}",
        "fingerprint": doc["fingerprint"],
        "index_rows": index_rows,
        "figures": figures,
        "contract": contract,
        "gaps": gaps,
        "no_gaps": w("no_gaps"),
        "swaps": swaps,
        "notes": notes,
        "serial_notes": serial_notes,
        "days": days,
        "total": total,
    }


def _serial_verdict(check: dict[str, Any], w: Callable[[str], str]) -> str:
    """The figures' line on the meter's serial: matching, not matching (how many hours), or
    not read (so not checked)."""
    if check["status"] == "ok":
        return ", ".join(check["read"]) + " — " + w("serial_ok")
    if check["status"] == "not_read":
        return w("serial_not_read")
    return w("serial_bad").format(n=check["hours_mismatch"], total=check["hours_read"])


def _iso_ns(text: str, tz: str) -> int:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    t = datetime.fromisoformat(text)
    t = t if t.tzinfo else t.replace(tzinfo=ZoneInfo(tz))
    return int(t.timestamp()) * 1_000_000_000
