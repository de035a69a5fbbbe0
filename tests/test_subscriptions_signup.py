"""Sign-up of new and known addresses: outcomes, the daily cap, concurrency, equal work."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event, insert, select, update

from digest import subscriptions
from digest.extensions import db
from digest.models import Delivery, Subscriber
from tests.database_helpers import (
    AnotherRequest,
    all_at_once,
    behind_held_writes,
    database_work,
    mail_kinds,
    on_sqlite,
)
from tests.public_helpers import links_in, mails_to

NOW = dt.datetime(2026, 3, 2, 8, 30, tzinfo=dt.UTC)
Outcome = subscriptions.SignUpOutcome
# A stranger's form: none of it may reach an active or paused reader's row.
FORM: dict[str, Any] = {
    "name": "Mallory",
    "language": "es",
    "categories": ["health"],
    "ip": "203.0.113.9",
    "user_agent": "Form/1.0",
}


def _add(email: str, status: str, **fields: Any) -> Subscriber:
    subscriber = Subscriber(
        email=email,
        status=status,
        name="Ana",
        language="en",
        categories=["sport"],
        consent_source="import",
        consent_ip="198.51.100.1",
        **fields,
    )
    db.session.add(subscriber)
    db.session.commit()
    return subscriber


def _get(email: str) -> Subscriber:
    db.session.expire_all()
    subscriber = db.session.scalar(select(Subscriber).where(Subscriber.email == email))
    assert subscriber is not None
    return subscriber


def _settings(subscriber: Subscriber) -> tuple[Any, ...]:
    return (
        subscriber.name,
        subscriber.language,
        subscriber.categories,
        subscriber.consent_source,
        subscriber.consent_ip,
        subscriber.consent_user_agent,
    )


THEIRS = ("Ana", "en", ["sport"], "import", "198.51.100.1", None)
THE_FORMS = ("Mallory", "es", ["health"], "web", "203.0.113.9", "Form/1.0")


# -------------------------------------------------------------------------------- outcomes


@pytest.mark.parametrize(
    ("status", "outcome", "mail"),
    [
        (None, Outcome.CREATED, "confirm"),
        ("pending", Outcome.RESENT, "confirm"),
        ("unsubscribed", Outcome.RESUBSCRIBING, "confirm"),
        ("bounced", Outcome.RESUBSCRIBING, "confirm"),
        ("active", Outcome.ALREADY_ACTIVE, "already"),
        ("paused", Outcome.ALREADY_ACTIVE, "already"),
    ],
)
def test_each_kind_of_address_gets_its_mail_and_only_unconfirmed_ones_take_the_form(
    app: Flask, status: str | None, outcome: Outcome, mail: str
) -> None:
    if status:
        _add("ana@example.org", status)
    result = subscriptions.sign_up(db.session, email="ana@example.org", now=NOW, **FORM)
    ana = _get("ana@example.org")
    assert (result.outcome, result.subscriber_id, result.mail_queued) == (outcome, ana.id, True)
    assert mail_kinds("ana@example.org") == [mail]
    (sent,) = mails_to(app, "ana@example.org")
    if mail == "already":
        # A confirmed reader keeps everything, consent record included, and gets the link
        # to their own preferences.
        assert (ana.status, _settings(ana)) == (status, THEIRS)
        assert sent["Subject"] == "You are already subscribed to Le Digest"
        assert links_in(sent, "manage") and not links_in(sent, "confirm")
    else:
        assert (ana.status, _settings(ana)) == ("pending", THE_FORMS)
        assert links_in(sent, "confirm") and not links_in(sent, "manage")


@pytest.mark.parametrize("status", ["pending", "unsubscribed", "active", "paused"])
def test_the_daily_cap_holds_for_every_kind_of_known_address(app: Flask, status: str) -> None:
    ana = _add("ana@example.org", status)
    # Any mail a stranger can trigger counts (here a new link, an earlier sign-up and a
    # change of address), a digest does not.
    for kind in ("new_link", "confirm", "email_change", "digest"):
        db.session.add(
            Delivery(
                kind=kind, subscriber=ana, state="sent", created_at=NOW - dt.timedelta(hours=1)
            )
        )
    db.session.commit()
    capped = subscriptions.sign_up(db.session, email="ana@example.org", now=NOW, **FORM)
    assert (capped.outcome, capped.subscriber_id, capped.mail_queued) == (
        Outcome.CAPPED,
        ana.id,
        False,
    )
    assert len(mail_kinds("ana@example.org")) == 4
    # The form still counts for an unconfirmed address (its next confirmation uses it), and
    # still never for a confirmed one.
    ana = _get("ana@example.org")
    if status in ("active", "paused"):
        assert (ana.status, _settings(ana)) == (status, THEIRS)
    else:
        assert (ana.status, _settings(ana)) == ("pending", THE_FORMS)


def test_an_active_reader_gets_three_manage_links_a_day_at_most(app: Flask) -> None:
    _add("ana@example.org", "active")
    outcomes = [
        subscriptions.sign_up(
            db.session, email="ana@example.org", now=NOW + dt.timedelta(minutes=m), **FORM
        ).outcome
        for m in range(4)
    ]
    assert outcomes == [Outcome.ALREADY_ACTIVE] * 3 + [Outcome.CAPPED]
    assert mail_kinds("ana@example.org") == ["already"] * 3
    assert _settings(_get("ana@example.org")) == THEIRS


# ----------------------------------------------------------------------------- concurrency


def _sign_up_of_ana(app: Flask) -> AnotherRequest[subscriptions.SignUpResult]:
    return AnotherRequest(app, subscriptions.sign_up, now=NOW, email="ana@example.org", **FORM)


@pytest.mark.parametrize("status", [None, "pending", "active"])
def test_many_sign_ups_of_one_address_at_once_keep_one_row_and_the_cap(
    app: Flask, status: str | None
) -> None:
    if status:
        _add("ana@example.org", status)
    results = all_at_once([_sign_up_of_ana(app) for _ in range(6)])
    (ana,) = db.session.scalars(select(Subscriber)).all()
    # Whichever way they interleave: one row, each mail reported queued is there once, and
    # no more than the cap reach the inbox. Sign-ups that overlap on PostgreSQL step aside
    # for the one that got there first (CONCURRENT); those that follow it see its mail.
    assert len(mail_kinds(ana.email)) == sum(r.mail_queued for r in results) <= 3
    outcomes = {r.outcome for r in results}
    if status is None:
        assert [r.outcome for r in results].count(Outcome.CREATED) == 1
    if status == "active":
        assert outcomes <= {Outcome.ALREADY_ACTIVE, Outcome.CAPPED, Outcome.CONCURRENT}
        assert set(mail_kinds(ana.email)) == {"already"}
        assert (ana.status, _settings(_get(ana.email))) == ("active", THEIRS)
    else:
        assert outcomes <= {
            Outcome.CREATED,
            Outcome.RESENT,
            Outcome.CAPPED,
            Outcome.CONCURRENT,
        }
        assert set(mail_kinds(ana.email)) == {"confirm"}


def test_a_sign_up_meeting_the_same_new_address_being_stored_adds_no_second_row(
    app: Flask,
) -> None:
    stored = 4242
    # What another sign-up of the new address writes, held open while this one arrives.
    held = [
        insert(Subscriber).values(
            id=stored, email="ana@example.org", status="pending", name="First", created_at=NOW
        ),
        insert(Delivery).values(
            kind="confirm", subscriber_id=stored, state="queued", created_at=NOW
        ),
    ]
    result = behind_held_writes(held, _sign_up_of_ana(app))
    assert [s.id for s in db.session.scalars(select(Subscriber))] == [stored]
    if on_sqlite():
        # It waited for the write lock, then found the address pending: a sign-up again.
        assert (result.outcome, _get("ana@example.org").name) == (Outcome.RESENT, "Mallory")
        assert mail_kinds("ana@example.org") == ["confirm", "confirm"]
    else:
        # It began before the row was there and waited on its insert: it steps aside, and
        # the address gets one confirmation.
        assert (result.outcome, result.mail_queued) == (Outcome.CONCURRENT, False)
        assert (_get("ana@example.org").name, mail_kinds("ana@example.org")) == (
            "First",
            ["confirm"],
        )


def test_a_sign_up_meeting_another_sign_up_of_a_known_address_changes_nothing_more(
    app: Flask,
) -> None:
    ana = _add("ana@example.org", "unsubscribed")
    # What another sign-up of the address writes, held open while this one arrives.
    held = [
        update(Subscriber).where(Subscriber.id == ana.id).values(name="First", status="pending"),
        insert(Delivery).values(
            kind="confirm", subscriber_id=ana.id, state="queued", created_at=NOW
        ),
    ]
    result = behind_held_writes(held, _sign_up_of_ana(app))
    if on_sqlite():
        assert (result.outcome, _get("ana@example.org").name) == (Outcome.RESENT, "Mallory")
        assert mail_kinds("ana@example.org") == ["confirm", "confirm"]
    else:
        # The row changed after its snapshot: its status and count are out of date, so it
        # writes and queues nothing (the cap cannot be passed by sending the form in bulk).
        assert (result.outcome, result.mail_queued) == (Outcome.CONCURRENT, False)
        assert (_get("ana@example.org").name, mail_kinds("ana@example.org")) == (
            "First",
            ["confirm"],
        )


def test_a_confirmation_landing_during_a_sign_up_keeps_the_readers_settings(app: Flask) -> None:
    ana = _add("ana@example.org", "pending")
    # What subscriptions.confirm writes, held open while the form arrives.
    confirmed = (
        update(Subscriber).where(Subscriber.id == ana.id).values(status="active", confirmed_at=NOW)
    )
    result = behind_held_writes([confirmed], _sign_up_of_ana(app))
    ana = _get("ana@example.org")
    # Either way the reader is confirmed with their own settings and gets no confirmation.
    assert (ana.status, _settings(ana)) == ("active", THEIRS)
    if on_sqlite():
        assert result.outcome == Outcome.ALREADY_ACTIVE
        assert mail_kinds("ana@example.org") == ["already"]
    else:
        assert (result.outcome, mail_kinds("ana@example.org")) == (Outcome.CONCURRENT, [])


# ------------------------------------------------------------------------------ equal work


def test_every_address_costs_the_same_statements(app: Flask) -> None:
    statuses = ("pending", "active", "paused", "unsubscribed", "bounced")
    for status in statuses:
        _add(f"{status}@example.org", status)
    db.session.remove()
    work: dict[str, list[str]] = {}
    for who in ("new", *statuses):
        with database_work() as sent:
            subscriptions.sign_up(db.session, email=f"{who}@example.org", now=NOW, **FORM)
        work[who] = sent
    if on_sqlite():
        assert [line.split()[0] for line in work["new"]] == [
            "BEGIN",
            "SELECT",
            "INSERT",
            "INSERT",
            "COMMIT",
        ]
        assert {len(sent) for sent in work.values()} == {5}
    else:
        # One statement in autocommit: no BEGIN, no COMMIT.
        assert {len(sent) for sent in work.values()} == {1}, work


# ------------------------------------------------------------------------- commit modes


def _request_a_new_link() -> None:
    subscriptions.send_new_link(db.session, email="pending@example.org", now=NOW)


def _change_an_address() -> None:
    reader = _get("active@example.org")
    subscriptions.request_email_change(db.session, reader, new_email="new@example.org", now=NOW)


def _sign_up() -> None:
    subscriptions.sign_up(db.session, email="someone@example.org", now=NOW, **FORM)


@pytest.mark.parametrize("request_", [_sign_up, _request_a_new_link, _change_an_address])
def test_a_requests_asynchronous_commit_ends_with_its_own_transaction(
    app: Flask, request_: Any
) -> None:
    """The sign-up, new-link and change-of-address statements commit asynchronously; the
    connection they ran on must go back to the pool committing synchronously, or the next
    request on it (a confirmation, an unsubscription) would answer before it is on disk."""
    if on_sqlite():
        pytest.skip("SQLite has no per-transaction commit mode")
    _add("pending@example.org", "pending")
    _add("active@example.org", "active")
    db.session.remove()
    lent: list[Any] = []

    def remember(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        lent.append(dbapi_connection)

    event.listen(db.engine, "checkout", remember)
    try:
        request_()
    finally:
        event.remove(db.engine, "checkout", remember)
    assert lent
    for dbapi_connection in lent:
        assert dbapi_connection.execute("SHOW synchronous_commit").fetchone() == ("on",)
