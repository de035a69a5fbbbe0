"""Admins manage editors (invitations, roles, removal); everyone manages their own password."""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from flask import Flask
from itsdangerous.timed import TimestampSigner

from digest import accounts
from digest.extensions import db
from digest.mail.delivery import deliver_pending
from digest.mail.transports import app_transport, memory_outbox
from digest.models import AuditEvent, Editor, Subscriber, SubscriberStatus
from tests.admin_fixtures import PASSWORD, log_in, logged_in_client, make_editor
from tests.conftest import make_test_app
from tests.smtpd import RecordingHandler, smtp_server

NOW = dt.datetime(2026, 11, 28, 9, 0, tzinfo=dt.UTC)


def _invite_path(message: EmailMessage) -> str:
    """The invitation link's path, read from the plain-text part of the mail."""
    text = message.get_body(("plain",)).get_content()
    return re.search(r"http://digest\.test(/admin/invite/\S+)", text).group(1)


def _invite(client, email: str, role: str = "editor") -> str:  # type: ignore[no-untyped-def]
    """Invite ``email`` and return the link's path from the mail a worker delivered."""
    response = client.post("/admin/editors/invite", data={"email": email, "role": role})
    assert response.status_code == 303, response.get_data(as_text=True)
    app = client.application
    deliver_pending(db.session, app_transport(app), dt.datetime.now(dt.UTC))
    address = email.strip().lower()
    mails = [m for m in memory_outbox(app) if m["To"] == address]
    return _invite_path(mails[-1])


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


@pytest.fixture
def smtp_app(database_url: str, tmp_path: Path) -> Iterator[tuple[Flask, RecordingHandler]]:
    """An app whose mail goes to a real SMTP server on loopback."""
    with smtp_server() as (handler, port):
        app = make_test_app(database_url, tmp_path, MAIL_URL=f"smtp://127.0.0.1:{port}")
        with app.app_context():
            db.drop_all()
            db.create_all()
            yield app, handler
            db.session.remove()
            db.drop_all()
            app_transport(app).close()
            db.engine.dispose()


def test_the_invitation_is_emailed_over_smtp_and_never_shown_on_screen(
    smtp_app: tuple[Flask, RecordingHandler],
) -> None:
    app, handler = smtp_app
    admin = logged_in_client(app, "admin")
    response = admin.post(
        "/admin/editors/invite", data={"email": "Nouvelle@Digest.test", "role": "editor"}
    )
    assert response.status_code == 303
    page = admin.get("/admin/editors").get_data(as_text=True)
    assert "Invitation emailed to nouvelle@digest.test" in page
    assert "/admin/invite/" not in page
    assert "mail queued" in page
    # Nothing leaves from the request: a worker hands the ledger's row to the SMTP server.
    assert handler.received == []
    deliver_pending(db.session, app_transport(app), dt.datetime.now(dt.UTC))
    [received] = handler.received
    assert received.recipient == "nouvelle@digest.test"
    message = received.message
    assert message["Subject"] == "You are invited to the Le Digest editor's desk"
    assert message["From"] == "Le Digest <digest@digest.test>"
    html_part = message.get_body(("html",)).get_content()
    path = _invite_path(message)
    assert f'href="http://digest.test{path}"' in html_part
    assert "mail sent" in admin.get("/admin/editors").get_data(as_text=True)
    # The mailbox row is no reader: no digest goes to it.
    mailbox = db.session.scalar(
        db.select(Subscriber).where(Subscriber.email == "nouvelle@digest.test")
    )
    assert mailbox.status == SubscriberStatus.PENDING

    newcomer = app.test_client()
    assert "nouvelle@digest.test" in newcomer.get(path).get_data(as_text=True)
    joined = newcomer.post(path, data={"password": PASSWORD, "password_again": PASSWORD})
    assert joined.status_code == 303
    assert newcomer.get("/admin/").status_code == 200
    reused = app.test_client().get(path)
    assert reused.status_code == 400
    text = reused.get_data(as_text=True)
    assert "already been used" in text and 'name="password"' not in text
    assert 'href="/admin/login"' in text
    # Joined: no second invitation for them.
    joined_editor = accounts.find_editor(db.session, "nouvelle@digest.test")
    admin.post(f"/admin/editors/{joined_editor.id}/reinvite")
    assert "has already joined" in admin.get("/admin/editors").get_data(as_text=True)


