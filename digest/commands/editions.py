"""`digest build` and `digest preview`: compose a day's edition, show it as a reader gets it."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import select

from digest.calendar import newsroom_today
from digest.models import CATEGORIES, Edition, Subscriber


def _parse_day(ctx: click.Context, param: click.Parameter, value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a date; write it as YYYY-MM-DD, e.g. 2026-11-28."
        ) from None


def _parse_categories(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> list[str] | None:
    if value is None:
        return None
    chosen = [part.strip().lower() for part in value.split(",") if part.strip()]
    unknown = [c for c in chosen if c not in CATEGORIES]
    if unknown:
        raise click.BadParameter(
            f"unknown categor{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}; "
            f"choose from {', '.join(CATEGORIES)}"
        )
    return chosen


def _today(now: dt.datetime) -> dt.date:
    return newsroom_today(current_app.config["TIMEZONE"], now)


date_option = click.option(
    "--date",
    "day",
    metavar="YYYY-MM-DD",
    callback=_parse_day,
    help="The edition's day (default: today in the configured TIMEZONE).",
)


@click.command("build")
@date_option
@with_appcontext
def build_command(day: dt.date | None) -> None:
    """Classify the ingested headlines, then compose and store the edition for a day.

    Categories set by an editor are kept; a sent edition is left as it is.
    """
    from digest.compose import NothingToCompose
    from digest.extensions import db
    from digest.jobs import prepare_edition

    now = dt.datetime.now(dt.UTC)
    day = day or _today(now)
    try:
        edition = prepare_edition(db.session, day, now)
    except NothingToCompose as error:
        raise click.ClickException(str(error)) from None
    snapshot = edition.snapshot or {}
    sections = snapshot.get("sections", [])
    headlines = sum(1 + len(i.get("related", [])) for s in sections for i in s["items"])
    lead = snapshot.get("lead")
    click.echo(f"Edition of {edition.day.isoformat()} ({edition.status})")
    click.echo(f"  lead: {lead['title'] if lead else '(none)'}")
    for section in sections:
        count = sum(1 + len(i.get("related", [])) for i in section["items"])
        click.echo(f"  {section['category']}: {count}")
    click.echo(f"  {headlines} headlines in {len(sections)} sections")


@click.command("preview")
@date_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["html", "text", "eml"]),
    default="html",
    show_default=True,
    help="The HTML part, the text part, or the whole message as sent.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write to this file instead of standard output.",
)
@click.option(
    "--language",
    type=click.Choice(["fr", "en", "es"]),
    help="The reader's language (default: the subscriber's, else DEFAULT_LANGUAGE).",
)
@click.option(
    "--categories",
    callback=_parse_categories,
    metavar="CAT,CAT",
    help=f"Comma-separated sections to include (default: all of {', '.join(CATEGORIES)}).",
)
@click.option(
    "--subscriber",
    "subscriber_email",
    metavar="EMAIL",
    help="Preview as this subscriber: their language, sections and personal links.",
)
@with_appcontext
def preview_command(
    day: dt.date | None,
    fmt: str,
    out: Path | None,
    language: str | None,
    categories: list[str] | None,
    subscriber_email: str | None,
) -> None:
    """Show a day's edition exactly as a subscriber receives it."""
    from digest.extensions import db
    from digest.mail.message import build_message, personal_links
    from digest.render import render_variant, sample_personal

    now = dt.datetime.now(dt.UTC)
    day = day or _today(now)
    edition = db.session.scalar(select(Edition).where(Edition.day == day))
    if edition is None:
        raise click.ClickException(
            f"there is no edition for {day.isoformat()}; build it first with "
            f"`digest build --date {day.isoformat()}`"
        )
    from digest.settings import effective_config

    config = effective_config(db.session, current_app.config)
    subscriber = None
    if subscriber_email:
        subscriber = db.session.scalar(
            select(Subscriber).where(Subscriber.email == subscriber_email.strip().lower())
        )
        if subscriber is None:
            raise click.ClickException(f"no subscriber with the address {subscriber_email!r}")
    language = language or (subscriber.language if subscriber else config["DEFAULT_LANGUAGE"])
    if categories is None:
        categories = list(subscriber.categories) if subscriber else list(CATEGORIES)
    rendered = render_variant(edition, language, categories, config)
    if subscriber is not None:
        personal = personal_links(subscriber, edition)
        recipient = subscriber.email
    else:
        personal = sample_personal(edition, language)
        recipient = "reader@example.org"
    message = build_message(rendered, recipient, personal, config, now=now)
    if fmt == "eml":
        payload = message.as_bytes()
    else:
        part = message.get_body(preferencelist=("html",) if fmt == "html" else ("plain",))
        payload = str(part.get_content() if part is not None else "").encode("utf-8")
    if out is None:
        sys.stdout.buffer.write(payload)
        sys.stdout.buffer.flush()
        return
    try:
        out.write_bytes(payload)
    except OSError as error:
        raise click.ClickException(f"cannot write {out}: {error.strerror or error}") from None
    click.echo(f"Wrote {out} ({len(payload):,} bytes, {fmt})", err=True)


COMMANDS: list[click.Command] = [build_command, preview_command]
