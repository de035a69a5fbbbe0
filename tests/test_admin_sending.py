"""The edition as sent: previews by variant or subscriber, tests, send/pause/resume/cancel."""

from __future__ import annotations

import html as html_lib
import re

from flask import Flask

from digest.compose import compose_edition
from digest.extensions import db
from digest.mail.delivery import deliver_pending
from digest.mail.transports import app_transport, memory_outbox
from digest.models import (
    AuditEvent,
    Delivery,
    DeliveryState,
    Edition,
    EditionStatus,
    Subscriber,
    SubscriberStatus,
)
from tests.admin_fixtures import DAY, NOON, add_article, logged_in_client

EDITION = "/admin/editions/2024-04-29"


def _day_with_edition() -> Edition:
    add_article(
        "Le parlement adopte la loi de finances",
        category="politics",
        category_confidence=0.9,
        source_name="L'opinion",
        url="https://example.org/loi",
    )
    add_article(
        "Le Wydad remporte le derby",
        category="sport",
        category_confidence=0.9,
        source_name="Le360",
        url="https://example.org/derby",
    )
    add_article("Hausse du prix du blé", category="economy", category_confidence=0.8)
    db.session.commit()
    return compose_edition(db.session, DAY, NOON)


def _reader(
    email: str,
    language: str = "fr",
    categories: list[str] | None = None,
    status: str = SubscriberStatus.ACTIVE,
) -> Subscriber:
    row = Subscriber(
        email=email,
        language=language,
        status=status,
        categories=categories or ["politics", "economy", "sport", "health", "other"],
    )
    db.session.add(row)
    db.session.commit()
    return row


def _srcdoc(page: str) -> str:
    match = re.search(r'srcdoc="([^"]*)"', page)
    assert match, "no iframe preview"
    return html_lib.unescape(match.group(1))


def test_preview_shows_html_at_two_widths_text_and_headers(app: Flask) -> None:
    client = logged_in_client(app)
    _day_with_edition()
    page = client.get(EDITION).get_data(as_text=True)
    assert page.count("<iframe") == 2 and 'width="375"' in page
    assert page.count('sandbox="allow-popups allow-popups-to-escape-sandbox"') == 2
    email_html = _srcdoc(page)
    assert "Le parlement adopte la loi de finances" in email_html
    assert "<script" not in email_html
    text_part = page[page.index('class="text-part"') :]
    assert "Le Wydad remporte le derby" in text_part
    headers = html_lib.unescape(page[page.index('class="headers"') :])
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in headers
    assert "To: editor@digest.test" in headers
    assert "Subject:" in headers


def test_preview_of_a_variant_keeps_only_its_categories(app: Flask) -> None:
    client = logged_in_client(app)
    _day_with_edition()
    page = client.get(f"{EDITION}?lang=en&cat=sport").get_data(as_text=True)
    email_html = _srcdoc(page)
    assert "Le Wydad remporte le derby" in email_html
    assert "Hausse du prix du blé" not in email_html
    assert 'lang="en"' in email_html
    assert "· en · sport" in page


def test_preview_as_a_subscriber_uses_their_variant_and_links(app: Flask) -> None:
    client = logged_in_client(app)
    _day_with_edition()
    _reader("lectrice@example.org", language="es", categories=["economy"])
    page = client.get(f"{EDITION}?subscriber=Lectrice@example.org").get_data(as_text=True)
    email_html = _srcdoc(page)
    assert "Hausse du prix du blé" in email_html
    assert "Le Wydad remporte le derby" not in email_html
    headers = html_lib.unescape(page[page.index('class="headers"') :])
    assert "To: lectrice@example.org" in headers
    assert "/unsubscribe/preview" not in headers
    missing = client.get(f"{EDITION}?subscriber=nobody@example.org")
    assert missing.status_code == 404
    assert "No subscriber has the address" in missing.get_data(as_text=True)


def test_correcting_a_category_moves_the_item_in_the_preview(app: Flask) -> None:
    client = logged_in_client(app)
    edition = _day_with_edition()
    wheat = next(
        item["article_id"]
        for section in edition.snapshot["sections"]
        for item in section["items"]
        if item["title"].startswith("Hausse")
    )
    before = client.get(f"{EDITION}?cat=sport").get_data(as_text=True)
    assert "Hausse du prix du blé" not in _srcdoc(before)
    client.post(
        f"/admin/articles/{wheat}/category", data={"day": DAY.isoformat(), "category": "sport"}
    )
    after = client.get(f"{EDITION}?cat=sport").get_data(as_text=True)
    assert "Hausse du prix du blé" in _srcdoc(after)


def test_intro_in_markdown_reaches_the_message_sanitized(app: Flask) -> None:
    client = logged_in_client(app)
    _day_with_edition()
    response = client.post(
        f"{EDITION}/intro",
        data={"intro": "Bonjour, **voici** [le site](https://digest.test) <script>x()</script>"},
    )
    assert response.status_code == 303
    page = client.get(EDITION).get_data(as_text=True)
    email_html = _srcdoc(page)
    assert "<strong" in email_html and ">voici</strong>" in email_html
    assert "<script>x()" not in email_html
    text_part = html_lib.unescape(page[page.index('class="text-part"') :])
    assert "Bonjour, voici le site (https://digest.test)" in text_part


