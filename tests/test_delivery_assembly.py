"""Fast assembly gives every reader the same message the slow, obvious builder would."""

from __future__ import annotations

import datetime as dt
import re
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import pytest
from flask import Flask
from sqlalchemy import select

from digest.compose import compose_edition
from digest.extensions import db
from digest.mail.delivery import deliver_pending, queue_edition
from digest.mail.fast import AssemblyError, PreparedVariant
from digest.mail.message import PersonalLinks, build_message, personal_links
from digest.mail.transports import NoLeadingDots, get_transport
from digest.models import Article, Delivery, Edition, Subscriber, SubscriberStatus
from digest.render import render_variant
from digest.tokens import make_token, read_token
from tests.smtpd import smtp_server

DAY = dt.date(2026, 11, 28)
NOW = dt.datetime(2026, 11, 28, 6, 0, tzinfo=dt.UTC)
COMPARED_HEADERS = (
    "From",
    "To",
    "Date",
    "Message-ID",
    "Subject",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "List-Archive",
    "MIME-Version",
)

# Titles chosen to stress the encoder: a forged slot, "=" signs, trailing spaces, a dot line,
# astral characters, a very long unbroken word, right-to-left text.
TITLES = [
    ("IA au Maroc : Une révolution imminente dans le secteur de la Santé", "health"),
    ("Budget : {{ digest_slot:unsubscribe_url }} = 3 % de plus ", "politics"),
    ("Le Wydad l'emporte 2=1 😀 et file en tête  ", "sport"),
    (".", "economy"),
    ("x" * 300, "economy"),
    ("الرباط: افتتاح معرض الكتاب", "other"),
    ("El Banco central sube los tipos; «inflación» en ascenso", "economy"),
]

READERS = [
    ("plain@example.org", None, "fr", ["politics", "economy", "sport", "health", "other"]),
    ("jr@example.org", "Jr. Smith", "en", ["politics", "sport"]),
    ("nadia+digest@example.org", "Nadia Benali", "fr", ["health", "sport"]),
    ("zoe@example.org", "Zoë « Ça-va » Müller", "en", ["economy"]),
    ("quote@example.org", 'Evil" <x@y.z>, "Bcc', "es", ["politics"]),
    ("long@example.org", "A" * 150, "fr", ["other"]),
    ("ctl@example.org", "Line\r\nBcc: victim@example.org", "fr", ["sport"]),
]


def parse(data: bytes) -> EmailMessage:
    """Parse wire bytes back with the stdlib parser."""
    message = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    return message


def raw_header(data: bytes, name: bytes) -> bytes:
    """One header as it is on the wire, folded lines included."""
    head = data.split(b"\r\n\r\n", 1)[0]
    match = re.search(rb"^" + name + rb":.*(?:\r\n[ \t].*)*", head, re.MULTILINE)
    assert match is not None, name
    return match.group(0)


def assert_same_message(fast: bytes, slow: bytes) -> None:
    """Both messages carry the same headers, structure and decoded parts."""
    a, b = parse(fast), parse(slow)
    assert not a.defects and not b.defects
    for name in COMPARED_HEADERS:
        assert a.get_all(name) == b.get_all(name), name
        assert str(a.get(name)) == str(b.get(name)), name
    assert a.get_content_type() == b.get_content_type() == "multipart/alternative"
    parts_a, parts_b = list(a.iter_parts()), list(b.iter_parts())
    assert [p.get_content_type() for p in parts_a] == [p.get_content_type() for p in parts_b]
    for part_a, part_b in zip(parts_a, parts_b, strict=True):
        assert part_a.get_content_charset() == part_b.get_content_charset() == "utf-8"
        assert not part_a.defects
        assert part_a.get_content() == part_b.get_content()
    # Headers a reader's client displays are byte for byte what EmailMessage writes.
    for name in (b"From", b"To", b"Subject"):
        assert raw_header(fast, name) == raw_header(slow, name), name
    for line in fast.split(b"\r\n"):
        assert len(line) <= 998
    assert b"\n" not in fast.replace(b"\r\n", b"")


