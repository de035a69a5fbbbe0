"""The newsroom's day: dates in the configured time zone and the daily send time."""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from digest import ConfigError

_SEND_AT = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def newsroom_zone(name: str) -> ZoneInfo:
    """The ``TIMEZONE`` setting as a ZoneInfo, or a ConfigError naming the bad value."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ConfigError(
            f"TIMEZONE={name!r} is not a known time zone; use an IANA name such as "
            "'Africa/Casablanca' or 'Europe/Paris'."
        ) from error


def newsroom_today(timezone: str, now: dt.datetime) -> dt.date:
    """The calendar day it is in the newsroom's time zone at ``now`` (an aware datetime)."""
    return now.astimezone(newsroom_zone(timezone)).date()


def parse_send_at(value: str) -> tuple[int, int]:
    """``"07:00"`` → ``(7, 0)``; anything else is a ConfigError saying the expected form."""
    match = _SEND_AT.match(str(value).strip())
    if not match:
        raise ConfigError(f"SEND_AT={value!r} is not a time of day; write it as HH:MM, e.g. 07:00.")
    return int(match.group(1)), int(match.group(2))


def parse_day(value: str) -> dt.date:
    """A ``YYYY-MM-DD`` date from the command line, with a message saying the form on error."""
    try:
        return dt.date.fromisoformat(value)
    except ValueError as error:
        raise ValueError(
            f"{value!r} is not a date; write it as YYYY-MM-DD, e.g. 2026-11-28."
        ) from error
