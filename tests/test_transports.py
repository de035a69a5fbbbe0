"""Transports: files appear whole, memory keeps what was sent, SMTP sorts failures."""

from __future__ import annotations

from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest

from digest.mail.transports import (
    FileTransport,
    MemoryTransport,
    PermanentFailure,
    SMTPTransport,
    TemporaryFailure,
    get_transport,
)
from tests.smtpd import RecordingHandler, free_port, smtp_server

pytestmark = pytest.mark.no_db


def _message(to: str = "reader@example.org", subject: str = "Bonjour") -> bytes:
    message = EmailMessage()
    message["From"] = "digest@digest.test"
    message["To"] = to
    message["Subject"] = subject
    message.set_content("Élan, été, ça va.\n")
    return message.as_bytes(policy=policy.SMTP)


def test_file_transport_writes_one_complete_eml_per_message(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    transport = get_transport(f"file://{outbox}")
    assert isinstance(transport, FileTransport)
    for n in range(3):
        transport.send(_message(subject=f"n{n}"), "digest@digest.test", ["reader@example.org"])
    files = sorted(outbox.iterdir())
    assert [f.suffix for f in files] == [".eml"] * 3, "no temporary file may be left behind"
    subjects = {
        BytesParser(policy=policy.default).parsebytes(f.read_bytes())["Subject"] for f in files
    }
    assert subjects == {"n0", "n1", "n2"}


def test_file_transport_reports_an_unwritable_folder_as_temporary(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the outbox should be")
    with pytest.raises(TemporaryFailure, match="cannot write"):
        FileTransport(blocker / "outbox").send(_message(), "a@b.c", ["d@e.f"])


def test_memory_transport_keeps_parsed_messages_with_their_envelope() -> None:
    transport = get_transport("memory://")
    assert isinstance(transport, MemoryTransport)
    transport.send(_message(), "bounces@digest.test", ["reader@example.org"])
    (kept,) = transport.messages
    assert kept["Subject"] == "Bonjour"
    assert kept.envelope_to == ["reader@example.org"]
    assert kept.envelope_from == "bounces@digest.test"
    assert "ça va" in kept.get_content()


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.org",
        "smtp://",
        "smtp://host:notaport",
        "smtp://host?tls=sometimes",
        "smtp://host?pool=0",
        "file://",
        "nonsense",
    ],
)
def test_unusable_mail_urls_are_refused_with_a_reason(url: str) -> None:
    with pytest.raises(ValueError):
        get_transport(url)


def test_smtp_url_carries_credentials_tls_and_pool_size() -> None:
    transport = get_transport("smtp://us%40er:p%3Ass@mail.example.org:2525?tls=starttls&pool=4")
    assert isinstance(transport, SMTPTransport)
    s = transport.settings
    assert (s.host, s.port, s.tls, s.pool_size) == ("mail.example.org", 2525, "starttls", 4)
    assert (s.username, s.password) == ("us@er", "p:ss")
    assert get_transport("smtp://h?tls=ssl").settings.port == 465  # type: ignore[attr-defined]


def test_smtp_transport_delivers_and_reuses_its_connection() -> None:
    with smtp_server() as (handler, port):
        transport = get_transport(f"smtp://127.0.0.1:{port}")
        for n in range(5):
            transport.send(
                _message(f"r{n}@example.org"), "digest@digest.test", [f"r{n}@example.org"]
            )
        transport.close()
    assert sorted(handler.per_recipient()) == [f"r{n}@example.org" for n in range(5)]
    assert handler.connections == 1
    assert handler.received[0].message["Subject"] == "Bonjour"


def test_smtp_transport_sorts_refusals_into_temporary_and_permanent() -> None:
    handler = RecordingHandler(
        rcpt_policy=lambda rcpt: {
            "gone@example.org": "550 5.1.1 no such user",
            "full@example.org": "452 4.2.2 mailbox full",
        }.get(rcpt)
    )
    with smtp_server(handler) as (_, port):
        transport = get_transport(f"smtp://127.0.0.1:{port}")
        with pytest.raises(PermanentFailure) as permanent:
            transport.send(_message(), "d@digest.test", ["gone@example.org"])
        assert permanent.value.code == 550
        with pytest.raises(TemporaryFailure) as temporary:
            transport.send(_message(), "d@digest.test", ["full@example.org"])
        assert temporary.value.code == 452
        # The same connection still carries the next good message.
        transport.send(_message(), "d@digest.test", ["ok@example.org"])
        transport.close()
    assert handler.per_recipient() == {"ok@example.org": 1}
    assert handler.connections == 1