def test_resending_an_invitation_withdraws_the_earlier_link(app: Flask) -> None:
    admin = logged_in_client(app, "admin")
    first = _invite(admin, "later@digest.test")
    editor = accounts.find_editor(db.session, "later@digest.test")
    assert admin.post(f"/admin/editors/{editor.id}/reinvite").status_code == 303
    deliver_pending(db.session, app_transport(app), dt.datetime.now(dt.UTC))
    second = _invite_path([m for m in memory_outbox(app) if m["To"] == "later@digest.test"][-1])
    assert second != first
    withdrawn = app.test_client().get(first)
    assert withdrawn.status_code == 400
    assert "already been used or was withdrawn" in withdrawn.get_data(as_text=True)
    assert app.test_client().get(second).status_code == 200
    assert admin.post("/admin/editors/4242/reinvite").status_code == 404
    events = db.session.scalars(
        db.select(AuditEvent.action).where(AuditEvent.target == "later@digest.test")
    ).all()
    assert sorted(events) == ["editor.invite", "editor.reinvite"]


def test_an_invitation_reaches_an_address_that_unsubscribed_from_the_digest(app: Flask) -> None:
    db.session.add(
        Subscriber(email="former@digest.test", language="fr", status=SubscriberStatus.UNSUBSCRIBED)
    )
    db.session.commit()
    admin = logged_in_client(app, "admin")
    path = _invite(admin, "former@digest.test")
    assert app.test_client().get(path).status_code == 200


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda path: path[:-3], "not valid"),
        (lambda path: path + "x", "not valid"),
        (lambda path: "/admin/invite/" + "A" * 4000, "not valid"),
        (lambda path: "/admin/invite/%00%0d%0a", "not valid"),
    ],
)
def test_a_broken_invitation_link_gives_a_clear_page(
    app: Flask, mangle: Callable[[str], str], message: str
) -> None:
    admin = logged_in_client(app, "admin")
    path = _invite(admin, "broken@digest.test")
    response = app.test_client().get(mangle(path))
    assert response.status_code == 400
    text = response.get_data(as_text=True)
    assert message in text and "ask" in text.lower() and 'name="password"' not in text
    posted = app.test_client().post(mangle(path), data={"password": PASSWORD})
    assert posted.status_code == 400
    assert accounts.is_invited(accounts.find_editor(db.session, "broken@digest.test"))


def test_an_expired_invitation_link_says_so_and_how_to_get_another(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    editor = accounts.create_editor(db.session, "slow@digest.test", None, "editor")
    eight_days_ago = int(time.time()) - 8 * 86400
    # The token is signed with the time it was made: make it eight days old.
    with monkeypatch.context() as patch, app.test_request_context():
        patch.setattr(TimestampSigner, "get_timestamp", lambda self: eight_days_ago)
        accounts.queue_invitation(
            db.session, editor, lambda token: f"http://digest.test/admin/invite/{token}", NOW
        )
    db.session.commit()
    deliver_pending(db.session, app_transport(app), NOW)
    path = _invite_path(memory_outbox(app)[-1])
    response = app.test_client().get(path)
    assert response.status_code == 400
    text = response.get_data(as_text=True)
    assert "This invitation has expired: ask an admin for a new one." in text
    assert 'name="password"' not in text
    refused = app.test_client().post(path, data={"password": PASSWORD, "password_again": PASSWORD})
    assert refused.status_code == 400
    assert log_in(app.test_client(), "slow@digest.test").status_code == 401
