"""Editors' accounts: hashing, creation, lockouts per account and per address, sessions."""

from __future__ import annotations

import datetime as dt

import pytest
from flask import Flask

from digest import accounts
from digest.extensions import db
from digest.models import AuditEvent, Editor
from tests.admin_fixtures import NOON, PASSWORD, make_editor

POLICY = accounts.LockoutPolicy(
    account_failures=3,
    account_lock=dt.timedelta(minutes=10),
    address_failures=5,
    address_window=dt.timedelta(minutes=10),
)


@pytest.mark.no_db
def test_passwords_are_stored_as_argon2_hashes_not_text() -> None:
    hashed = accounts.hash_password(PASSWORD)
    assert hashed.startswith("$argon2id$")
    assert PASSWORD not in hashed
    assert accounts.verify_password(hashed, PASSWORD)
    assert not accounts.verify_password(hashed, PASSWORD + "!")
    assert not accounts.verify_password("not a hash", PASSWORD)
    assert not accounts.verify_password(accounts.UNUSABLE_PASSWORD, "")


def test_create_editor_normalizes_and_refuses_duplicates_and_bad_input(app: Flask) -> None:
    editor = accounts.create_editor(db.session, "  Ed@Digest.TEST ", PASSWORD, "admin", NOON)
    assert editor.email == "ed@digest.test"
    assert editor.role == "admin"
    with pytest.raises(accounts.EditorExists):
        accounts.create_editor(db.session, "ED@digest.test", PASSWORD, "editor")
    with pytest.raises(accounts.AccountError, match="role"):
        accounts.create_editor(db.session, "x@digest.test", PASSWORD, "owner")
    with pytest.raises(accounts.AccountError, match="email"):
        accounts.create_editor(db.session, "not an address", PASSWORD)
    with pytest.raises(accounts.AccountError, match="at least"):
        accounts.create_editor(db.session, "y@digest.test", "short")


def test_wrong_password_and_unknown_address_fail_alike_and_are_recorded(app: Flask) -> None:
    make_editor("ed@digest.test")
    with pytest.raises(accounts.InvalidCredentials) as wrong:
        accounts.authenticate(db.session, "ed@digest.test", "nope", "10.0.0.1", NOON, POLICY)
    with pytest.raises(accounts.InvalidCredentials) as unknown:
        accounts.authenticate(db.session, "who@digest.test", "nope", "10.0.0.1", NOON, POLICY)
    assert str(wrong.value) == str(unknown.value)
    db.session.commit()
    failures = db.session.scalars(
        db.select(AuditEvent).where(AuditEvent.action == "login.failed")
    ).all()
    assert {event.actor for event in failures} == {"ed@digest.test", "who@digest.test"}
    assert all(event.ip == "10.0.0.1" for event in failures)


def test_account_locks_after_repeated_failures_even_for_the_right_password(app: Flask) -> None:
    make_editor("ed@digest.test")
    for minute in range(3):
        with pytest.raises(accounts.InvalidCredentials):
            accounts.authenticate(
                db.session,
                "ed@digest.test",
                "guess",
                f"10.0.0.{minute}",
                NOON + dt.timedelta(minutes=minute),
                POLICY,
            )
    db.session.commit()
    with pytest.raises(accounts.AccountLocked) as locked:
        accounts.authenticate(
            db.session,
            "ed@digest.test",
            PASSWORD,
            "10.9.9.9",
            NOON + dt.timedelta(minutes=5),
            POLICY,
        )
    assert locked.value.until == NOON + dt.timedelta(minutes=12)
    # Once the lock ends the right password works again and the counter starts over.
    editor = accounts.authenticate(
        db.session,
        "ed@digest.test",
        PASSWORD,
        "10.9.9.9",
        NOON + dt.timedelta(minutes=13),
        POLICY,
    )
    assert editor.failed_logins == 0
    assert editor.locked_until is None


def test_an_address_that_keeps_failing_is_locked_out_for_every_account(app: Flask) -> None:
    make_editor("ed@digest.test")
    for attempt in range(5):
        with pytest.raises(accounts.InvalidCredentials):
            accounts.authenticate(
                db.session, f"guess{attempt}@digest.test", "x", "203.0.113.7", NOON, POLICY
            )
    db.session.commit()
    with pytest.raises(accounts.AddressLocked):
        accounts.authenticate(
            db.session,
            "ed@digest.test",
            PASSWORD,
            "203.0.113.7",
            NOON + dt.timedelta(minutes=1),
            POLICY,
        )
    # Another address is not affected, and the window passes.
    assert accounts.authenticate(
        db.session,
        "ed@digest.test",
        PASSWORD,
        "198.51.100.1",
        NOON + dt.timedelta(minutes=1),
        POLICY,
    )
    assert accounts.authenticate(
        db.session,
        "ed@digest.test",
        PASSWORD,
        "203.0.113.7",
        NOON + dt.timedelta(minutes=11),
        POLICY,
    )


def test_session_ids_stop_working_after_logout_everywhere(app: Flask) -> None:
    editor = make_editor("ed@digest.test")
    old_id = editor.get_id()
    assert accounts.load_editor(db.session, old_id) is editor
    accounts.log_out_everywhere(editor)
    db.session.commit()
    assert accounts.load_editor(db.session, old_id) is None
    assert accounts.load_editor(db.session, editor.get_id()) is editor
    for bogus in ("", "abc", f"{editor.id}", f"{editor.id}:x", "1:2:3", "-1:1", "9" * 60 + ":1"):
        assert accounts.load_editor(db.session, bogus) is None


def test_set_password_replaces_the_hash_and_ends_other_sessions(app: Flask) -> None:
    editor = make_editor("ed@digest.test")
    version = editor.session_version
    accounts.set_password(editor, "another long passphrase")
    assert editor.session_version == version + 1
    assert accounts.verify_password(editor.password_hash, "another long passphrase")
    assert not accounts.verify_password(editor.password_hash, PASSWORD)


def test_invited_editor_cannot_log_in_before_choosing_a_password(app: Flask) -> None:
    accounts.create_editor(db.session, "new@digest.test", None, "editor")
    db.session.commit()
    with pytest.raises(accounts.InvalidCredentials):
        accounts.authenticate(db.session, "new@digest.test", "", None, NOON, POLICY)
    with pytest.raises(accounts.InvalidCredentials):
        accounts.authenticate(
            db.session, "new@digest.test", accounts.UNUSABLE_PASSWORD, None, NOON, POLICY
        )
    assert db.session.scalar(db.select(Editor.role).where(Editor.email == "new@digest.test"))
