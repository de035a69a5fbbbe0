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

    from digest.extensions import db
    from digest.understand import load_memory

    if not inspect(db.engine).has_table("corrections"):
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
    "--lexicon-only",
    is_flag=True,
    help="Leave out editors' corrections stored in the database.",
)
@with_appcontext
def eval_categories_command(file: Path, errors: bool, lexicon_only: bool) -> None:
    """Score the categorizer on FILE.tsv (columns text, label, optional lang).

    Prints per-class precision, recall and F1, macro-F1, per-language figures and the
    confusion matrix. A first line starting with "text" is taken as a header.
    """
    from digest.models import CATEGORIES
    from digest.understand import Categorizer
    from digest.understand.evaluation import evaluate_categories, format_category_report

    rows = _labelled_rows(file, CATEGORIES)
    categorizer = Categorizer(None if lexicon_only else _memory_if_any())
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


COMMANDS: list[click.Command] = [classify_command, eval_categories_command, eval_stories_command]
