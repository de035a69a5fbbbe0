"""Turn a ledger row into the bytes that go on the wire.

Transactional mail is built here with ``EmailMessage`` (it is rare). Digests are rendered
once per variant (language x categories) and assembled by ``digest.mail.fast``; the slow
reference ``digest.mail.message.build_message`` is kept for comparison and the bench.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any, Protocol, cast

from digest.extensions import DbSession
from digest.mail.fast import PreparedVariant
from digest.mail.message import PersonalLinks
from digest.mail.signing import DkimSigner
from digest.models import Edition, Subscriber
from digest.tokens import link_url

# What goes on the wire: CRLF line ends, lines folded at 78, no 8-bit headers.
WIRE = policy.SMTP


class LedgerRow(Protocol):
    """What assembly reads from a delivery: a ``Delivery`` or the sender's plain ``Job``."""

    id: int
    kind: str
    edition_id: int | None
    created_at: dt.datetime | None
    payload: dict[str, Any] | None


class Addressee(Protocol):
    """Who a message is for: a ``Subscriber`` or the sender's plain ``Reader``."""

    @property
    def id(self) -> int | None: ...
    @property
    def email(self) -> str: ...
    @property
    def name(self) -> str | None: ...
    @property
    def language(self) -> str: ...
    @property
    def categories(self) -> list[str] | None: ...
    @property
    def token_version(self) -> int | None: ...


def message_id_for(delivery: LedgerRow, domain: str) -> str:
    """A Message-ID stable across retries of one delivery, so receivers can drop a repeat."""
    stamp = int(delivery.created_at.timestamp()) if delivery.created_at else 0
    return f"<{delivery.kind}.{delivery.id}.{stamp}@{domain}>"


def recipient_header(subscriber: Addressee) -> str:
    """``To:`` value with the subscriber's name when known."""
    if subscriber.name:
        return str(Address(display_name=subscriber.name, addr_spec=subscriber.email))
    return subscriber.email


def build_transactional(
    delivery: LedgerRow,
    subscriber: Addressee,
    config: Mapping[str, Any],
    now: dt.datetime,
    message_id: str,
) -> EmailMessage:
    """A confirmation or notice: text, plus an HTML alternative when there is one."""
    payload = delivery.payload or {}
    subject: str | None
    text: str | None
    html: str | None
    if payload.get("template"):
        subject, text, html = render_notice(
            str(payload["template"]), subscriber, notice_context(payload, subscriber, now)
        )
    else:
        subject, text, html = payload.get("subject"), payload.get("text"), payload.get("html")
    message = EmailMessage()
    message["From"] = config["MAIL_FROM"]
    message["To"] = recipient_header(subscriber)
    message["Subject"] = subject or "(no subject)"
    message["Date"] = format_datetime(now)
    message["Message-ID"] = message_id
    if config.get("MAIL_REPLY_TO"):
        message["Reply-To"] = config["MAIL_REPLY_TO"]
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text or "")
    if html:
        message.add_alternative(html, subtype="html")
    return message


def notice_context(
    payload: Mapping[str, Any], subscriber: Addressee, now: dt.datetime
) -> dict[str, Any]:
    """A notice's template values: those stored with it, and its ``links`` signed at ``now``.

    ``links`` maps a template name to a link purpose (``{"confirm_url": "confirm"}``), or to
    a purpose and extra data to sign with it (``{"purpose": "email", "extra": {...}}``, see
    ``digest.mail.delivery.notice_payload``). They are signed as the mail is sent, not when
    it is queued: the statement that stores a new subscriber queues its confirmation in the
    same round trip, before anyone knows the id to sign, and a link made now carries the
    reader's current token version. A confirmation link's days of validity therefore count
    from the mail's sending. Rows queued before links were signed here carry finished URLs
    in ``context`` and render as they are.
    """
    context = dict(payload.get("context") or {})
    for name, link in (payload.get("links") or {}).items():
        if isinstance(link, str):
            context[name] = link_url(subscriber, link, now)
        else:
            context[name] = link_url(subscriber, link["purpose"], now, extra=link.get("extra"))
    return context


