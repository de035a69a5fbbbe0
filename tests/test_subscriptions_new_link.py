"""The "send me a new link" form: who gets which mail, the daily cap, the same work for all."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import insert, select, update

from digest import subscriptions
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
from tests.public_helpers import links_in, mails_to

NOW = dt.datetime(2026, 3, 2, 8, 30, tzinfo=dt.UTC)
STATUSES = ("pending", "active", "paused", "unsubscribed", "bounced")


def _add(email: str, status: str, **fields: Any) -> Subscriber:
    subscriber = Subscriber(
        email=email, status=status, name="Ana", language="en", categories=["sport"], **fields
    )
    db.session.add(subscriber)
    db.session.commit()
    return subscriber


def _sent_earlier(subscriber: Subscriber, *kinds: str, hours_ago: int = 1) -> None:
    for kind in kinds:
        db.session.add(
            Delivery(
                kind=kind,
                subscriber=subscriber,
                state="sent",
                created_at=NOW - dt.timedelta(hours=hours_ago),
            )
        )
    db.session.commit()


def _row(email: str) -> tuple[Any, ...]:
    db.session.expire_all()
    subscriber = db.session.scalar(select(Subscriber).where(Subscriber.email == email))
    assert subscriber is not None
    return (subscriber.status, subscriber.name, subscriber.categories, subscriber.token_version)


# ---------------------------------------------------------------------------- who gets what


@pytest.mark.parametrize(
    ("status", "mail"),
    [
        (None, None),
        ("pending", "confirm"),
        ("active", "new_link"),
        ("paused", "new_link"),
        ("unsubscribed", None),
        ("bounced", None),
    ],
)
def test_each_kind_of_address_gets_its_link_or_nothing(
    app: Flask, status: str | None, mail: str | None
) -> None:
    if status:
        _add("ana@example.org", status)
        before = _row("ana@example.org")
    # Typed as a reader might: the address is found whatever its case and spaces.
    queued = subscriptions.send_new_link(db.session, email=" Ana@Example.ORG ", now=NOW)
    assert queued is (mail is not None)
    assert mail_kinds("ana@example.org") == ([mail] if mail else [])
    sent = mails_to(app, "ana@example.org")
    if mail is None:
        assert sent == []
    else:
        (message,) = sent
        if mail == "confirm":
            assert links_in(message, "confirm") and not links_in(message, "manage")
        else:
            assert message["Subject"] == "Your link to Le Digest preferences"
            assert links_in(message, "manage") and links_in(message, "unsubscribe")
            assert not links_in(message, "confirm")
    if status:
        # Asking for a link changes nothing about the subscription.
        assert _row("ana@example.org") == before


def test_an_address_with_a_quote_in_it_is_found_like_any_other(app: Flask) -> None:
    # What is typed goes to the database as a parameter, never as SQL.
    _add("o'brien@example.org", "active")
    assert subscriptions.send_new_link(db.session, email="O'Brien@example.org", now=NOW)
    assert mail_kinds("o'brien@example.org") == ["new_link"]
    assert mail_kinds("ana@example.org") == []


# ------------------------------------------------------------------------------- the cap


@pytest.mark.parametrize("status", ["pending", "active", "paused"])
def test_an_address_gets_three_of_these_mails_a_day_at_most(app: Flask, status: str) -> None:
    ana = _add("ana@example.org", status)
    # A sign-up's confirmation and a change of address count, a digest and yesterday's
    # mail do not.
    _sent_earlier(ana, "confirm", "email_change", "digest")
    _sent_earlier(ana, "new_link", hours_ago=25)
    answers = [
        subscriptions.send_new_link(
            db.session, email="ana@example.org", now=NOW + dt.timedelta(minutes=minutes)
        )
        for minutes in range(3)
    ]
    assert answers == [True, False, False]
    assert len(mail_kinds("ana@example.org")) == 5
    # A day after the last of them, the address can get one again.
    tomorrow = NOW + dt.timedelta(days=1, minutes=1)
    assert subscriptions.send_new_link(db.session, email="ana@example.org", now=tomorrow)


def test_the_cap_holds_when_another_mail_is_being_queued_at_that_moment(app: Flask) -> None:
    ana = _add("ana@example.org", "active")
    _sent_earlier(ana, "new_link", "new_link")
    # What another request for the address writes, held open while this one arrives: the
    # row rewritten unchanged and the third mail of the day.
    held = [
        update(Subscriber).where(Subscriber.id == ana.id).values(status="active"),
        insert(Delivery).values(
            kind="new_link", subscriber_id=ana.id, state="queued", created_at=NOW
        ),
    ]
    second = AnotherRequest(app, subscriptions.send_new_link, now=NOW, email="ana@example.org")
    # SQLite: it waited for the write lock, then counted three. PostgreSQL: it counted two
    # in its snapshot, but the row changed since, so it steps aside.
    assert behind_held_writes(held, second) is False
    assert mail_kinds("ana@example.org") == ["new_link"] * 3


def test_many_requests_for_one_address_at_once_queue_no_more_than_the_cap(app: Flask) -> None:
    _add("ana@example.org", "active")
    answers = all_at_once(
        [
            AnotherRequest(app, subscriptions.send_new_link, now=NOW, email="ana@example.org")
            for _ in range(6)
        ]
    )
    the_daily_cap_held("ana@example.org", answers)


def test_requests_that_all_meet_queue_one_mail_on_postgresql_and_the_cap_on_sqlite(
    app: Flask,
) -> None:
    # Six requests that have all begun before any writes (held behind an uncommitted rewrite
    # of the row): the timing the test above leaves to chance, made certain.
    ana = _add("ana@example.org", "active")
    requests = [
        AnotherRequest(app, subscriptions.send_new_link, now=NOW, email="ana@example.org")
        for _ in range(6)
    ]
    held = update(Subscriber).where(Subscriber.id == ana.id).values(status="active")
    answers = all_behind_one_write(held, requests)
    queued = len(mail_kinds("ana@example.org"))
    assert queued == answers.count(True)
    # SQLite runs them one after another: three queue, three count three. PostgreSQL: the
    # first to write rewrites the row, and each other finds it changed since its snapshot.
    assert queued == (3 if on_sqlite() else 1)


# ------------------------------------------------------------------------------ equal work


def test_every_address_costs_the_same_one_statement(app: Flask) -> None:
    for status in STATUSES:
        _add(f"{status}@example.org", status)
    _sent_earlier(_add("capped@example.org", "active"), "new_link", "new_link", "new_link")
    db.session.remove()
    work: dict[str, list[str]] = {}
    answers: dict[str, bool] = {}
    for who in ("stranger", *STATUSES, "capped"):
        with database_work() as sent:
            answers[who] = subscriptions.send_new_link(
                db.session, email=f"{who}@example.org", now=NOW
            )
        work[who] = sent
    assert [who for who, queued in answers.items() if queued] == ["pending", "active", "paused"]
    # One statement in autocommit, on either database: no lookup first, no BEGIN or COMMIT.
    if on_sqlite():
        assert {tuple(line.split()[0] for line in sent) for sent in work.values()} == {("INSERT",)}
    else:
        assert {len(sent) for sent in work.values()} == {1}, work


@pytest.mark.parametrize(
    ("typed", "refused"),
    [
        ("", subscriptions.InvalidEmail),
        ("nope", subscriptions.InvalidEmail),
        ("ana@example.org' OR '1'='1", subscriptions.InvalidEmail),
        ("a" * 310 + "@example.org", subscriptions.InvalidEmail),
        ("ana@spam.example", subscriptions.BlockedDomain),
        ("ana@eu.spam.example", subscriptions.BlockedDomain),
    ],
)
def test_an_unusable_address_is_refused_before_any_database_work(
    app: Flask, typed: str, refused: type[Exception]
) -> None:
    app.config["BLOCKED_EMAIL_DOMAINS"] = "spam.example"
    # Even a subscriber at a domain blocked since gets no mail through the form.
    _add("ana@spam.example", "active")
    db.session.remove()
    with database_work() as sent, pytest.raises(refused):
        subscriptions.send_new_link(db.session, email=typed, now=NOW)
    assert sent == []
    assert db.session.scalars(select(Delivery)).all() == []
