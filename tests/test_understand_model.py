"""The trained category model: `digest train-categories`, reproducibility, and its use."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from flask.testing import FlaskCliRunner

from digest.models import CATEGORIES
from digest.understand import Categorizer
from digest.understand.evaluation import evaluate_categories, read_labelled_path
from digest.understand.model import MODEL_PATH, ModelError, load_model

DATA = Path(__file__).resolve().parent / "data"
TRAINING = [DATA / "headlines_dev.tsv", DATA / "headlines_train.tsv"]
HELD_OUT = [DATA / "headlines_holdout.tsv", DATA / "headlines_holdout2.tsv"]

# Words no lexicon knows ("zorglub", "plimbo"...) taught to a tiny model as French health words.
TINY = "text\tlabel\tlang\n" + "".join(
    [
        f"Zorglub, plimbo, vastrol et quibix : alerte numéro {n} à Fès\thealth\tfr\n"
        for n in range(8)
    ]
    + [f"Le Raja s'impose à Berkane, journée {n}\tsport\tfr\n" for n in range(3)]
    + [f"Le gouvernement adopte le décret {n}\tpolitics\tfr\n" for n in range(3)]
)


def train(runner: FlaskCliRunner, output: Path, *files: Path) -> str:
    """Run `digest train-categories` and return its output; it must succeed."""
    result = runner.invoke(args=["train-categories", *map(str, files), "--output", str(output)])
    assert result.exit_code == 0, result.output
    return result.output


def test_shipped_model_is_exactly_what_training_on_the_team_data_gives(
    runner: FlaskCliRunner, tmp_path: Path
) -> None:
    # Fails when the model file is stale (data changed, not retrained) or training drifts.
    output = train(runner, tmp_path / "model.json", *TRAINING)
    assert (tmp_path / "model.json").read_bytes() == MODEL_PATH.read_bytes()
    assert "fr: " in output and "es: " in output and "en: " in output


def test_training_is_reproducible_and_ignores_file_order(
    runner: FlaskCliRunner, tmp_path: Path
) -> None:
    first, second, swapped = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    train(runner, first, *TRAINING)
    train(runner, second, *TRAINING)
    train(runner, swapped, *reversed(TRAINING))
    assert first.read_bytes() == second.read_bytes() == swapped.read_bytes()
    content = json.loads(first.read_text("utf-8"))
    assert content["categories"] == list(CATEGORIES)


def test_training_data_covers_every_class_in_every_language() -> None:
    rows = [row for path in TRAINING for row in read_labelled_path(path, labels=CATEGORIES)]
    assert len(rows) >= 1200
    cells = Counter((row.language, row.label) for row in rows)
    for language in ("fr", "es", "en"):
        for category in CATEGORIES:
            assert cells[(language, category)] >= 50, (language, category)
    assert sum(1 for row in rows if row.language == "fr") >= 600


def test_held_out_files_are_not_training_data() -> None:
    trained_on = {row.text for path in TRAINING for row in read_labelled_path(path)}
    for path in HELD_OUT:
        assert not trained_on & {row.text for row in read_labelled_path(path)}, path.name


def test_a_trained_word_moves_the_decision_and_is_shown_as_evidence(
    runner: FlaskCliRunner, tmp_path: Path
) -> None:
    source = tmp_path / "tiny.tsv"
    source.write_text(TINY, encoding="utf-8")
    train(runner, tmp_path / "tiny.json", source)
    headline = "Zorglub, plimbo, vastrol, quibix : Meknès touchée à son tour"
    without = Categorizer(model=None).classify(headline, language="fr")
    assert (without.category, without.flagged) == ("other", True)
    with_model = Categorizer(model=load_model(tmp_path / "tiny.json")).classify(
        headline, language="fr"
    )
    assert (with_model.category, with_model.flagged) == ("health", False)
    # The strongest learned words are shown (equal here, so the first three by name).
    assert with_model.evidence == [
        "plimbo (learned: health)",
        "quibix (learned: health)",
        "vastrol (learned: health)",
    ]


def test_the_shipped_model_is_used_and_helps_on_held_out_french() -> None:
    rows = read_labelled_path(DATA / "headlines_holdout.tsv", labels=CATEGORIES)
    with_model = evaluate_categories(rows, Categorizer())
    lexicons_only = evaluate_categories(rows, Categorizer(model=None))
    assert with_model.per_language["fr"][2] > lexicons_only.per_language["fr"][2] + 0.05
    learned = Categorizer().classify("Hémodialyse : la liste d'attente s'allonge à Safi")
    assert any("(learned:" in item for item in learned.evidence)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("text\tlabel\tlang\nUn titre\tmeteo\tfr\n", "bad.tsv:2: label 'meteo'"),
        ("text\tlabel\tlang\nUn titre sans étiquette\n", "bad.tsv:2: expected text<TAB>label"),
        ("text\tlabel\tlang\nEin Titel\tsport\tde\n", "bad.tsv:2: language 'de'"),
        ("A\tsport\tfr\nB\tsport\tfr\nA\thealth\tfr\n", "bad.tsv:3: same headline as"),
        ("# nothing but a comment\n", "bad.tsv: no labelled lines"),
    ],
)
def test_training_refuses_bad_files_with_the_line(
    runner: FlaskCliRunner, tmp_path: Path, content: str, message: str
) -> None:
    bad = tmp_path / "bad.tsv"
    bad.write_text(content, encoding="utf-8")
    output = tmp_path / "model.json"
    result = runner.invoke(args=["train-categories", str(bad), "--output", str(output)])
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output
    assert not output.exists(), "no model is written from bad data"


def test_training_refuses_missing_files_and_unwritable_output(
    runner: FlaskCliRunner, tmp_path: Path
) -> None:
    missing = runner.invoke(args=["train-categories", str(tmp_path / "none.tsv")])
    assert missing.exit_code == 2
    assert "does not exist" in missing.output
    nothing = runner.invoke(args=["train-categories"])
    assert nothing.exit_code == 2
    source = tmp_path / "tiny.tsv"
    source.write_text(TINY, encoding="utf-8")
    target = tmp_path / "no-such-dir" / "model.json"
    result = runner.invoke(args=["train-categories", str(source), "--output", str(target)])
    assert result.exit_code == 1
    assert "cannot write" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[]",
        '{"format": 99}',
        '{"format": 1, "categories": ["a"], "languages": {}}',
        json.dumps({"format": 1, "categories": list(CATEGORIES), "languages": {"fr": {"x": [1]}}}),
        json.dumps(
            {
                "format": 1,
                "categories": list(CATEGORIES),
                "languages": {"fr": {"features": {"x": [1]}}},
            }
        ),
    ],
)
def test_a_broken_model_file_is_refused_with_a_reason(tmp_path: Path, content: str) -> None:
    broken = tmp_path / "model.json"
    broken.write_text(content, encoding="utf-8")
    with pytest.raises(ModelError, match=r"model\.json"):
        load_model(broken)
