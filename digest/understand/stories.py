"""Group headlines about the same event into stories, across sources and languages."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from digest.understand.lexicon import LEXICON_DIR
from digest.understand.text import (
    content_stems,
    fold,
    normalize_age_groups,
    stem,
    stop_words,
    tokens,
)

# Two headlines are one story when their rarer words mostly agree; sharing only frequent
# words ("Maroc", "roi", "2026") is not enough. Tuned on tests/data/stories_dev.tsv and the
# seed (`digest eval-stories`): no false merge there, the nearest one scores 0.41.
SAME_STORY = 0.45
MIN_SHARED = 2


# A kicker is the label outlets put before the headline proper: "PLF 2026 : ...", "PLF 2026. ...".
_KICKER = re.compile(r"^\s*([^:.«»\"]{2,40}?)\s*(?::|\.\s|\s[\u2013\u2014-]\s)\s*(.+)$", re.DOTALL)
# A capitalized word after a space or an elision, i.e. not the first word of the text.
_NAME = re.compile(r"(?<=[\s'\u2019])[A-ZÀ-Ý][\w-]+")
# Capitalized by habit, not names: they say nothing about which event a headline reports.
_CAPITALIZED_COMMON = frozenset(
    ["Etat", "État", "Roi", "Souverain", "Gouvernement", "Parlement", "Royaume"]
)


@dataclass(frozen=True)
class Headline:
    """What clustering needs of an article: its text and language."""

    text: str
    language: str


# Words, and numbers with their decimals ("5,2" stays one token: a magnitude, a rate).
_WORD = re.compile(r"\d+(?:[.,]\d+)*|[^\W_]+")


@lru_cache(maxsize=4)
def _concepts(language: str) -> dict[str, str]:
    """Concept table of ``language``: stems (and plain words) of each synonym -> concept id."""
    table: dict[str, str] = {}
    path = LEXICON_DIR / "concepts.txt"
    for raw in path.read_text("utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        terms = [t.strip() for t in line.split(",") if t.strip()]
        concept = "~" + fold(terms[0].lower())
        stops = stop_words(language)
        for term in terms:
            words = [w for w in tokens(term) if w not in stops]
            for form in (
                " ".join(stem(w, language) for w in words),
                " ".join(fold(w) for w in words),
            ):
                if form:
                    table.setdefault(form, concept)
    return table


def _forms(text: str, language: str) -> list[str]:
    """Words of ``text`` as clustering compares them: stemmed, numbers kept whole ("5.2")."""
    stops = stop_words(language)
    forms: list[str] = []
    for word in _WORD.findall(normalize_age_groups(text).lower()):
        if word in stops or (len(word) < 2 and not word.isdigit()):
            continue
        if word[0].isdigit():
            forms.append(word.replace(",", "."))
        else:
            forms.append(stem(word, language))
    return forms


def _signature(headline: Headline) -> frozenset[str]:
    language = headline.language if headline.language in ("fr", "es", "en") else "other"
    forms = _forms(headline.text, language)
    table = _concepts(language)
    out: set[str] = set()
    index = 0
    while index < len(forms):
        for width in (3, 2, 1):
            key = " ".join(forms[index : index + width])
            if width <= len(forms) - index and key in table:
                out.add(table[key])
                index += width
                break
        else:
            out.add(forms[index])
            index += 1
    return frozenset(out)


def dossier(headline: Headline) -> str | None:
    """The named dossier a headline comments on, when that is all it names.

    "PLF 2026 : un tournant fiscal décisif" comments on the finance bill and names nothing
    else, so it joins the other comments on "PLF 2026". A kicker without a number ("Mercato :")
    or a headline naming someone ("CAN 2025 : le Maroc bat la Zambie") reports its own event.
    """
    match = _KICKER.match(headline.text)
    if match is None:
        return None
    kicker, rest = match.groups()
    language = headline.language if headline.language in ("fr", "es", "en") else "other"
    stems = content_stems(kicker, language)
    if len(stems) < 2 or not any(any(ch.isdigit() for ch in s) for s in stems):
        return None
    if any(name not in _CAPITALIZED_COMMON for name in _NAME.findall(rest)):
        return None
    return " ".join(stems)


def similarity(a: frozenset[str], b: frozenset[str], idf: dict[str, float]) -> float:
    """How much two signatures agree, rare words counting more (0 to 1).

    The mean of two views: the share of the shorter headline found in the longer one (a
    short headline inside a long one), and the cosine (both headlines about the same).
    """
    shared = a & b
    if len(shared) < MIN_SHARED:
        return 0.0
    weight_a = sum(idf[t] for t in a)
    weight_b = sum(idf[t] for t in b)
    weight = sum(idf[t] for t in shared)
    return 0.5 * weight / min(weight_a, weight_b) + 0.5 * weight / math.sqrt(weight_a * weight_b)


def cluster(headlines: Sequence[Headline]) -> list[int]:
    """A cluster number per headline (same number = same story), numbered from 0 in order."""
    signatures = [_signature(h) for h in headlines]
    count = len(signatures)
    frequency: dict[str, int] = {}
    for signature in signatures:
        for term in signature:
            frequency[term] = frequency.get(term, 0) + 1
    # Smoothed so that with a handful of headlines every word still weighs about the same.
    idf = {t: math.log((count + 10) / (n + 0.5)) for t, n in frequency.items()}
    postings: dict[str, list[int]] = {}
    for index, signature in enumerate(signatures):
        for term in signature:
            postings.setdefault(term, []).append(index)

    parent = list(range(count))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    dossiers: dict[str, int] = {}
    for index, headline in enumerate(headlines):
        key = dossier(headline)
        if key is not None:
            parent[find(index)] = find(dossiers.setdefault(key, index))
    for index, signature in enumerate(signatures):
        candidates: set[int] = set()
        for term in signature:
            candidates.update(j for j in postings[term] if j > index)
        for other in candidates:
            if similarity(signature, signatures[other], idf) >= SAME_STORY:
                parent[find(other)] = find(index)
    numbers: dict[int, int] = {}
    return [numbers.setdefault(find(i), len(numbers)) for i in range(count)]


def story_key_for(seed: str) -> str:
    """A stable story key derived from one member's fingerprint or text."""
    return hashlib.sha1(seed.encode("utf-8")).hexdigest()[:16]
