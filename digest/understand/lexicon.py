"""The category lexicons: weighted terms per language, written by the team, stemmed on load.

File format (``lexicons/<lang>.txt`` and the language-independent ``lexicons/names.txt``)::

    [sport]
    football, footballeur, mercato
    coupe du monde = 3

A ``[category]`` line opens a section; each other line lists comma-separated terms sharing
one weight (``= w`` at the end, 1.5 when absent). A term of several words matches those
words in a row once stop words are dropped ("coupe du monde" -> "coup mond").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from digest.models import CATEGORIES
from digest.understand.text import content_stems

LEXICON_DIR = Path(__file__).resolve().parent / "lexicons"
DEFAULT_WEIGHT = 1.5
MAX_PHRASE = 3


class LexiconError(ValueError):
    """A lexicon file that cannot be read; the message names the file and line."""


@dataclass
class Lexicon:
    """Stemmed terms of one language: key (stems joined by spaces) -> [(category, weight)]."""

    language: str
    entries: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    # The term as written, for evidence shown to editors.
    surface: dict[str, str] = field(default_factory=dict)
    # Beginnings of terms of several words: longer matches are only tried after one of these.
    prefixes: set[str] = field(default_factory=set)

    def add(self, term: str, category: str, weight: float) -> None:
        """Add ``term`` (any number of words up to MAX_PHRASE) for ``category``."""
        stems = content_stems(term, self.language)
        # A term reduced to nothing, to a bare number ("CAN 2025" once English drops "can"),
        # or longer than a phrase can be would match the wrong headlines: it is skipped.
        if not stems or len(stems) > MAX_PHRASE or all(s.isdigit() for s in stems):
            return
        key = " ".join(stems)
        for end in range(1, len(stems)):
            self.prefixes.add(" ".join(stems[:end]))
        hits = self.entries.setdefault(key, [])
        for index, (existing, old) in enumerate(hits):
            if existing == category:
                hits[index] = (category, max(old, weight))
                break
        else:
            hits.append((category, weight))
        self.surface.setdefault(key, term)


def parse_lexicon(text: str, name: str) -> list[tuple[str, str, float]]:
    """(term, category, weight) triples from the text of one lexicon file."""
    triples: list[tuple[str, str, float]] = []
    category: str | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            category = line[1:-1].strip()
            if category not in CATEGORIES:
                raise LexiconError(f"{name}:{number}: unknown category {category!r}")
            continue
        if category is None:
            raise LexiconError(f"{name}:{number}: a term before any [category] line")
        weight = DEFAULT_WEIGHT
        if "=" in line:
            line, _, weight_text = line.rpartition("=")
            try:
                weight = float(weight_text)
            except ValueError:
                raise LexiconError(f"{name}:{number}: weight {weight_text.strip()!r}") from None
        for term in line.split(","):
            if term.strip():
                triples.append((term.strip(), category, weight))
    return triples


@lru_cache(maxsize=8)
def load_lexicon(language: str, directory: Path = LEXICON_DIR) -> Lexicon:
    """The lexicon of ``language`` with the shared names added, stemmed for that language."""
    lexicon = Lexicon(language)
    for path in (directory / f"{language}.txt", directory / "names.txt"):
        if path.exists():
            for term, category, weight in parse_lexicon(path.read_text("utf-8"), path.name):
                lexicon.add(term, category, weight)
    return lexicon
