"""A reader in real Chromium: sign up, mail over SMTP, confirm, choose, leave in one click."""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from digest.extensions import db
from digest.mail.delivery import deliver_pending
from digest.mail.transports import app_transport
from digest.models import Subscriber
from tests.browser import chromium, needs_chromium, served
from tests.conftest import PROJECT_ROOT, make_test_app
from tests.smtpd import RecordingHandler, smtp_server

ARTIFACTS = Path(os.environ.get("DIGEST_TEST_ARTIFACTS", PROJECT_ROOT / "test-artifacts"))

pytestmark = [
    pytest.mark.browser,
    pytest.mark.no_db,
    needs_chromium,
]


@pytest.fixture
def smtp() -> Iterator[tuple[RecordingHandler, int]]:
    """A real SMTP server on loopback that keeps what it accepts."""
    with smtp_server() as server:
        yield server


@pytest.fixture
def live(tmp_path: Path, smtp: tuple[RecordingHandler, int]) -> Iterator[tuple[Flask, str]]:
    """The site served over HTTP on loopback, CSRF on, mail going to the SMTP server."""
    _, port = smtp
    app = make_test_app(
        f"sqlite:///{tmp_path / 'browser.db'}",
        tmp_path,
        WTF_CSRF_ENABLED=True,
        MAIL_URL=f"smtp://127.0.0.1:{port}",
    )
    with app.app_context():
        db.create_all()
        db.session.remove()
    with served(app) as url:
        yield app, url


@pytest.fixture
def browser() -> Iterator[Any]:
    """Debian's Chromium, driven by Playwright."""
    with chromium() as browser:
        yield browser


def _deliver(app: Flask) -> None:
    """What the delivery worker does: send the queued mail through the configured SMTP."""
    with app.app_context():
        deliver_pending(db.session, app_transport(app), dt.datetime.now(dt.UTC))
        db.session.remove()


def _link(handler: RecordingHandler, recipient: str, kind: str) -> str:
    """The path of the ``kind`` link in the last mail the SMTP server got for ``recipient``."""
    mails = [r.message for r in handler.received if r.recipient == recipient]
    assert mails, f"no mail reached {recipient}"
    body = mails[-1].get_body(preferencelist=("plain",))
    assert body is not None
    found = re.search(rf"https?://[^/\s]+(/{kind}/\S+)", body.get_content())
    assert found, body.get_content()
    return found.group(1)


def _status(app: Flask, email: str) -> str | None:
    with app.app_context():
        status = db.session.scalar(select(Subscriber.status).where(Subscriber.email == email))
        db.session.remove()
        return status


def _fits(page: Any) -> bool:
    """Nothing sticks out sideways (no horizontal scrolling)."""
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


@pytest.mark.parametrize(
    ("language", "words"),
    [
        (
            "fr",
            {
                "subscribe": "S’abonner",  # noqa: RUF001 (French typography)
                "inbox": "Consultez votre boîte de réception",
                "confirm": "Confirmer",
                "confirmed": "Abonnement confirmé",
                "choose": "Choisir ce que vous recevez",
                "save": "Enregistrer mes préférences",
                "saved": "Vos préférences sont enregistrées.",
                "economy": "Économie",
                "bad_email": "Cette adresse e-mail n’est pas valide.",  # noqa: RUF001
            },
        ),
        (
            "en",
            {
                "subscribe": "Subscribe",
                "inbox": "Check your inbox",
                "confirm": "Confirm",
                "confirmed": "Subscription confirmed",
                "choose": "Choose what you receive",
                "save": "Save my preferences",
                "saved": "Your preferences are saved.",
                "economy": "Economy",
                "bad_email": "This is not a valid email address.",
            },
        ),
    ],
)
def test_sign_up_confirm_choose_and_leave_in_one_click(
    live: tuple[Flask, str],
    smtp: tuple[RecordingHandler, int],
    browser: Any,
    language: str,
    words: dict[str, str],
) -> None:
    app, base = live
    handler, _ = smtp
    email = f"lecteur-{language}@example.org"
    shots = ARTIFACTS / "browser-signup"
    shots.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(
        viewport={"width": 320, "height": 800},
        locale="fr-FR" if language == "fr" else "en-GB",
    )
    context.set_default_timeout(15000)
    page = context.new_page()
    try:
        page.goto(base + "/")
        assert page.locator("html").get_attribute("lang") == language
        assert _fits(page), "the home page is wider than a 320 px screen"
        page.screenshot(path=str(shots / f"{language}-1-home-320.png"), full_page=True)

        # A mistyped address: the error appears next to the field, nothing is stored.
        page.get_by_label(re.compile("^(Adresse e-mail|Email address)$")).fill("lecteur@@example")
        page.get_by_role("button", name=words["subscribe"]).click()
        error = page.locator("#email-error")
        assert error.inner_text().strip() == words["bad_email"]
        assert page.locator("#email").get_attribute("aria-describedby") == "email-error"
        assert _status(app, email) is None

        page.get_by_label(re.compile("^(Adresse e-mail|Email address)$")).fill(email)
        page.get_by_label(re.compile("^(Nom|Name)")).fill("Samira")
        page.get_by_label(words["economy"]).uncheck()
        # Keyboard only: Enter in the name field submits the form.
        page.get_by_label(re.compile("^(Nom|Name)")).press("Enter")
        page.get_by_role("heading", name=words["inbox"]).wait_for()
        assert _status(app, email) == "pending"

        _deliver(app)
        page.goto(base + _link(handler, email, "confirm"))
        # Opening the link confirms nobody: a mail scanner would stop here.
        assert _status(app, email) == "pending"
        page.screenshot(path=str(shots / f"{language}-2-confirm.png"), full_page=True)
        page.get_by_role("button", name=words["confirm"], exact=True).click()
        page.get_by_role("heading", name=words["confirmed"]).wait_for()
        assert _status(app, email) == "active"

        page.get_by_role("link", name=words["choose"]).click()
        assert _fits(page), "the preference centre is wider than a 320 px screen"
        page.get_by_label(words["economy"]).check()
        page.get_by_role("button", name=words["save"]).click()
        page.get_by_text(words["saved"]).wait_for()
        page.screenshot(path=str(shots / f"{language}-3-preferences-320.png"), full_page=True)
        with app.app_context():
            reader = db.session.scalar(select(Subscriber).where(Subscriber.email == email))
            assert reader is not None
            assert reader.categories == ["politics", "economy", "sport", "health", "other"]
            assert reader.language == language
            db.session.remove()

        # A mail client's RFC 8058 one-click POST: no cookie, no CSRF token, just the body.
        unsubscribe = page.locator("a[href*='/unsubscribe/']").first.get_attribute("href")
        assert unsubscribe
        one_click = browser.new_context()
        try:
            response = one_click.request.post(
                base + unsubscribe, form={"List-Unsubscribe": "One-Click"}
            )
            assert response.status == 200
        finally:
            one_click.close()
        assert _status(app, email) == "unsubscribed"
    finally:
        context.close()
