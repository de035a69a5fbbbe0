"""The delivery ledger: queue once, send once, retry what is temporary, stop what bounces."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from flask import Flask
from sqlalchemy import select, text

from digest.extensions import db
from digest.mail.delivery import (
    Pacer,
    deliver_pending,
    enqueue_message,
    queue_edition,
    resume_sending,
    retry_delay,
)
from digest.mail.transports import get_transport, memory_outbox
from digest.mail.workers import LOCK_NAMESPACE
from digest.models import Delivery, DeliveryState, Edition, Subscriber, SubscriberStatus
from tests.smtpd import RecordingHandler, smtp_server

NOW = dt.datetime(2026, 3, 2, 6, 0, tzinfo=dt.UTC)
TODAY = NOW.date()


def subscriber(
    email: str,
    status: str = SubscriberStatus.ACTIVE,
    categories: list[str] | None = None,
    language: str = "fr",
    name: str | None = None,
) -> Subscriber:
    """Add a subscriber to the session."""
    row = Subscriber(
        email=email,
        status=status,
        language=language,
        name=name,
        categories=categories or ["politics", "economy", "sport", "health", "other"],
    )
    db.session.add(row)
    db.session.flush()
    return row


def edition(day: dt.date = TODAY, categories: tuple[str, ...] = ("politics", "sport")) -> Edition:
    """An edition whose snapshot has one item in each of ``categories``."""
    row = Edition(
        day=day,
        snapshot={
            "lead": None,
            "sections": [
                {"category": c, "items": [{"title": f"{c} news", "category": c}]}
                for c in categories
            ],
        },
    )
    db.session.add(row)
    db.session.commit()
    return row


def confirmation(email: str, name: str | None = None) -> Delivery:
    """Queue a confirmation mail for a new pending subscriber."""
    person = subscriber(email, status=SubscriberStatus.PENDING, name=name)
    delivery = enqueue_message(
        db.session,
        person,
        "confirm",
        "Confirmez votre inscription",
        "Cliquez : http://digest.test/confirm/abc\n",
        "<p><a href='http://digest.test/confirm/abc'>Confirmer</a></p>",
        NOW,
    )
    db.session.commit()
    return delivery


def states() -> dict[str, str]:
    """Delivery state per subscriber email."""
    rows = db.session.execute(
        select(Subscriber.email, Delivery.state).join(Delivery.subscriber)
    ).all()
    return {email: state for email, state in rows}


def test_transactional_mail_goes_out_once_as_text_and_html(app: Flask) -> None:
    delivery = confirmation("nadia@example.org", name="Nadia Benali")
    transport = get_transport("memory://")
    report = deliver_pending(db.session, transport, NOW)
    assert report.sent == 1
    (message,) = transport.messages  # type: ignore[attr-defined]
    assert message["Subject"] == "Confirmez votre inscription"
    assert message["To"].addresses[0].display_name == "Nadia Benali"
    assert message.get_content_type() == "multipart/alternative"
    assert "confirm/abc" in message.get_body(("plain",)).get_content()
    assert "Confirmer" in message.get_body(("html",)).get_content()
    db.session.refresh(delivery)
    assert delivery.state == DeliveryState.SENT
    assert delivery.message_id == message["Message-ID"]
    assert delivery.sent_at is not None and delivery.attempts == 1
    # A second run finds nothing to do.
    assert deliver_pending(db.session, transport, NOW).sent == 0
    assert len(transport.messages) == 1  # type: ignore[attr-defined]


def test_app_memory_outbox_is_where_the_app_transport_keeps_mail(app: Flask) -> None:
    from digest.mail.transports import app_transport

    confirmation("omar@example.org")
    deliver_pending(db.session, app_transport(app), NOW)
    assert [m["To"] for m in memory_outbox(app)] == ["omar@example.org"]


def test_enqueue_refuses_an_empty_subject(app: Flask) -> None:
    person = subscriber("x@example.org")
    with pytest.raises(ValueError, match="subject"):
        enqueue_message(db.session, person, "confirm", "  ", "t", None, NOW)


def test_queue_edition_adds_one_row_per_interested_active_subscriber_once(app: Flask) -> None:
    day_edition = edition(categories=("politics", "sport"))
    subscriber("all@example.org")
    subscriber("sport@example.org", categories=["sport"], language="en")
    subscriber("health@example.org", categories=["health"])
    subscriber("pending@example.org", status=SubscriberStatus.PENDING)
    subscriber("gone@example.org", status=SubscriberStatus.UNSUBSCRIBED)
    subscriber("bounced@example.org", status=SubscriberStatus.BOUNCED)
    db.session.commit()
    assert queue_edition(db.session, day_edition, NOW) == 2
    assert queue_edition(db.session, day_edition, NOW) == 0
    assert states() == {"all@example.org": "queued", "sport@example.org": "queued"}
    # Someone confirming later is added by the next run, and only them.
    subscriber("late@example.org")
    db.session.commit()
    assert queue_edition(db.session, day_edition, NOW) == 1


def test_a_subscriber_who_leaves_before_sending_is_not_sent_the_digest(app: Flask) -> None:
    day_edition = edition()
    person = subscriber("leaver@example.org")
    db.session.commit()
    queue_edition(db.session, day_edition, NOW)
    person.status = SubscriberStatus.UNSUBSCRIBED
    db.session.commit()
    transport = get_transport("memory://")
    report = deliver_pending(db.session, transport, NOW)
    assert (report.sent, report.cancelled) == (0, 1)
    assert states() == {"leaver@example.org": "cancelled"}


def test_temporary_failure_is_retried_later_with_backoff(app: Flask) -> None:
    refusals = iter(["451 4.7.1 greylisted"])
    handler = RecordingHandler(rcpt_policy=lambda rcpt: next(refusals, None))
    confirmation("grey@example.org")
    with smtp_server(handler) as (_, port):
        transport = get_transport(f"smtp://127.0.0.1:{port}")
        report = deliver_pending(db.session, transport, NOW, rng=random.Random(1))
        assert (report.sent, report.retried) == (0, 1)
        row = db.session.scalars(select(Delivery)).one()
        assert row.state == DeliveryState.FAILED
        assert row.last_reply is not None and row.last_reply.startswith("451")
        retry_at = row.next_attempt_at
        assert retry_at is not None
        retry_at = retry_at.replace(tzinfo=dt.UTC) if retry_at.tzinfo is None else retry_at
        assert retry_at > NOW
        # Not before its time...
        assert deliver_pending(db.session, transport, NOW + dt.timedelta(seconds=1)).sent == 0
        # ...then it goes.
        assert deliver_pending(db.session, transport, retry_at + dt.timedelta(seconds=1)).sent == 1
        transport.close()
    assert handler.per_recipient() == {"grey@example.org": 1}


def test_retry_delay_grows_exponentially_with_jitter() -> None:
    rng = random.Random(7)
    delays = [retry_delay(n, 60, rng).total_seconds() for n in range(1, 7)]
    for attempt, delay in enumerate(delays, start=1):
        nominal = 60 * 2 ** (attempt - 1)
        assert 0.5 * nominal <= delay <= 1.5 * nominal
    assert len({round(d) for d in delays}) == len(delays)
    assert retry_delay(40, 60, rng).total_seconds() <= 1.5 * 86400


def test_hard_bounces_suppress_the_subscriber_at_the_limit(app: Flask) -> None:
    app.config["MAIL_BOUNCE_LIMIT"] = 2
    handler = RecordingHandler(rcpt_policy=lambda rcpt: "550 5.1.1 unknown user")
    first = confirmation("nobody@example.org")
    with smtp_server(handler) as (_, port):
        transport = get_transport(f"smtp://127.0.0.1:{port}")
        assert deliver_pending(db.session, transport, NOW).bounced == 1
        person = db.session.get(Subscriber, first.subscriber_id)
        assert person is not None and person.bounce_count == 1
        assert person.status == SubscriberStatus.PENDING
        enqueue_message(db.session, person, "notice", "Again", "t", None, NOW)
        db.session.commit()
        assert deliver_pending(db.session, transport, NOW).bounced == 1
        transport.close()
    db.session.refresh(person)
    assert person.status == SubscriberStatus.BOUNCED
    assert {d.state for d in db.session.scalars(select(Delivery))} == {"bounced"}


def test_repeated_errors_pause_sending_until_an_editor_resumes(app: Flask) -> None:
    app.config["MAIL_PAUSE_AFTER"] = 3
    for n in range(5):
        confirmation(f"p{n}@example.org")
    handler = RecordingHandler(data_policy=lambda rcpt: "454 4.7.0 relay trouble")
    with smtp_server(handler) as (_, port):
        transport = get_transport(f"smtp://127.0.0.1:{port}")
        report = deliver_pending(db.session, transport, NOW)
        assert report.paused is not None and "454 4.7.0 relay trouble" in report.paused
        assert report.retried == 3
        counts = list(states().values())
        assert counts.count("failed") == 3 and counts.count("queued") == 2
        assert "sending" not in counts
        handler.data_policy = None
        assert deliver_pending(db.session, transport, NOW).paused is not None
        assert handler.per_recipient() == {}
        resume_sending(db.session)
        assert deliver_pending(db.session, transport, NOW).sent == 2
        transport.close()


def test_rows_left_by_a_dead_sender_are_sent_by_the_next_one(app: Flask) -> None:
    delivery = confirmation("orphan@example.org")
    delivery.state = DeliveryState.SENDING
    delivery.claimed_by = "pg:424242" if db.engine.dialect.name == "postgresql" else "local:1:x"
    db.session.commit()
    transport = get_transport("memory://")
    report = deliver_pending(db.session, transport, NOW)
    assert (report.recovered, report.sent) == (1, 1)


def test_rows_claimed_by_a_live_worker_are_left_alone(app: Flask) -> None:
    if db.engine.dialect.name != "postgresql":
        pytest.skip("live workers on other machines exist only on PostgreSQL")
    delivery = confirmation("busy@example.org")
    delivery.state = DeliveryState.SENDING
    delivery.claimed_by = "pg:777"
    db.session.commit()
    with db.engine.connect() as other_worker:
        other_worker.execute(text("SELECT pg_advisory_lock(:ns, 777)"), {"ns": LOCK_NAMESPACE})
        report = deliver_pending(db.session, get_transport("memory://"), NOW)
        assert (report.recovered, report.sent) == (0, 0)
        other_worker.execute(text("SELECT pg_advisory_unlock(:ns, 777)"), {"ns": LOCK_NAMESPACE})
        other_worker.commit()
    assert states() == {"busy@example.org": "sending"}


def test_hourly_limit_holds_the_rest_for_the_next_window(app: Flask) -> None:
    app.config["MAIL_HOURLY_LIMIT"] = 2
    for n in range(3):
        confirmation(f"h{n}@example.org")
    transport = get_transport("memory://")
    assert deliver_pending(db.session, transport, NOW).sent == 2
    assert deliver_pending(db.session, transport, NOW + dt.timedelta(minutes=30)).sent == 0
    assert deliver_pending(db.session, transport, NOW + dt.timedelta(minutes=61)).sent == 1


def test_pacer_spaces_messages_at_the_configured_rate() -> None:
    clock = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    pacer = Pacer(
        rate=4, hourly=0, sent_last_hour=lambda: 0, monotonic=lambda: clock[0], sleep=sleep
    )
    for _ in range(5):
        pacer.wait()
    assert clock[0] == pytest.approx(101.0)
    assert slept == pytest.approx([0.25] * 4)
