"""Editors and their accounts: invitations, roles, removal, own password, the audit trail."""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import login_user, logout_user

from digest import accounts, audit
from digest.extensions import db
from digest.models import Editor
from digest.web.admin.blueprint import (
    ADMIN_ONLY_NAV,
    admin_required,
    audit_action,
    bp,
    current_editor,
    now,
)

ADMIN_ONLY_NAV.extend([("admin.editors", "Editors"), ("admin.audit_log", "Audit")])


def _editor_or_404(editor_id: int) -> Editor:
    editor = db.session.get(Editor, editor_id)
    if editor is None:
        abort(404)
    return editor


@bp.route("/editors", endpoint="editors")
@admin_required
def editors_page() -> ResponseReturnValue:
    """Every editor with role and lock state, how their invitation mail went, the invite form."""
    return render_template(
        "web/admin/editors.html",
        editors=accounts.list_editors(db.session),
        roles=accounts.ROLES,
        invitations=accounts.invitation_mails(db.session),
        is_invited=accounts.is_invited,
        now=now(),
        as_utc=accounts.as_utc,
    )


def _invite_link(token: str) -> str:
    return current_app.config["PUBLIC_URL"] + url_for("admin.accept_invite", token=token)


@bp.route("/editors/invite", methods=["POST"])
@admin_required
def invite_editor() -> ResponseReturnValue:
    """Create an account without a password and mail the invitee a link to choose one.

    The link is not shown here: it goes to the invitee's mailbox only, and a lost or
    undelivered mail is answered with "Resend", which withdraws the earlier link.
    """
    email = request.form.get("email", "")
    role = request.form.get("role", "editor")
    moment = now()
    try:
        editor = accounts.create_editor(db.session, email, None, role, moment)
        accounts.queue_invitation(db.session, editor, _invite_link, moment)
    except accounts.AccountError as error:
        db.session.rollback()
        flash(str(error), "error")
        return redirect(url_for("admin.editors")), 303
    audit_action("editor.invite", target=editor.email, detail={"role": role}, moment=moment)
    db.session.commit()
    flash(f"Invitation emailed to {editor.email}: the link in it is valid 7 days.", "info")
    return redirect(url_for("admin.editors")), 303


@bp.route("/editors/<int:editor_id>/reinvite", methods=["POST"])
@admin_required
def reinvite_editor(editor_id: int) -> ResponseReturnValue:
    """Mail a new invitation (the earlier links stop working)."""
    editor = _editor_or_404(editor_id)
    moment = now()
    try:
        accounts.queue_invitation(db.session, editor, _invite_link, moment)
    except accounts.AccountError as error:
        db.session.rollback()
        flash(str(error), "error")
        return redirect(url_for("admin.editors")), 303
    audit_action("editor.reinvite", target=editor.email, moment=moment)
    db.session.commit()
    flash(f"A new invitation is on its way to {editor.email}; older links stop working.", "info")
    return redirect(url_for("admin.editors")), 303


@bp.route("/editors/<int:editor_id>/role", methods=["POST"])
@admin_required
def change_role(editor_id: int) -> ResponseReturnValue:
    """Make an editor an admin, or an admin an editor."""
    editor = _editor_or_404(editor_id)
    role = request.form.get("role", "")
    before = editor.role
    try:
        accounts.change_role(db.session, editor, role)
    except accounts.AccountError as error:
        flash(str(error), "error")
        return redirect(url_for("admin.editors")), 303
    audit_action("editor.role", target=editor.email, detail={"from": before, "to": role})
    db.session.commit()
    flash(f"{editor.email} is now {role}.", "info")
    return redirect(url_for("admin.editors")), 303


@bp.route("/editors/<int:editor_id>/unlock", methods=["POST"])
@admin_required
def unlock_editor(editor_id: int) -> ResponseReturnValue:
    """Lift a lockout early."""
    editor = _editor_or_404(editor_id)
    accounts.unlock(editor)
    audit_action("editor.unlock", target=editor.email)
    db.session.commit()
    flash(f"{editor.email} can log in again.", "info")
    return redirect(url_for("admin.editors")), 303


