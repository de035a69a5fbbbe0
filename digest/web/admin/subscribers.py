"""Subscribers: search and filters, one reader's history, suppress/delete, CSV import/export."""

from __future__ import annotations

import io

from flask import (
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue

from digest import roster, subscriptions
from digest.extensions import db
from digest.models import CATEGORIES, LANGUAGES, Subscriber, SubscriberStatus
from digest.web.admin.blueprint import (
    admin_required,
    audit_action,
    bp,
    now,
)

PAGE_SIZE = 50
# An upload bigger than this is refused before reading it (about 100 000 rows).
MAX_IMPORT_BYTES = 8 * 1024 * 1024


def _filters() -> roster.Filters:
    statuses = {s.value for s in SubscriberStatus}
    status = request.args.get("status", "")
    category = request.args.get("category", "")
    language = request.args.get("language", "")
    return roster.Filters(
        query=request.args.get("q", "").strip()[:320],
        status=status if status in statuses else "",
        category=category if category in CATEGORIES else "",
        language=language if language in LANGUAGES else "",
    )


def _choices() -> dict[str, object]:
    return {
        "statuses": [s.value for s in SubscriberStatus],
        "categories": list(current_app.config.get("CATEGORY_ORDER", CATEGORIES)),
        "languages": list(LANGUAGES),
    }


@bp.route("/subscribers", endpoint="subscribers")
def subscribers_page() -> ResponseReturnValue:
    """Search by address or name; filter by status, category and language."""
    filters = _filters()
    page = max(request.args.get("page", 1, type=int) or 1, 1)
    rows, total = roster.search(db.session, filters, page=page, size=PAGE_SIZE)
    return render_template(
        "web/admin/subscribers.html",
        subscribers=rows,
        total=total,
        page=page,
        pages=max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1),
        filters=filters,
        report=None,
        **_choices(),
    )


def _subscriber_or_404(subscriber_id: int) -> Subscriber:
    subscriber = db.session.get(Subscriber, subscriber_id)
    if subscriber is None:
        abort(404)
    return subscriber


@bp.route("/subscribers/<int:subscriber_id>", endpoint="subscriber")
def subscriber_page(subscriber_id: int) -> ResponseReturnValue:
    """One reader: consent record, preferences, every mail they were sent, bounces."""
    subscriber = _subscriber_or_404(subscriber_id)
    return render_template(
        "web/admin/subscriber.html",
        subscriber=subscriber,
        mails=roster.history(db.session, subscriber),
    )


@bp.route("/subscribers/<int:subscriber_id>/suppress", methods=["POST"])
def suppress_subscriber(subscriber_id: int) -> ResponseReturnValue:
    """Stop every mail to this reader (as if they had unsubscribed); the record stays."""
    subscriber = _subscriber_or_404(subscriber_id)
    moment = now()
    audit_action("subscriber.suppress", target=subscriber.email, moment=moment)
    if subscriptions.unsubscribe(db.session, subscriber, moment):
        flash(f"{subscriber.email} will receive nothing more.", "info")
    else:
        db.session.commit()
        flash(f"{subscriber.email} had already left.", "info")
    return redirect(url_for("admin.subscriber", subscriber_id=subscriber.id)), 303


@bp.route("/subscribers/<int:subscriber_id>/delete", methods=["POST"])
@admin_required
def delete_subscriber(subscriber_id: int) -> ResponseReturnValue:
    """Erase a reader and their delivery records (a request to be forgotten)."""
    subscriber = _subscriber_or_404(subscriber_id)
    address = subscriber.email
    audit_action("subscriber.delete", target=address)
    subscriptions.delete_data(db.session, subscriber)
    flash(f"{address} and their records are deleted.", "info")
    return redirect(url_for("admin.subscribers")), 303


@bp.route("/subscribers/import", methods=["POST"])
@admin_required
def import_subscribers() -> ResponseReturnValue:
    """Import a CSV (email,name,language,categories,status); a dry run only reports."""
    dry_run = request.form.get("dry_run") == "1"
    upload = request.files.get("file")
    problem = None
    if request.content_length and request.content_length > MAX_IMPORT_BYTES:
        problem = f"The file is larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MB."
    elif upload is None or not upload.filename:
        problem = "Choose a CSV file to import."
    report = None
    if problem is None:
        assert upload is not None
        raw = upload.stream.read(MAX_IMPORT_BYTES + 1)
        if len(raw) > MAX_IMPORT_BYTES:
            problem = f"The file is larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MB."
        else:
            try:
                text = raw.decode("utf-8-sig")
            except UnicodeDecodeError:
                problem = "The file is not UTF-8 text: save it as CSV UTF-8 and try again."
            else:
                try:
                    report = subscriptions.import_csv(
                        db.session, io.StringIO(text, newline=""), now=now(), dry_run=dry_run
                    )
                except subscriptions.CsvFormatError as error:
                    db.session.rollback()
                    problem = str(error)
    if problem is not None or report is None:
        flash(problem or "Nothing imported.", "error")
        return redirect(url_for("admin.subscribers")), 303
    if not dry_run:
        audit_action(
            "subscribers.import",
            target=upload.filename if upload else None,
            detail={
                "created": len(report.created),
                "updated": len(report.updated),
                "problems": len(report.problems),
            },
        )
        db.session.commit()
    rows, total = roster.search(db.session, roster.Filters(), size=PAGE_SIZE)
    return render_template(
        "web/admin/subscribers.html",
        subscribers=rows,
        total=total,
        page=1,
        pages=max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1),
        filters=roster.Filters(),
        report=report,
        **_choices(),
    )


@bp.route("/subscribers/export.csv", endpoint="export_subscribers")
@admin_required
def export_subscribers() -> ResponseReturnValue:
    """Download subscribers as CSV, the same columns as `digest subscribers export`."""
    status = request.args.get("status", "")
    statuses = [status] if status in {s.value for s in SubscriberStatus} else None
    body = subscriptions.export_csv_text(db.session, statuses)
    audit_action("subscribers.export", detail={"status": status or "all"})
    db.session.commit()
    name = f"subscribers-{status or 'all'}.csv"
    return Response(
        body,
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
