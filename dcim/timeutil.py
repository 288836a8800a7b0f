"""Dates on the command line: naive times are in the site's time zone."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

NS = 1_000_000_000


class TimeInputError(ValueError):
    """A date, period or duration given by a user that does not parse: the message says what
    to write instead (the command line reports it as a usage error)."""


def _ns(dt: datetime) -> int:
    return int(round(dt.timestamp() * NS))


def parse_time(text: str, tz: str) -> int:
    """ISO date or date-time -> UNIX ns. Without an offset it is local time at the site."""
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise TimeInputError(
            f"not an ISO date or date-time: {text!r} (e.g. 2026-10-01T00:00)"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=ZoneInfo(tz))
    return _ns(dt)


def parse_period(text: str, tz: str) -> tuple[int, int]:
    """'2026' (year), '2026-10' (month) or '2026-10-05' (day), local at the site -> [start, end)."""
    try:
        return _period(text, ZoneInfo(tz))
    except TimeInputError:
        raise
    except ValueError as exc:  # a month 13, a day 31 in April
        raise TimeInputError(f"period {text!r}: {exc}") from None


def _period(text: str, zone: ZoneInfo) -> tuple[int, int]:
    if re.fullmatch(r"\d{4}", text):
        y = int(text)
        return _ns(datetime(y, 1, 1, tzinfo=zone)), _ns(datetime(y + 1, 1, 1, tzinfo=zone))
    if m := re.fullmatch(r"(\d{4})-(\d{2})", text):
        y, mo = int(m[1]), int(m[2])
        ny, nmo = (y + 1, 1) if mo == 12 else (y, mo + 1)
        return _ns(datetime(y, mo, 1, tzinfo=zone)), _ns(datetime(ny, nmo, 1, tzinfo=zone))
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        d = datetime.fromisoformat(text).replace(tzinfo=zone)
        nxt = (d + timedelta(days=1)).replace(tzinfo=zone)  # wall-clock day (23 h/25 h at DST)
        return _ns(d), _ns(nxt)
    raise TimeInputError(f"period {text!r}: use YYYY, YYYY-MM or YYYY-MM-DD")


def fmt_ns(ns: int, tz: str) -> str:
    return datetime.fromtimestamp(ns / NS, ZoneInfo(tz)).isoformat(timespec="seconds")


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """'90s', '15m', '2h', '7d' -> seconds."""
    m = re.fullmatch(r"(\d+)([smhd])", text.strip())
    if m is None or int(m[1]) == 0:
        raise TimeInputError(
            f"duration {text!r}: use a positive number and s, m, h or d (e.g. 15m)"
        )
    return int(m[1]) * _UNITS[m[2]]