@bp.route("/editors/<int:editor_id>/logout", methods=["POST"])
@admin_required
def force_logout(editor_id: int) -> ResponseReturnValue:
    """End every session of another editor (a lost laptop, a departure)."""
    editor = _editor_or_404(editor_id)
    accounts.log_out_everywhere(editor)
    audit_action("editor.logout", target=editor.email)
    db.session.commit()
    if editor.id == current_editor().id:
        logout_user()
        return redirect(url_for("admin.login")), 303
    flash(f"{editor.email} is logged out everywhere.", "info")
    return redirect(url_for("admin.editors")), 303


@bp.route("/editors/<int:editor_id>/delete", methods=["POST"])
@admin_required
def delete_editor(editor_id: int) -> ResponseReturnValue:
    """Remove an editor's account (never the last admin, never your own)."""
    editor = _editor_or_404(editor_id)
    if editor.id == current_editor().id:
        flash("You cannot remove your own account.", "error")
        return redirect(url_for("admin.editors")), 303
    address = editor.email
    try:
        accounts.remove_editor(db.session, editor)
    except accounts.AccountError as error:
        flash(str(error), "error")
        return redirect(url_for("admin.editors")), 303
    audit_action("editor.delete", target=address)
    db.session.commit()
    flash(f"{address} was removed.", "info")
    return redirect(url_for("admin.editors")), 303


@bp.route("/invite/<token>", methods=["GET", "POST"], endpoint="accept_invite")
def accept_invite(token: str) -> ResponseReturnValue:
    """An invited editor chooses a password, then is logged in."""
    try:
        editor = accounts.read_invite_token(db.session, token, current_app.config["SECRET_KEY"])
    except accounts.AccountError as error:
        return render_template("web/admin/invite.html", editor=None, problem=str(error)), 400
    if request.method == "GET":
        return render_template("web/admin/invite.html", editor=editor, problem=None)
    password = request.form.get("password", "")
    if password != request.form.get("password_again", ""):
        problem = "The two passwords differ."
        return render_template("web/admin/invite.html", editor=editor, problem=problem), 400
    try:
        accounts.set_password(editor, password)
    except accounts.AccountError as error:
        return render_template("web/admin/invite.html", editor=editor, problem=str(error)), 400
    audit_action("editor.join", editor=editor)
    db.session.commit()
    login_user(editor)
    flash("Welcome to the desk.", "info")
    return redirect(url_for("admin.desk")), 303


@bp.route("/account", methods=["GET", "POST"], endpoint="account")
def account_page() -> ResponseReturnValue:
    """The editor's own account: change the password (which ends the other sessions)."""
    editor = current_editor()
    if request.method == "GET":
        return render_template("web/admin/account.html", problem=None)
    current = request.form.get("current_password", "")
    new = request.form.get("password", "")
    problem = None
    if not accounts.verify_password(editor.password_hash, current):
        problem = "The current password is not right."
    elif new != request.form.get("password_again", ""):
        problem = "The two new passwords differ."
    else:
        try:
            accounts.set_password(editor, new)
        except accounts.AccountError as error:
            problem = str(error)
    if problem:
        db.session.rollback()
        return render_template("web/admin/account.html", problem=problem), 400
    audit_action("password.change", editor=editor)
    db.session.commit()
    # The version changed, so this session is re-issued with the new id to stay logged in.
    login_user(editor)
    flash("Password changed; your other sessions have ended.", "info")
    return redirect(url_for("admin.account")), 303


@bp.route("/audit", endpoint="audit_log")
@admin_required
def audit_page() -> ResponseReturnValue:
    """Who did what and when, newest first, filterable by action."""
    action = request.args.get("action") or None
    page = max(request.args.get("page", 1, type=int) or 1, 1)
    size = 100
    events = audit.recent_events(
        db.session, action=action, limit=size + 1, offset=(page - 1) * size
    )
    return render_template(
        "web/admin/audit.html",
        events=events[:size],
        has_more=len(events) > size,
        page=page,
        action=action,
        actions=audit.actions(db.session),
    )
