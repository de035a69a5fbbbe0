"""Publication dates as sources write them: "29 - 04 - 2024", "29 avril 2024", ISO 8601."""

from __future__ import annotations

import datetime as dt
import re
import unicodedata

_MONTHS = {
    # French
    "janvier": 1,
    "fevrier": 2,
    "mars": 3,
    "avril": 4,
    "mai": 5,
    "juin": 6,
    "juillet": 7,
    "aout": 8,
    "septembre": 9,
    "octobre": 10,
    "novembre": 11,
    "decembre": 12,
    # Spanish
    "enero": 1,
    "febrero": 2,
    "marzo": 3,
    "abril": 4,
    "mayo": 5,
    "junio": 6,
    "julio": 7,
    "agosto": 8,
    "septiembre": 9,
    "setiembre": 9,
    "octubre": 10,
    "noviembre": 11,
    "diciembre": 12,
    # English
    "january": 1,
    "february": 2,
    "march": 3,
    "april": 4,
    "may": 5,
    "june": 6,
    "july": 7,
    "august": 8,
    "september": 9,
    "october": 10,
    "november": 11,
    "december": 12,
    # Common abbreviations
    "janv": 1,
    "fev": 2,
    "avr": 4,
    "juil": 7,
    "sept": 9,
    "oct": 10,
    "nov": 11,
    "dec": 12,
    "jan": 1,
    "feb": 2,
    "mar": 3,
    "apr": 4,
    "jun": 6,
    "jul": 7,
    "aug": 8,
    "sep": 9,
    "ene": 1,
    "abr": 4,
    "ago": 8,
    "dic": 12,
}
_WEEKDAY = (
    r"(?:lundi|mardi|mercredi|jeudi|vendredi|samedi|dimanche|lunes|martes|miercoles|jueves"
    r"|viernes|sabado|domingo|monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
)
_TIME = r"(?:\s*(?:a|at|,)?\s*(?P<hour>\d{1,2})\s*(?:h|:)\s*(?P<minute>\d{2})?)?"
_NUMERIC = re.compile(
    rf"^(?:{_WEEKDAY},?\s+)?(?P<day>\d{{1,2}})\s*[-/.]\s*(?P<month>\d{{1,2}})\s*[-/.]\s*"
    rf"(?P<year>\d{{4}}){_TIME}$"
)
_WORDS = re.compile(
    rf"^(?:{_WEEKDAY},?\s+)?(?P<day>\d{{1,2}})(?:er|st|nd|rd|th)?\s+(?:de\s+)?"
    rf"(?P<month>[a-z]+)\.?\s+(?:de\s+)?(?P<year>\d{{4}}){_TIME}$"
)
_ENGLISH = re.compile(
    rf"^(?:{_WEEKDAY},?\s+)?(?P<month>[a-z]+)\.?\s+(?P<day>\d{{1,2}})(?:st|nd|rd|th)?,?\s+"
    rf"(?P<year>\d{{4}}){_TIME}$"
)
_ISO = re.compile(
    r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$"
)


def _fold(text: str) -> str:
    """Lower case without accents, single spaces: "29 Avril 2024" == "29 avril 2024"."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(plain.split())


def _build(
    year: int, month: int, day: int, hour: str | None, minute: str | None
) -> dt.datetime | None:
    try:
        if hour is None:
            # A bare date: noon UTC is the same calendar day in every zone from UTC-11 to
            # UTC+11, so the day shown to readers is the day the source printed.
            return dt.datetime(year, month, day, 12, 0, tzinfo=dt.UTC)
        return dt.datetime(year, month, day, int(hour), int(minute or 0), tzinfo=dt.UTC)
    except ValueError:
        return None


def parse_date(text: str) -> dt.datetime | None:
    """The aware UTC datetime ``text`` spells, or None when it is not (only) a date."""
    folded = _fold(text)
    if not folded:
        return None
    if _ISO.match(folded.upper()):
        try:
            value = dt.datetime.fromisoformat(folded.upper().replace("Z", "+00:00"))
        except ValueError:
            return None
        if len(folded) == 10:
            return _build(value.year, value.month, value.day, None, None)
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)
    match = _NUMERIC.match(folded)
    if match:
        return _build(
            int(match["year"]),
            int(match["month"]),
            int(match["day"]),
            match["hour"],
            match["minute"],
        )
    for pattern in (_WORDS, _ENGLISH):
        match = pattern.match(folded)
        if match and match["month"] in _MONTHS:
            return _build(
                int(match["year"]),
                _MONTHS[match["month"]],
                int(match["day"]),
                match["hour"],
                match["minute"],
            )
    return None
