"""Approval mode: a scheduled edition waits for approval until a deadline, then goes or is held."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from flask import Flask

from digest.extensions import db
from digest.jobs import run_daily
from digest.mail.transports import app_transport, memory_outbox
from digest.models import AuditEvent, Edition, EditionStatus, Subscriber, SubscriberStatus
from digest.scheduler import build_scheduler
from digest.sending import approval_gate
from tests.admin_fixtures import logged_in_client

ZONE = ZoneInfo("Africa/Casablanca")
DAY = dt.date(2026, 11, 27)


def _at(hhmm: str) -> dt.datetime:
    hour, minute = map(int, hhmm.split(":"))
    return dt.datetime.combine(DAY, dt.time(hour, minute), tzinfo=ZONE).astimezone(dt.UTC)


def _approval(app: Flask, fallback: str = "hold") -> None:
    app.config.update(
        APPROVAL_REQUIRED=True,
        APPROVAL_DEADLINE="09:00",
        APPROVAL_FALLBACK=fallback,
        SEND_AT="07:00",
    )


def _readers() -> None:
    for number in range(2):
        db.session.add(
            Subscriber(
                email=f"r{number}@example.org", language="fr", status=SubscriberStatus.ACTIVE
            )
        )
    db.session.commit()


@pytest.mark.no_db
@pytest.mark.parametrize(
    ("required", "status", "when", "fallback", "expected"),
    [
        (False, "draft", "07:00", "hold", "send"),
        (False, "held", "07:00", "hold", "hold"),
        (True, "draft", "07:00", "hold", "wait"),
        (True, "draft", "08:59", "send", "wait"),
        (True, "draft", "09:00", "hold", "hold"),
        (True, "draft", "09:00", "send", "send"),
        (True, "approved", "07:00", "hold", "send"),
        (True, "held", "10:00", "send", "hold"),
    ],
)
def test_the_gate_decides_by_mode_status_and_deadline(
    required: bool, status: str, when: str, fallback: str, expected: str
) -> None:
    edition = Edition(day=DAY, status=status)
    config = {
        "APPROVAL_REQUIRED": required,
        "APPROVAL_DEADLINE": "09:00",
        "APPROVAL_FALLBACK": fallback,
        "TIMEZONE": "Africa/Casablanca",
    }
    assert approval_gate(edition, _at(when), config) == expected


def test_unapproved_draft_waits_then_is_held_at_the_deadline(app: Flask) -> None:
    _approval(app, "hold")
    _readers()
    report = run_daily(db.session, day=DAY, now=_at("07:00"), transport=app_transport(app))
    assert report.gate == "wait"
    edition = db.session.scalar(db.select(Edition))
    assert edition.status == EditionStatus.DRAFT
    assert memory_outbox(app) == []
    late = run_daily(db.session, day=DAY, now=_at("09:00"), transport=app_transport(app))
    assert late.gate == "hold"
    db.session.refresh(edition)
    assert edition.status == EditionStatus.HELD
    assert memory_outbox(app) == []
    event = db.session.scalar(db.select(AuditEvent).where(AuditEvent.action == "edition.hold"))
    assert event.actor == "scheduler"


def test_unapproved_draft_is_sent_at_the_deadline_when_configured(app: Flask) -> None:
    _approval(app, "send")
    _readers()
    run_daily(db.session, day=DAY, now=_at("07:00"), transport=app_transport(app))
    assert memory_outbox(app) == []
    report = run_daily(db.session, day=DAY, now=_at("09:00"), transport=app_transport(app))
    assert report.gate == "send"
    assert sorted(m["To"] for m in memory_outbox(app)) == ["r0@example.org", "r1@example.org"]


def test_approving_after_send_time_sends_at_once(app: Flask) -> None:
    _approval(app, "hold")
    _readers()
    run_daily(db.session, day=DAY, now=_at("07:00"), transport=app_transport(app))
    client = logged_in_client(app)
    # The view reads the clock: the edition's day is in the past, so SEND_AT has passed.
    response = client.post(f"/admin/editions/{DAY.isoformat()}/approve")
    assert response.status_code == 303
    page = client.get(f"/admin/editions/{DAY.isoformat()}").get_data(as_text=True)
    assert "Approved after the scheduled time: 2 message(s) queued" in page
    edition = db.session.scalar(db.select(Edition))
    db.session.refresh(edition)
    assert edition.status == EditionStatus.SENDING
    report = run_daily(db.session, day=DAY, now=_at("09:00"), transport=app_transport(app))
    assert report.gate == "send"
    assert sorted(m["To"] for m in memory_outbox(app)) == ["r0@example.org", "r1@example.org"]


def test_the_scheduler_checks_the_deadline_every_minute_in_either_mode(app: Flask) -> None:
    # Approval mode is a run-time setting: the check must exist before anyone turns it on.
    for required in (False, True):
        app.config["APPROVAL_REQUIRED"] = required
        jobs = {
            job.id: job for job in build_scheduler(app, blocking=False, deliver=False).get_jobs()
        }
        assert {"daily", "approval-deadline"} <= set(jobs)
        assert jobs["approval-deadline"].trigger.interval == dt.timedelta(minutes=1)


@pytest.mark.no_db
@pytest.mark.parametrize(
    ("name", "value"), [("APPROVAL_FALLBACK", "maybe"), ("APPROVAL_DEADLINE", "9h")]
)
def test_unusable_approval_settings_stop_the_start(tmp_path: object, name: str, value: str) -> None:
    from digest import ConfigError, create_app

    with pytest.raises(ConfigError, match=f"DIGEST_{name}"):
        create_app({"ENV_NAME": "testing", "INSTANCE_PATH": str(tmp_path), name: value})
