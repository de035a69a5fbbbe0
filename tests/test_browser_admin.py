"""The editor's desk in a real Chromium: log in, correct, pin, test, approve, watch it go."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from digest import accounts
from digest.compose import compose_edition
from digest.extensions import db
from digest.mail.delivery import deliver_pending
from digest.mail.transports import app_transport
from digest.models import Subscriber, SubscriberStatus
from tests.admin_fixtures import DAY, NOON, PASSWORD, add_article
from tests.browser import chromium, needs_chromium, served
from tests.conftest import PROJECT_ROOT, make_test_app
from tests.smtpd import RecordingHandler, smtp_server

ARTIFACTS = Path(os.environ.get("DIGEST_TEST_ARTIFACTS", PROJECT_ROOT / "test-artifacts"))
EDITOR = "desk@digest.test"

# Runs once per database (the `database_url` fixture): SQLite and PostgreSQL.
pytestmark = [pytest.mark.browser, needs_chromium]


@pytest.fixture
def smtp() -> Iterator[tuple[RecordingHandler, int]]:
    """A real SMTP server on loopback that keeps what it accepts."""
    with smtp_server() as server:
        yield server


@pytest.fixture
def live(
    database_url: str, tmp_path: Path, smtp: tuple[RecordingHandler, int]
) -> Iterator[tuple[Flask, str]]:
    """The app served over HTTP on loopback, with CSRF on and mail going to the SMTP server."""
    _, port = smtp
    app = make_test_app(
        database_url,
        tmp_path,
        WTF_CSRF_ENABLED=True,
        MAIL_URL=f"smtp://127.0.0.1:{port}",
        TIMEZONE="UTC",
    )
    with app.app_context():
        # The PostgreSQL database outlives the test: start from an empty schema.
        db.drop_all()
        db.create_all()
        accounts.create_editor(db.session, EDITOR, PASSWORD, "editor", NOON)
        add_article(
            "Le parlement adopte la loi de finances",
            category="politics",
            category_confidence=0.9,
            source_name="L'opinion",
            url="https://example.org/loi",
            story_key="loi",
        )
        add_article(
            "Le Wydad remporte le derby",
            category="sport",
            category_confidence=0.9,
            source_name="Le360",
            url="https://example.org/derby",
            story_key="derby",
        )
        add_article(
            "Hausse du prix du blé", category="economy", category_confidence=0.35, story_key="ble"
        )
        for number in range(3):
            db.session.add(
                Subscriber(
                    email=f"reader{number}@example.org",
                    status=SubscriberStatus.ACTIVE,
                    language="fr",
                    categories=["politics", "economy", "sport"],
                )
            )
        db.session.commit()
        compose_edition(db.session, DAY, NOON)
        db.session.remove()
    with served(app) as url:
        yield app, url
    with app.app_context():
        db.drop_all()
        db.engine.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Debian Chromium for the module: the two database runs share its start-up."""
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page in its own browser context (no cookies carried between runs)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15000)
    yield context.new_page()
    context.close()


def _deliver(app: Flask) -> None:
    """What a `digest worker` does: send what is queued through the configured transport."""
    import datetime as dt

    with app.app_context():
        deliver_pending(db.session, app_transport(app), dt.datetime.now(dt.UTC))
        db.session.remove()


def _item(page: Any, title: str, scope: Any = None) -> Any:
    """The desk item whose headline is ``title`` (other items mention it in their menus)."""
    return (scope or page).locator("article.item").filter(has=page.locator("h3", has_text=title))


