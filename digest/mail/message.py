"""Assemble one subscriber's digest message: personal slots, MIME structure, list headers."""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import Mapping
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from typing import TYPE_CHECKING, Any

from flask import current_app
from flask_babel import force_locale

from digest.models import Edition, Subscriber

if TYPE_CHECKING:
    from digest.mail.assembly import Addressee
from digest.render import RenderedVariant, archive_url, brand_name, email_domain, gettext

_SLOT = re.compile(r"\{\{ digest_slot:([a-z_]+) \}\}")
# Control characters in a header value would let a name inject headers or break folding.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


class MessageError(ValueError):
    """The message cannot be built as asked (missing slot value, unusable address)."""


def fill_slots(template: str, personal: Mapping[str, str], *, escape: bool) -> str:
    """Replace every ``{{ digest_slot:name }}`` with its value (HTML-escaped when ``escape``)."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in personal:
            raise MessageError(f"no value for the personal slot {name!r}")
        text = str(personal[name])
        return html.escape(text, quote=True) if escape else text

    return _SLOT.sub(value, template)


def build_message(
    rendered: RenderedVariant,
    recipient_email: str,
    personal: Mapping[str, str],
    config: Mapping[str, Any],
    *,
    now: dt.datetime | None = None,
    message_id: str | None = None,
) -> EmailMessage:
    """One subscriber's digest: multipart/alternative (text, then HTML) with list headers.

    ``now`` is the Date header (the moment of sending, which the caller knows);
    ``message_id`` is generated on MAIL_DOMAIN when not given.
    """
    message = EmailMessage(policy=policy.SMTP)
    sender_name, sender_addr = parseaddr(str(config["MAIL_FROM"]))
    if "@" not in sender_addr:
        raise MessageError(f"MAIL_FROM={config['MAIL_FROM']!r} has no usable address")
    domain = str(config.get("MAIL_DOMAIN") or sender_addr.rsplit("@", 1)[1])
    message["From"] = Address(display_name=sender_name or brand_name(config), addr_spec=sender_addr)
    message["To"] = _recipient(recipient_email, personal.get("name", ""))
    message["Date"] = format_datetime(now or dt.datetime.now(dt.UTC))
    message["Message-ID"] = message_id or make_msgid(idstring="digest", domain=domain)
    message["Subject"] = _clean(rendered.subject)
    if config.get("MAIL_REPLY_TO"):
        message["Reply-To"] = _clean(str(config["MAIL_REPLY_TO"]))
    message["List-Id"] = f"{_clean(brand_name(config))} <daily.{domain}>"
    unsubscribe_url = personal.get("unsubscribe_url")
    if not unsubscribe_url:
        raise MessageError("a digest needs an unsubscribe_url (List-Unsubscribe)")
    targets = [f"<{_clean(unsubscribe_url)}>"]
    mailto = config.get("UNSUBSCRIBE_MAILTO")
    if mailto:
        targets.append(f"<mailto:{_clean(str(mailto))}?subject=unsubscribe>")
    message["List-Unsubscribe"] = ", ".join(targets)
    # RFC 8058: the https URL above unsubscribes on a bare POST with this body.
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    if personal.get("web_url"):
        message["List-Archive"] = f"<{_clean(personal['web_url'])}>"

    # Quoted-printable keeps every line short (no 998-octet limit problems) and leaves
    # French text mostly readable in the raw message.
    message.set_content(
        fill_slots(rendered.text, personal, escape=False),
        subtype="plain",
        charset="utf-8",
        cte="quoted-printable",
    )
    message.add_alternative(
        fill_slots(rendered.html, personal, escape=True),
        subtype="html",
        charset="utf-8",
        cte="quoted-printable",
    )
    return message


def personal_links(subscriber: Subscriber, edition: Edition) -> dict[str, str]:
    """The slot values for one subscriber: greeting, name and signed links."""
    from digest.tokens import make_token

    config = current_app.config
    base = config["PUBLIC_URL"]
    name = _clean(subscriber.name or "").strip()
    language = (
        subscriber.language
        if subscriber.language in config["LANGUAGES"]
        else config["DEFAULT_LANGUAGE"]
    )
    with force_locale(language):
        greeting = gettext("Hello %(name)s,", name=name) if name else gettext("Hello,")
    return {
        "greeting": greeting,
        "name": name,
        "unsubscribe_url": f"{base}/unsubscribe/{make_token(subscriber, 'unsubscribe')}",
        "manage_url": f"{base}/manage/{make_token(subscriber, 'manage')}",
        # The web version opens in the reader's language, whatever their browser says.
        "web_url": f"{archive_url(config, edition.day)}?lang={language}",
    }


class PersonalLinks:
    """``personal_links`` for many readers of one edition, as a digest run needs it.

    The per-language greetings and web address and the signing key are made once; per
    reader only the name is cleaned and two tokens are signed (``LinkSigner``). The links
    are issued at ``now`` (the moment of sending). Tests compare it with ``personal_links``.
    """

    def __init__(self, edition: Edition, config: Mapping[str, Any]) -> None:
        from digest.tokens import LinkSigner

        self.base = config["PUBLIC_URL"]
        self.languages = config["LANGUAGES"]
        self.default_language = config["DEFAULT_LANGUAGE"]
        self.archive = archive_url(config, edition.day)
        self.signer = LinkSigner(config["SECRET_KEY"])
        # language -> (greeting with a %(name)s, greeting without a name, web version URL)
        self._by_language: dict[str, tuple[str, str, str]] = {}

    def _language_parts(self, language: str) -> tuple[str, str, str]:
        parts = self._by_language.get(language)
        if parts is None:
            with force_locale(language):
                parts = (
                    email_domain.get_translations().ugettext("Hello %(name)s,"),
                    gettext("Hello,"),
                    f"{self.archive}?lang={language}",
                )
            self._by_language[language] = parts
        return parts

    def __call__(self, subscriber: Addressee, now: dt.datetime) -> dict[str, str]:
        """The slot values ``personal_links`` gives, with links issued at ``now``."""
        if subscriber.id is None:
            raise ValueError("the subscriber must be flushed (have an id) before making a token")
        language = (
            subscriber.language if subscriber.language in self.languages else self.default_language
        )
        named, plain, web_url = self._language_parts(language)
        name = _clean(subscriber.name or "").strip()
        issued = int(now.timestamp())
        make = self.signer.make
        version = subscriber.token_version
        return {
            "greeting": named % {"name": name} if name else plain,
            "name": name,
            "unsubscribe_url": f"{self.base}/unsubscribe/"
            + make(subscriber.id, version, "unsubscribe", issued),
            "manage_url": f"{self.base}/manage/" + make(subscriber.id, version, "manage", issued),
            "web_url": web_url,
        }


def _recipient(email: str, name: str) -> Address:
    email = email.strip()
    if _CONTROL.search(email) or email.count("@") != 1:
        raise MessageError(f"{email!r} is not a deliverable address")
    try:
        return Address(display_name=_clean(name), addr_spec=email)
    except (ValueError, IndexError) as error:
        raise MessageError(f"{email!r} is not a deliverable address") from error


def _clean(value: str) -> str:
    return _CONTROL.sub(" ", value).strip()
