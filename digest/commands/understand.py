"""`digest` commands for the understand area: classify headlines, evaluate the categorizer."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from flask.cli import with_appcontext

from digest.understand.categorizer import Memory


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


COMMANDS: list[click.Command] = [classify_command]
