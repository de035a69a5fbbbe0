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
from digest.ingest.sources import (
    SourceError,
    add_source,
    check_sources,
    list_sources,
    remove_source,
)
from digest.models import Source


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
    requested = list(locations) or None
    # Planned only to size the progress bar; the service plans the same way itself.
    planned = plan_locations(session, requested)
    if not planned:
        raise click.UsageError("no location to read")
    now = dt.datetime.now(dt.UTC)
    report: IngestReport
    with _progress(len(planned), "Reading sources") as tick:
        if dry_run:
            report = preview_locations(session, requested, on_progress=tick)
        else:
            report = ingest_locations(session, requested, now, on_progress=tick)
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


def _source_row(source: Source) -> dict[str, object]:
    return {
        "id": source.id,
        "kind": source.kind,
        "location": source.location,
        "name": source.name,
        "enabled": source.enabled,
        "last_fetched_at": source.last_fetched_at.isoformat() if source.last_fetched_at else None,
        "status": source.status,
        "last_error": source.last_error,
    }


@click.group("sources")
def sources_group() -> None:
    """Manage the sources `digest ingest` reads every morning."""


@sources_group.command("add")
@click.argument("location", metavar="PATH|URL")
@click.option("--name", help="Display name (default: the host or file name).")
@click.option("--disabled", is_flag=True, help="Remember the source without reading it daily.")
@with_appcontext
def sources_add(location: str, name: str | None, disabled: bool) -> None:
    """Add a source: an aggregator text dump, an RSS/Atom feed or an article page."""
    try:
        source = add_source(db.session(), location, name=name, enabled=not disabled)
    except SourceError as error:
        raise click.BadParameter(str(error), param_hint="PATH|URL") from error
    db.session.commit()
    state = "disabled" if disabled else "enabled"
    click.echo(f"Source {source.id} ({source.kind}, {state}): {source.location}")


@sources_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the sources as JSON.")
@with_appcontext
def sources_list(as_json: bool) -> None:
    """List sources with their kind, state, last fetch and last error."""
    rows = [_source_row(source) for source in list_sources(db.session())]
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    if not rows:
        click.echo("No sources configured: `digest ingest` reads seeds/.")
        return
    for row in rows:
        state = "on " if row["enabled"] else "off"
        fetched = row["last_fetched_at"] or "never"
        line = f"{row['id']:>4} {state} {row['kind']:<5} {row['status'] or '-':<9} {fetched}  "
        click.echo(line + str(row["location"]))
        if row["last_error"]:
            click.echo(f"          error: {row['last_error']}")


@sources_group.command("remove")
@click.argument("reference", metavar="ID|LOCATION")
@with_appcontext
def sources_remove(reference: str) -> None:
    """Remove a source; the articles it brought stay."""
    try:
        source = remove_source(db.session(), reference)
    except SourceError as error:
        raise click.BadParameter(str(error), param_hint="ID|LOCATION") from error
    db.session.commit()
    click.echo(f"Removed source {source.id}: {source.location}")


@sources_group.command("check")
@click.argument("references", nargs=-1, metavar="[ID|LOCATION]...")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@with_appcontext
def sources_check(references: tuple[str, ...], as_json: bool) -> None:
    """Fetch and parse sources (default: the enabled ones) without storing articles."""
    try:
        report = check_sources(db.session(), list(references) or None, dt.datetime.now(dt.UTC))
    except SourceError as error:
        raise click.BadParameter(str(error), param_hint="ID|LOCATION") from error
    db.session.commit()
    if as_json:
        click.echo(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
    else:
        for entry in report.sources:
            if entry.status == "error":
                click.echo(f"FAILED   {entry.location}: {entry.error}")
            else:
                click.echo(f"ok       {entry.location}: {entry.kind}, {entry.found} items")
        if not report.sources:
            click.echo("No enabled sources to check.")
    if report.failed:
        raise click.ClickException(
            f"{len(report.failed)} of {len(report.sources)} source(s) failed"
        )


COMMANDS: list[click.Command] = [ingest_command, sources_group]