def test_smtp_transport_reconnects_after_421_and_a_dropped_connection() -> None:
    answers = iter(["421 4.3.2 shutting down", "drop"])
    handler = RecordingHandler(data_policy=lambda rcpt: next(answers, None))
    with smtp_server(handler) as (_, port):
        transport = get_transport(f"smtp://127.0.0.1:{port}")
        with pytest.raises(TemporaryFailure):
            transport.send(_message(), "d@digest.test", ["a@example.org"])
        with pytest.raises(TemporaryFailure):
            transport.send(_message(), "d@digest.test", ["a@example.org"])
        transport.send(_message(), "d@digest.test", ["a@example.org"])
        transport.close()
    assert handler.per_recipient() == {"a@example.org": 1}
    assert handler.connections == 3


def test_smtp_server_down_is_a_temporary_failure() -> None:
    transport = get_transport(f"smtp://127.0.0.1:{free_port()}?timeout=2")
    with pytest.raises(TemporaryFailure, match="cannot connect"):
        transport.send(_message(), "d@digest.test", ["a@example.org"])


@pytest.mark.parametrize("pipelining", [True, False])
def test_pipelined_and_plain_transactions_give_the_same_outcomes(pipelining: bool) -> None:
    handler = RecordingHandler(
        pipelining=pipelining,
        rcpt_policy=lambda rcpt: {
            "gone@example.org": "550 5.1.1 no such user",
            "later@example.org": "450 4.2.1 try later",
        }.get(rcpt),
        data_policy=lambda rcpt: "554 5.7.1 spam" if rcpt == "spam@example.org" else None,
    )
    dotted = _message().replace(b"Bonjour", b"x") + b".\r\n.. deux points\r\n"
    with smtp_server(handler) as (_, port):
        transport = get_transport(f"smtp://127.0.0.1:{port}")
        transport.send(dotted, "d@digest.test", ["ok@example.org"])
        with pytest.raises(PermanentFailure, match="550"):
            transport.send(_message(), "d@digest.test", ["gone@example.org"])
        with pytest.raises(TemporaryFailure, match="450"):
            transport.send(_message(), "d@digest.test", ["later@example.org"])
        with pytest.raises(PermanentFailure, match="554"):
            transport.send(_message(), "d@digest.test", ["spam@example.org"])
        transport.send(_message(), "d@digest.test", ["again@example.org"])
        transport.close()
    assert handler.per_recipient() == {"ok@example.org": 1, "again@example.org": 1}
    assert handler.connections == 1
    # Dot-stuffing is undone by the server: the lines arrive as written.
    assert handler.received[0].data.endswith(b"\r\n.\r\n.. deux points\r\n")


@pytest.mark.parametrize("pipelining", [True, False])
@pytest.mark.parametrize(
    ("sender", "recipient"),
    [
        ("d@digest.test", "a@example.org>\r\nRCPT TO:<victim@example.org"),
        ("d@digest.test", "a@example.org\nRCPT TO:<victim@example.org>"),
        ("d@digest.test>\r\nRCPT TO:<victim@example.org", "a@example.org"),
        ("d@digest.test", "a@exam\x00ple.org"),
    ],
)
def test_addresses_that_would_inject_smtp_commands_are_refused_before_sending(
    pipelining: bool, sender: str, recipient: str
) -> None:
    with smtp_server(RecordingHandler(pipelining=pipelining)) as (handler, port):
        transport = get_transport(f"smtp://127.0.0.1:{port}")
        with pytest.raises(PermanentFailure, match="break the SMTP command"):
            transport.send(_message(), sender, [recipient])
        # The connection is not spoiled: the next good message goes through alone.
        transport.send(_message(), "d@digest.test", ["ok@example.org"])
        transport.close()
    assert handler.per_recipient() == {"ok@example.org": 1}
