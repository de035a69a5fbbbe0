"""The public archive of editions: a list, one web page per edition, and an Atom feed."""

from __future__ import annotations

import datetime as dt
from typing import Any

from babel.dates import format_date
from flask import Blueprint, Response, abort, current_app, render_template, url_for
from flask_babel import get_locale

from digest.compose import published_edition, published_editions
from digest.extensions import db
from digest.render import brand_name, category_label, quote_marks, safe_link
from digest.richtext import markdown_to_html
from digest.settings import in_force

bp = Blueprint("archive", __name__)


def _language() -> str:
    locale = get_locale()
    return locale.language if locale is not None else current_app.config["DEFAULT_LANGUAGE"]


def _long_date(day: dt.date) -> str:
    return format_date(day, format="full", locale=_language())


@bp.app_template_filter("edition_date")
def edition_date(day: dt.date) -> str:
    """An edition's day written out in the page's language."""
    return _long_date(day)


@bp.app_template_filter("when_web")
def when_web(value: str | None) -> str:
    """An ISO timestamp from a snapshot as a date in the page's language."""
    if not value:
        return ""
    try:
        return format_date(dt.datetime.fromisoformat(value).date(), "long", locale=_language())
    except ValueError:
        return ""


@bp.get("/archive")
def index() -> str:
    """Every edition that went out, newest first."""
    editions = published_editions(db.session)
    return render_template("web/archive/index.html", editions=editions, brand=_brand())


@bp.get("/archive/<day>")
def edition(day: str) -> str:
    """One edition as a web page: the same content as the email, in the site's layout."""
    try:
        parsed = dt.date.fromisoformat(day)
    except ValueError:
        abort(404)
    found = published_edition(db.session, parsed)
    if found is None:
        abort(404)
    snapshot: dict[str, Any] = found.snapshot or {}
    sections = [
        dict(section, label=category_label(section["category"]))
        for section in snapshot.get("sections", [])
    ]
    return render_template(
        "web/archive/edition.html",
        edition=found,
        lead=snapshot.get("lead"),
        intro_html=markdown_to_html(found.intro),
        sections=sections,
        brand=_brand(),
        lang=_language(),
        link=safe_link,
        marks=quote_marks(_language()),
        category_label=category_label,
    )


@bp.get("/archive.atom")
def feed() -> Response:
    """An Atom feed of the editions that went out."""
    editions = published_editions(db.session, limit=30)
    base = current_app.config["PUBLIC_URL"]
    updated = max(
        (_stamp(e.sent_at or e.updated_at) for e in editions),
        default=dt.datetime(2000, 1, 1, tzinfo=dt.UTC),
    )
    body = render_template(
        "web/archive/feed.xml",
        editions=editions,
        brand=_brand(),
        base=base,
        feed_url=base + url_for("archive.feed"),
        updated=updated,
        stamp=_stamp,
    )
    return Response(body, mimetype="application/atom+xml")


def _brand() -> str:
    return brand_name(in_force())


def _stamp(moment: dt.datetime | None) -> dt.datetime:
    if moment is None:
        return dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
