"""The desk page: one day's articles by category and story, and the editor's changes to it."""

from __future__ import annotations

import datetime as dt

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from digest import desk, settings
from digest.compose import NothingToCompose
from digest.extensions import db
from digest.jobs import prepare_edition
from digest.models import Article
from digest.web.admin.blueprint import (
    audit_action,
    bp,
    client_ip,
    current_editor,
    local_today,
    now,
    parse_day,
)


@bp.route("/", endpoint="desk")
def desk_page() -> ResponseReturnValue:
    """Today's desk, or another day's with ``?date=YYYY-MM-DD``."""
    requested = request.args.get("date")
    day = parse_day(requested) if requested else local_today()
    cfg = settings.effective_config(db.session, current_app.config)
    order = list(cfg.get("CATEGORY_ORDER", desk.CATEGORIES))
    board = desk.build_desk(
        db.session,
        day,
        cfg["TIMEZONE"],
        order=order,
        flag_below=float(cfg.get("CATEGORY_FLAG_BELOW", desk.DEFAULT_FLAG_BELOW)),
    )
    stories = [
        (story.items[0].article.id, story.items[0].article.title)
        for section in board.sections
        for story in section.stories
    ]
    return render_template(
        "web/admin/desk.html", desk=board, today=local_today(), categories=order, stories=stories
    )


def _form_day() -> dt.date:
    return parse_day(request.form.get("day", ""))


def _article_or_404(article_id: int) -> Article:
    article = db.session.get(Article, article_id)
    if article is None:
        abort(404)
    return article


def _back(day: dt.date, anchor: str | None = None) -> ResponseReturnValue:
    target = url_for("admin.desk", date=day.isoformat())
    return redirect(f"{target}#{anchor}" if anchor else target), 303


def _apply(day: dt.date, change: str, anchor: str | None = None) -> ResponseReturnValue:
    """Commit the change, rebuild the day's draft, and go back to the desk."""
    db.session.commit()
    desk.refresh_draft(db.session, day, now())
    db.session.commit()
    flash(change, "info")
    return _back(day, anchor)


def _refused(day: dt.date, error: desk.DeskError) -> ResponseReturnValue:
    db.session.rollback()
    flash(str(error), "error")
    return _back(day)


@bp.route("/articles/<int:article_id>/category", methods=["POST"])
def change_category(article_id: int) -> ResponseReturnValue:
    """Correct an article's category (its story follows; the categorizer learns)."""
    article, day = _article_or_404(article_id), _form_day()
    category = request.form.get("category", "")
    try:
        desk.change_category(db.session, article, category, current_editor(), now(), ip=client_ip())
    except (desk.DeskError, ValueError) as error:
        return _refused(day, desk.DeskError(str(error)))
    edition = desk.edition_of(db.session, day)
    note = " The sent edition stays as it went out." if edition and edition.is_frozen else ""
    return _apply(day, f"“{article.title}” is now in {category}.{note}", f"article-{article.id}")


@bp.route("/articles/<int:article_id>/exclude", methods=["POST"])
def exclude_article(article_id: int) -> ResponseReturnValue:
    """Leave an article out of the edition, or bring it back (``excluded=0``)."""
    article, day = _article_or_404(article_id), _form_day()
    excluded = request.form.get("excluded", "1") != "0"
    try:
        desk.ensure_editable(desk.edition_of(db.session, day))
        desk.set_excluded(db.session, article, excluded, current_editor(), now(), ip=client_ip())
    except desk.DeskError as error:
        return _refused(day, error)
    verb = "left out of" if excluded else "back in"
    return _apply(day, f"“{article.title}” is {verb} the edition.", f"article-{article.id}")


@bp.route("/articles/<int:article_id>/lead", methods=["POST"])
def pin_lead(article_id: int) -> ResponseReturnValue:
    """Pin an article as the lead of the day's edition."""
    article, day = _article_or_404(article_id), _form_day()
    edition = desk.edition_of(db.session, day)
    if edition is None:
        return _refused(day, desk.DeskError("Build the edition first, then pin its lead."))
    try:
        desk.pin_lead(db.session, edition, article, current_editor(), now(), ip=client_ip())
    except desk.DeskError as error:
        return _refused(day, error)
    return _apply(day, f"“{article.title}” leads the edition.", f"article-{article.id}")


@bp.route("/editions/<day>/unpin", methods=["POST"])
def unpin_lead(day: str) -> ResponseReturnValue:
    """Let the automatic choice pick the lead again."""
    date = parse_day(day)
    edition = desk.edition_of(db.session, date)
    if edition is None:
        abort(404)
    try:
        desk.pin_lead(db.session, edition, None, current_editor(), now(), ip=client_ip())
    except desk.DeskError as error:
        return _refused(date, error)
    return _apply(date, "The lead is chosen automatically again.")


@bp.route("/articles/<int:article_id>/merge", methods=["POST"])
def merge_story(article_id: int) -> ResponseReturnValue:
    """Put an article's story into another story."""
    article, day = _article_or_404(article_id), _form_day()
    into = _article_or_404(request.form.get("into", 0, type=int) or 0)
    try:
        desk.ensure_editable(desk.edition_of(db.session, day))
        desk.merge_story(db.session, article, into, current_editor(), now(), ip=client_ip())
    except desk.DeskError as error:
        return _refused(day, error)
    return _apply(day, f"Merged into the story of “{into.title}”.", f"article-{into.id}")


@bp.route("/articles/<int:article_id>/split", methods=["POST"])
def split_story(article_id: int) -> ResponseReturnValue:
    """Take an article out of its story."""
    article, day = _article_or_404(article_id), _form_day()
    try:
        desk.ensure_editable(desk.edition_of(db.session, day))
        desk.split_story(db.session, article, current_editor(), now(), ip=client_ip())
    except desk.DeskError as error:
        return _refused(day, error)
    return _apply(day, f"“{article.title}” is a story of its own.", f"article-{article.id}")


@bp.route("/editions/<day>/intro", methods=["POST"])
def edition_intro(day: str) -> ResponseReturnValue:
    """Save the edition's introduction (Markdown)."""
    date = parse_day(day)
    edition = desk.edition_of(db.session, date)
    if edition is None:
        abort(404)
    try:
        desk.set_intro(
            db.session,
            edition,
            request.form.get("intro", ""),
            current_editor(),
            now(),
            ip=client_ip(),
        )
    except desk.DeskError as error:
        db.session.rollback()
        flash(str(error), "error")
        return redirect(url_for("admin.edition", day=date.isoformat())), 303
    db.session.commit()
    flash("Introduction saved.", "info")
    return redirect(url_for("admin.edition", day=date.isoformat())), 303


@bp.route("/editions/<day>/build", methods=["POST"])
def build_edition(day: str) -> ResponseReturnValue:
    """Compose (or refresh) the day's draft edition from the desk."""
    date = parse_day(day)
    edition = desk.edition_of(db.session, date)
    if edition is not None and edition.is_frozen:
        return _refused(date, desk.EditionFrozen(f"The edition of {day} is {edition.status}."))
    try:
        prepare_edition(db.session, date, now())
    except NothingToCompose as error:
        db.session.rollback()
        flash(str(error), "error")
        return _back(date)
    audit_action("edition.build", target=day)
    db.session.commit()
    flash(f"The edition of {day} is built.", "info")
    return _back(date)
