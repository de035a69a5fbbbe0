"""An edition becomes "sent" when its last delivery is final, whichever process delivers it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, select, update

from digest.extensions import db
from digest.mail.delivery import deliver_pending
from digest.mail.transports import app_transport
from digest.models import Delivery, DeliveryState, Edition, EditionStatus
from tests.admin_fixtures import DAY, logged_in_client
from tests.conftest import make_test_app
from tests.smtpd import RecordingHandler, smtp_server
from tests.test_admin_sending import _day_with_edition, _reader

EDITION = f"/admin/editions/{DAY.isoformat()}"


@pytest.fixture
def smtp_app(database_url: str, tmp_path: Path) -> Iterator[tuple[Flask, RecordingHandler]]:
    """An app whose `digest worker` talks to a real SMTP server on loopback."""
    with smtp_server() as (handler, port):
        app = make_test_app(
            database_url, tmp_path, MAIL_URL=f"smtp://127.0.0.1:{port}", MAIL_BATCH_SIZE=2
        )
        with app.app_context():
            db.drop_all()
            db.create_all()
            yield app, handler
            db.session.remove()
            db.drop_all()
            app_transport(app).close()
            db.engine.dispose()


def _edition() -> Edition:
    db.session.expire_all()
    edition = db.session.scalar(select(Edition).where(Edition.day == DAY))
    assert edition is not None
    return edition


def _as_utc(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _last_sent_at() -> dt.datetime:
    return _as_utc(db.session.scalar(select(func.max(Delivery.sent_at))))


def test_a_worker_run_finishes_the_edition_nobody_is_watching(
    smtp_app: tuple[Flask, RecordingHandler],
) -> None:
    app, handler = smtp_app
    _day_with_edition()
    for number in range(5):
        _reader(f"r{number}@ex.org")
    # One mailbox is full for now (a 4xx): its message waits for a retry.
    handler.rcpt_policy = lambda rcpt: "452 4.2.2 mailbox full" if rcpt == "r3@ex.org" else None
    client = logged_in_client(app)
    assert client.post(f"{EDITION}/send").status_code == 303
    assert _edition().status == EditionStatus.SENDING

    # Nobody opens the edition page: only the worker process runs, in batches of two.
    first = app.test_cli_runner().invoke(args=["worker", "--once"])
    assert first.exit_code == 0, first.output
    assert len(handler.received) == 4
    # One message is still to retry, so the edition is still going out.
    assert _edition().status == EditionStatus.SENDING
    assert _edition().sent_at is None

    handler.rcpt_policy = None
    db.session.execute(
        update(Delivery)
        .where(Delivery.state == DeliveryState.FAILED)
        .values(next_attempt_at=dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
    )
    db.session.commit()
    second = app.test_cli_runner().invoke(args=["worker", "--once"])
    assert second.exit_code == 0, second.output
    assert "sent 1" in second.output
    edition = _edition()
    assert edition.status == EditionStatus.SENT
    # Finished when its last message was accepted, not when sending started.
    assert _as_utc(edition.sent_at) == _last_sent_at()
    assert _as_utc(edition.sent_at) > _as_utc(edition.approved_at)
    page = client.get(EDITION).get_data(as_text=True)
    assert 'data-count="status">sent<' in page


def test_bounced_and_skipped_messages_are_final_too(app: Flask) -> None:
    """Every row final (sent, bounced, cancelled) means finished; a failed row does not."""
    _day_with_edition()
    _reader("ok@example.org")
    _reader("gone@example.org")
    client = logged_in_client(app)
    client.post(f"{EDITION}/send")
    # The reader left between queueing and sending: the row is cancelled by the worker.
    db.session.execute(
        update(Delivery)
        .where(Delivery.subscriber.has(email="gone@example.org"))
        .values(state=DeliveryState.QUEUED)
    )
    from digest.models import Subscriber

    db.session.execute(
        update(Subscriber)
        .where(Subscriber.email == "gone@example.org")
        .values(status="unsubscribed")
    )
    db.session.commit()
    report = deliver_pending(db.session, app_transport(app), dt.datetime.now(dt.UTC))
    assert (report.sent, report.cancelled) == (1, 1)
    assert _edition().status == EditionStatus.SENT


def test_a_partial_run_leaves_the_edition_sending(app: Flask) -> None:
    _day_with_edition()
    for number in range(3):
        _reader(f"p{number}@example.org")
    client = logged_in_client(app)
    client.post(f"{EDITION}/send")
    now = dt.datetime.now(dt.UTC)
    deliver_pending(db.session, app_transport(app), now, limit=2)
    assert _edition().status == EditionStatus.SENDING
    deliver_pending(db.session, app_transport(app), now, limit=2)
    edition = _edition()
    assert edition.status == EditionStatus.SENT
    assert _as_utc(edition.sent_at) == _last_sent_at()


def test_an_edition_not_being_sent_is_never_marked_sent(app: Flask) -> None:
    """A held edition whose old rows are all final stays held (an editor decides)."""
    _day_with_edition()
    _reader("h@example.org")
    client = logged_in_client(app)
    client.post(f"{EDITION}/send")
    client.post(f"{EDITION}/cancel")
    assert _edition().status == EditionStatus.HELD
    deliver_pending(db.session, app_transport(app), dt.datetime.now(dt.UTC))
    assert _edition().status == EditionStatus.HELD
