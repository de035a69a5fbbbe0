"""What a spam filter thinks of the digest as the delivery pipeline actually sends it."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from flask import Flask

from digest.compose import compose_edition
from digest.extensions import db
from digest.mail.delivery import deliver_pending, queue_edition
from digest.mail.transports import app_transport, memory_outbox
from digest.models import CATEGORIES, Subscriber, SubscriberStatus
from tests.email_data import DAY, LEAD_TITLE, NOW, add_day

SPAMASSASSIN = shutil.which("spamassassin")


def _sent_digest(app: Flask) -> bytes:
    add_day(db.session)
    db.session.add(
        Subscriber(
            email="amina@example.org",
            name="Amina",
            language="fr",
            categories=list(CATEGORIES),
            status=SubscriberStatus.ACTIVE,
            consent_at=NOW,
            confirmed_at=NOW,
        )
    )
    db.session.commit()
    edition = compose_edition(db.session, DAY, NOW)
    assert queue_edition(db.session, edition, NOW) == 1
    deliver_pending(db.session, app_transport(app), NOW)
    outbox = memory_outbox(app)
    assert len(outbox) == 1
    return outbox[0].raw


def test_the_delivered_digest_is_the_rendered_edition(app: Flask) -> None:
    raw = _sent_digest(app)
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    message = memory_outbox(app)[0]
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",))
    assert text is not None and LEAD_TITLE in text.get_content()
    assert "Bonjour Amina," in text.get_content()
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


@pytest.mark.skipif(
    SPAMASSASSIN is None, reason="SpamAssassin is not installed (.ci/run installs `spamassassin`)"
)
def test_spamassassin_scores_the_digest_below_one(app: Flask) -> None:
    raw = _sent_digest(app)
    # -L: local tests only (no network lookups), -t: report the score in the output.
    result = subprocess.run(
        [str(SPAMASSASSIN), "-L", "-t"], input=raw, capture_output=True, timeout=120, check=False
    )
    report = result.stdout.decode("utf-8", "replace")
    match = re.search(r"^X-Spam-Status: \w+, score=(-?[\d.]+)", report, re.MULTILINE)
    assert match is not None, report[:2000]
    details = report[report.find("Content analysis details") :]
    assert float(match.group(1)) < 1.0, details


@pytest.mark.skipif(
    SPAMASSASSIN is None, reason="SpamAssassin is not installed (.ci/run installs `spamassassin`)"
)
def test_spamassassin_scores_the_confirmation_email_below_one(app: Flask) -> None:
    from digest.subscriptions import sign_up

    sign_up(db.session, email="amina@example.org", now=NOW, name="Amina", language="fr")
    db.session.commit()
    deliver_pending(db.session, app_transport(app), NOW)
    outbox = memory_outbox(app)
    assert len(outbox) == 1 and "/confirm/" in outbox[0].raw.decode("ascii", "replace")
    result = subprocess.run(
        [str(SPAMASSASSIN), "-L", "-t"],
        input=outbox[0].raw,
        capture_output=True,
        timeout=120,
        check=False,
    )
    report = result.stdout.decode("utf-8", "replace")
    match = re.search(r"^X-Spam-Status: \w+, score=(-?[\d.]+)", report, re.MULTILINE)
    assert match is not None, report[:2000]
    assert float(match.group(1)) < 1.0, report[report.find("Content analysis details") :]
