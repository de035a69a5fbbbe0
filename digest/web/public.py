"""Subscriber pages: home and sign-up, confirmation, preferences, unsubscribe.

Views parse the request, call one ``digest.subscriptions`` function and render the result.
Every form carries a CSRF token, except the RFC 8058 one-click unsubscribe POST that mail
clients send with no cookie and no form of ours.
"""

from __future__ import annotations

import datetime as dt
import json
from functools import wraps
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import get_locale, refresh
from flask_babel import gettext as _
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFError
from sqlalchemy import select
from werkzeug.exceptions import TooManyRequests

from digest import subscriptions, tokens
from digest.extensions import csrf, db, limiter
from digest.models import Edition, EditionStatus, Subscriber, SubscriberStatus
from digest.web.public_forms import (
    CATEGORY_LABELS,
    LANGUAGE_LABELS,
    ButtonForm,
    EmailChangeForm,
    NewLinkForm,
    PauseForm,
    PreferencesForm,
    SignUpForm,
    read_sign_up,
)

bp = Blueprint("public", __name__)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _today() -> dt.date:
    """Today in the newsroom's time zone (pauses count in the reader's days)."""
    from zoneinfo import ZoneInfo

    return _now().astimezone(ZoneInfo(current_app.config["TIMEZONE"])).date()


@bp.before_request
def _fresh_language() -> None:
    # Flask-Babel caches the locale on ``g``; tests (and CLI-driven requests) can share one
    # app context across requests, so start each request from a clean slate.
    g.pop("subscriber_language", None)
    refresh()


@bp.after_request
def _harden(response: Response) -> Response:
    # The security headers themselves are app-wide (digest.web.headers).
    if request.view_args and "token" in request.view_args:
        response.headers["Cache-Control"] = "no-store"
    # The language switch is a plain link (?lang=xx); remember the choice.
    lang = request.args.get("lang")
    if lang and lang in current_app.config["LANGUAGES"] and request.cookies.get("lang") != lang:
        response.set_cookie(
            "lang",
            lang,
            max_age=365 * 24 * 3600,
            httponly=True,
            samesite="Lax",
            secure=bool(current_app.config.get("SESSION_COOKIE_SECURE")),
        )
    return response


@bp.app_context_processor
def _page_globals() -> dict[str, Any]:
    try:
        code = str(get_locale() or current_app.config["DEFAULT_LANGUAGE"])
    except RuntimeError:
        code = current_app.config["DEFAULT_LANGUAGE"]
    return {
        "current_locale_code": code,
        "language_labels": LANGUAGE_LABELS,
        "category_labels": CATEGORY_LABELS,
    }


# ------------------------------------------------------------------------------- errors


@bp.errorhandler(tokens.TokenError)
def _bad_link(error: tokens.TokenError) -> tuple[str, int]:
    status = 410 if isinstance(error, tokens.Expired | tokens.Revoked) else 400
    return render_template("web/link_error.html", reason=error.reason, form=NewLinkForm()), status


@bp.errorhandler(CSRFError)
def _stale_form(error: CSRFError) -> tuple[str, int]:
    return render_template("web/form_expired.html", back=request.path), 400


@bp.errorhandler(TooManyRequests)
def _too_many(error: TooManyRequests) -> tuple[str, int]:
    return render_template("web/too_many.html"), 429


# ---------------------------------------------------------------------- rate-limit keys


def _email_key() -> str:
    """Rate-limit key for the address typed in the form (normalized when it can be)."""
    # The address change names its field new_email; without it every change shared one key.
    raw = request.form.get("email") or request.form.get("new_email", "")
    try:
        return "email:" + subscriptions.normalize_email(raw, check_deliverability=False)
    except subscriptions.InvalidEmail:
        return "email:" + raw.strip().lower()[:320]


def _ip_limit() -> str:
    return str(current_app.config["SIGNUP_RATE_LIMIT_PER_IP"])


def _email_limit() -> str:
    return str(current_app.config["SIGNUP_RATE_LIMIT_PER_EMAIL"])


def _abuse_limits(view: Any) -> Any:
    """Per-IP and per-address limits on a form that sends mail to a typed address."""
    limited = limiter.limit(_ip_limit, methods=["POST"], key_func=get_remote_address)(view)
    limited = limiter.limit(_email_limit, methods=["POST"], key_func=_email_key)(limited)

    @wraps(view)
    def within_limits(*args: Any, **kwargs: Any) -> Any:
        # The limiter checks only when asked (auto_check=False, digest.extensions), and it is
        # asked only when limits are on: its check runs in full even when they are off.
        if current_app.config["RATELIMIT_ENABLED"]:
            limiter.check()
        return limited(*args, **kwargs)

    return within_limits


# -------------------------------------------------------------------------------- pages


