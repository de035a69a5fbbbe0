"""The category model: naive Bayes over headline words, trained from the team's labelled files.

`digest train-categories FILE.tsv...` counts, per language, in how many headlines of each
category every stemmed word appears, and writes those
counts as JSON (``category_model.json`` in this package). The file holds only integers in a
fixed order, so the same data always gives the same bytes, on any machine. The categorizer
turns the counts into per-word log-likelihoods once, on load, and adds them to the lexicon's
evidence (see ``categorizer.py``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import repeat
from pathlib import Path

from digest.models import CATEGORIES
from digest.understand.language import detect_language
from digest.understand.text import stems_of, tokens

MODEL_PATH = Path(__file__).resolve().parent / "category_model.json"
MODEL_FORMAT = 1
MODEL_LANGUAGES = ("fr", "es", "en")
# Add-alpha smoothing of the word counts. Chosen by cross-validation on the training file
# (folds of headlines_train.tsv scored by a model trained on the other folds and the dev set).
ALPHA = 1.0
# A word seen in fewer training headlines than this says more about one headline than about
# its category; rare words are left out of the model (names still reach it from the lexicons).
MIN_COUNT = 1


class ModelError(ValueError):
    """A model file that cannot be used, or training data that cannot train one."""


def features(stems: Sequence[str]) -> list[str]:
    """What the model looks at: each distinct content stem that is not a bare number.

    Pairs of neighbouring stems were tried and left out: cross-validation gave the same
    macro-F1 (0.902 with, 0.901 without) at twice the lookups.
    """
    return list(dict.fromkeys(s for s in stems if not s.isdigit()))


@dataclass(frozen=True)
class TrainingRow:
    """One labelled headline as training sees it."""

    text: str
    category: str
    language: str | None


def count(rows: Iterable[TrainingRow]) -> dict[str, object]:
    """The model file's content: per language, headlines per category and feature counts."""
    languages: dict[str, dict[str, object]] = {}
    for row in rows:
        if row.category not in CATEGORIES:
            raise ModelError(f"unknown category {row.category!r} for {row.text[:60]!r}")
        language = row.language or detect_language(row.text)
        if language not in MODEL_LANGUAGES:
            continue
        entry = languages.setdefault(language, {"headlines": [0] * len(CATEGORIES), "features": {}})
        column = CATEGORIES.index(row.category)
        entry["headlines"][column] += 1  # type: ignore[index]
        table: dict[str, list[int]] = entry["features"]  # type: ignore[assignment]
        for feature in features(stems_of(tokens(row.text), language)):
            table.setdefault(feature, [0] * len(CATEGORIES))[column] += 1
    if not languages:
        raise ModelError("no headline in fr, es or en to train on")
    for entry in languages.values():
        table = entry["features"]  # type: ignore[assignment]
        entry["features"] = {f: c for f, c in sorted(table.items()) if sum(c) >= MIN_COUNT}
    return {
        "format": MODEL_FORMAT,
        "categories": list(CATEGORIES),
        "languages": {lang: languages[lang] for lang in sorted(languages)},
    }


def dumps(content: dict[str, object]) -> str:
    """The model file's text: sorted keys, one feature per line, so diffs stay readable."""
    lines = ["{", f'"format": {content["format"]},']
    lines.append(f'"categories": {json.dumps(content["categories"])},')
    lines.append('"languages": {')
    languages: dict[str, dict[str, object]] = content["languages"]  # type: ignore[assignment]
    for index, (language, entry) in enumerate(languages.items()):
        lines.append(f'{json.dumps(language)}: {{"headlines": {json.dumps(entry["headlines"])},')
        lines.append('"features": {')
        table: dict[str, list[int]] = entry["features"]  # type: ignore[assignment]
        items = [f"{json.dumps(f, ensure_ascii=False)}: {json.dumps(c)}" for f, c in table.items()]
        lines.append(",\n".join(items))
        lines.append("}}" + ("," if index < len(languages) - 1 else ""))
    lines += ["}", "}"]
    return "\n".join(lines) + "\n"


@dataclass
class LanguageModel:
    """Per category, each feature's centred log-likelihood (0 means "no opinion")."""

    by_category: list[dict[str, float]]


@dataclass
class CategoryModel:
    """The trained model of each language it was trained for."""

    languages: dict[str, LanguageModel]

    def scores(self, stems: Sequence[str], language: str) -> tuple[list[float], list[str]] | None:
        """Summed centred log-likelihoods per category (CATEGORIES order) and the features
        looked at, or None when there is no model for ``language``."""
        model = self.languages.get(language)
        if model is None:
            return None
        looked_at = features(stems)
        # One C-level pass per category; a feature the model never saw adds 0.
        zeros = repeat(0.0)
        totals = [sum(map(table.get, looked_at, zeros)) for table in model.by_category]
        return totals, looked_at

    def strongest(self, looked_at: Sequence[str], language: str, column: int, n: int) -> list[str]:
        """The ``n`` features among ``looked_at`` that pull hardest toward the category in
        ``column`` (CATEGORIES order)."""
        get = self.languages[language].by_category[column].get
        pulls = [(weight, f) for f in looked_at if (weight := get(f, 0.0)) > 0]
        if len(pulls) > 1:
            pulls.sort(key=lambda pull: (-pull[0], pull[1]))
        return [f for _, f in pulls[:n]]


def from_content(content: dict[str, object], name: str = "model") -> CategoryModel:
    """A usable model from the content of a model file (see ``count``)."""
    if not isinstance(content, dict) or content.get("format") != MODEL_FORMAT:
        raise ModelError(f"{name}: not a category model of format {MODEL_FORMAT}")
    if content.get("categories") != list(CATEGORIES):
        raise ModelError(f"{name}: trained for other categories: {content.get('categories')}")
    languages: dict[str, LanguageModel] = {}
    raw_languages = content.get("languages")
    if not isinstance(raw_languages, dict):
        raise ModelError(f"{name}: no languages")
    width = len(CATEGORIES)
    for language, entry in raw_languages.items():
        table = entry.get("features") if isinstance(entry, dict) else None
        if not isinstance(table, dict) or not all(
            isinstance(c, list) and len(c) == width and all(isinstance(n, int) for n in c)
            for c in table.values()
        ):
            raise ModelError(f"{name}: bad feature counts for {language!r}")
        vocabulary = len(table)
        totals = [sum(c[column] for c in table.values()) for column in range(width)]
        denominators = [math.log(total + ALPHA * vocabulary) for total in totals]
        by_category: list[dict[str, float]] = [{} for _ in CATEGORIES]
        for feature, counts in table.items():
            logs = [math.log(n + ALPHA) - d for n, d in zip(counts, denominators, strict=True)]
            mean = sum(logs) / width
            for column, value in enumerate(logs):
                by_category[column][feature] = value - mean
        languages[language] = LanguageModel(by_category)
    return CategoryModel(languages)


def load_model(path: Path) -> CategoryModel:
    """The model stored at ``path``; ModelError says what is wrong with it."""
    try:
        content = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelError(f"{path}: cannot read the category model: {error}") from None
    return from_content(content, str(path))


@lru_cache(maxsize=1)
def shipped_model() -> CategoryModel | None:
    """The model shipped with the package, or None when it has not been trained yet."""
    if not MODEL_PATH.exists():
        return None
    return load_model(MODEL_PATH)
