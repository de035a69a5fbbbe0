"""`digest` commands for the understand area: classify headlines, evaluate the categorizer."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from flask.cli import with_appcontext

from digest.understand.categorizer import Memory
from digest.understand.evaluation import LabelledRow


def read_text_input(path: Path | None) -> str:
    """The UTF-8 text of ``path`` (stdin when None), or a ClickException saying what is wrong."""
    name = str(path) if path is not None else "standard input"
    try:
        data = path.read_bytes() if path is not None else sys.stdin.buffer.read()
    except OSError as error:
        raise click.ClickException(f"cannot read {name}: {error.strerror or error}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise click.ClickException(
            f"{name} is not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start}); "
            "convert it first, e.g. with iconv -t UTF-8"
        ) from None
    if "\x00" in text:
        raise click.ClickException(f"{name} looks like a binary file, not text")
    return text


def _memory_if_any() -> Memory | None:
    """Editors' lessons from the configured database, when its schema exists."""
    from sqlalchemy import inspect
    from sqlalchemy.exc import OperationalError

    from digest.extensions import db
    from digest.understand import load_memory

    try:
        if not inspect(db.engine).has_table("corrections"):
            return None
    except OperationalError:
        # No database yet (a fresh checkout before `digest init`): there are no lessons to
        # apply, and scoring the shipped categorizer needs none.
        return None
    return load_memory(db.session())


@click.command("classify")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--evidence", is_flag=True, help="Also print the evidence and the flagged mark.")
@with_appcontext
def classify_command(file: Path | None, evidence: bool) -> None:
    """Sort headlines, one per line, from FILE (or standard input).

    Prints one JSON object per input line, in the same order:
    {"text", "language", "category", "confidence"}. Editors' corrections stored in the
    database are taken into account.
    """
    from digest.understand import Categorizer

    if file is not None and not file.exists():
        raise click.BadParameter(f"{file} does not exist", param_hint="FILE")
    text = read_text_input(file)
    categorizer = Categorizer(_memory_if_any())
    for line in text.splitlines():
        headline = line.strip()
        result = categorizer.classify(headline)
        row: dict[str, object] = {
            "text": headline,
            "language": result.language,
            "category": result.category,
            "confidence": result.confidence,
        }
        if evidence:
            row["evidence"] = result.evidence
            row["flagged"] = result.flagged
        click.echo(json.dumps(row, ensure_ascii=False))


def _labelled_rows(file: Path, labels: tuple[str, ...] | None) -> list[LabelledRow]:
    from digest.understand.evaluation import LabelledFileError, read_labelled

    text = read_text_input(file)
    try:
        return read_labelled(text, str(file), labels=labels)
    except LabelledFileError as error:
        raise click.ClickException(str(error)) from None


@click.command("eval-categories")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--errors", is_flag=True, help="Also list the misclassified headlines.")
@click.option(
    "--no-corrections",
    is_flag=True,
    help="Leave out editors' corrections stored in the database.",
)
@click.option("--no-model", is_flag=True, help="Leave out the trained model: lexicons only.")
@click.option(
    "--lexicon-only",
    is_flag=True,
    help="The lexicons alone: no trained model, no editors' corrections.",
)
@with_appcontext
def eval_categories_command(
    file: Path, errors: bool, no_corrections: bool, no_model: bool, lexicon_only: bool
) -> None:
    """Score the categorizer on FILE.tsv (columns text, label, optional lang).

    Prints per-class precision, recall and F1, macro-F1, per-language figures and the
    confusion matrix. A first line starting with "text" is taken as a header.
    """
    from digest.models import CATEGORIES
    from digest.understand import Categorizer
    from digest.understand.evaluation import evaluate_categories, format_category_report

    rows = _labelled_rows(file, CATEGORIES)
    memory = None if no_corrections or lexicon_only else _memory_if_any()
    if no_model or lexicon_only:
        categorizer = Categorizer(memory, model=None)
    else:
        categorizer = Categorizer(memory)
    report = evaluate_categories(rows, categorizer)
    click.echo(format_category_report(report, show_errors=errors))


@click.command("eval-stories")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--errors", is_flag=True, help="Also list false merges and missed pairs.")
def eval_stories_command(file: Path, errors: bool) -> None:
    """Score story clustering on FILE.tsv (columns text, story id, optional lang).

    Prints pairwise precision (pairs put together that belong together) and recall
    (pairs that belong together and were put together).
    """
    from digest.understand.evaluation import evaluate_stories, format_story_report

    report = evaluate_stories(_labelled_rows(file, None))
    click.echo(format_story_report(report, show_errors=errors))


@click.command("train-categories")
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Where to write the model (default: the model shipped in the package).",
)
def train_categories_command(files: tuple[Path, ...], output: Path | None) -> None:
    """Train the category model from labelled FILES.tsv (columns text, label, lang).

    The same files always give a byte-identical model file. The project's model is trained
    from tests/data/headlines_dev.tsv and tests/data/headlines_train.tsv; the held-out
    files are never given to it.
    """
    import hashlib
    import os

    from digest.models import CATEGORIES
    from digest.understand.model import MODEL_PATH, ModelError, TrainingRow, count, dumps

    target = output or MODEL_PATH
    rows: list[TrainingRow] = []
    seen: dict[str, str] = {}
    for file in files:
        for row in _labelled_rows(file, CATEGORIES):
            if row.language is not None and row.language not in ("fr", "es", "en"):
                raise click.ClickException(
                    f"{file}:{row.line}: language {row.language!r} is not one of fr, es, en"
                )
            where = f"{file}:{row.line}"
            if row.text in seen:
                raise click.ClickException(f"{where}: same headline as {seen[row.text]}")
            seen[row.text] = where
            rows.append(TrainingRow(row.text, row.label, row.language))
    try:
        content = count(rows)
    except ModelError as error:
        raise click.ClickException(str(error)) from None
    data = dumps(content).encode("utf-8")
    partial = target.with_name(target.name + ".partial")
    try:
        partial.write_bytes(data)
        os.replace(partial, target)
    except OSError as error:
        raise click.ClickException(f"cannot write {target}: {error.strerror or error}") from None
    languages: dict[str, dict[str, list[int]]] = content["languages"]  # type: ignore[assignment]
    for language, entry in languages.items():
        click.echo(
            f"{language}: {sum(entry['headlines'])} headlines, {len(entry['features'])} features"
        )
    click.echo(f"wrote {target} (sha256 {hashlib.sha256(data).hexdigest()[:16]})")


COMMANDS: list[click.Command] = [
    classify_command,
    eval_categories_command,
    eval_stories_command,
    train_categories_command,
]
