"""Logging in and out of the editor's desk."""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlsplit

from flask import current_app, flash, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_user, logout_user

from digest import accounts
from digest.extensions import db
from digest.web.admin.blueprint import audit_action, bp, client_ip, current_editor, now


def lockout_policy() -> accounts.LockoutPolicy:
    """The lockout thresholds, from configuration when set there."""
    cfg = current_app.config
    return accounts.LockoutPolicy(
        account_failures=int(cfg.get("LOGIN_MAX_FAILURES", 5)),
        account_lock=dt.timedelta(minutes=float(cfg.get("LOGIN_LOCK_MINUTES", 15))),
        address_failures=int(cfg.get("LOGIN_MAX_FAILURES_PER_IP", 20)),
        address_window=dt.timedelta(minutes=float(cfg.get("LOGIN_IP_WINDOW_MINUTES", 15))),
    )


def _safe_next(target: str | None) -> str:
    """Where to go after login: only paths inside /admin, never another site."""
    default = url_for("admin.desk")
    if not target or "\\" in target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/admin"):
        return default
    if parts.path.startswith("/admin/login") or parts.path.startswith("//"):
        return default
    return target


@bp.route("/login", methods=["GET", "POST"], endpoint="login")
def login_page() -> ResponseReturnValue:
    """The login form; a successful login goes on to ``next`` or the desk."""
    next_url = request.values.get("next")
    if request.method == "GET":
        if current_user.is_authenticated:
            return redirect(_safe_next(next_url))
        return render_template("web/admin/login.html", next_url=next_url, email="")
    email = request.form.get("email", "")
    password = request.form.get("password", "")
    try:
        editor = accounts.authenticate(
            db.session, email, password, client_ip(), now(), lockout_policy()
        )
    except accounts.AccountError as error:
        # The failed attempt itself is recorded: it counts towards the lockouts.
        db.session.commit()
        locked = isinstance(error, accounts.AccountLocked | accounts.AddressLocked)
        flash(str(error), "error")
        return (
            render_template("web/admin/login.html", next_url=next_url, email=email[:320]),
            429 if locked else 401,
        )
    db.session.commit()
    # A fresh session on login: nothing set before authentication carries over.
    session.clear()
    login_user(editor)
    return redirect(_safe_next(next_url))


@bp.route("/logout", methods=["POST"])
def logout() -> ResponseReturnValue:
    """End this session."""
    editor = current_editor()
    audit_action("logout", editor=editor)
    db.session.commit()
    logout_user()
    flash("You are logged out.", "info")
    return redirect(url_for("admin.login"))


@bp.route("/logout-everywhere", methods=["POST"])
def logout_everywhere() -> ResponseReturnValue:
    """End every session of the current editor, on every device."""
    editor = current_editor()
    accounts.log_out_everywhere(editor)
    audit_action("logout.everywhere", editor=editor)
    db.session.commit()
    logout_user()
    flash("You are logged out on every device.", "info")
    return redirect(url_for("admin.login"))