def _shot(page: Any, app: Flask, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # One set of screenshots per database run.
    backend = str(app.config["DATABASE_URL"]).split(":")[0].split("+")[0]
    page.screenshot(path=str(ARTIFACTS / f"admin-{backend}-{name}.png"), full_page=True)


def test_an_editor_corrects_pins_tests_and_sends_the_edition(
    live: tuple[Flask, str], page: Any, smtp: tuple[RecordingHandler, int]
) -> None:
    from playwright.sync_api import expect

    app, base = live
    handler, _ = smtp
    edition_url = f"{base}/admin/editions/{DAY.isoformat()}"

    # Anonymous visitors land on the login form; a wrong password keeps them there.
    page.goto(f"{base}/admin/?date={DAY.isoformat()}")
    expect(page).to_have_url(f"{base}/admin/login?next=%2Fadmin%2F%3Fdate%3D2024-04-29")
    page.get_by_label("Email").fill(EDITOR)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_text("Wrong email or password")).to_be_visible()
    page.get_by_label("Email").fill(EDITOR)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Desk · 2024-04-29")).to_be_visible()
    wheat = _item(page, "Hausse du prix du blé")
    expect(wheat).to_have_class("item flagged")
    _shot(page, app, "1-desk")

    # The sport-only variant has no wheat story until an editor files it under sport.
    page.goto(f"{edition_url}?cat=sport")
    phone = page.frame_locator('iframe[title="Email on a phone"]')
    expect(phone.get_by_text("Le Wydad remporte le derby").first).to_be_visible()
    expect(phone.get_by_text("Hausse du prix du blé")).to_have_count(0)
    page.goto(f"{base}/admin/?date={DAY.isoformat()}")
    wheat = _item(page, "Hausse du prix du blé")
    wheat.get_by_label("Category of “Hausse du prix du blé”").select_option("sport")
    wheat.get_by_role("button", name="Set category").click()
    expect(page.get_by_text("is now in sport")).to_be_visible()
    sport = page.locator("#section-sport")
    expect(sport.get_by_role("heading", name="Hausse du prix du blé")).to_be_visible()
    expect(_item(page, "Hausse du prix du blé", sport)).to_contain_text("set by an editor")
    page.goto(f"{edition_url}?cat=sport")
    phone = page.frame_locator('iframe[title="Email on a phone"]')
    expect(phone.get_by_text("Hausse du prix du blé").first).to_be_visible()
    _shot(page, app, "2-preview-after-correction")

    # Pin another lead.
    page.goto(f"{base}/admin/?date={DAY.isoformat()}")
    derby = _item(page, "Le Wydad remporte le derby")
    if derby.locator(".badge.lead").count():
        derby = _item(page, "Le parlement adopte")
    derby.get_by_role("button", name="Pin as lead").click()
    expect(page.get_by_text("leads the edition")).to_be_visible()
    expect(derby.locator(".badge.lead")).to_be_visible()
    expect(page.locator(".badge.lead")).to_have_count(1)
    _shot(page, app, "3-lead-pinned")

    # Send me a test: it goes through the ledger, a worker hands it to the SMTP server.
    page.goto(edition_url)
    page.get_by_role("button", name="Send me a test").click()
    expect(page.get_by_text(f"A test is on its way to {EDITOR}")).to_be_visible()
    _deliver(app)
    tests = [r for r in handler.received if r.recipient == EDITOR]
    assert len(tests) == 1
    assert str(tests[0].message["Subject"]).startswith("[Test] ")

    # Approve, send, and watch the bar fill as the worker delivers.
    page.get_by_role("button", name="Approve").click()
    # The live counts can show "approved" on the page being left before the answer to the
    # click arrives; wait for that answer's message, or "Send now" is clicked on a page
    # that is going away (seen once in CI).
    expect(page.get_by_text("Approved: it goes out at the scheduled time.")).to_be_visible()
    expect(page.locator('[data-count="status"]')).to_have_text("approved")
    page.get_by_role("button", name="Send now").click()
    expect(page.get_by_text("3 message(s) queued")).to_be_visible()
    expect(page.locator('[data-count="queued"]')).to_have_text("3")
    worker = threading.Thread(target=_deliver, args=(app,))
    worker.start()
    worker.join()
    # No reload: the page's poller brings the counts and the bar to the end.
    expect(page.locator('[data-count="sent"]')).to_have_text("3")
    expect(page.locator(".done-flag")).to_be_visible()
    expect(page.locator('[data-count="status"]')).to_have_text("sent")
    expect(page.locator(".progress")).to_have_attribute("aria-valuenow", "100")
    _shot(page, app, "4-sent")
    readers = sorted(r.recipient for r in handler.received if r.recipient != EDITOR)
    assert readers == ["reader0@example.org", "reader1@example.org", "reader2@example.org"]