def render_notice(
    template: str, subscriber: Addressee, context: Mapping[str, Any]
) -> tuple[str, str, str]:
    """Subject, text and HTML of ``templates/web/mail/<template>.*`` in the reader's language."""
    from flask import current_app, render_template
    from flask_babel import force_locale

    language = subscriber.language or current_app.config["DEFAULT_LANGUAGE"]
    values = {
        "home_url": f"{current_app.config['PUBLIC_URL']}/",
        **context,
        "subscriber": subscriber,
    }
    with force_locale(language):
        subject = render_template(f"web/mail/{template}.subject.txt", **values).strip()
        text = render_template(f"web/mail/{template}.txt", **values)
        html = render_template(f"web/mail/{template}.html", **values)
    return subject, text, html


class MessageFactory:
    """Builds messages for claimed rows, rendering each digest variant only once."""

    def __init__(
        self, session: DbSession, config: Mapping[str, Any], *, slow: bool = False
    ) -> None:
        self.session = session
        # slow=True builds each digest with build_message (the reference; used by the bench).
        self.slow = slow
        self.config = config
        self.domain = str(config.get("MAIL_DOMAIN") or "localhost")
        self.signer = DkimSigner.from_config(config)
        self._editions: dict[int, Edition] = {}
        self._variants: dict[tuple[int, str, tuple[str, ...]], tuple[Any, PreparedVariant]] = {}
        # (edition, language, the reader's own category list) -> the variant: per message a
        # dictionary lookup instead of working out which categories the edition has.
        self._by_preferences: dict[tuple[Any, ...], tuple[Any, PreparedVariant]] = {}
        self._links: dict[int, PersonalLinks] = {}

    def assemble(
        self, delivery: LedgerRow, subscriber: Addressee, now: dt.datetime
    ) -> tuple[str, bytes]:
        """Return (Message-ID, message bytes) for one delivery."""
        message_id = message_id_for(delivery, self.domain)
        if delivery.edition_id is None:
            message = build_transactional(delivery, subscriber, self.config, now, message_id)
            data = message.as_bytes(policy=WIRE)
        else:
            data = self._digest(delivery, subscriber, now, message_id)
        if self.signer is not None:
            data = self.signer.sign(data)
        return message_id, data

    def edition(self, edition_id: int) -> Edition:
        """The edition, loaded once per run."""
        edition = self._editions.get(edition_id)
        if edition is None:
            edition = self.session.get(Edition, edition_id)
            if edition is None:
                raise LookupError(f"edition {edition_id} no longer exists")
            self._editions[edition_id] = edition
        return edition

    def variant(self, edition: Edition, subscriber: Addressee) -> Any:
        """The rendered variant for the subscriber's language and categories (cached)."""
        return self.prepared(edition, subscriber)[0]

    def prepared(self, edition: Edition, subscriber: Addressee) -> tuple[Any, PreparedVariant]:
        """The rendered variant and its pre-encoded form, made once per run."""
        from digest.mail.delivery import edition_categories
        from digest.render import render_variant

        preferences = (edition.id, subscriber.language, *(subscriber.categories or ()))
        known = self._by_preferences.get(preferences)
        if known is not None:
            return known
        present = edition_categories(edition)
        wanted = set(subscriber.categories or ())
        categories = tuple(c for c in present if c in wanted) or tuple(present)
        key = (edition.id, subscriber.language, categories)
        cached = self._variants.get(key)
        if cached is None:
            rendered = render_variant(edition, subscriber.language, categories, self.config)
            cached = (rendered, PreparedVariant(rendered, self.config))
            self._variants[key] = cached
        self._by_preferences[preferences] = cached
        return cached

    def _digest(
        self, delivery: LedgerRow, subscriber: Addressee, now: dt.datetime, message_id: str
    ) -> bytes:
        from digest.mail.message import build_message, personal_links

        assert delivery.edition_id is not None
        edition = self.edition(delivery.edition_id)
        rendered, prepared = self.prepared(edition, subscriber)
        if not self.slow:
            links = self._links.get(edition.id)
            if links is None:
                links = self._links[edition.id] = PersonalLinks(edition, self.config)
            return prepared.assemble(subscriber.email, links(subscriber, now), now, message_id)
        # The reference path reads the reader the way the rest of the app does.
        message = build_message(
            rendered,
            subscriber.email,
            personal_links(cast(Subscriber, subscriber), edition),
            self.config,
            now=now,
            message_id=message_id,
        )
        return message.as_bytes(policy=WIRE)
