"""Words of a headline: tokens, stop words, and cached Snowball stems per language."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import snowballstemmer

STEMMER_NAMES = {"fr": "french", "es": "spanish", "en": "english"}

# Apostrophes, guillemets and dashes vary by outlet; tokens are runs of letters and digits.
_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
# Age-group names written many ways ("U20", "U-20", "Sub-17", "under-20", "moins de 20 ans")
# become one token so that the same team matches across outlets and languages.
_AGE_GROUP = re.compile(
    r"\b(?:u|sub|under)[\s-]?(\d{2})s?\b|\bmoins\s+de\s+(\d{2})\s+ans\b|\bmenores\s+de\s+(\d{2})\b",
    re.IGNORECASE,
)


def _words(text: str) -> frozenset[str]:
    """The whitespace-separated words of ``text``, as a set."""
    return frozenset(text.split())


# Cheap pre-check: most headlines have no digit, and then no age group to rewrite.
_AGE_HINT = re.compile(r"\d")
_STOP_WORDS: dict[str, frozenset[str]] = {
    "fr": _words(
        """a à au aux avec ce ces cet cette d dans de des du elle elles en est et été être il ils
        j l la le les leur leurs lui m ma mais me même mes n ne ni nos notre nous on ont ou où par
        pas plus pour qu que qui s sa sans se ses si son sont sur t ta te tes toi ton tous tout
        toute toutes très tu un une vers vos votre vous y après avant comme contre entre chez
        depuis dont lors selon sous fait faire c ça ceci cela celui celle quand aussi encore
        déjà bien peu ainsi alors donc car or fois"""
    ),
    "es": _words(
        """a al ante bajo como con contra de del desde donde durante e el ella ellas ellos en
        entre era es esa ese eso esta este esto está están fue han hasta la las le les lo los
        más me mi muy no nos o otra otro para pero por que qué se ser sin sobre su sus también
        tras un una unos unas y ya ha hay son según cuando porque sí fueron será sido"""
    ),
    "en": _words(
        """a about after against all an and are as at be been before being but by can could did
        do does for from had has have he her his how i if in into is it its just more most new
        no not of on or our out over says she so than that the their them then there these they
        this those to under up was we were what when which while who why will with would you
        your amid"""
    ),
}
_STOP_WORDS["other"] = _STOP_WORDS["fr"] | _STOP_WORDS["es"] | _STOP_WORDS["en"]


def stop_words(language: str) -> frozenset[str]:
    """The function words of ``language`` (all three languages for "other")."""
    return _STOP_WORDS.get(language, _STOP_WORDS["other"])


def fold(word: str) -> str:
    """``word`` without accents ("économie" -> "economie"), so spellings without them match."""
    if word.isascii():
        return word
    decomposed = unicodedata.normalize("NFKD", word)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def normalize_age_groups(text: str) -> str:
    """``text`` with age groups written as one token ("moins de 20 ans" -> "u20")."""
    if not _AGE_HINT.search(text):
        return text
    return _AGE_GROUP.sub(lambda m: " u" + (m.group(1) or m.group(2) or m.group(3)) + " ", text)


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens of ``text``, age groups joined ("moins de 20 ans" -> "u20")."""
    return _TOKEN.findall(normalize_age_groups(text).lower())


@lru_cache(maxsize=8)
def _stemmer(language: str) -> snowballstemmer.stemmer:
    return snowballstemmer.stemmer(STEMMER_NAMES.get(language, "english"))


# Stemming costs tens of microseconds a word while news vocabulary repeats heavily, so
# each (language, word) is stemmed once; the cache is dropped when it grows too large.
_STEM_CACHE: dict[str, dict[str, str]] = {"fr": {}, "es": {}, "en": {}}
_STEM_CACHE_LIMIT = 300_000


# Words whose Snowball stem would meet a word of another meaning, written out by hand:
# "Sidi" (Sidi Kacem, Sidi Bennour...) and "sida" both give "sid"; "aide" and "Aïd" give
# "aid"; "amende" (a fine) and "amendement" give "amend"; "box-office" meets "boxe", "MAS"
# (the Fès club) meets "MASI" (the index), "prolongée" meets "prolongations" (extra time).
_FIXED_STEMS = {
    "sidi": "sidi",
    "aide": "aide",
    "aides": "aide",
    "amende": "amende",
    "amendes": "amende",
    "boxe": "boxe",
    "masi": "masi",
    "prolongations": "prolongations",
}


def stem(word: str, language: str) -> str:
    """Accent-folded Snowball stem of the lower-case ``word`` in ``language``."""
    cache = _STEM_CACHE.get(language)
    if cache is None:
        language = "en"
        cache = _STEM_CACHE["en"]
    found = cache.get(word)
    if found is None:
        if len(cache) >= _STEM_CACHE_LIMIT:
            cache.clear()
        fixed = _FIXED_STEMS.get(word)
        if fixed is not None:
            cache[word] = fixed
            return fixed
        # Digits and short words are kept as they are: "u20", "2026", "onu".
        found = (
            fold(word)
            if len(word) <= 3 or not word.isalpha()
            else fold(_stemmer(language).stemWord(word))
        )
        cache[word] = found
    return found


# Per language: word -> its stem, or "" for a stop word or a single letter. One lookup per
# word on the hot path instead of a stop-word test plus a stem call.
_CONTENT_CACHE: dict[str, dict[str, str]] = {"fr": {}, "es": {}, "en": {}, "other": {}}


def content_stems(text: str, language: str) -> list[str]:
    """Stems of the words of ``text`` that are not stop words, in order."""
    return stems_of(tokens(text), language)


def stems_of(words: list[str], language: str) -> list[str]:
    """Stems of the already tokenized ``words`` that are not stop words, in order."""
    cache = _CONTENT_CACHE.get(language)
    if cache is None:
        cache = _CONTENT_CACHE["other"]
    result: list[str] = []
    for word in words:
        found = cache.get(word)
        if found is None:
            found = "" if word in stop_words(language) or len(word) < 2 else stem(word, language)
            if len(cache) >= _STEM_CACHE_LIMIT:
                cache.clear()
            cache[word] = found
        if found:
            result.append(found)
    return result


def normalize_key(text: str) -> str:
    """A headline reduced for exact matching: NFC, folded case, words joined by one space."""
    return " ".join(tokens(unicodedata.normalize("NFC", text)))
