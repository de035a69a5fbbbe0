"""The edition pages: the edition exactly as it will be sent, and sending it."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import (
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from digest import desk, sending, settings
from digest.extensions import db
from digest.models import CATEGORIES, Edition, ScheduledRun, Subscriber
from digest.richtext import MAX_INTRO_CHARS, markdown_to_html
from digest.web.admin.blueprint import bp, client_ip, current_editor, local_today, now, parse_day


@bp.route("/editions/", endpoint="editions")
def editions_page() -> ResponseReturnValue:
    """The most recent editions with their status, and a way to open any day."""
    editions = db.session.scalars(select(Edition).order_by(Edition.day.desc()).limit(60)).all()
    runs = db.session.scalars(
        select(ScheduledRun).order_by(ScheduledRun.started_at.desc()).limit(14)
    ).all()
    return render_template(
        "web/admin/editions.html", editions=editions, runs=runs, today=local_today()
    )


@bp.route("/editions/open", endpoint="edition_for")
def edition_for() -> ResponseReturnValue:
    """The day picker's target: redirect to that day's edition page."""
    day = parse_day(request.args.get("date", ""))
    return redirect(url_for("admin.edition", day=day.isoformat()))


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


def _edition_or_404(day: dt.date) -> Edition:
    edition = desk.edition_of(db.session, day)
    if edition is None:
        abort(404)
    return edition


@bp.route("/editions/<day>", endpoint="edition")
def edition_page(day: str) -> ResponseReturnValue:
    """The edition of ``day`` as a subscriber gets it: HTML at two widths, text, headers."""
    date = parse_day(day)
    edition = desk.edition_of(db.session, date)
    language, categories, subscriber_email = _variant_from_request()
    cfg = settings.effective_config(db.session, current_app.config)
    context: dict[str, Any] = {
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
        "progress": None,
    }
    if edition is None:
        return render_template("web/admin/edition.html", **context), 404
    report = sending.progress(db.session, edition)
    if sending.finish_if_done(db.session, edition, report):
        report = sending.progress(db.session, edition)
    db.session.commit()
    context["progress"] = report
    subscriber: Subscriber | None = None
    if subscriber_email:
        subscriber = db.session.scalar(
            select(Subscriber).where(Subscriber.email == subscriber_email.lower())
        )
        if subscriber is None:
            context["problem"] = f"No subscriber has the address {subscriber_email}."
            return render_template("web/admin/edition.html", **context), 404
    context["preview"] = sending.build_preview(
        db.session,
        edition,
        cfg,
        subscriber=subscriber,
        language=language,
        categories=categories,
        recipient_email=current_editor().email,
        now=now(),
    )
    return render_template("web/admin/edition.html", **context)


@bp.route("/editions/<day>/progress.json", endpoint="edition_progress")
def edition_progress(day: str) -> ResponseReturnValue:
    """Delivery counts for the live progress bar (polled by the edition page)."""
    edition = _edition_or_404(parse_day(day))
    report = sending.progress(db.session, edition)
    if sending.finish_if_done(db.session, edition, report):
        report = sending.progress(db.session, edition)
    db.session.commit()
    return jsonify(report.as_dict())


def _back(edition: Edition) -> ResponseReturnValue:
    return redirect(url_for("admin.edition", day=edition.day.isoformat()) + "#sending"), 303


def _run(edition: Edition, action: str) -> ResponseReturnValue:
    """Apply one sending action, flash the outcome and return to the edition page."""
    editor, moment = current_editor(), now()
    config = settings.effective_config(db.session, current_app.config)
    try:
        if action == "test":
            sending.send_test(db.session, edition, editor, config, moment, ip=client_ip())
            message = f"A test is on its way to {editor.email}."
        elif action == "approve":
            started = sending.approve(db.session, edition, editor, moment, config, ip=client_ip())
            if started is None:
                message = "Approved: it goes out at the scheduled time."
            else:
                message = f"Approved after the scheduled time: {started} message(s) queued."
        elif action == "hold":
            sending.hold(db.session, edition, editor, moment, ip=client_ip())
            message = "Held: the scheduled send will leave it alone."
        elif action == "send":
            queued = sending.send_now(db.session, edition, editor, moment, ip=client_ip())
            message = f"Sending: {queued} message(s) queued."
        elif action == "pause":
            sending.pause(db.session, editor, moment, ip=client_ip())
            message = "Sending is paused."
        elif action == "resume":
            sending.resume(db.session, editor, moment, ip=client_ip())
            message = "Sending resumed."
        elif action == "cancel":
            cancelled = sending.cancel(db.session, edition, editor, moment, ip=client_ip())
            message = f"Cancelled {cancelled} message(s) not yet sent."
        else:
            abort(404)
    except sending.SendingError as error:
        db.session.rollback()
        flash(str(error), "error")
        return _back(edition)
    db.session.commit()
    flash(message, "info")
    return _back(edition)


@bp.route(
    "/editions/<day>/<any(test, approve, hold, send, pause, resume, cancel):action>",
    methods=["POST"],
    endpoint="edition_action",
)
def edition_action(day: str, action: str) -> ResponseReturnValue:
    """Send a test, approve, hold, send now, pause, resume or cancel the edition's sending."""
    return _run(_edition_or_404(parse_day(day)), action)
