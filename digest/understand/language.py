"""Language of a headline or article: fr, es, en, or "other"."""

from __future__ import annotations

import re
from functools import lru_cache

from lingua import Language, LanguageDetector, LanguageDetectorBuilder

_CODES = {Language.FRENCH: "fr", Language.SPANISH: "es", Language.ENGLISH: "en"}
# Languages a Moroccan or African news page also carries; detecting them keeps a
# Portuguese or Arabic line from being forced into fr/es/en.
_ALSO_SEEN = (
    Language.ARABIC,
    Language.PORTUGUESE,
    Language.GERMAN,
    Language.ITALIAN,
    Language.DUTCH,
)


def _words(text: str) -> frozenset[str]:
    """The whitespace-separated words of ``text``, as a set."""
    return frozenset(text.split())


# Function words that belong to one language only (words shared by two, like "la", "de" or
# "en", are left out). Headlines almost always carry one, which settles most of them in
# microseconds; the statistical detector (about half a millisecond) handles the rest.
_MARKERS: dict[str, frozenset[str]] = {
    "fr": _words(
        """le les des du une et au aux sur pour dans avec est sont qui ce cette ses leur leurs
        pas plus été après chez selon sous vers nous vous ils elle où également face nouveau
        nouvelle l d qu j n c"""
    ),
    "es": _words(
        """el los las del y por con una al se su sus para como más tras sobre ante hasta desde
        según ha han fue lo ser está están muy pero ya nuevo nueva años año"""
    ),
    "en": _words(
        """the of and to for with on at by from is are its after over says will has have be
        was were new this that into amid who what than"""
    ),
}
# Words that signal a language we do not sort (Portuguese, Italian, German, Dutch): when they
# are as frequent as the markers, the statistical detector decides.
_FOREIGN = _words(
    """do da dos das em não um uma os às pelo pela são il della di gli che per non der die das
    und ist mit den het een van op voor"""
)
_FR_CHARS = re.compile(r"[çèêàùœâîôû]")
_ES_CHARS = re.compile(r"[ñ¿¡áíóú]")
_ELISION = re.compile(r"\b(?:[ldjnsc]|qu)['\u2019]\w", re.IGNORECASE)
_WORD = re.compile(r"[^\W\d_]+")


@lru_cache(maxsize=1)
def _detector() -> LanguageDetector:
    # Built once per process: building loads the language models (a second or so).
    return LanguageDetectorBuilder.from_languages(*_CODES, *_ALSO_SEEN).build()


def _quick_guess(text: str) -> str | None:
    """The language the function words and letters point to, or None when unclear."""
    counts = {"fr": 0.0, "es": 0.0, "en": 0.0}
    foreign = 0
    for word in _WORD.findall(text.lower().replace("\u2019", "'")):
        if word in _FOREIGN:
            foreign += 1
        for language, markers in _MARKERS.items():
            if word in markers:
                counts[language] += 1
    if _ELISION.search(text):
        counts["fr"] += 1.5
    if _FR_CHARS.search(text):
        counts["fr"] += 1
    if _ES_CHARS.search(text):
        counts["es"] += 1
    ranked = sorted(counts.items(), key=lambda item: item[1], reverse=True)
    (best, top), (_, second) = ranked[0], ranked[1]
    if top < 1 or top - second < 1 or foreign >= top:
        return None
    return best


def detect_language(text: str) -> str:
    """Return "fr", "es", "en" or "other" for ``text`` (French when it cannot tell)."""
    if not text.strip():
        return "other"
    quick = _quick_guess(text)
    if quick is not None:
        return quick
    language = _detector().detect_language_of(text)
    if language is None:
        return "fr"
    return _CODES.get(language, "other")
