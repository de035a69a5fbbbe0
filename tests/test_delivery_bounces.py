"""Bounce reports (`digest bounces`), VERP return paths and DKIM signatures."""

from __future__ import annotations

import mailbox
import shutil
import subprocess
from pathlib import Path

import dkim
import pytest
from flask import Flask
from flask.testing import FlaskCliRunner
from sqlalchemy import select

from digest.extensions import db
from digest.mail.delivery import deliver_pending, enqueue_message, queue_edition
from digest.mail.signing import SigningError
from digest.mail.transports import get_transport
from digest.models import Delivery, Subscriber, SubscriberStatus
from tests.test_delivery_assembly import NOW, day_with_articles


def dsn(
    recipient: str, action: str = "failed", status: str = "5.1.1", to: str = "digest@digest.test"
) -> bytes:
    """An RFC 3464 delivery status notification about ``recipient``, as an MTA writes it."""
    code = "550" if status.startswith("5") else "450"
    return (
        "From: MAILER-DAEMON@mx.example.org\r\n"
        f"To: {to}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b0"\r\n'
        "\r\n"
        "--b0\r\n"
        "Content-Type: text/plain\r\n\r\n"
        f"Your message to {recipient} could not be delivered.\r\n"
        "--b0\r\n"
        "Content-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.org\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\n"
        f"Action: {action}\r\n"
        f"Status: {status}\r\n"
        f"Diagnostic-Code: smtp; {code} {status} mailbox problem\r\n"
        "--b0--\r\n"
    ).encode()


def sent_to(emails: list[str], **config: object) -> dict[str, Delivery]:
    """Subscribers who were sent today's digest through the memory transport."""
    edition = day_with_articles()
    db.session.add_all(Subscriber(email=e, status="active", language="fr") for e in emails)
    db.session.commit()
    queue_edition(db.session, edition, NOW)
    deliver_pending(db.session, get_transport("memory://"), NOW)
    rows = db.session.scalars(select(Delivery)).all()
    return {row.subscriber.email: row for row in rows}


