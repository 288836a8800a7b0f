"""Numbers, dates and words of a statement in French or English, with each language's
conventions (Babel's CLDR data): ``1 234,567`` (narrow no-break space, decimal comma) in
French, ``1,234.567`` in English; dates as the reader writes them."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from babel.dates import format_date as _babel_date
from babel.dates import format_datetime as _babel_datetime
from babel.numbers import format_decimal

LANGS = ("fr", "en")
_LOCALE = {"fr": "fr_FR", "en": "en_GB"}
NS = 1_000_000_000
NA = {"fr": "n.d.", "en": "n/a"}


def locale_of(lang: str) -> str:
    if lang not in _LOCALE:
        raise ValueError(f"language {lang!r}: one of {', '.join(LANGS)}")
    return _LOCALE[lang]


def fmt_number(value: float | None, decimals: int, lang: str) -> str:
    """``value`` with ``decimals`` decimals and grouped thousands; None: n/a (n.d.)."""
    if value is None:
        return NA[lang]
    pattern = "#,##0" + ("." + "0" * decimals if decimals > 0 else "")
    return str(format_decimal(value, format=pattern, locale=locale_of(lang)))


def fmt_percent(value: float | None, decimals: int, lang: str) -> str:
    """A share (0..1) as a percentage: ``99,2 %`` (no-break space) / ``99.2%``."""
    if value is None:
        return NA[lang]
    sign = "\u00a0%" if lang == "fr" else "%"
    return fmt_number(100.0 * value, decimals, lang) + sign


def fmt_signed_percent(value: float | None, decimals: int, lang: str) -> str:
    if value is None:
        return NA[lang]
    txt = fmt_percent(abs(value), decimals, lang)
    return ("+" if value >= 0 else "\u2212") + txt


def local(ns: int, tz: str) -> datetime:
    return datetime.fromtimestamp(ns / NS, ZoneInfo(tz))


def fmt_datetime(ns: int | None, tz: str, lang: str, *, seconds: bool = False) -> str:
    """Local date and time with the UTC offset, as the reader writes it:
    ``25/10/2026 02:30:00 (UTC+01:00)``: around a clock change the offset tells 02:30 from
    02:30."""
    if ns is None:
        return NA[lang]
    t = local(ns, tz)
    pattern = "dd/MM/y HH:mm" + (":ss" if seconds else "")
    text = str(_babel_datetime(t, pattern, locale=locale_of(lang)))
    off = t.utcoffset() or timedelta(0)
    minutes = int(off.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "\u2212"
    return f"{text} (UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d})"


def fmt_date(ns: int, tz: str, lang: str, pattern: str = "dd/MM/y") -> str:
    return str(_babel_datetime(local(ns, tz), pattern, locale=locale_of(lang)))


def fmt_month(year: int, month: int, lang: str) -> str:
    """``octobre 2026`` / ``October 2026``."""
    return str(_babel_datetime(datetime(year, month, 15), "LLLL y", locale=locale_of(lang)))


def fmt_duration(seconds: float, lang: str) -> str:
    """``6 h 00 min 10 s`` (seconds only when not zero)."""
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    out = f"{fmt_number(h, 0, lang)}\u00a0h {m:02d}\u00a0min"
    return out + (f" {sec:02d}\u00a0s" if sec else "")


def fmt_day(day: date, lang: str) -> str:
    """A date in words, the language's long format: ``4 décembre 2026`` / ``4 December 2026``."""
    return str(_babel_date(day, format="long", locale=locale_of(lang)))


def fmt_moment(at: datetime, lang: str) -> str:
    """A date and time in the language's medium format, in ``at``'s time zone."""
    return str(_babel_datetime(at, format="medium", tzinfo=at.tzinfo, locale=locale_of(lang)))