def _latest_lead() -> dict[str, Any] | None:
    """The lead story of the newest edition that has one (drafts included for the demo)."""
    edition = db.session.scalars(
        select(Edition)
        .where(Edition.status != EditionStatus.HELD)
        .order_by(Edition.day.desc())
        .limit(1)
    ).first()
    if edition is None or not isinstance(edition.snapshot, dict):
        return None
    lead = edition.snapshot.get("lead")
    return {"day": edition.day, **lead} if isinstance(lead, dict) and lead.get("title") else None


@bp.route("/", methods=["GET", "POST"])
@_abuse_limits
def home() -> Any:
    """What the digest is, the latest lead, and the sign-up form."""
    if request.method != "POST":
        form = SignUpForm()
        form.language.data = str(get_locale() or current_app.config["DEFAULT_LANGUAGE"])
        return render_template("web/home.html", form=form, lead=_latest_lead())
    submission = read_sign_up(request.form)
    if not submission.errors:
        try:
            subscriptions.sign_up(
                db.session,
                email=submission.email,
                name=submission.name,
                language=submission.language,
                categories=submission.categories,
                ip=request.remote_addr,
                user_agent=request.user_agent.string,
                source="web",
                honeypot=submission.honeypot,
                now=_now(),
            )
        except subscriptions.InvalidEmail as error:
            submission.errors["email"] = [str(error)]
        else:
            return redirect(url_for("public.check_inbox"), code=303)
    # The form again as the reader filled it in, each message beside its field.
    form = SignUpForm(formdata=request.form)
    for name, messages in submission.errors.items():
        form[name].errors = messages
    return render_template("web/home.html", form=form, lead=_latest_lead()), 422


@bp.route("/check-inbox")
def check_inbox() -> str:
    """The same page whatever the address was: new, pending, active or gone."""
    return render_template("web/check_inbox.html")


@bp.route("/new-link", methods=["GET", "POST"])
@_abuse_limits
def new_link() -> Any:
    """Ask for a new confirmation or preferences link; the answer never says if we know you."""
    form = NewLinkForm()
    if form.validate_on_submit():
        try:
            if not form.website.data:
                subscriptions.send_new_link(db.session, email=form.email.data or "", now=_now())
        except subscriptions.InvalidEmail as error:
            form.email.errors = [str(error)]
        else:
            return redirect(url_for("public.check_inbox"), code=303)
    status = 422 if form.errors else 200
    return render_template("web/new_link.html", form=form), status


def _subscriber_from(token: str, purpose: str) -> Subscriber:
    subscriber = tokens.read_token(db.session, token, purpose, now=_now())
    _speak(subscriber)
    return subscriber


def _speak(subscriber: Subscriber) -> None:
    """Pages reached from a subscriber's link default to the subscriber's language."""
    g.subscriber_language = subscriber.language
    refresh()


@bp.route("/confirm/<token>", methods=["GET", "POST"])
def confirm(token: str) -> Any:
    """GET shows one Confirm button (mail scanners follow links); POST confirms."""
    subscriber = _subscriber_from(token, "confirm")
    form = ButtonForm()
    if request.method == "POST" and form.validate_on_submit():
        outcome = subscriptions.confirm(db.session, subscriber, _now())
        return render_template(
            "web/confirmed.html",
            outcome=outcome.value,
            manage_url=url_for(
                "public.manage", token=tokens.make_token(subscriber, "manage", now=_now())
            ),
        )
    return render_template("web/confirm.html", form=form, subscriber=subscriber)


@bp.route("/unsubscribe/<token>", methods=["GET", "POST"])
@csrf.exempt
def unsubscribe(token: str) -> Any:
    """GET shows one button; POST unsubscribes; RFC 8058 one-click POST needs the token only."""
    if request.method == "POST" and request.form.get("List-Unsubscribe") == "One-Click":
        # A mail client asks, not a reader: a plain answer, no page and no language to pick.
        subscriptions.unsubscribe_by_link(db.session, token, _now())
        return Response("Unsubscribed.\n", status=200, mimetype="text/plain")
    subscriber = _subscriber_from(token, "unsubscribe")
    form = ButtonForm()
    if request.method == "POST":
        # Exempted above only for the one-click body; the page's own form is checked here.
        if current_app.config.get("WTF_CSRF_ENABLED", True):
            csrf.protect()
        subscriptions.unsubscribe(db.session, subscriber, _now())
        return render_template("web/unsubscribed.html", resubscribe_url=url_for("public.home"))
    return render_template("web/unsubscribe.html", form=form, subscriber=subscriber)


def _manage_context(token: str, subscriber: Subscriber, **forms: Any) -> dict[str, Any]:
    prefs = forms.pop("prefs", None) or PreferencesForm(
        formdata=None,
        name=subscriber.name,
        categories=list(subscriber.categories or []),
        language=subscriber.language,
    )
    return {
        "token": token,
        "subscriber": subscriber,
        "prefs": prefs,
        "pause_form": forms.pop("pause_form", None) or PauseForm(formdata=None),
        "email_form": forms.pop("email_form", None) or EmailChangeForm(formdata=None),
        "button_form": ButtonForm(formdata=None),
        "unsubscribe_url": url_for(
            "public.unsubscribe", token=tokens.make_token(subscriber, "unsubscribe")
        ),
        **forms,
    }