def test_a_report_folder_bounces_deliveries_and_suppresses_repeat_offenders(
    app: Flask, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    app.config["MAIL_BOUNCE_LIMIT"] = 1
    rows = sent_to(["gone@example.org", "slow@example.org", "fine@example.org"])
    folder = tmp_path / "reports"
    folder.mkdir()
    (folder / "1.eml").write_bytes(dsn("gone@example.org"))
    (folder / "2.eml").write_bytes(dsn("slow@example.org", "delayed", "4.4.1"))
    (folder / "3.eml").write_bytes(b"From: friend@example.org\r\nSubject: merci\r\n\r\nBravo\r\n")
    (folder / "4.eml").write_bytes(dsn("stranger@example.org"))
    (folder / "5.eml").write_bytes(b"\x00\xff\xfe garbage \x00")
    result = runner.invoke(args=["bounces", str(folder)])
    assert result.exit_code == 0, result.output
    assert "5 messages: 1 permanent failures (1 subscribers suppressed), 1 delays" in result.output
    assert "stranger@example.org" in result.output
    db.session.expire_all()
    assert rows["gone@example.org"].state == "bounced"
    assert rows["gone@example.org"].subscriber.status == SubscriberStatus.BOUNCED
    assert rows["slow@example.org"].state == "sent"
    assert "delayed" in (rows["slow@example.org"].last_error or "")
    assert rows["fine@example.org"].subscriber.status == SubscriberStatus.ACTIVE
    # Reading the same reports again changes nothing.
    again = runner.invoke(args=["bounces", str(folder)])
    assert "0 permanent failures" in again.output and "1 already known" in again.output
    db.session.expire_all()
    assert rows["gone@example.org"].subscriber.bounce_count == 1


def test_maildir_and_mbox_are_read(app: Flask, runner: FlaskCliRunner, tmp_path: Path) -> None:
    app.config["MAIL_BOUNCE_LIMIT"] = 5
    rows = sent_to(["a@example.org", "b@example.org"])
    box = mailbox.Maildir(str(tmp_path / "Maildir"), create=True)
    box.add(dsn("a@example.org"))
    mbox_path = tmp_path / "bounces.mbox"
    mbox = mailbox.mbox(str(mbox_path), create=True)
    mbox.add(mailbox.mboxMessage(dsn("b@example.org")))
    mbox.close()
    for source in (tmp_path / "Maildir", mbox_path):
        result = runner.invoke(args=["bounces", str(source)])
        assert result.exit_code == 0, result.output
        assert "1 messages: 1 permanent failures (0 subscribers suppressed)" in result.output
    db.session.expire_all()
    assert {rows[e].state for e in rows} == {"bounced"}
    assert {rows[e].subscriber.status for e in rows} == {SubscriberStatus.ACTIVE}


@pytest.mark.parametrize("kind", ["missing", "empty", "empty-folder"])
def test_bounces_refuses_a_source_with_no_mail(
    app: Flask, runner: FlaskCliRunner, tmp_path: Path, kind: str
) -> None:
    source = tmp_path / "source"
    if kind == "empty":
        source.write_bytes(b"")
    elif kind == "empty-folder":
        source.mkdir()
    result = runner.invoke(args=["bounces", str(source)])
    assert result.exit_code == 1
    assert "Error:" in result.output and "Traceback" not in result.output


def test_verp_return_path_names_the_delivery_even_for_a_forwarded_address(
    app: Flask, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    app.config["MAIL_RETURN_PATH"] = "bounces@digest.test"
    edition = day_with_articles()
    db.session.add(Subscriber(email="alias@example.org", status="active", language="fr"))
    db.session.commit()
    queue_edition(db.session, edition, NOW)
    transport = get_transport("memory://")
    deliver_pending(db.session, transport, NOW)
    row = db.session.scalars(select(Delivery)).one()
    (kept,) = transport.messages  # type: ignore[attr-defined]
    assert kept.envelope_from == f"bounces+d{row.id}@digest.test"
    report = tmp_path / "verp.eml"
    report.write_bytes(dsn("real-mailbox@elsewhere.example", to=kept.envelope_from))
    result = runner.invoke(args=["bounces", str(report)])
    assert "1 permanent failures" in result.output, result.output
    db.session.expire_all()
    assert row.state == "bounced"


@pytest.fixture
def dkim_key(tmp_path: Path) -> tuple[Path, bytes]:
    """A fresh RSA key file and its DNS TXT record."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test key")
    key = tmp_path / "dkim.pem"
    subprocess.run(
        ["openssl", "genrsa", "-traditional", "-out", str(key), "1024"],
        check=True,
        capture_output=True,
    )
    public = subprocess.run(
        ["openssl", "rsa", "-in", str(key), "-pubout"], check=True, capture_output=True
    ).stdout
    body = b"".join(line for line in public.splitlines() if not line.startswith(b"-----"))
    return key, b"v=DKIM1; k=rsa; p=" + body


def test_messages_are_dkim_signed_when_a_key_is_configured(
    app: Flask, dkim_key: tuple[Path, bytes]
) -> None:
    key, record = dkim_key
    app.config.update(DKIM_SELECTOR="mail2026", DKIM_KEY_FILE=str(key))
    edition = day_with_articles()
    db.session.add(Subscriber(email="reader@example.org", status="active", language="fr"))
    pending = Subscriber(email="new@example.org", status="pending")
    db.session.add(pending)
    db.session.commit()
    enqueue_message(db.session, pending, "confirm", "Confirmez", "lien", "<p>lien</p>", NOW)
    queue_edition(db.session, edition, NOW)
    transport = get_transport("memory://")
    assert deliver_pending(db.session, transport, NOW).sent == 2
    asked: list[bytes] = []

    def dns(name: bytes, timeout: int = 5) -> bytes:
        asked.append(name)
        return record

    for message in transport.messages:  # type: ignore[attr-defined]
        assert message["DKIM-Signature"] is not None
        assert dkim.verify(message.raw, dnsfunc=dns)
        tampered = message.raw.replace(b"Subject: ", b"Subject: Re: ", 1)
        assert not dkim.verify(tampered, dnsfunc=dns)
    assert set(asked) == {b"mail2026._domainkey.digest.test."}


def test_half_configured_or_broken_dkim_stops_sending_with_a_message(
    app: Flask, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    person = Subscriber(email="p@example.org", status="pending")
    db.session.add(person)
    db.session.commit()
    enqueue_message(db.session, person, "confirm", "Confirmez", "lien", None, NOW)
    db.session.commit()
    app.config.update(DKIM_SELECTOR="s1", DKIM_KEY_FILE=None)
    with pytest.raises(SigningError, match="both"):
        deliver_pending(db.session, get_transport("memory://"), NOW)
    bad_key = tmp_path / "bad.pem"
    bad_key.write_text(
        "-----BEGIN RSA PRIVATE KEY-----\nnot a key\n-----END RSA PRIVATE KEY-----\n"
    )
    app.config.update(DKIM_KEY_FILE=str(bad_key))
    result = runner.invoke(args=["worker", "--once"])
    assert result.exit_code == 1
    assert "DKIM" in result.output and "Traceback" not in result.output
    assert db.session.scalars(select(Delivery.state)).all() == ["queued"]
