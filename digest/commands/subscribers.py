"""`digest subscribers import|export`: move the subscriber list in and out as CSV."""

from __future__ import annotations

import datetime as dt
import io
import sys
from pathlib import Path

import click
from flask.cli import with_appcontext

from digest.models import SubscriberStatus


@click.group("subscribers")
def subscribers_group() -> None:
    """Import or export subscribers as CSV (columns email,name,language,categories,status)."""


@subscribers_group.command("import")
@click.argument("csv_file", type=click.Path(dir_okay=False, path_type=Path, allow_dash=True))
@click.option(
    "--dry-run", is_flag=True, help="Check the file and report what would change; write nothing."
)
@with_appcontext
def import_command(csv_file: Path, dry_run: bool) -> None:
    """Add or update subscribers from CSV_FILE ('-' reads stdin).

    Columns: email (required), name, language (fr|en|es), categories (separated by ';'),
    status (pending|active|paused|unsubscribed|bounced; default active). Addresses that
    unsubscribed stay unsubscribed whatever the file says. Lines with problems are listed
    and skipped; the exit status is 1 when there were any.
    """
    from digest.extensions import db
    from digest.subscriptions import CsvFormatError, import_csv

    text = _read_text(csv_file)
    try:
        report = import_csv(
            db.session, io.StringIO(text, newline=""), now=dt.datetime.now(dt.UTC), dry_run=dry_run
        )
    except CsvFormatError as error:
        raise click.ClickException(f"{csv_file}: {error}") from error
    verb = "would be" if dry_run else "were"
    click.echo(f"{'Dry run: nothing written. ' if dry_run else ''}{csv_file}:")
    click.echo(f"  {len(report.created)} {verb} added")
    click.echo(f"  {len(report.updated)} {verb} updated")
    click.echo(f"  {len(report.unchanged)} unchanged")
    if report.kept_unsubscribed:
        click.echo(
            f"  {len(report.kept_unsubscribed)} kept unsubscribed (only they can resubscribe): "
            + ", ".join(report.kept_unsubscribed)
        )
    for problem in report.problems:
        click.echo(
            f"  line {problem.line}: {problem.email or '(empty)'}: {problem.reason}", err=True
        )
    if report.problems:
        click.echo(f"  {len(report.problems)} line(s) skipped", err=True)
        raise click.exceptions.Exit(1)


def _read_text(path: Path) -> str:
    """The file's text as UTF-8 (a BOM is fine); a clear error for anything else."""
    try:
        raw = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    except FileNotFoundError as error:
        raise click.ClickException(f"{path}: no such file") from error
    except OSError as error:
        raise click.ClickException(f"{path}: cannot read it ({error.strerror})") from error
    if not raw.strip():
        raise click.ClickException(f"{path}: the file is empty")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise click.ClickException(
            f"{path}: not UTF-8 text (byte {error.start}); save it as UTF-8 CSV and retry"
        ) from error


@subscribers_group.command("export")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write to this file instead of standard output.",
)
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice([s.value for s in SubscriberStatus]),
    help="Only subscribers with this status (repeatable). Default: everyone.",
)
@with_appcontext
def export_command(out: Path | None, statuses: tuple[str, ...]) -> None:
    """Write every subscriber as CSV: email,name,language,categories,status."""
    from digest.extensions import db
    from digest.subscriptions import export_csv

    if out is None:
        buffer = io.StringIO()
        export_csv(db.session, buffer, statuses)
        click.echo(buffer.getvalue(), nl=False)
        return
    with out.open("w", encoding="utf-8", newline="") as stream:
        count = export_csv(db.session, stream, statuses)
    click.echo(f"{count} subscriber(s) written to {out}", err=True)


COMMANDS: list[click.Command] = [subscribers_group]
