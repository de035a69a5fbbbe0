"""A change of address from the preference centre: the mail, the cap, the same work for all."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import insert, select, update

from digest import subscriptions, tokens
from digest.extensions import db
from digest.models import Delivery, Subscriber
from tests.database_helpers import (
    AnotherRequest,
    all_at_once,
    all_behind_one_write,
    behind_held_writes,
    database_work,
    mail_kinds,
    on_sqlite,
    the_daily_cap_held,
)
from tests.public_helpers import deliver, links_in, mails_to

NOW = dt.datetime(2026, 3, 2, 8, 30, tzinfo=dt.UTC)


def _add(email: str, status: str = "active", **fields: Any) -> Subscriber:
    subscriber = Subscriber(
        email=email, status=status, name="Ana", language="en", categories=["sport"], **fields
    )
    db.session.add(subscriber)
    db.session.commit()
    return subscriber


def _placeholder(email: str) -> Subscriber:
    """A pending row holding ``email`` for a change of address asked for earlier."""
    return _add(email, "pending", consent_source=subscriptions.EMAIL_CHANGE_SOURCE)


def _as_a_request_loads(email: str) -> Subscriber:
    """The reader as the manage page loads them, read afresh (before the work watched)."""
    db.session.expire_all()
    reader = db.session.scalar(select(Subscriber).where(Subscriber.email == email))
    assert reader is not None and reader.token_version and reader.categories
    return reader


def _get(email: str) -> Subscriber | None:
    db.session.expire_all()
    return db.session.scalar(select(Subscriber).where(Subscriber.email == email))


def _change(reader: Subscriber, new_email: str, now: dt.datetime = NOW) -> bool:
    return subscriptions.request_email_change(db.session, reader, new_email=new_email, now=now)


# ------------------------------------------------------------------------------ equal work


def test_free_held_and_taken_addresses_cost_the_same_statements(app: Flask) -> None:
    _add("reader@example.org")
    _add("taken@example.org")
    _placeholder("held@example.org")
    work: dict[str, list[str]] = {}
    answers: dict[str, bool] = {}
    for who in ("free", "held", "taken"):
        reader = _as_a_request_loads("reader@example.org")
        with database_work() as sent:
            answers[who] = _change(reader, f"{who}@example.org")
        work[who] = sent
    assert answers == {"free": True, "held": True, "taken": False}
    assert mail_kinds("free@example.org") == mail_kinds("held@example.org") == ["email_change"]
    assert mail_kinds("taken@example.org") == []
    if on_sqlite():
        # The same four in one transaction: no lookup first, nothing skipped for a taken one.
        shapes = {tuple(" ".join(line.split()[:2]) for line in sent) for sent in work.values()}
        assert shapes == {("BEGIN IMMEDIATE", "INSERT INTO", "INSERT INTO", "COMMIT")}, work
    else:
        # One statement in autocommit: no BEGIN, no COMMIT.
        assert {len(sent) for sent in work.values()} == {1}, work


@pytest.mark.parametrize(
    "typed",
    ["", "nope", "new@example.org' OR '1'='1", "a" * 310 + "@example.org", "a@spam.example"],
)
def test_an_unusable_address_is_refused_before_any_database_work(app: Flask, typed: str) -> None:
    app.config["BLOCKED_EMAIL_DOMAINS"] = "spam.example"
    _add("reader@example.org")
    reader = _as_a_request_loads("reader@example.org")
    with database_work() as sent, pytest.raises(subscriptions.InvalidEmail):
        _change(reader, typed)
    assert sent == []
    assert db.session.scalars(select(Delivery)).all() == []


# -------------------------------------------------------------------------------- the link


def test_the_mailed_link_moves_the_subscription_and_revokes_its_old_links(app: Flask) -> None:
    ana = _add("ana@example.org")
    old_manage = tokens.make_token(ana, "manage")
    assert _change(_as_a_request_loads("ana@example.org"), " New@Example.ORG ")
    placeholder = _get("new@example.org")
    assert placeholder is not None and placeholder.status == "pending"
    assert placeholder.categories == ["sport"] and placeholder.name == "Ana"

    (sent,) = mails_to(app, "new@example.org")
    (path,) = links_in(sent, "email")
    token = path.rsplit("/", 1)[1]
    owner, address = subscriptions.read_email_change(db.session, token, NOW)
    assert (owner.email, address) == ("ana@example.org", "new@example.org")
    subscriptions.apply_email_change(db.session, owner, address)

    moved = _get("new@example.org")
    assert moved is not None and moved.id == ana.id and moved.status == "active"
    assert _get("ana@example.org") is None
    with pytest.raises(tokens.Revoked):
        tokens.read_token(db.session, old_manage, "manage")
    with pytest.raises(tokens.TokenError):
        subscriptions.read_email_change(db.session, token, NOW)


def test_a_held_address_mails_a_link_for_whoever_asked_last(app: Flask) -> None:
    _add("ana@example.org")
    _add("bea@example.org")
    assert _change(_as_a_request_loads("ana@example.org"), "new@example.org")
    assert _change(_as_a_request_loads("bea@example.org"), "new@example.org")
    first, second = mails_to(app, "new@example.org")
    owners = []
    for mail in (first, second):
        token = links_in(mail, "email")[0].rsplit("/", 1)[1]
        owners.append(subscriptions.read_email_change(db.session, token, NOW)[0].email)
    # One placeholder, each link naming the subscription that asked for it.
    assert owners == ["ana@example.org", "bea@example.org"]
    assert db.session.scalars(select(Subscriber.email).order_by(Subscriber.id)).all() == [
        "ana@example.org",
        "bea@example.org",
        "new@example.org",
    ]


def test_a_link_dies_when_its_subscription_revokes_its_links_before_the_mail_goes(
    app: Flask,
) -> None:
    ana = _add("ana@example.org")
    assert _change(_as_a_request_loads("ana@example.org"), "new@example.org")
    tokens.revoke_links(ana)
    db.session.commit()
    (sent,) = mails_to(app, "new@example.org")
    token = links_in(sent, "email")[0].rsplit("/", 1)[1]
    with pytest.raises(tokens.Revoked):
        subscriptions.read_email_change(db.session, token, NOW)


def test_a_change_mail_queued_with_its_link_already_made_still_renders(app: Flask) -> None:
    # Rows queued before links were signed at sending carry the finished URL.
    ana = _add("ana@example.org")
    placeholder = _placeholder("new@example.org")
    token = tokens.make_token(placeholder, "email", extra={"from": ana.id, "v": 1})
    confirm_url = f"{app.config['PUBLIC_URL']}/email/{token}"
    db.session.execute(
        insert(Delivery).values(
            kind="email_change",
            subscriber_id=placeholder.id,
            state="queued",
            created_at=NOW,
            next_attempt_at=NOW,
            payload={
                "template": "email_change",
                "context": {
                    "new_email": "new@example.org",
                    "confirm_url": confirm_url,
                    "max_age_days": 7,
                },
            },
        )
    )
    db.session.commit()
    (sent,) = deliver(app)
    assert links_in(sent, "email") == [f"/email/{token}"]
    assert subscriptions.read_email_change(db.session, token, NOW)[0].email == "ana@example.org"


# ------------------------------------------------------------------------------- the cap


def test_a_held_address_gets_three_capped_mails_a_day_at_most(app: Flask) -> None:
    placeholder = _placeholder("new@example.org")
    # A confirmation asked for through the new-link form counts; yesterday's does not.
    db.session.add_all(
        [
            Delivery(kind="confirm", subscriber=placeholder, state="sent", created_at=NOW),
            Delivery(
                kind="email_change",
                subscriber=placeholder,
                state="sent",
                created_at=NOW - dt.timedelta(hours=25),
            ),
        ]
    )
    db.session.commit()
    _add("ana@example.org")
    answers = [
        _change(
            _as_a_request_loads("ana@example.org"), "new@example.org", NOW + dt.timedelta(minutes=m)
        )
        for m in range(1, 4)
    ]
    assert answers == [True, True, False]
    assert mail_kinds("new@example.org") == [
        "confirm",
        "email_change",
        "email_change",
        "email_change",
    ]
    tomorrow = NOW + dt.timedelta(days=1, minutes=5)
    assert _change(_as_a_request_loads("ana@example.org"), "new@example.org", tomorrow)


def test_the_cap_holds_when_another_mail_is_being_queued_at_that_moment(app: Flask) -> None:
    placeholder = _placeholder("new@example.org")
    for kind in ("email_change", "confirm"):
        db.session.add(Delivery(kind=kind, subscriber=placeholder, state="sent", created_at=NOW))
    db.session.commit()
    ana = _add("ana@example.org")
    # What another request for the address writes, held open while this one arrives: the
    # placeholder rewritten unchanged and the third mail of the day.
    held = [
        update(Subscriber).where(Subscriber.id == placeholder.id).values(status="pending"),
        insert(Delivery).values(
            kind="email_change", subscriber_id=placeholder.id, state="queued", created_at=NOW
        ),
    ]
    second = AnotherRequest(
        app,
        lambda session: subscriptions.request_email_change(
            session, session.get(Subscriber, ana.id), new_email="new@example.org", now=NOW
        ),
    )
    assert behind_held_writes(held, second) is False
    assert len(mail_kinds("new@example.org")) == 3


def _change_to_new(session: Any, reader_id: int) -> bool:
    """One reader's request to move to new@example.org, as its own web request would."""
    reader = session.get(Subscriber, reader_id)
    return subscriptions.request_email_change(session, reader, new_email="new@example.org", now=NOW)


