"""French and English number and date conventions (Babel, CLDR)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from dcim.reports.l10n import fmt_datetime, fmt_duration, fmt_number, fmt_percent

NS = 1_000_000_000


def test_numbers() -> None:
    assert fmt_number(1234.567, 3, "fr") == "1\u202f234,567"  # narrow no-break space
    assert fmt_number(1234.567, 3, "en") == "1,234.567"
    assert fmt_number(None, 3, "fr") == "n.d." and fmt_number(None, 1, "en") == "n/a"
    assert fmt_percent(0.99194, 2, "fr") == "99,19\u00a0%"
    assert fmt_percent(0.99194, 2, "en") == "99.19%"
    with pytest.raises(ValueError, match="one of fr, en"):
        fmt_number(1.0, 1, "de")


def test_the_repeated_hour_is_told_apart() -> None:
    # 25 October 2026, 02:30 happens twice in Paris: the offset says which
    first = int(datetime(2026, 10, 25, 0, 30, tzinfo=ZoneInfo("UTC")).timestamp()) * NS
    again = first + 3600 * NS
    a, b = (fmt_datetime(t, "Europe/Paris", "fr") for t in (first, again))
    assert a == "25/10/2026 02:30 (UTC+02:00)" and b == "25/10/2026 02:30 (UTC+01:00)"


def test_duration() -> None:
    assert fmt_duration(6 * 3600 + 10, "fr") == "6\u00a0h 00\u00a0min 10\u00a0s"
