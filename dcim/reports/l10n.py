"""Numbers and dates for humans, through Babel (CLDR): ``fr`` writes 1 234,5 and
4 décembre 2026, ``en`` 1,234.5 and December 4, 2026."""

from __future__ import annotations

from datetime import date, datetime

from babel.dates import format_date, format_datetime
from babel.numbers import format_decimal, format_percent

LANGS = ("fr", "en")
NOT_AVAILABLE = {"fr": "n.d.", "en": "n/a"}


def fmt_number(value: float | None, decimals: int, lang: str) -> str:
    """``value`` with exactly ``decimals`` decimals and the language's grouping; n/a for None."""
    if value is None:
        return NOT_AVAILABLE[lang]
    pattern = "#,##0" + ("." + "0" * decimals if decimals > 0 else "")
    return str(format_decimal(value, format=pattern, locale=lang))


def fmt_percent(share: float | None, decimals: int, lang: str) -> str:
    """``share`` (0..1) as a percentage."""
    if share is None:
        return NOT_AVAILABLE[lang]
    pattern = "#,##0" + ("." + "0" * decimals if decimals > 0 else "") + " %"
    return str(format_percent(share, format=pattern, locale=lang))


def fmt_date(day: date, lang: str) -> str:
    """A date in words, the language's long format."""
    return str(format_date(day, format="long", locale=lang))


def fmt_datetime(at: datetime, lang: str) -> str:
    """A date and time, the language's medium format, in ``at``'s time zone."""
    return str(format_datetime(at, format="medium", tzinfo=at.tzinfo, locale=lang))
