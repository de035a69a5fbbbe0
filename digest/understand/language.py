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
        nouvelle l d qu j n c à sa contre deux trois cinq ans mois depuis malgré avant sans
        dont très lors jusqu ou"""
    ),
    "es": _words(
        """el los las del y por con una al se su sus para como más tras sobre ante hasta desde
        según ha han fue lo ser está están muy pero ya nuevo nueva años año dos tres cinco sin
        contra hacia durante otro otra este esta estos estas cuando"""
    ),
    "en": _words(
        """the of and to for with on at by from is are its after over says will has have be
        was were new this that into amid who what than in as against first second their up
        out off all two three five across near back down his her our not"""
    ),
}
# Words that signal a language we do not sort (Portuguese, Italian, German, Dutch): when they
# are as frequent as the markers, the statistical detector decides.
_FOREIGN = _words(
    """o ao aos na nas do da dos das em não um uma os às pelo pela são il della di gli che per non
    der die das
    und ist mit den het een van op voor"""
)
# Word endings typical of one language, worth half a function word each.
_ENDINGS: dict[str, tuple[str, ...]] = {
    "fr": ("eau", "eaux", "aux", "ée", "ées", "ement", "eur", "eurs", "ique", "iques", "ité"),
    "es": ("ción", "ciones", "dad", "idad", "ado", "ada", "ados", "adas", "ido", "ida", "ía"),
    "en": ("ing", "ed", "ship", "ness", "ward", "ers", "ly"),
}
_POSSESSIVE = re.compile(r"\w['\u2019]s\b")
_FR_CHARS = re.compile(r"[çèêàùœâîôû]")
_ES_CHARS = re.compile(r"[ñ¿¡áíóú]")
_ELISION = re.compile(r"\b(?:[ldjnsc]|qu)['\u2019]\w", re.IGNORECASE)
_WORD = re.compile(r"[^\W\d_]+")
_ARABIC = re.compile(r"[\u0600-\u06ff]")
_NON_LATIN = re.compile(r"[^\x00-\u024f\u2000-\u206f\u20ac«»]")


@lru_cache(maxsize=1)
def _detector() -> LanguageDetector:
    # Built once per process: building loads the language models (a second or so).
    return LanguageDetectorBuilder.from_languages(*_CODES, *_ALSO_SEEN).build()


@lru_cache(maxsize=1)
def _sorted_detector() -> LanguageDetector:
    # Choosing among three languages only is four times faster and, for lines with no sign of
    # a fourth language, at least as accurate.
    return LanguageDetectorBuilder.from_languages(*_CODES).build()


@lru_cache(maxsize=1)
def _vocabularies() -> dict[str, frozenset[str]]:
    """Words each language's category lexicon is written with (a weak language clue)."""
    from digest.understand.lexicon import LEXICON_DIR, parse_lexicon

    words: dict[str, set[str]] = {}
    for language in _LANGUAGES:
        path = LEXICON_DIR / f"{language}.txt"
        found: set[str] = set()
        for term, _, _ in parse_lexicon(path.read_text("utf-8"), path.name):
            found.update(w for w in _WORD.findall(term.lower()) if len(w) > 3)
        words[language] = found
    # A word written in two lexicons ("inflation", "festival") says nothing.
    return {
        language: frozenset(
            w for w in found if all(w not in words[o] for o in words if o != language)
        )
        for language, found in words.items()
    }


_LANGUAGES = ("fr", "es", "en")
_NOTHING = (0.0, 0.0, 0.0, 0)
# Each word's clue, worked out once: (fr, es, en, foreign). Headline vocabulary repeats.
_WORD_CLUES: dict[str, tuple[float, float, float, int]] = {}


def _clue(word: str) -> tuple[float, float, float, int]:
    found = _WORD_CLUES.get(word)
    if found is not None:
        return found
    scores = [0.0, 0.0, 0.0]
    vocabularies = _vocabularies()
    for index, language in enumerate(_LANGUAGES):
        if word in _MARKERS[language]:
            scores[index] += 1
        elif len(word) > 4 and word.endswith(_ENDINGS[language]):
            scores[index] += 0.5
        if word in vocabularies[language]:
            scores[index] += 0.5
    found = (scores[0], scores[1], scores[2], 1 if word in _FOREIGN else 0)
    if found == _NOTHING:
        found = _NOTHING
    if len(_WORD_CLUES) < 200_000:
        _WORD_CLUES[word] = found
    return found


def quick_guess(text: str, words: list[str] | None = None) -> str | None:
    """The language function words, endings and letters point to, or None when unclear.

    ``words`` are the lower-cased words of ``text`` when the caller already has them.
    """
    return _guess(text, words)[0]


def _guess(text: str, words: list[str] | None) -> tuple[str | None, int]:
    """``quick_guess`` and how many words looked like a fourth language."""
    known = _WORD_CLUES.get
    clues = [
        known(word) or _clue(word)
        for word in (_WORD.findall(text.lower()) if words is None else words)
    ]
    # Column sums in C: this runs for every headline sorted.
    fr, es, en, foreign = map(sum, zip(*clues, strict=True)) if clues else _NOTHING
    if _POSSESSIVE.search(text):
        en += 1
    if _ELISION.search(text):
        fr += 1.5
    # Plain ASCII has none of the accented letters: skip two searches on most English text.
    if not text.isascii():
        if _FR_CHARS.search(text):
            fr += 1
        if _ES_CHARS.search(text):
            es += 1
    ranked = sorted(((fr, "fr"), (es, "es"), (en, "en")), reverse=True)
    (top, best), (second, _) = ranked[0], ranked[1]
    if top < 1 or top - second < 1 or foreign >= top:
        return None, foreign
    return best, foreign


def detect_language(text: str, words: list[str] | None = None) -> str:
    """Return "fr", "es", "en" or "other" for ``text`` (French when it cannot tell).

    ``words`` are the lower-cased words of ``text`` when the caller already has them.
    """
    if not text.strip():
        return "other"
    if not text.isascii() and len(_ARABIC.findall(text)) * 2 > len(text):
        return "other"
    quick, foreign = _guess(text, words)
    if quick is not None:
        return quick
    detector = _detector() if foreign or _NON_LATIN.search(text) else _sorted_detector()
    language = detector.detect_language_of(text)
    if language is None:
        return "fr"
    return _CODES.get(language, "other")
