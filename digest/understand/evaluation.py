"""Measure the categorizer and the story clustering against labelled files."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from digest.models import CATEGORIES
from digest.understand.categorizer import Categorizer
from digest.understand.stories import Headline, cluster


class LabelledFileError(ValueError):
    """A labelled file that cannot be used; the message names the line."""


@dataclass(frozen=True)
class LabelledRow:
    """One line of a labelled file: the text, its label, and its language when given."""

    text: str
    label: str
    language: str | None
    line: int


def read_labelled(
    text: str, name: str, *, labels: Sequence[str] | None = None
) -> list[LabelledRow]:
    """Rows of a TSV (text, label[, lang]); "#" comment lines and a "text" header are skipped.

    ``labels`` restricts the accepted labels (the categories for a category file).
    """
    rows: list[LabelledRow] = []
    header_possible = True
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        cells = [cell.strip() for cell in raw.split("\t")]
        if header_possible and cells[0].lower() == "text":
            header_possible = False
            continue
        header_possible = False
        if len(cells) < 2 or not cells[0] or not cells[1]:
            raise LabelledFileError(
                f"{name}:{number}: expected text<TAB>label[<TAB>lang], got {raw[:60]!r}"
            )
        label = cells[1]
        if labels is not None and label not in labels:
            raise LabelledFileError(
                f"{name}:{number}: label {label!r} is not one of {', '.join(labels)}"
            )
        language = cells[2] if len(cells) > 2 and cells[2] else None
        rows.append(LabelledRow(cells[0], label, language, number))
    if not rows:
        raise LabelledFileError(f"{name}: no labelled lines")
    return rows


@dataclass(frozen=True)
class ClassScores:
    """Precision, recall and F1 of one class, with how many gold items it has."""

    precision: float
    recall: float
    f1: float
    support: int


def _scores(
    gold: Sequence[str], predicted: Sequence[str], classes: Sequence[str]
) -> dict[str, ClassScores]:
    result: dict[str, ClassScores] = {}
    for name in classes:
        true_pos = sum(1 for g, p in zip(gold, predicted, strict=True) if g == p == name)
        predicted_n = sum(1 for p in predicted if p == name)
        support = sum(1 for g in gold if g == name)
        precision = true_pos / predicted_n if predicted_n else 0.0
        recall = true_pos / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        result[name] = ClassScores(precision, recall, f1, support)
    return result


def macro_f1(scores: dict[str, ClassScores]) -> float:
    """Mean F1 over the classes that have gold items."""
    present = [s.f1 for s in scores.values() if s.support]
    return sum(present) / len(present) if present else 0.0


@dataclass
class CategoryReport:
    """Everything `digest eval-categories` prints."""

    total: int
    accuracy: float
    per_class: dict[str, ClassScores]
    macro_f1: float
    per_language: dict[str, tuple[int, float, float]]  # language -> (n, accuracy, macro-F1)
    confusion: dict[str, dict[str, int]]  # gold -> predicted -> count
    errors: list[tuple[LabelledRow, str, str]] = field(default_factory=list)  # row, language, got


def evaluate_categories(rows: Sequence[LabelledRow], categorizer: Categorizer) -> CategoryReport:
    """Classify each row (its given language, else detected) and compare with its label."""
    gold: list[str] = []
    predicted: list[str] = []
    languages: list[str] = []
    errors: list[tuple[LabelledRow, str, str]] = []
    for row in rows:
        result = categorizer.classify(row.text, language=row.language)
        gold.append(row.label)
        predicted.append(result.category)
        languages.append(row.language or result.language)
        if result.category != row.label:
            errors.append((row, result.language, result.category))
    per_class = _scores(gold, predicted, CATEGORIES)
    per_language: dict[str, tuple[int, float, float]] = {}
    for language in sorted(set(languages)):
        picked = [i for i, lang in enumerate(languages) if lang == language]
        sub_gold = [gold[i] for i in picked]
        sub_pred = [predicted[i] for i in picked]
        correct = sum(1 for g, p in zip(sub_gold, sub_pred, strict=True) if g == p)
        per_language[language] = (
            len(picked),
            correct / len(picked),
            macro_f1(_scores(sub_gold, sub_pred, CATEGORIES)),
        )
    confusion = {g: {p: 0 for p in CATEGORIES} for g in CATEGORIES}
    for g, p in zip(gold, predicted, strict=True):
        confusion[g][p] += 1
    correct = sum(1 for g, p in zip(gold, predicted, strict=True) if g == p)
    return CategoryReport(
        total=len(rows),
        accuracy=correct / len(rows),
        per_class=per_class,
        macro_f1=macro_f1(per_class),
        per_language=per_language,
        confusion=confusion,
        errors=errors,
    )


def format_category_report(report: CategoryReport, *, show_errors: bool = False) -> str:
    """The report as aligned plain text."""
    lines = [f"{report.total} headlines, accuracy {report.accuracy:.3f}", ""]
    lines.append(f"{'class':<10} {'precision':>9} {'recall':>7} {'F1':>6} {'n':>5}")
    for name, s in report.per_class.items():
        lines.append(f"{name:<10} {s.precision:>9.3f} {s.recall:>7.3f} {s.f1:>6.3f} {s.support:>5}")
    lines.append(f"{'macro-F1':<10} {'':>9} {'':>7} {report.macro_f1:>6.3f} {report.total:>5}")
    lines += ["", f"{'language':<10} {'n':>5} {'accuracy':>9} {'macro-F1':>9}"]
    for language, (n, accuracy, f1) in report.per_language.items():
        lines.append(f"{language:<10} {n:>5} {accuracy:>9.3f} {f1:>9.3f}")
    lines += ["", "confusion (rows: label, columns: predicted)"]
    lines.append(f"{'':<10}" + "".join(f"{name[:8]:>9}" for name in CATEGORIES))
    for gold_name in CATEGORIES:
        counts = report.confusion[gold_name]
        lines.append(f"{gold_name:<10}" + "".join(f"{counts[p]:>9}" for p in CATEGORIES))
    if show_errors and report.errors:
        lines += ["", "misclassified (line: label -> predicted [language] text)"]
        for row, language, got in report.errors:
            lines.append(f"{row.line}: {row.label} -> {got} [{language}] {row.text}")
    return "\n".join(lines)


@dataclass(frozen=True)
class StoryReport:
    """Pairwise precision and recall of clustering against gold story ids."""

    headlines: int
    stories: int
    clusters: int
    precision: float
    recall: float
    false_merges: list[tuple[str, str]]
    missed: list[tuple[str, str]]


def evaluate_stories(rows: Sequence[LabelledRow]) -> StoryReport:
    """Cluster the rows' texts and count agreeing pairs (same story, same cluster)."""
    from digest.understand.language import detect_language

    headlines = [Headline(r.text, r.language or detect_language(r.text)) for r in rows]
    numbers = cluster(headlines)
    predicted_pairs: set[tuple[int, int]] = set()
    gold_pairs: set[tuple[int, int]] = set()
    for i, j in itertools.combinations(range(len(rows)), 2):
        if numbers[i] == numbers[j]:
            predicted_pairs.add((i, j))
        if rows[i].label == rows[j].label:
            gold_pairs.add((i, j))
    agreeing = len(predicted_pairs & gold_pairs)
    extra, missing = predicted_pairs - gold_pairs, gold_pairs - predicted_pairs
    return StoryReport(
        headlines=len(rows),
        stories=len({r.label for r in rows}),
        clusters=len(set(numbers)),
        precision=agreeing / len(predicted_pairs) if predicted_pairs else 1.0,
        recall=agreeing / len(gold_pairs) if gold_pairs else 1.0,
        false_merges=[(rows[i].text, rows[j].text) for i, j in sorted(extra)],
        missed=[(rows[i].text, rows[j].text) for i, j in sorted(missing)],
    )


def format_story_report(report: StoryReport, *, show_errors: bool = False) -> str:
    """The story report as plain text."""
    lines = [
        f"{report.headlines} headlines, {report.stories} stories, {report.clusters} clusters",
        f"pairwise precision {report.precision:.3f}  recall {report.recall:.3f}",
    ]
    if show_errors:
        for title, pairs in (("false merges", report.false_merges), ("missed", report.missed)):
            if pairs:
                lines += ["", f"{title}:"]
                lines += [f"  {a}\n  ~ {b}" for a, b in pairs]
    return "\n".join(lines)


def read_labelled_path(path: Path, *, labels: Sequence[str] | None = None) -> list[LabelledRow]:
    """``read_labelled`` over a UTF-8 file."""
    return read_labelled(path.read_text("utf-8"), path.name, labels=labels)
