"""Faults at a real SMTP server on loopback: every message ends sent or bounced, exactly once."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest
from flask import Flask
from sqlalchemy import select

from digest.extensions import db
from digest.mail.delivery import deliver_pending, pending_count, queue_edition, sender_status
from digest.mail.transports import get_transport
from digest.models import Delivery, Subscriber
from tests.smtpd import RecordingHandler, free_port, smtp_server
from tests.test_delivery_assembly import NOW, day_with_articles

READERS = 60


def _readers() -> list[str]:
    emails = [f"r{n:03d}@example.org" for n in range(READERS)]
    db.session.add_all(Subscriber(email=e, status="active", language="fr") for e in emails)
    db.session.commit()
    return emails


def _run_until_done(transport_url: str, start: dt.datetime, rounds: int = 12) -> dt.datetime:
    """Deliver, jump past every retry time, deliver again, until nothing waits."""
    now = start
    transport = get_transport(transport_url)
    try:
        for _ in range(rounds):
            deliver_pending(db.session, transport, now)
            now += dt.timedelta(days=1)
            if pending_count(db.session, now) == 0:
                break
    finally:
        transport.close()
    return now


def _states() -> Counter[str]:
    return Counter(db.session.scalars(select(Delivery.state)).all())


def test_refusals_drops_and_rejections_end_sent_or_bounced_exactly_once(app: Flask) -> None:
    app.config.update(MAIL_PAUSE_AFTER=0, MAIL_RETRY_SECONDS=1)
    edition = day_with_articles()
    emails = _readers()
    queue_edition(db.session, edition, NOW)
    rejected = set(emails[::10])  # every tenth address does not exist
    tries: Counter[str] = Counter()

    def on_data(rcpt: str) -> str | None:
        tries[rcpt] += 1
        n = int(rcpt[1:4])
        if tries[rcpt] == 1 and n % 5 == 1:
            return "451 4.3.0 try again later"
        if tries[rcpt] == 1 and n % 5 == 2:
            return "421 4.3.2 service shutting down"
        if tries[rcpt] <= 2 and n % 5 == 3:
            return "drop"
        return None

    handler = RecordingHandler(
        rcpt_policy=lambda rcpt: "550 5.1.1 no such mailbox" if rcpt in rejected else None,
        data_policy=on_data,
    )
    with smtp_server(handler) as (_, port):
        _run_until_done(f"smtp://127.0.0.1:{port}?timeout=5", NOW)
    received = handler.per_recipient()
    assert received == {email: 1 for email in emails if email not in rejected}
    assert _states() == {"sent": READERS - len(rejected), "bounced": len(rejected)}
    assert handler.connections > 1, "the sender reconnected after 421 and drops"
    for email in rejected:
        person = db.session.scalar(select(Subscriber).where(Subscriber.email == email))
        assert person is not None and person.bounce_count == 1


def test_a_server_down_for_a_while_gets_everything_once_it_is_back(app: Flask) -> None:
    app.config.update(MAIL_PAUSE_AFTER=0, MAIL_RETRY_SECONDS=60)
    edition = day_with_articles()
    emails = _readers()
    queue_edition(db.session, edition, NOW)
    port = free_port()
    down = get_transport(f"smtp://127.0.0.1:{port}?timeout=2")
    report = deliver_pending(db.session, down, NOW)
    assert (report.sent, report.retried) == (0, READERS)
    assert _states() == {"failed": READERS}
    with smtp_server(port=port) as (handler, _):
        # A minute later nothing is due yet (backoff), then everything goes.
        assert deliver_pending(db.session, down, NOW + dt.timedelta(seconds=5)).sent == 0
        _run_until_done(f"smtp://127.0.0.1:{port}", NOW + dt.timedelta(minutes=2))
    assert handler.per_recipient() == {email: 1 for email in emails}
    assert _states() == {"sent": READERS}


def test_a_dead_relay_pauses_sending_with_the_reason(app: Flask) -> None:
    app.config.update(MAIL_PAUSE_AFTER=5)
    edition = day_with_articles()
    _readers()
    queue_edition(db.session, edition, NOW)
    report = deliver_pending(
        db.session, get_transport(f"smtp://127.0.0.1:{free_port()}?timeout=2"), NOW
    )
    assert report.paused is not None
    assert "5 consecutive errors" in report.paused and "cannot connect" in report.paused
    assert _states() == {"failed": 5, "queued": READERS - 5}


def test_a_pool_of_connections_pauses_after_errors_in_a_row_with_the_reason(
    app: Flask,
) -> None:
    if db.engine.dialect.name != "postgresql":
        pytest.skip("parallel sending records outcomes on several connections: PostgreSQL")
    app.config.update(MAIL_PAUSE_AFTER=5, MAIL_BATCH_SIZE=25)
    edition = day_with_articles()
    _readers()
    queue_edition(db.session, edition, NOW)
    handler = RecordingHandler(data_policy=lambda rcpt: "451 4.3.0 busy")
    with smtp_server(handler) as (_, port):
        transport = get_transport(f"smtp://127.0.0.1:{port}?pool=4")
        try:
            report = deliver_pending(db.session, transport, NOW)
        finally:
            transport.close()
    # The fifth error pauses. The three other connections may each have a message on its
    # way by then: those finish and are recorded as failed, to be retried. No connection
    # takes another, and no further batch is claimed: the rest stay queued untouched.
    states = _states()
    failed = states["failed"]
    assert report.sent == 0 and 5 <= failed <= 5 + 3
    assert states == {"failed": failed, "queued": READERS - failed}
    assert len(report.errors) == failed
    assert report.paused == f"paused after {failed} consecutive errors; last: 451 4.3.0 busy"
    status = sender_status(db.session)
    assert (status.paused, status.reason, status.consecutive_errors) == (
        True,
        report.paused,
        failed,
    )


def test_a_pool_of_connections_sends_in_parallel_exactly_once(app: Flask) -> None:
    if db.engine.dialect.name != "postgresql":
        pytest.skip("parallel sending records outcomes on several connections: PostgreSQL")
    app.config.update(MAIL_PAUSE_AFTER=0, MAIL_RETRY_SECONDS=1, MAIL_BATCH_SIZE=25)
    edition = day_with_articles()
    emails = _readers()
    queue_edition(db.session, edition, NOW)
    refused_once: set[str] = set()

    def on_data(rcpt: str) -> str | None:
        if int(rcpt[1:4]) % 7 == 0 and rcpt not in refused_once:
            refused_once.add(rcpt)
            return "451 4.3.0 busy"
        return None

    handler = RecordingHandler(delay=0.01, data_policy=on_data)
    with smtp_server(handler) as (_, port):
        _run_until_done(f"smtp://127.0.0.1:{port}?pool=4", NOW)
    assert handler.per_recipient() == {email: 1 for email in emails}
    assert handler.connections == 4
    assert _states() == {"sent": READERS}


def test_a_message_is_only_completed_after_the_ledger_barrier_passes(app: Flask) -> None:
    # The transport asks the barrier (the previous message's ledger commit) whether it is
    # done before the final "."; if not, it waits for it; if it fails, nothing is delivered.
    message = b"From: a@digest.test\r\nTo: r@example.org\r\nSubject: x\r\n\r\n" + b".line\r\n" * 3
    asked: list[bool] = []

    def slow_barrier(block: bool) -> bool:
        asked.append(block)
        return block

    def broken_barrier(block: bool) -> bool:
        raise RuntimeError("the database went away")

    with smtp_server() as (handler, port):
        transport = get_transport(f"smtp://127.0.0.1:{port}")
        transport.send(message, "digest@digest.test", ["late@example.org"], slow_barrier)
        assert asked == [False, True]
        with pytest.raises(RuntimeError, match="went away"):
            transport.send(message, "digest@digest.test", ["lost@example.org"], broken_barrier)
        # The abandoned transaction leaves no message and no broken connection behind.
        transport.send(message, "digest@digest.test", ["next@example.org"])
        transport.close()
    assert handler.per_recipient() == {"late@example.org": 1, "next@example.org": 1}
    assert all(
        item.data.replace(b"\r\n", b"\n") == message.replace(b"\r\n", b"\n")
        for item in handler.received
    )