@bp.route("/manage/<token>", methods=["GET", "POST"])
def manage(token: str) -> Any:
    """The preference centre: sections, language, pause, address, data, leaving."""
    subscriber = _subscriber_from(token, "manage")
    prefs = PreferencesForm()
    if request.method == "POST" and prefs.validate_on_submit():
        subscriptions.update_preferences(
            db.session,
            subscriber,
            categories=prefs.categories.data or [],
            language=prefs.language.data or subscriber.language,
            name=prefs.name.data or "",
        )
        # Show the saved page in the language just chosen.
        return redirect(
            url_for("public.manage", token=token, saved=1, lang=subscriber.language), code=303
        )
    status = 422 if prefs.errors else 200
    context = _manage_context(token, subscriber, prefs=prefs if prefs.errors else None)
    context["notice"] = (request.args.get("saved") and "saved") or request.args.get("notice")
    return render_template("web/manage.html", **context), status


@bp.route("/manage/<token>/pause", methods=["POST"])
def pause(token: str) -> Any:
    """Pause the digest for N days."""
    subscriber = _subscriber_from(token, "manage")
    form = PauseForm()
    if subscriber.status not in (SubscriberStatus.ACTIVE, SubscriberStatus.PAUSED):
        form.days.errors = [_("Only a confirmed subscription can be paused.")]
    elif form.validate_on_submit():
        subscriptions.pause(db.session, subscriber, days=int(form.days.data or 0), today=_today())
        return redirect(url_for("public.manage", token=token, notice="paused"), code=303)
    context = _manage_context(token, subscriber, pause_form=form)
    return render_template("web/manage.html", **context), 422


@bp.route("/manage/<token>/resume", methods=["POST"])
def resume(token: str) -> Any:
    """End a pause now."""
    subscriber = _subscriber_from(token, "manage")
    if not ButtonForm().validate_on_submit():
        abort(400)
    subscriptions.resume(db.session, subscriber)
    return redirect(url_for("public.manage", token=token, notice="resumed"), code=303)


@bp.route("/manage/<token>/email", methods=["POST"])
@_abuse_limits
def change_email(token: str) -> Any:
    """Send a confirmation link to the new address; nothing changes until it is followed."""
    subscriber = _subscriber_from(token, "manage")
    form = EmailChangeForm()
    if form.validate_on_submit():
        try:
            subscriptions.request_email_change(
                db.session, subscriber, new_email=form.new_email.data or "", now=_now()
            )
        except subscriptions.InvalidEmail as error:
            form.new_email.errors = [str(error)]
        else:
            return redirect(url_for("public.manage", token=token, notice="email_sent"), code=303)
    context = _manage_context(token, subscriber, email_form=form)
    return render_template("web/manage.html", **context), 422


@bp.route("/email/<token>", methods=["GET", "POST"])
def confirm_email(token: str) -> Any:
    """The link mailed to a new address: GET shows a button, POST switches the address."""
    subscriber, new_email = subscriptions.read_email_change(db.session, token, _now())
    _speak(subscriber)
    form = ButtonForm()
    if request.method == "POST" and form.validate_on_submit():
        try:
            subscriptions.apply_email_change(db.session, subscriber, new_email)
        except (subscriptions.EmailTaken, subscriptions.InvalidEmail):
            return render_template("web/email_taken.html"), 409
        manage_token = tokens.make_token(subscriber, "manage", now=_now())
        return redirect(url_for("public.manage", token=manage_token, notice="email_changed"), 303)
    return render_template("web/confirm_email.html", form=form, new_email=new_email)


@bp.route("/manage/<token>/data", methods=["GET", "POST"])
def download_data(token: str) -> Any:
    """GET explains and asks; POST returns everything stored about the reader as JSON."""
    subscriber = _subscriber_from(token, "manage")
    form = ButtonForm()
    if request.method == "POST" and form.validate_on_submit():
        data = subscriptions.export_data(db.session, subscriber)
        body = json.dumps(data, ensure_ascii=False, indent=2) + "\n"
        response = Response(body, mimetype="application/json")
        response.headers["Content-Disposition"] = 'attachment; filename="digest-my-data.json"'
        return response
    return render_template("web/data.html", form=form, token=token)


@bp.route("/manage/<token>/delete", methods=["GET", "POST"])
def delete_data(token: str) -> Any:
    """GET asks for confirmation; POST erases the subscriber and their records."""
    subscriber = _subscriber_from(token, "manage")
    form = ButtonForm()
    if request.method == "POST" and form.validate_on_submit():
        subscriptions.delete_data(db.session, subscriber)
        return render_template("web/deleted.html")
    return render_template("web/delete.html", form=form, token=token)