def test_send_me_a_test_goes_through_the_ledger_with_a_test_subject(app: Flask) -> None:
    client = logged_in_client(app)
    _day_with_edition()
    assert client.post(f"{EDITION}/test").status_code == 303
    delivery = db.session.scalar(db.select(Delivery))
    assert delivery.kind == "test" and delivery.state == DeliveryState.QUEUED
    editor_row = db.session.get(Subscriber, delivery.subscriber_id)
    # The editor is not signed up: a pending row that never receives digests.
    assert editor_row.status == SubscriberStatus.PENDING
    deliver_pending(db.session, app_transport(app), NOON)
    outbox = memory_outbox(app)
    assert len(outbox) == 1
    assert outbox[0]["To"] == "editor@digest.test"
    assert outbox[0]["Subject"].startswith("[Test] ")
    assert "Le parlement adopte la loi de finances" in outbox[0].get_body(("html",)).get_content()
    assert (
        db.session.scalar(db.select(db.func.count(Delivery.id)).where(Delivery.kind == "digest"))
        == 0
    )
    assert db.session.scalar(db.select(AuditEvent).where(AuditEvent.action == "edition.test"))


def test_send_now_queues_everyone_and_progress_reaches_the_end(app: Flask) -> None:
    client = logged_in_client(app)
    _day_with_edition()
    for number in range(3):
        _reader(f"r{number}@example.org")
    _reader("gone@example.org", status=SubscriberStatus.UNSUBSCRIBED)
    assert client.post(f"{EDITION}/send").status_code == 303
    assert "3 message(s) queued" in client.get(EDITION).get_data(as_text=True)
    edition = db.session.scalar(db.select(Edition))
    assert edition.status == EditionStatus.SENDING
    progress = client.get(f"{EDITION}/progress.json").get_json()
    assert progress["total"] == 3 and progress["queued"] == 3 and not progress["done"]
    deliver_pending(db.session, app_transport(app), NOON)
    progress = client.get(f"{EDITION}/progress.json").get_json()
    assert progress["sent"] == 3 and progress["done"] and progress["percent"] == 100
    db.session.expire_all()
    assert db.session.scalar(db.select(Edition)).status == EditionStatus.SENT
    assert sorted(m["To"] for m in memory_outbox(app)) == [
        "r0@example.org",
        "r1@example.org",
        "r2@example.org",
    ]
    again = client.post(f"{EDITION}/send")
    assert again.status_code == 303
    assert "sent already" in client.get(EDITION).get_data(as_text=True)
    assert len(memory_outbox(app)) == 3


def test_pause_holds_the_queue_and_resume_lets_it_go(app: Flask) -> None:
    client = logged_in_client(app)
    _day_with_edition()
    _reader("r@example.org")
    client.post(f"{EDITION}/send")
    client.post(f"{EDITION}/pause")
    assert "paused by editor@digest.test" in client.get(EDITION).get_data(as_text=True)
    deliver_pending(db.session, app_transport(app), NOON)
    assert memory_outbox(app) == []
    progress = client.get(f"{EDITION}/progress.json").get_json()
    assert progress["paused"] == "paused by editor@digest.test" and progress["queued"] == 1
    client.post(f"{EDITION}/resume")
    deliver_pending(db.session, app_transport(app), NOON)
    assert [m["To"] for m in memory_outbox(app)] == ["r@example.org"]
    # The audit trail has each step with who took it and from where.
    trail = db.session.execute(
        db.select(AuditEvent.action, AuditEvent.actor, AuditEvent.ip).order_by(AuditEvent.id)
    ).all()
    assert [tuple(event) for event in trail if event.action != "login"] == [
        (action, "editor@digest.test", "127.0.0.1")
        for action in ("edition.send", "sending.pause", "sending.resume")
    ]


def test_cancel_stops_what_is_not_sent_and_send_now_resumes_it(app: Flask) -> None:
    client = logged_in_client(app)
    _day_with_edition()
    _reader("a@example.org")
    _reader("b@example.org")
    client.post(f"{EDITION}/send")
    assert client.post(f"{EDITION}/cancel").status_code == 303
    db.session.expire_all()
    assert db.session.scalar(db.select(Edition)).status == EditionStatus.HELD
    deliver_pending(db.session, app_transport(app), NOON)
    assert memory_outbox(app) == []
    assert client.get(f"{EDITION}/progress.json").get_json()["cancelled"] == 2
    client.post(f"{EDITION}/send")
    deliver_pending(db.session, app_transport(app), NOON)
    assert sorted(m["To"] for m in memory_outbox(app)) == ["a@example.org", "b@example.org"]


def test_approve_and_hold_change_the_status_until_sending_starts(app: Flask) -> None:
    client = logged_in_client(app)
    _day_with_edition()
    client.post(f"{EDITION}/approve")
    edition = db.session.scalar(db.select(Edition))
    db.session.refresh(edition)
    assert edition.status == EditionStatus.APPROVED and edition.approved_at is not None
    client.post(f"{EDITION}/hold")
    db.session.refresh(edition)
    assert edition.status == EditionStatus.HELD
    client.post(f"{EDITION}/send")
    client.post(f"{EDITION}/approve")
    db.session.refresh(edition)
    assert edition.status == EditionStatus.SENDING
    assert "already sending" in client.get(EDITION).get_data(as_text=True)
    assert client.post(f"{EDITION}/explode").status_code == 404
    assert client.post("/admin/editions/2030-01-01/send").status_code == 404
