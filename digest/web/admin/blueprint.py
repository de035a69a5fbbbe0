"""The admin blueprint itself: the login guard every /admin view sits behind, and helpers."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from flask import Blueprint, abort, current_app, g, request
from flask.blueprints import BlueprintSetupState
from flask.typing import ResponseReturnValue
from flask_login import current_user
from werkzeug.wrappers import Response

from digest import accounts, audit
from digest.extensions import db, login
from digest.models import Editor

bp = Blueprint("admin", __name__)

# The only admin endpoints an anonymous visitor may reach.
OPEN_ENDPOINTS = frozenset({"admin.login", "admin.accept_invite"})

# Email HTML carries inline styles and remote images; scripts come only from our static files.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: https: http:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; frame-src 'self'; frame-ancestors 'self'; form-action 'self'; "
    "base-uri 'none'; object-src 'none'"
)

F = TypeVar("F", bound=Callable[..., Any])


@bp.record_once
def _setup_login(state: BlueprintSetupState) -> None:
    login.login_view = "admin.login"
    login.login_message = "Log in to reach the editor's desk."
    login.login_message_category = "info"
    login.user_loader(_load_editor)


def _load_editor(user_id: str) -> Editor | None:
    return accounts.load_editor(db.session, user_id)


@bp.before_request
def _require_editor() -> ResponseReturnValue | None:
    # The editor is resolved from this request's session cookie: an app context reused
    # across requests (tests, embedding callers) must not carry the previous one's user.
    g.pop("_login_user", None)
    if request.endpoint in OPEN_ENDPOINTS:
        return None
    if not current_user.is_authenticated:
        if request.path.endswith(".json") or request.accept_mimetypes.best == "application/json":
            abort(401)
        return login.unauthorized()
    return None


@bp.after_request
def _protect_responses(response: Response) -> Response:
    # Admin pages show unsent content and subscriber data: never cache, never frame elsewhere.
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    # Same as frame-ancestors 'self' above, for browsers that only read the older header.
    response.headers.setdefault("X-Frame-Options", "SAMEORIGIN")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


def admin_required(view: F) -> F:
    """Let only editors with the admin role through (403 for the others)."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_authenticated or current_user.role != "admin":
            abort(403)
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def now() -> dt.datetime:
    """The current time: views are edges, the only place that reads the clock."""
    return dt.datetime.now(dt.UTC)


def local_today() -> dt.date:
    """Today in the newsroom's time zone."""
    return now().astimezone(ZoneInfo(current_app.config["TIMEZONE"])).date()


def client_ip() -> str | None:
    """The address the request came from (ProxyFix, when configured, makes it the client's)."""
    return request.remote_addr


def current_editor() -> Editor:
    """The logged-in editor (views run behind the login guard)."""
    editor = current_user._get_current_object()
    assert isinstance(editor, Editor)
    return editor


def audit_action(
    action: str,
    *,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
    editor: Editor | None = None,
    moment: dt.datetime | None = None,
) -> None:
    """Add to the audit log what ``editor`` (the logged-in one unless given) just did from
    this request's address; the caller commits it with the action itself."""
    audit.record(
        db.session,
        action,
        moment or now(),
        editor=editor or current_editor(),
        target=target,
        detail=detail,
        ip=client_ip(),
    )


def parse_day(value: str) -> dt.date:
    """A YYYY-MM-DD path segment as a date; 404 for anything else."""
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        abort(404)


@bp.context_processor
def _admin_nav() -> dict[str, Any]:
    items = [
        (endpoint, label)
        for endpoint, label in EDITOR_NAV
        if endpoint in current_app.view_functions
    ]
    if current_user.is_authenticated and current_user.role == "admin":
        items.extend(item for item in ADMIN_ONLY_NAV if item[0] in current_app.view_functions)
    return {"admin_nav": items}


# The menu every editor sees, then the pages only admins see (if their views are registered).
EDITOR_NAV: list[tuple[str, str]] = [
    ("admin.desk", "Desk"),
    ("admin.editions", "Editions"),
    ("admin.subscribers", "Subscribers"),
    ("admin.numbers", "Numbers"),
]
ADMIN_ONLY_NAV: list[tuple[str, str]] = []