def test_many_requests_for_one_new_address_at_once_store_one_row_and_queue_the_cap(
    app: Flask,
) -> None:
    readers = [_add(f"reader{n}@example.org").id for n in range(6)]

    answers = all_at_once([AnotherRequest(app, _change_to_new, reader_id=r) for r in readers])
    assert (
        len(
            db.session.scalars(
                select(Subscriber).where(Subscriber.email == "new@example.org")
            ).all()
        )
        == 1
    )
    the_daily_cap_held("new@example.org", answers)


def test_changes_that_all_meet_store_one_row_and_queue_one_mail_on_postgresql(
    app: Flask,
) -> None:
    # Six changes to one address that have all begun before any writes (held behind an
    # uncommitted row for the address): the timing the test above leaves to chance.
    readers = [_add(f"reader{n}@example.org").id for n in range(6)]

    requests = [AnotherRequest(app, _change_to_new, reader_id=r) for r in readers]
    held = insert(Subscriber).values(email="new@example.org", status="pending", created_at=NOW)
    answers = all_behind_one_write(held, requests)
    stored = db.session.scalars(select(Subscriber).where(Subscriber.email == "new@example.org"))
    assert len(stored.all()) == 1
    queued = len(mail_kinds("new@example.org"))
    assert queued == answers.count(True)
    # SQLite runs them one after another: three queue, three count three. PostgreSQL: the
    # first stores the address once the held row is gone; the others' inserts then find it
    # taken, and their snapshots, taken before it existed, cannot see it to claim it.
    assert queued == (3 if on_sqlite() else 1)