def day_with_articles() -> Edition:
    """Articles with awkward titles, composed into the day's edition."""
    for index, (title, category) in enumerate(TITLES):
        db.session.add(
            Article(
                fingerprint=f"f{index}",
                title=title,
                title_key=title.lower(),
                url=f"https://news.example.ma/{index}?a=1&b=2",
                source_name="Le Matin",
                language="fr",
                category=category,
                published_at=NOW - dt.timedelta(hours=index + 1),
                blocks=[{"type": "paragraph", "text": "Premier paragraphe. " * 30}]
                if index == 0
                else None,
                first_seen_at=NOW - dt.timedelta(hours=1),
                last_seen_at=NOW - dt.timedelta(hours=1),
            )
        )
    db.session.commit()
    edition = compose_edition(db.session, DAY, NOW)
    db.session.commit()
    return edition


def add_readers() -> list[Subscriber]:
    """The readers above, confirmed."""
    rows = [
        Subscriber(email=email, name=name, language=lang, categories=cats, status="active")
        for email, name, lang, cats in READERS
    ]
    db.session.add_all(rows)
    db.session.commit()
    return rows


def test_fast_assembly_matches_build_message_for_every_kind_of_reader(app: Flask) -> None:
    edition = day_with_articles()
    for reader in add_readers():
        rendered = render_variant(edition, reader.language, reader.categories)
        prepared = PreparedVariant(rendered, app.config)
        personal = personal_links(reader, edition)
        message_id = f"<digest.{reader.id}@digest.test>"
        when = NOW + dt.timedelta(seconds=reader.id)
        fast = prepared.assemble(reader.email, personal, when, message_id)
        slow = build_message(
            rendered, reader.email, personal, app.config, now=when, message_id=message_id
        ).as_bytes(policy=policy.SMTP)
        assert_same_message(fast, slow)
        # Header injection through a name never adds a header.
        assert parse(fast).get_all("Bcc") is None


def test_personal_values_that_look_like_encoding_survive(app: Flask) -> None:
    edition = day_with_articles()
    rendered = render_variant(edition, "fr", ["health", "politics"])
    prepared = PreparedVariant(rendered, app.config)
    personal = {
        "greeting": "Bonjour =?utf-8?q?x?= & <b>toi</b>,",
        "name": "=3D " * 40,
        "unsubscribe_url": "https://digest.test/unsubscribe/" + "a." * 60,
        "manage_url": "https://digest.test/manage/t?x=1&y=2",
        "web_url": "https://digest.test/archive/2026-11-28",
    }
    fast = prepared.assemble("r@example.org", personal, NOW, "<m@digest.test>")
    slow = build_message(
        rendered, "r@example.org", personal, app.config, now=NOW, message_id="<m@digest.test>"
    ).as_bytes(policy=policy.SMTP)
    assert_same_message(fast, slow)
    html = parse(fast).get_body(("html",))
    assert html is not None
    assert "&lt;b&gt;toi&lt;/b&gt;" in html.get_content()


def test_unusable_addresses_and_missing_slots_are_refused(app: Flask) -> None:
    edition = day_with_articles()
    prepared = PreparedVariant(render_variant(edition, "fr", ["health"]), app.config)
    reader = Subscriber(id=1, email="a@example.org", language="fr", token_version=1)
    personal = personal_links(reader, edition)
    for bad in ("no-at-sign", "two@@example.org", "x@example.org\r\nBcc: y@z"):
        with pytest.raises(AssemblyError):
            prepared.assemble(bad, personal, NOW, "<m@d>")
    with pytest.raises(AssemblyError, match="unsubscribe_url"):
        prepared.assemble("a@example.org", {**personal, "unsubscribe_url": ""}, NOW, "<m@d>")
    with pytest.raises(AssemblyError, match="greeting"):
        prepared.assemble(
            "a@example.org", {k: v for k, v in personal.items() if k != "greeting"}, NOW, "<m@d>"
        )


