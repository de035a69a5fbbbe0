"""Helpers for the subscriber-page tests: read the mail the site queued, pull links out of it."""

from __future__ import annotations

import datetime as dt
import re
from email.message import EmailMessage

from flask import Flask

from digest.extensions import db

LINK = re.compile(r"http://digest\.test(/(?:confirm|manage|unsubscribe|email)/[A-Za-z0-9_.\-]+)")


def deliver(app: Flask) -> list[EmailMessage]:
    """Run the delivery worker once on the memory transport and return everything sent so far."""
    from digest.mail.delivery import deliver_pending
    from digest.mail.transports import app_transport, memory_outbox

    deliver_pending(db.session, app_transport(app), dt.datetime.now(dt.UTC))
    return list(memory_outbox(app))


def text_of(message: EmailMessage) -> str:
    """The plain-text part of a message."""
    part = message.get_body(preferencelist=("plain",))
    assert part is not None, "the message has no text part"
    return str(part.get_content())


def links_in(message: EmailMessage, kind: str) -> list[str]:
    """Paths of the site's links of ``kind`` (confirm, manage, unsubscribe, email) in the text."""
    return [p for p in LINK.findall(text_of(message)) if p.startswith(f"/{kind}/")]


def mails_to(app: Flask, address: str) -> list[EmailMessage]:
    """Every message delivered so far whose envelope or To: names ``address``."""
    found = []
    for message in deliver(app):
        recipients = [str(r).lower() for r in getattr(message, "envelope_to", [])]
        if address in recipients or address in str(message["To"]).lower():
            found.append(message)
    return found
