"""The edition pages: the day's edition exactly as it will be sent, for any variant."""

from __future__ import annotations

from flask import current_app, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from digest.extensions import db
from digest.models import CATEGORIES, Edition, Subscriber
from digest.richtext import MAX_INTRO_CHARS, markdown_to_html
from digest.web.admin.blueprint import bp, current_editor, local_today, parse_day
from digest.web.admin.preview import build_preview


def _variant_from_request() -> tuple[str, list[str], str]:
    """The language, categories and subscriber address asked for in the query string."""
    cfg = current_app.config
    languages = list(cfg.get("LANGUAGES", ("fr",)))
    language = request.args.get("lang", "")
    if language not in languages:
        language = cfg.get("DEFAULT_LANGUAGE", languages[0])
    known = list(cfg.get("CATEGORY_ORDER", CATEGORIES))
    categories = [c for c in request.args.getlist("cat") if c in known] or known
    return language, categories, request.args.get("subscriber", "").strip()[:320]


@bp.route("/editions/", endpoint="editions")
def editions_page() -> ResponseReturnValue:
    """The most recent editions with their status, and a way to open any day."""
    editions = db.session.scalars(select(Edition).order_by(Edition.day.desc()).limit(60)).all()
    return render_template("web/admin/editions.html", editions=editions, today=local_today())


@bp.route("/editions/open", endpoint="edition_for")
def edition_for() -> ResponseReturnValue:
    """The day picker's target: redirect to that day's edition page."""
    return redirect(
        url_for("admin.edition", day=parse_day(request.args.get("date", "")).isoformat())
    )


@bp.route("/editions/<day>", endpoint="edition")
def edition_page(day: str) -> ResponseReturnValue:
    """The edition of ``day`` as a subscriber gets it: HTML at two widths, text, headers."""
    date = parse_day(day)
    edition = db.session.scalar(select(Edition).where(Edition.day == date))
    language, categories, subscriber_email = _variant_from_request()
    cfg = current_app.config
    context = {
        "day": date,
        "edition": edition,
        "language": language,
        "categories": categories,
        "languages": list(cfg.get("LANGUAGES", ("fr",))),
        "all_categories": list(cfg.get("CATEGORY_ORDER", CATEGORIES)),
        "subscriber_email": subscriber_email,
        "preview": None,
        "problem": None,
        "intro_html": markdown_to_html(edition.intro if edition else None),
        "max_intro": MAX_INTRO_CHARS,
    }
    if edition is None:
        return render_template("web/admin/edition.html", **context), 404
    recipient: Subscriber | None = None
    if subscriber_email:
        recipient = db.session.scalar(
            select(Subscriber).where(Subscriber.email == subscriber_email.lower())
        )
        if recipient is None:
            context["problem"] = f"No subscriber has the address {subscriber_email}."
            return render_template("web/admin/edition.html", **context), 404
        language, categories = recipient.language, list(recipient.categories or categories)
        context.update(language=language, categories=categories)
    else:
        # A stand-in reader of the chosen variant, addressed to the editor; never stored.
        recipient = Subscriber(
            id=0,
            email=current_editor().email,
            language=language,
            categories=categories,
            token_version=1,
        )
    context["preview"] = build_preview(
        edition,
        language=language,
        categories=categories,
        recipient=recipient,
        config=current_app.config,
    )
    return render_template("web/admin/edition.html", **context)
