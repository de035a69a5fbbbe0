"""Group headlines about the same event into stories, across sources and languages."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from digest.understand.text import content_stems

# Two headlines are one story when the rarer words of the shorter one are mostly found in
# the longer one; sharing only frequent words ("Maroc", "roi", "2026") is not enough.
SAME_STORY = 0.6
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


def _signature(headline: Headline) -> frozenset[str]:
    language = headline.language if headline.language in ("fr", "es", "en") else "other"
    return frozenset(s for s in content_stems(headline.text, language) if len(s) > 1)


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
    """Share of the shorter signature's weight (rare words count more) found in the other."""
    shared = a & b
    if len(shared) < MIN_SHARED:
        return 0.0
    weight_a = sum(idf[t] for t in a)
    weight_b = sum(idf[t] for t in b)
    return sum(idf[t] for t in shared) / min(weight_a, weight_b)


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
