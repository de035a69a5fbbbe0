"""Language of a headline or article: fr, es, en, or "other"."""

from __future__ import annotations

from functools import lru_cache

from lingua import Language, LanguageDetector, LanguageDetectorBuilder

_CODES = {Language.FRENCH: "fr", Language.SPANISH: "es", Language.ENGLISH: "en"}
# Languages a Moroccan or African news page also carries; detecting them keeps a
# Portuguese or Arabic line from being forced into fr/es/en.
_ALSO_SEEN = (Language.ARABIC, Language.PORTUGUESE, Language.GERMAN, Language.ITALIAN, Language.DUTCH)


@lru_cache(maxsize=1)
def _detector() -> LanguageDetector:
    # Built once per process: building loads the language models (a second or so).
    return LanguageDetectorBuilder.from_languages(*_CODES, *_ALSO_SEEN).build()


def detect_language(text: str) -> str:
    """Return "fr", "es", "en" or "other" for ``text`` (French when it cannot tell)."""
    if not text.strip():
        return "other"
    language = _detector().detect_language_of(text)
    if language is None:
        return "fr"
    return _CODES.get(language, "other")
