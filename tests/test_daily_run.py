"""The scheduled daily run takes the seed to every confirmed subscriber's inbox, once."""

from __future__ import annotations

import datetime as dt
from email import message_from_bytes, policy
from pathlib import Path

from flask import Flask
from sqlalchemy import select

from digest.extensions import db
from digest.jobs import run_daily
from digest.mail.transports import app_transport, memory_outbox
from digest.models import Edition, EditionStatus, Subscriber, SubscriberStatus
from digest.scheduler import run_daily_job

MORNING = dt.datetime(2026, 11, 28, 6, 0, tzinfo=dt.UTC)
LEAD_TITLE = "IA au Maroc : Une révolution imminente dans le secteur de la Santé"


def _subscriber(email: str, status: str, categories: list[str] | None = None) -> Subscriber:
    subscriber = Subscriber(email=email, status=status, language="fr")
    if categories is not None:
        subscriber.categories = categories
    db.session.add(subscriber)
    db.session.commit()
    return subscriber


def _html_and_text(raw: bytes) -> tuple[str, str, str]:
    message = message_from_bytes(raw, policy=policy.default)
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    return str(message["Subject"]), html, text


def test_the_daily_run_sends_the_seed_edition_to_confirmed_subscribers_only_once(
    app: Flask,
) -> None:
    _subscriber("amina@example.ma", SubscriberStatus.ACTIVE)
    _subscriber("pending@example.ma", SubscriberStatus.PENDING)
    _subscriber("gone@example.ma", SubscriberStatus.UNSUBSCRIBED)
    transport = app_transport(app)

    report = run_daily(db.session, day=MORNING.date(), now=MORNING, transport=transport)

    outbox = memory_outbox(app)
    assert report.queued == 1
    assert [m["To"].addresses[0].addr_spec for m in outbox] == ["amina@example.ma"]
    subject, html, text = _html_and_text(outbox[0].as_bytes())
    assert LEAD_TITLE in subject
    assert LEAD_TITLE in html and LEAD_TITLE in text
    for heading in ("Politique", "Économie", "Sport", "Santé"):
        assert heading in html, heading
    # The seed's football headline lands under sport, the finance bill under economy.
    sport = text.split("SPORT")[1].split("==")[1]
    assert "Hakim Ziyech rejoint le Wydad" in sport

    again = run_daily(
        db.session, day=MORNING.date(), now=MORNING + dt.timedelta(hours=1), transport=transport
    )
    assert again.queued == 0
    assert len(memory_outbox(app)) == 1
    edition = db.session.scalars(select(Edition)).one()
    assert edition.status == EditionStatus.SENT


def test_a_subscriber_who_chose_sport_only_gets_sport_only(app: Flask) -> None:
    _subscriber("sport@example.ma", SubscriberStatus.ACTIVE, ["sport"])
    run_daily(db.session, day=MORNING.date(), now=MORNING, transport=app_transport(app))
    _, html, text = _html_and_text(memory_outbox(app)[0].as_bytes())
    assert "Hakim Ziyech" in html
    assert "PLF 2026" not in text and "Politique" not in html


def test_the_scheduled_job_runs_the_same_pipeline_and_survives_a_rerun(app: Flask) -> None:
    _subscriber("karim@example.ma", SubscriberStatus.ACTIVE)
    run_daily_job(app)
    run_daily_job(app)
    outbox = memory_outbox(app)
    assert [m["To"].addresses[0].addr_spec for m in outbox] == ["karim@example.ma"]


def test_a_morning_with_nothing_to_read_sends_nothing_and_says_so(
    app: Flask, tmp_path: Path
) -> None:
    _subscriber("amina@example.ma", SubscriberStatus.ACTIVE)
    empty = tmp_path / "empty-seeds"
    empty.mkdir()
    app.config["SEED_DIR"] = str(empty)
    report = run_daily(db.session, day=MORNING.date(), now=MORNING, transport=app_transport(app))
    assert report.gate == "nothing"
    assert memory_outbox(app) == []
    assert db.session.scalars(select(Edition)).first() is None


def test_scheduled_runs_are_recorded_and_shown_to_editors(app: Flask) -> None:
    from digest.models import ScheduledRun
    from tests.admin_fixtures import logged_in_client

    _subscriber("karim@example.ma", SubscriberStatus.ACTIVE)
    run_daily_job(app)
    run = db.session.scalars(select(ScheduledRun)).one()
    assert run.outcome == "sent"
    assert run.detail == "1 queued, 1 sent, 0 to retry, 0 bounced"
    assert run.edition_id == db.session.scalars(select(Edition)).one().id

    page = logged_in_client(app).get("/admin/editions/").get_data(as_text=True)
    assert "Scheduled runs" in page
    assert "1 queued, 1 sent, 0 to retry, 0 bounced" in page


def test_a_reader_whose_pause_ends_today_gets_todays_edition(app: Flask) -> None:
    back = _subscriber("back@example.ma", SubscriberStatus.PAUSED)
    back.paused_until = MORNING.date()
    still = _subscriber("still@example.ma", SubscriberStatus.PAUSED)
    still.paused_until = MORNING.date() + dt.timedelta(days=3)
    db.session.commit()
    run_daily(db.session, day=MORNING.date(), now=MORNING, transport=app_transport(app))
    assert [m["To"].addresses[0].addr_spec for m in memory_outbox(app)] == ["back@example.ma"]


def test_a_paused_reader_still_receives_the_link_they_asked_for(app: Flask) -> None:
    from digest.mail.delivery import deliver_pending, enqueue_message

    paused = _subscriber("pause@example.ma", SubscriberStatus.PAUSED)
    enqueue_message(db.session, paused, "new_link", "Votre lien", "Bonjour", None, MORNING)
    db.session.commit()
    deliver_pending(db.session, app_transport(app), MORNING)
    assert [m["Subject"] for m in memory_outbox(app)] == ["Votre lien"]
