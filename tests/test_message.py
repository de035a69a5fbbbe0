"""Digest messages on the wire: MIME structure, headers, line lengths, personal links."""

from __future__ import annotations

import datetime as dt
import email
import re
from email import policy
from email.message import EmailMessage

import pytest
from flask import Flask

from digest.compose import compose_edition
from digest.extensions import db
from digest.mail.message import MessageError, build_message, fill_slots, personal_links
from digest.models import CATEGORIES, Edition, Subscriber, SubscriberStatus
from digest.render import RenderedVariant, render_variant
from digest.tokens import read_token
from tests.email_data import DAY, LEAD_TITLE, NOW, add_day

PERSONAL = {
    "greeting": "Bonjour Amina,",
    "name": "Amina",
    "unsubscribe_url": "https://digest.test/unsubscribe/tok-u?x=1&y=2",
    "manage_url": "https://digest.test/manage/tok-m",
    "web_url": "https://digest.test/archive/2026-11-28",
}


def _edition() -> Edition:
    add_day(db.session)
    return compose_edition(db.session, DAY, NOW)


def _wire(message: EmailMessage) -> bytes:
    return message.as_bytes()


def _parse(raw: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_structure_and_encoding_survive_a_round_trip(app: Flask) -> None:
    rendered = render_variant(_edition(), "fr", CATEGORIES)
    raw = _wire(build_message(rendered, "amina@example.org", PERSONAL, app.config, now=NOW))
    # CRLF everywhere, and no line over the SMTP limit of 998 octets.
    lines = raw.split(b"\r\n")
    assert b"\n" not in b"".join(lines)
    assert max(len(line) for line in lines) <= 998
    parsed = _parse(raw)
    assert parsed.get_content_type() == "multipart/alternative"
    parts = list(parsed.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    for part in parts:
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] in ("quoted-printable", "base64")
    text = parts[0].get_content()
    html = parts[1].get_content()
    assert "Bonjour Amina," in text and "Bonjour Amina," in html
    assert LEAD_TITLE in text and "Lire la suite" in html
    # URLs with & are escaped in HTML and left alone in text.
    assert 'href="https://digest.test/unsubscribe/tok-u?x=1&amp;y=2"' in html
    assert "https://digest.test/unsubscribe/tok-u?x=1&y=2" in text
    assert "digest_slot" not in text and "digest_slot" not in html


def test_headers_a_mailbox_provider_checks(app: Flask) -> None:
    app.config["UNSUBSCRIBE_MAILTO"] = "unsubscribe@digest.test"
    rendered = render_variant(_edition(), "fr", CATEGORIES)
    parsed = _parse(
        _wire(build_message(rendered, "amina@example.org", PERSONAL, app.config, now=NOW))
    )
    assert str(parsed["From"]) == "Le Digest <digest@digest.test>"
    assert parsed["From"].addresses[0].display_name == "Le Digest"
    assert parsed["To"].addresses[0].addr_spec == "amina@example.org"
    assert parsed["Date"].datetime == NOW
    assert re.fullmatch(r"<[^@<>]+@digest\.test>", parsed["Message-ID"])
    assert parsed["Subject"] == f"28 novembre 2026 · {LEAD_TITLE}"
    assert parsed["List-Id"] == "Le Digest <daily.digest.test>"
    assert parsed["List-Unsubscribe"] == (
        "<https://digest.test/unsubscribe/tok-u?x=1&y=2>, "
        "<mailto:unsubscribe@digest.test?subject=unsubscribe>"
    )
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["MIME-Version"] == "1.0"


def test_without_a_mailto_only_the_https_link_is_offered(app: Flask) -> None:
    rendered = render_variant(_edition(), "fr", CATEGORIES)
    parsed = _parse(_wire(build_message(rendered, "a@example.org", PERSONAL, app.config)))
    assert parsed["List-Unsubscribe"] == "<https://digest.test/unsubscribe/tok-u?x=1&y=2>"


def test_a_very_long_line_is_still_folded_on_the_wire(app: Flask) -> None:
    rendered = RenderedVariant(
        subject="S " + "mot" * 400,
        preheader="",
        html="<p>" + "é" * 5000 + "{{ digest_slot:greeting }}</p>",
        text="x" * 5000 + "\n{{ digest_slot:greeting }}\n",
    )
    raw = _wire(build_message(rendered, "a@example.org", PERSONAL, app.config))
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    parsed = _parse(raw)
    assert parsed.get_body(("html",)).get_content().count("é") == 5000  # type: ignore[union-attr]


def test_hostile_names_cannot_inject_headers(app: Flask) -> None:
    rendered = render_variant(_edition(), "fr", CATEGORIES)
    personal = dict(PERSONAL, name="Eve\r\nBcc: victim@example.org", greeting="<b>Eve</b>")
    raw = _wire(build_message(rendered, "eve@example.org", personal, app.config))
    parsed = _parse(raw)
    assert parsed["Bcc"] is None
    assert b"\r\nBcc:" not in raw
    html = parsed.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "&lt;b&gt;Eve&lt;/b&gt;" in html and "<b>Eve</b>" not in html


@pytest.mark.parametrize("address", ["", "no-at-sign", "a@b@c", "x@example.org\r\nBcc: y@z"])
def test_unusable_recipient_addresses_are_refused(app: Flask, address: str) -> None:
    rendered = RenderedVariant("s", "p", "<p>x</p>", "x")
    with pytest.raises(MessageError):
        build_message(rendered, address, PERSONAL, app.config)


@pytest.mark.no_db
def test_a_slot_without_a_value_is_an_error_not_a_silent_blank() -> None:
    with pytest.raises(MessageError, match="manage_url"):
        fill_slots("see {{ digest_slot:manage_url }}", {"greeting": "hi"}, escape=False)
    rendered = RenderedVariant("s", "p", "<p>x</p>", "x")
    with pytest.raises(MessageError, match="unsubscribe_url"):
        build_message(
            rendered,
            "a@example.org",
            {"greeting": "hi"},
            {"MAIL_FROM": "Le Digest <digest@digest.test>", "MAIL_DOMAIN": "digest.test"},
        )


def test_personal_links_are_signed_for_their_purpose(app: Flask) -> None:
    edition = _edition()
    reader = Subscriber(
        email="amina@example.org",
        name="Amina",
        language="es",
        status=SubscriberStatus.ACTIVE,
        categories=list(CATEGORIES),
    )
    db.session.add(reader)
    db.session.commit()
    links = personal_links(reader, edition)
    assert links["greeting"] == "Hola, Amina:"
    assert links["web_url"] == "http://digest.test/archive/2026-11-28?lang=es"
    unsubscribe = links["unsubscribe_url"].rsplit("/", 1)[1]
    manage = links["manage_url"].rsplit("/", 1)[1]
    assert links["unsubscribe_url"].startswith("http://digest.test/unsubscribe/")
    assert read_token(db.session, unsubscribe, "unsubscribe").id == reader.id
    assert read_token(db.session, manage, "manage").id == reader.id
    nameless = Subscriber(email="b@example.org", language="fr", status=SubscriberStatus.ACTIVE)
    db.session.add(nameless)
    db.session.commit()
    assert personal_links(nameless, edition)["greeting"] == "Bonjour,"


def test_the_date_header_is_the_moment_given(app: Flask) -> None:
    rendered = RenderedVariant("s", "p", "<p>{{ digest_slot:name }}</p>", "x")
    later = dt.datetime(2026, 11, 28, 7, 1, 2, tzinfo=dt.UTC)
    parsed = _parse(
        _wire(
            build_message(
                rendered,
                "a@example.org",
                PERSONAL,
                app.config,
                now=later,
                message_id="<fixed@digest.test>",
            )
        )
    )
    assert parsed["Date"].datetime == later
    assert parsed["Message-ID"] == "<fixed@digest.test>"
