"""`digest` commands for the ingest area."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click
from flask.cli import with_appcontext

from digest.extensions import db
from digest.ingest import (
    IngestReport,
    SourceReport,
    ingest_locations,
    plan_locations,
    preview_locations,
)


@contextmanager
def _progress(total: int, label: str) -> Iterator[Callable[[SourceReport], None]]:
    """A progress bar on stderr when it is a terminal; silent otherwise (pipes, cron)."""
    if not sys.stderr.isatty() or total < 2:
        yield lambda report: None
        return
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:

        def tick(report: SourceReport) -> None:
            bar.update(1)

        yield tick


def _summary_line(report: SourceReport, dry_run: bool) -> str:
    if report.status == "error":
        return f"FAILED   {report.location}: {report.error}"
    if report.status == "unchanged":
        return f"unchanged {report.location}"
    if dry_run:
        return f"ok       {report.location}: {report.found} items (dry run, nothing stored)"
    return (
        f"ok       {report.location}: {report.found} items, "
        f"{report.added} new, {report.updated} seen again"
    )


@click.command("ingest")
@click.argument("locations", nargs=-1, metavar="[PATH|URL]...")
@click.option("--dry-run", is_flag=True, help="Parse and print; write nothing to the database.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@with_appcontext
def ingest_command(locations: tuple[str, ...], dry_run: bool, as_json: bool) -> None:
    """Read news sources and store their articles.

    PATH may be a file or a directory (its .txt/.xml/.html files); URL an http(s) feed
    or page. Without arguments: the enabled sources (see `digest sources`), else seeds/.
    With --dry-run --json, prints each source's headlines and articles (title, source,
    date, paragraphs) and stores nothing. Exits non-zero when any source failed.
    """
    session = db.session()
    planned = plan_locations(session, list(locations) or None)
    if not planned:
        raise click.UsageError("no location to read")
    now = dt.datetime.now(dt.UTC)
    report: IngestReport
    with _progress(len(planned), "Reading sources") as tick:
        if dry_run:
            report = preview_locations(session, planned, on_progress=tick)
        else:
            report = ingest_locations(session, planned, now, on_progress=tick)
    if as_json:
        click.echo(json.dumps(report.to_dict(with_items=dry_run), ensure_ascii=False, indent=2))
    else:
        for entry in report.sources:
            click.echo(_summary_line(entry, dry_run))
            if dry_run and entry.parsed:
                for headline in entry.parsed.headlines:
                    click.echo(f"  - {headline}")
                for article in entry.parsed.articles:
                    date = article.published_at.date().isoformat() if article.published_at else "?"
                    click.echo(
                        f"  * {article.title} ({article.source_name or '?'}, {date}, "
                        f"{len(article.blocks or [])} blocks)"
                    )
        if not dry_run:
            click.echo(f"{report.added} new articles, {report.updated} seen again.")
    if report.failed:
        raise click.ClickException(
            f"{len(report.failed)} of {len(report.sources)} source(s) failed: "
            + "; ".join(f"{entry.location}: {entry.error}" for entry in report.failed)
        )


COMMANDS: list[click.Command] = [ingest_command]
