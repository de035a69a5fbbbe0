"""`digest send` and `digest worker` as an operator uses them."""

from __future__ import annotations

import datetime as dt

from flask import Flask
from flask.testing import FlaskCliRunner

from digest.extensions import db
from digest.mail.delivery import enqueue_message
from digest.mail.transports import memory_outbox
from digest.models import Article, Edition, EditionStatus, Subscriber, SubscriberStatus

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


def test_send_builds_queues_and_delivers_once_even_when_run_again(
    app: Flask, runner: FlaskCliRunner
) -> None:
    from tests.test_delivery_assembly import add_readers

    title = "IA au Maroc : Une révolution imminente dans le secteur de la Santé"
    db.session.add(
        Article(
            fingerprint="lead",
            title=title,
            title_key=title.lower(),
            url="https://www.lopinion.ma/ia.html",
            source_name="L'opinion",
            language="fr",
            category="health",
            first_seen_at=NOW,
            last_seen_at=NOW,
        )
    )
    for n, category in enumerate(("politics", "sport", "economy", "other")):
        db.session.add(
            Article(
                fingerprint=f"h{n}",
                title=f"Titre {category}",
                title_key=f"titre {category}",
                language="fr",
                category=category,
                first_seen_at=NOW,
                last_seen_at=NOW,
            )
        )
    db.session.commit()
    readers = add_readers()
    db.session.add(Subscriber(email="pending@example.org", status=SubscriberStatus.PENDING))
    db.session.commit()
    first = runner.invoke(args=["send", "--date", "2026-03-02"])
    assert first.exit_code == 0, first.output
    assert f"{len(readers)} newly queued; {len(readers)} sent" in first.output
    outbox = memory_outbox(app)
    assert sorted(m.envelope_to[0] for m in outbox) == sorted(r.email for r in readers)
    edition = db.session.query(Edition).one()
    assert edition.status == EditionStatus.SENT
    second = runner.invoke(args=["send", "--date", "2026-03-02"])
    assert second.exit_code == 0, second.output
    assert "0 newly queued; 0 sent" in second.output
    assert len(outbox) == len(readers)
