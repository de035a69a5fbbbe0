"""SMTP with STARTTLS, implicit TLS and AUTH against a real aiosmtpd server on loopback."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword

from digest.mail.transports import TemporaryFailure, get_transport
from tests.smtpd import RecordingHandler, smtp_server

pytestmark = pytest.mark.no_db


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ssl.SSLContext]:
    """A server TLS context with a fresh self-signed certificate for 127.0.0.1."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    yield context


def _authenticator(
    server: Any, session: Any, envelope: Any, mechanism: str, data: Any
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"digest", b"s3cr:t")
    return AuthResult(success=ok)


def _message() -> bytes:
    message = EmailMessage()
    message["From"] = "digest@digest.test"
    message["To"] = "reader@example.org"
    message["Subject"] = "chiffré"
    message.set_content("Bonjour\n")
    return message.as_bytes(policy=policy.SMTP)


def test_starttls_with_login_delivers(certificate: ssl.SSLContext) -> None:
    handler = RecordingHandler()
    with smtp_server(
        handler,
        tls_context=certificate,
        require_starttls=True,
        auth_required=True,
        auth_require_tls=True,
        authenticator=_authenticator,
    ) as (_, port):
        transport = get_transport(f"smtp://digest:s3cr%3At@127.0.0.1:{port}?tls=starttls&verify=0")
        transport.send(_message(), "digest@digest.test", ["reader@example.org"])
        transport.close()
        wrong = get_transport(
            f"smtp://digest:nope@127.0.0.1:{port}?tls=starttls&verify=0&timeout=3"
        )
        with pytest.raises(TemporaryFailure):
            wrong.send(_message(), "digest@digest.test", ["reader@example.org"])
        plain = get_transport(f"smtp://digest:s3cr%3At@127.0.0.1:{port}?timeout=4")
        with pytest.raises(TemporaryFailure):
            plain.send(_message(), "digest@digest.test", ["reader@example.org"])
    assert handler.per_recipient() == {"reader@example.org": 1}
    assert handler.received[0].message["Subject"] == "chiffré"


def test_implicit_tls_delivers_and_an_unverified_certificate_is_refused(
    certificate: ssl.SSLContext,
) -> None:
    handler = RecordingHandler()
    with smtp_server(handler, ssl_context=certificate) as (_, port):
        transport = get_transport(f"smtp://127.0.0.1:{port}?tls=ssl&verify=0")
        transport.send(_message(), "digest@digest.test", ["reader@example.org"])
        transport.close()
        # Without verify=0 a self-signed certificate is not trusted.
        strict = get_transport(f"smtp://127.0.0.1:{port}?tls=ssl&timeout=5")
        with pytest.raises(TemporaryFailure, match="cannot connect"):
            strict.send(_message(), "digest@digest.test", ["reader@example.org"])
    assert handler.per_recipient() == {"reader@example.org": 1}
