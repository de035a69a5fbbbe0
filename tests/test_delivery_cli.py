"""`digest send` and `digest worker` as an operator uses them."""

from __future__ import annotations

import datetime as dt

from flask import Flask
from flask.testing import FlaskCliRunner

from digest.extensions import db
from digest.mail.delivery import enqueue_message
from digest.mail.transports import memory_outbox
from digest.models import Edition, EditionStatus, Subscriber, SubscriberStatus

NOW = dt.datetime(2026, 3, 2, 6, 0, tzinfo=dt.UTC)


def test_send_refuses_a_malformed_date(runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["send", "--date", "02/03/2026"])
    assert result.exit_code == 2
    assert "Invalid value for '--date'" in result.output
    assert "Traceback" not in result.output


def test_send_refuses_an_edition_an_editor_held(app: Flask, runner: FlaskCliRunner) -> None:
    db.session.add(Edition(day=dt.date(2026, 3, 2), status=EditionStatus.HELD, snapshot={}))
    db.session.commit()
    result = runner.invoke(args=["send", "--date", "2026-03-02"])
    assert result.exit_code == 1
    assert "held by an editor" in result.output


def test_send_with_nobody_to_send_to_marks_the_edition_sent(
    app: Flask, runner: FlaskCliRunner
) -> None:
    db.session.add(Edition(day=dt.date(2026, 3, 2), snapshot={"lead": None, "sections": []}))
    db.session.commit()
    result = runner.invoke(args=["send", "--date", "2026-03-02"])
    assert result.exit_code == 0, result.output
    assert "0 newly queued; 0 sent" in result.output
    edition = db.session.query(Edition).one()
    assert edition.status == EditionStatus.SENT


def test_worker_once_delivers_waiting_transactional_mail(
    app: Flask, runner: FlaskCliRunner
) -> None:
    person = Subscriber(email="w@example.org", status=SubscriberStatus.PENDING)
    db.session.add(person)
    enqueue_message(db.session, person, "confirm", "Confirmez", "lien", None, NOW)
    db.session.commit()
    result = runner.invoke(args=["worker", "--once"])
    assert result.exit_code == 0, result.output
    assert "sent 1" in result.output
    assert [m["Subject"] for m in memory_outbox(app)] == ["Confirmez"]