def test_every_delivered_digest_equals_the_slow_build(app: Flask) -> None:
    edition = day_with_articles()
    readers = add_readers()
    # One bad row (a control character in the address) must not stop the others.
    bad = Subscriber(email="bad\x01@example.org", status="active", language="fr")
    db.session.add(bad)
    db.session.commit()
    assert queue_edition(db.session, edition, NOW) == len(readers) + 1
    transport = get_transport("memory://")
    report = deliver_pending(db.session, transport, NOW)
    assert report.sent == len(readers)
    assert report.retried == 1
    by_address = {m.envelope_to[0]: m for m in transport.messages}  # type: ignore[attr-defined]
    for reader in readers:
        delivery = db.session.scalars(
            select(Delivery).where(Delivery.subscriber_id == reader.id)
        ).one()
        kept = by_address[reader.email]
        assert kept["Message-ID"] == delivery.message_id
        rendered = render_variant(edition, reader.language, reader.categories)
        # Signed links carry their signing time: take the ones the reader got, and check
        # that they really are this reader's.
        personal = personal_links(reader, edition)
        text = kept.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        for purpose in ("unsubscribe", "manage"):
            match = re.search(rf"http://digest\.test/{purpose}/([A-Za-z0-9._-]+)", text)
            assert match is not None, purpose
            assert read_token(db.session, match.group(1), purpose).id == reader.id
            personal[f"{purpose}_url"] = match.group(0)
        slow = build_message(
            rendered,
            reader.email,
            personal,
            app.config,
            now=parse(kept.raw).get("Date").datetime,
            message_id=delivery.message_id,
        ).as_bytes(policy=policy.SMTP)
        assert_same_message(kept.raw, slow)
        assert kept.get("List-Unsubscribe-Post") == "List-Unsubscribe=One-Click"
    assert db.session.get(Subscriber, bad.id).status == SubscriberStatus.ACTIVE  # type: ignore[union-attr]


def test_no_line_of_a_digest_starts_with_a_dot_and_smtp_delivers_it_unchanged(
    app: Flask,
) -> None:
    # The transport skips dot-stuffing for fast-assembled digests: that is only right if
    # no line of them starts with "." (a title that is a lone dot, dots at wrap points).
    edition = day_with_articles()
    rendered = render_variant(edition, "fr", ["economy", "politics"])
    prepared = PreparedVariant(rendered, app.config)
    personal = {
        "greeting": "." * 200 + "Bonjour,",
        "name": "Nadia",
        "unsubscribe_url": "https://digest.test/unsubscribe/" + "." * 150,
        "manage_url": "https://digest.test/manage/" + "x" * 73 + ".." * 40,
        "web_url": "https://digest.test/archive/2026-11-28",
    }
    fast = prepared.assemble("r@example.org", personal, NOW, "<m@digest.test>")
    assert isinstance(fast, NoLeadingDots)
    assert not fast.startswith(b".") and b"\n." not in fast
    slow = build_message(
        rendered, "r@example.org", personal, app.config, now=NOW, message_id="<m@digest.test>"
    ).as_bytes(policy=policy.SMTP)
    assert b"\n." in slow  # the same content, encoded the usual way, does have such lines
    assert_same_message(fast, slow)
    for line in fast.split(b"\r\n"):
        if line.startswith(b"=2E"):
            assert len(line) <= 76
    # Through a real SMTP server: the stuffed and the unstuffed path both arrive intact.
    with smtp_server() as (handler, port):
        transport = get_transport(f"smtp://127.0.0.1:{port}")
        transport.send(fast, "digest@digest.test", ["fast@example.org"])
        transport.send(slow, "digest@digest.test", ["slow@example.org"])
        transport.close()
    received = {item.recipient: item.data for item in handler.received}
    assert received["fast@example.org"].replace(b"\r\n", b"\n") == fast.replace(b"\r\n", b"\n")
    assert received["slow@example.org"].replace(b"\r\n", b"\n") == slow.replace(b"\r\n", b"\n")


def test_run_links_equal_personal_links_and_lead_back_to_their_reader(app: Flask) -> None:
    edition = day_with_articles()
    readers = add_readers()
    readers.append(Subscriber(email="xx@example.org", language="de", status="active"))
    db.session.add(readers[-1])
    db.session.commit()
    links = PersonalLinks(edition, app.config)
    for reader in readers:
        fast = links(reader, NOW)
        slow = personal_links(reader, edition)
        for purpose in ("unsubscribe", "manage"):
            token = fast.pop(f"{purpose}_url").rsplit("/", 1)[1]
            assert token == make_token(reader, purpose, now=NOW)
            assert read_token(db.session, token, purpose).id == reader.id
            del slow[f"{purpose}_url"]
        assert fast == slow
