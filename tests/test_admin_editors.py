"""Admins manage editors (invitations, roles, removal); everyone manages their own password."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from flask import Flask

from digest import accounts
from digest.extensions import db
from digest.models import AuditEvent, Editor
from tests.admin_fixtures import PASSWORD, log_in, logged_in_client, make_editor


def _invite(client, email: str, role: str = "editor") -> str:  # type: ignore[no-untyped-def]
    response = client.post("/admin/editors/invite", data={"email": email, "role": role})
    assert response.status_code == 200, response.get_data(as_text=True)
    html = response.get_data(as_text=True)
    return re.search(r'id="invite-url">http://digest\.test([^<]+)<', html).group(1)


def test_editors_without_the_admin_role_cannot_manage_editors(app: Flask) -> None:
    client = logged_in_client(app, "editor")
    assert client.get("/admin/editors").status_code == 403
    assert client.post("/admin/editors/invite", data={"email": "x@digest.test"}).status_code == 403
    assert client.get("/admin/audit").status_code == 403
    assert "Editors" not in client.get("/admin/").get_data(as_text=True)
    assert db.session.scalar(db.select(db.func.count(Editor.id))) == 1


def test_an_invitation_link_lets_the_new_editor_choose_a_password_once(app: Flask) -> None:
    admin = logged_in_client(app, "admin")
    path = _invite(admin, "New@Digest.test")
    newcomer = app.test_client()
    # Invited but without a password yet: no way in.
    assert log_in(newcomer, "new@digest.test", "").status_code == 401
    form = newcomer.get(path)
    assert form.status_code == 200 and "new@digest.test" in form.get_data(as_text=True)
    differ = newcomer.post(path, data={"password": PASSWORD, "password_again": "other one!!"})
    assert differ.status_code == 400
    short = newcomer.post(path, data={"password": "short", "password_again": "short"})
    assert short.status_code == 400
    joined = newcomer.post(path, data={"password": PASSWORD, "password_again": PASSWORD})
    assert joined.status_code == 303
    assert newcomer.get("/admin/").status_code == 200
    again = app.test_client().get(path)
    assert again.status_code == 400
    assert "already been used" in again.get_data(as_text=True)
    assert log_in(app.test_client(), "new@digest.test").status_code == 302


def test_forged_and_expired_invitations_are_refused(app: Flask) -> None:
    editor = accounts.create_editor(db.session, "x@digest.test", None, "editor")
    db.session.commit()
    token = accounts.make_invite_token(editor, "test-secret")
    client = app.test_client()
    assert client.get(f"/admin/invite/{token}x").status_code == 400
    assert client.get("/admin/invite/nonsense").status_code == 400
    forged = accounts.make_invite_token(editor, "another-secret")
    assert client.get(f"/admin/invite/{forged}").status_code == 400
    with pytest.raises(accounts.AccountError, match="expired"):
        accounts.read_invite_token(db.session, token, "test-secret", dt.timedelta(seconds=-1))


def test_inviting_an_existing_or_malformed_address_says_why(app: Flask) -> None:
    admin = logged_in_client(app, "admin")
    existing = admin.post("/admin/editors/invite", data={"email": "admin@digest.test"})
    assert existing.status_code == 303
    assert "already exists" in admin.get("/admin/editors").get_data(as_text=True)
    admin.post("/admin/editors/invite", data={"email": "nope", "role": "editor"})
    assert "not an email address" in admin.get("/admin/editors").get_data(as_text=True)
    admin.post("/admin/editors/invite", data={"email": "a@digest.test", "role": "root"})
    assert "Unknown role" in admin.get("/admin/editors").get_data(as_text=True)
    assert db.session.scalar(db.select(db.func.count(Editor.id))) == 1


def test_roles_change_but_the_last_admin_stays_admin(app: Flask) -> None:
    admin = logged_in_client(app, "admin")
    me = db.session.scalar(db.select(Editor).where(Editor.email == "admin@digest.test"))
    other = make_editor("other@digest.test", "editor")
    demote = admin.post(f"/admin/editors/{me.id}/role", data={"role": "editor"})
    assert demote.status_code == 303
    db.session.refresh(me)
    assert me.role == "admin"
    assert admin.post(f"/admin/editors/{other.id}/role", data={"role": "admin"}).status_code == 303
    db.session.refresh(other)
    assert other.role == "admin"
    assert admin.post(f"/admin/editors/{me.id}/role", data={"role": "editor"}).status_code == 303
    db.session.refresh(me)
    assert me.role == "editor"
    # Now an editor: the admin pages close at once.
    assert admin.get("/admin/editors").status_code == 403
    assert admin.post("/admin/editors/999/role", data={"role": "admin"}).status_code == 403


def test_removing_an_editor_keeps_their_trail_and_ends_their_sessions(app: Flask) -> None:
    admin = logged_in_client(app, "admin")
    leaver = make_editor("leaver@digest.test")
    theirs = app.test_client()
    assert log_in(theirs, "leaver@digest.test").status_code == 302
    me = db.session.scalar(db.select(Editor).where(Editor.email == "admin@digest.test"))
    assert admin.post(f"/admin/editors/{me.id}/delete").status_code == 303
    assert db.session.get(Editor, me.id) is not None
    assert admin.post(f"/admin/editors/{leaver.id}/delete").status_code == 303
    db.session.expire_all()
    assert db.session.get(Editor, leaver.id) is None
    assert theirs.get("/admin/").status_code == 302
    assert admin.post("/admin/editors/4242/delete").status_code == 404
    logins = db.session.scalars(
        db.select(AuditEvent).where(AuditEvent.actor == "leaver@digest.test")
    ).all()
    assert [event.action for event in logins] == ["login"]
    assert logins[0].editor_id is None
    audit_html = admin.get("/admin/audit?action=editor.delete").get_data(as_text=True)
    assert "leaver@digest.test" in audit_html and "admin@digest.test" in audit_html


def test_admin_can_unlock_and_log_out_another_editor(app: Flask) -> None:
    app.config.update(LOGIN_MAX_FAILURES=1)
    admin = logged_in_client(app, "admin")
    locked = make_editor("locked@digest.test")
    assert log_in(app.test_client(), "locked@digest.test", "wrong!").status_code == 401
    assert log_in(app.test_client(), "locked@digest.test").status_code == 429
    assert "locked until" in admin.get("/admin/editors").get_data(as_text=True)
    assert admin.post(f"/admin/editors/{locked.id}/unlock").status_code == 303
    theirs = app.test_client()
    assert log_in(theirs, "locked@digest.test").status_code == 302
    assert admin.post(f"/admin/editors/{locked.id}/logout").status_code == 303
    assert theirs.get("/admin/").status_code == 302


def test_changing_your_password_keeps_you_in_and_ends_other_sessions(app: Flask) -> None:
    here = logged_in_client(app, "editor", "me@digest.test")
    there = app.test_client()
    assert log_in(there, "me@digest.test").status_code == 302
    wrong = here.post(
        "/admin/account",
        data={
            "current_password": "nope",
            "password": "a new passphrase",
            "password_again": "a new passphrase",
        },
    )
    assert wrong.status_code == 400
    changed = here.post(
        "/admin/account",
        data={
            "current_password": PASSWORD,
            "password": "a new passphrase",
            "password_again": "a new passphrase",
        },
    )
    assert changed.status_code == 303
    assert here.get("/admin/").status_code == 200
    assert there.get("/admin/").status_code == 302
    assert log_in(app.test_client(), "me@digest.test").status_code == 401
    assert log_in(app.test_client(), "me@digest.test", "a new passphrase").status_code == 302
