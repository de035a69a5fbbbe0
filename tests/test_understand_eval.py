"""The labelled data, `digest eval-categories` and `digest eval-stories`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from flask.testing import FlaskCliRunner

from digest.models import CATEGORIES
from digest.understand import Categorizer
from digest.understand.evaluation import (
    LabelledFileError,
    evaluate_categories,
    evaluate_stories,
    read_labelled,
    read_labelled_path,
)

DATA = Path(__file__).resolve().parent / "data"


def test_dev_set_is_large_and_covers_every_class_in_every_language() -> None:
    rows = read_labelled_path(DATA / "headlines_dev.tsv", labels=CATEGORIES)
    assert len(rows) >= 400
    assert len({row.text for row in rows}) == len(rows), "no duplicate headlines"
    cells = Counter((row.language, row.label) for row in rows)
    for language in ("fr", "es", "en"):
        for category in CATEGORIES:
            assert cells[(language, category)] >= 20, (language, category)


def test_seed_headlines_reach_the_target_macro_f1() -> None:
    rows = read_labelled_path(DATA / "seed_headlines.tsv", labels=CATEGORIES)
    assert len(rows) == 48
    report = evaluate_categories(rows, Categorizer())
    assert report.macro_f1 >= 0.90
    by_text = {row.text: row for row in rows}
    ambiguous = {
        "budget 2026": "economy",
        "PLF 2026 : Un tournant fiscal décisif": "economy",
        "se verra réserver, ce mercredi, un accueil": "sport",
    }
    wrong = {row.text for row, _, _ in report.errors}
    for fragment, category in ambiguous.items():
        text = next(t for t in by_text if fragment in t)
        assert by_text[text].label == category
        assert text not in wrong, f"{fragment!r} should go to {category}"


def test_dev_set_scores_stay_above_the_floor() -> None:
    # A regression guard: the lexicons were developed on this set and the model is trained
    # on it, so the bar is high.
    report = evaluate_categories(
        read_labelled_path(DATA / "headlines_dev.tsv", labels=CATEGORIES), Categorizer()
    )
    assert report.macro_f1 >= 0.93
    for language, (_, _, f1) in report.per_language.items():
        assert f1 >= 0.90, language


@pytest.mark.parametrize(
    ("name", "overall", "floors"),
    [
        # Written after the lexicons, never trained or tuned on. Measured with the trained
        # model at macro-F1 0.914 (fr 0.932, es 0.889, en 0.914); lexicons alone gave 0.876
        # (fr 0.832).
        ("headlines_holdout.tsv", 0.89, {"fr": 0.90, "es": 0.85, "en": 0.88}),
        # Written before the model existed, never trained or tuned on. Measured at 0.907
        # (fr 0.922, es 0.854, en 0.916); lexicons alone gave 0.902 (fr 0.921, es 0.828).
        ("headlines_holdout2.tsv", 0.88, {"fr": 0.90, "es": 0.82, "en": 0.88}),
    ],
)
def test_held_out_sets_stay_above_their_measured_level(
    name: str, overall: float, floors: dict[str, float]
) -> None:
    report = evaluate_categories(read_labelled_path(DATA / name, labels=CATEGORIES), Categorizer())
    assert report.macro_f1 >= overall
    for language, floor in floors.items():
        assert report.per_language[language][2] >= floor, language


def test_seed_stories_are_grouped_without_false_merges() -> None:
    report = evaluate_stories(read_labelled_path(DATA / "seed_stories.tsv"))
    assert report.precision == 1.0
    assert report.recall == 1.0


def test_story_dev_set_has_no_false_merges() -> None:
    report = evaluate_stories(read_labelled_path(DATA / "stories_dev.tsv"))
    assert report.false_merges == []


def test_same_event_in_other_words_and_languages_is_found() -> None:
    # Measles in French, English and Spanish ("écoles", "schools", "escuelas"); the Cannes
    # festival named two ways, "en compétition" and "en lice". Other vaccination campaigns,
    # school stories and contenders in the file stay apart (see the test above).
    report = evaluate_stories(read_labelled_path(DATA / "stories_dev.tsv"))
    assert report.missed == []


def test_read_labelled_reports_the_bad_line() -> None:
    with pytest.raises(LabelledFileError, match=r"x\.tsv:3: label 'weather'"):
        read_labelled("text\tlabel\nA\tsport\nB\tweather\n", "x.tsv", labels=CATEGORIES)
    with pytest.raises(LabelledFileError, match=r"x\.tsv:2: expected text<TAB>label"):
        read_labelled("text\tlabel\nno tab here\n", "x.tsv", labels=CATEGORIES)
    with pytest.raises(LabelledFileError, match="no labelled lines"):
        read_labelled("# only a comment\n", "x.tsv")


def test_eval_categories_prints_every_figure(runner: FlaskCliRunner, tmp_path: Path) -> None:
    source = tmp_path / "mini.tsv"
    source.write_text(
        "text\tlabel\tlang\n"
        "Botola : le Raja s'impose face au Wydad\tsport\tfr\n"
        "Le FMI relève sa prévision de croissance\teconomy\tfr\n"
        "Nigeria's inflation eases as central bank holds rates\teconomy\ten\n"
        "Une journée pas comme les autres à Tanger\tpolitics\tfr\n",
        encoding="utf-8",
    )
    result = runner.invoke(args=["eval-categories", str(source), "--errors"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "4 headlines, accuracy 0.750" in out
    for word in ("precision", "recall", "macro-F1", "confusion", *CATEGORIES):
        assert word in out
    assert "\nen " in out and "\nfr " in out
    assert "5: politics -> other [fr] Une journée" in out


def test_eval_categories_refuses_bad_files(runner: FlaskCliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.tsv"
    bad.write_text("text\tlabel\nUn titre\tmeteo\n", encoding="utf-8")
    result = runner.invoke(args=["eval-categories", str(bad)])
    assert result.exit_code != 0
    assert "bad.tsv:2" in result.output and "Traceback" not in result.output
    latin = tmp_path / "latin.tsv"
    latin.write_bytes("Élection\tpolitics\n".encode("latin-1"))
    assert "not UTF-8" in runner.invoke(args=["eval-categories", str(latin)]).output
    missing = runner.invoke(args=["eval-categories", str(tmp_path / "none.tsv")])
    assert missing.exit_code != 0


def test_eval_categories_runs_in_a_fresh_checkout_before_digest_init(tmp_path: Path) -> None:
    """The README's evaluation command needs no database: there are no corrections yet."""
    missing = tmp_path / "not-created-yet"
    env = {
        **os.environ,
        "DIGEST_INSTANCE_PATH": str(missing),
        "DIGEST_DATABASE_URL": f"sqlite:///{missing / 'digest.db'}",
    }
    digest = Path(sys.executable).parent / "digest"
    result = subprocess.run(
        [str(digest), "eval-categories", str(DATA / "seed_headlines.tsv")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "48 headlines" in result.stdout and "macro-F1" in result.stdout


def test_eval_stories_prints_pairwise_figures(runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["eval-stories", str(DATA / "seed_stories.tsv")])
    assert result.exit_code == 0, result.output
    assert "pairwise precision 1.000  recall 1.000" in result.output
