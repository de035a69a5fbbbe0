"""Mail transports behind one method: ``send(message_bytes, sender, recipients) -> reply``.

``file://DIR`` writes one ``.eml`` per message (the embedded default), ``memory://`` keeps
messages in a list (tests, previews), ``smtp://`` speaks SMTP through a small pool of
reusable connections. Failures are sorted into temporary (retry later) and permanent
(bounce) so the delivery ledger can act on them without knowing the transport.
"""

from __future__ import annotations

import contextlib
import os
import queue
import smtplib
import ssl
import tempfile
import threading
import uuid
from collections.abc import Callable, Sequence
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any, Protocol, cast
from urllib.parse import parse_qs, unquote, urlsplit

from flask import Flask


class NoLeadingDots(bytes):
    """A message in which no line starts with ".": SMTP sends it without dot-stuffing.

    Fast assembly guarantees it (``digest.mail.fast``) and saves the transport a scan of
    every message; any other ``bytes`` is stuffed as RFC 5321 asks.
    """


class TransportError(Exception):
    """A message could not be handed over; ``code`` is the SMTP reply code when known."""

    def __init__(self, reply: str, code: int | None = None) -> None:
        super().__init__(reply)
        self.reply = reply
        self.code = code


class TemporaryFailure(TransportError):
    """Worth retrying later: 4xx replies, dropped or refused connections, timeouts."""


class PermanentFailure(TransportError):
    """The receiving side refused the message for good (5xx): a hard bounce."""


# Called by a transport before the point where the message becomes the receiver's (SMTP:
# before the final "."): the ledger finishes recording the previous message there. Called
# with block=False it only reports whether that is already done (True) without waiting.
Barrier = Callable[[bool], bool]


class Transport(Protocol):
    """Anything that can hand a finished message to the next hop."""

    def send(
        self,
        message_bytes: bytes,
        sender: str,
        recipients: Sequence[str],
        before_end: Barrier | None = None,
    ) -> str:
        """Deliver one message; return the server's reply or raise a ``TransportError``.

        ``before_end`` runs before the receiver can have accepted anything; if it raises, the
        message is abandoned unaccepted and the error propagates.
        """
        ...

    def close(self) -> None:
        """Release connections and files."""
        ...


class OutboxMessage(EmailMessage):
    """A message kept by the memory transport, parsed back, with its SMTP envelope."""

    envelope_from: str
    envelope_to: list[str]
    raw: bytes


class MemoryTransport:
    """Keeps every message in ``self.messages`` (parsed ``OutboxMessage`` objects)."""

    def __init__(self) -> None:
        self.messages: list[OutboxMessage] = []
        self._lock = threading.Lock()

    def send(
        self,
        message_bytes: bytes,
        sender: str,
        recipients: Sequence[str],
        before_end: Barrier | None = None,
    ) -> str:
        """Parse and keep the message; never fails."""
        if before_end is not None:
            before_end(True)
        message = cast(
            OutboxMessage,
            BytesParser(_class=OutboxMessage, policy=policy.default).parsebytes(message_bytes),
        )
        message.envelope_from = sender
        message.envelope_to = list(recipients)
        message.raw = message_bytes
        with self._lock:
            self.messages.append(message)
        return "250 kept in memory"

    def close(self) -> None:
        """Nothing to release; the messages stay readable."""


class FileTransport:
    """Writes each message to ``DIR/<time>-<uuid>.eml``: a temp file, then an atomic rename."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def send(
        self,
        message_bytes: bytes,
        sender: str,
        recipients: Sequence[str],
        before_end: Barrier | None = None,
    ) -> str:
        """Write the message so that a reader never sees half a file."""
        if before_end is not None:
            before_end(True)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            name = f"{uuid.uuid4().hex}.eml"
            fd, temp = tempfile.mkstemp(dir=self.directory, prefix=".", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(message_bytes)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temp, self.directory / name)
            except BaseException:
                Path(temp).unlink(missing_ok=True)
                raise
        except OSError as error:
            # A full disk or a read-only folder may clear up; keep the delivery for later.
            raise TemporaryFailure(f"cannot write to {self.directory}: {error}") from error
        return f"250 written {name}"

    def close(self) -> None:
        """Files are closed after each message."""


class SMTPSettings:
    """What ``smtp://user:pass@host:port?tls=starttls|ssl&pool=N&timeout=S`` says."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if not parts.hostname:
            raise ValueError(f"SMTP URL has no host: {url!r}")
        query = parse_qs(parts.query)
        self.host: str = parts.hostname
        self.tls: str = (query.get("tls") or ["none"])[0]
        if self.tls not in ("none", "starttls", "ssl"):
            raise ValueError(f"tls must be starttls or ssl, not {self.tls!r}")
        try:
            default_port = 465 if self.tls == "ssl" else 25
            self.port: int = parts.port or default_port
            self.pool_size: int = int((query.get("pool") or ["1"])[0])
            self.timeout: float = float((query.get("timeout") or ["30"])[0])
        except ValueError as error:
            raise ValueError(f"bad SMTP URL {url!r}: {error}") from error
        if self.pool_size < 1:
            raise ValueError("pool must be at least 1")
        self.username: str | None = unquote(parts.username) if parts.username else None
        self.password: str | None = unquote(parts.password) if parts.password else None
        # Tests against a loopback server with a self-signed certificate set verify=0.
        self.verify: bool = (query.get("verify") or ["1"])[0] not in ("0", "false", "no")
        self.local_hostname: str | None = (query.get("helo") or [""])[0] or None
        # pipelining=0 falls back to one command per round trip for servers that mishandle it.
        self.pipelining: bool = (query.get("pipelining") or ["1"])[0] not in ("0", "false", "no")


class SMTPTransport:
    """SMTP through a pool of connections kept open across messages.

    Each ``send`` borrows one connection; a connection that was dropped or answered 421 is
    thrown away and the next borrower opens a fresh one, so a relay restart costs one
    temporary failure, not the run.
    """

    def __init__(self, settings: SMTPSettings) -> None:
        self.settings = settings
        self._idle: queue.LifoQueue[smtplib.SMTP] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(settings.pool_size)
        self.connections_opened = 0

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if not self.settings.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        connection: smtplib.SMTP | None = None
        try:
            if s.tls == "ssl":
                connection = smtplib.SMTP_SSL(
                    s.host,
                    s.port,
                    timeout=s.timeout,
                    context=self._context(),
                    local_hostname=s.local_hostname,
                )
            else:
                connection = smtplib.SMTP(
                    s.host, s.port, timeout=s.timeout, local_hostname=s.local_hostname
                )
            connection.ehlo()
            if s.tls == "starttls":
                connection.starttls(context=self._context())
                connection.ehlo()
            if s.username:
                connection.login(s.username, s.password or "")
        except (smtplib.SMTPException, OSError) as error:
            # A half-opened connection (refused login, failed handshake) must not leak.
            if connection is not None:
                _quietly_close(connection)
            if isinstance(error, smtplib.SMTPResponseException):
                raise TemporaryFailure(
                    f"cannot connect to {s.host}:{s.port}: "
                    + _reply(error.smtp_code, error.smtp_error),
                    error.smtp_code,
                ) from error
            raise TemporaryFailure(f"cannot connect to {s.host}:{s.port}: {error}") from error
        self.connections_opened += 1
        return connection

    def send(
        self,
        message_bytes: bytes,
        sender: str,
        recipients: Sequence[str],
        before_end: Barrier | None = None,
    ) -> str:
        """Send over a pooled connection; sort any failure into temporary or permanent."""
        _refuse_unsafe_addresses(sender, recipients)
        with self._slots:
            try:
                connection = self._idle.get_nowait()
            except queue.Empty:
                connection = self._connect()
            keep = False
            try:
                reply = self._transact(connection, message_bytes, sender, recipients, before_end)
                keep = True
                return reply
            except PermanentFailure:
                keep = True
                raise
            except TemporaryFailure as error:
                # 421 means the server is closing the channel; other 4xx keep it usable.
                keep = error.code is not None and error.code != 421
                raise
            finally:
                if keep:
                    self._idle.put(connection)
                else:
                    _quietly_close(connection)

    def _transact(
        self,
        connection: smtplib.SMTP,
        message_bytes: bytes,
        sender: str,
        recipients: Sequence[str],
        before_end: Barrier | None,
    ) -> str:
        if (
            self.settings.pipelining
            and connection.has_extn("pipelining")
            and sender.isascii()
            and all(r.isascii() for r in recipients)
        ):
            return self._pipelined(connection, message_bytes, sender, recipients, before_end)
        if before_end is not None:
            before_end(True)
        try:
            refused = connection.sendmail(sender, list(recipients), message_bytes)
        except smtplib.SMTPRecipientsRefused as error:
            _reset(connection)
            codes = [code for code, _ in error.recipients.values()]
            code, text = next(iter(error.recipients.values()))
            if all(c >= 500 for c in codes):
                raise PermanentFailure(_reply(code, text), code) from error
            raise TemporaryFailure(_reply(code, text), code) from error
        except smtplib.SMTPResponseException as error:
            if error.smtp_code != 421:
                _reset(connection)
            kind = PermanentFailure if error.smtp_code >= 500 else TemporaryFailure
            raise kind(_reply(error.smtp_code, error.smtp_error), error.smtp_code) from error
        except (TimeoutError, smtplib.SMTPException, OSError) as error:
            raise TemporaryFailure(f"connection lost: {error}") from error
        if refused:
            # Several recipients and only some refused: report the first refusal.
            code, text = next(iter(refused.values()))
            kind = PermanentFailure if code >= 500 else TemporaryFailure
            raise kind(_reply(code, text), code)
        return "250 accepted"

    def _pipelined(
        self,
        connection: smtplib.SMTP,
        message_bytes: bytes,
        sender: str,
        recipients: Sequence[str],
        before_end: Barrier | None,
    ) -> str:
        """One transaction in two round trips (RFC 2920): MAIL, RCPT and DATA in one write.

        smtplib waits for each reply in turn, which costs two more round trips per message
        than a server offering PIPELINING needs.
        """
        size = f" SIZE={len(message_bytes)}" if connection.has_extn("size") else ""
        commands = (
            f"MAIL FROM:<{sender}>{size}\r\n"
            + "".join(f"RCPT TO:<{r}>\r\n" for r in recipients)
            + "DATA\r\n"
        )
        try:
            connection.send(commands)
            mail = connection.getreply()
            rcpts = [connection.getreply() for _ in recipients]
            data = connection.getreply()
            if data[0] == 354:
                if mail[0] != 250 or not any(code in (250, 251) for code, _ in rcpts):
                    # A server that starts DATA with nobody to deliver to: send nothing.
                    connection.send(b".\r\n")
                    connection.getreply()
                else:
                    body = (
                        message_bytes
                        if isinstance(message_bytes, NoLeadingDots)
                        else _dot_stuffed(message_bytes)
                    )
                    end = b".\r\n" if body.endswith(b"\r\n") else b"\r\n.\r\n"
                    if before_end is None or before_end(False):
                        # The usual case: the barrier is already passed; one write.
                        _write(connection, body, end)
                    else:
                        # Until the "." the server keeps nothing: the rest of the wait
                        # (the previous message's ledger commit) overlaps this transfer.
                        _write(connection, body)
                        before_end(True)
                        _write(connection, end)
                    data = connection.getreply()
        except (TimeoutError, smtplib.SMTPException, OSError) as error:
            raise TemporaryFailure(f"connection lost: {error}") from error
        failures = [
            (code, text) for code, text in [mail, *rcpts, data] if code not in (250, 251, 354)
        ]
        if mail[0] == 250 and data[0] == 250 and not failures:
            return _reply(*data)
        # The first real refusal says why (later ones are often "503 no valid recipients").
        code, text = next(
            ((c, t) for c, t in [mail, *rcpts] if c not in (250, 251)),
            failures[0] if failures else data,
        )
        if code != 421:
            _reset(connection)
        kind = PermanentFailure if code >= 500 else TemporaryFailure
        raise kind(_reply(code, text), code)

    def close(self) -> None:
        """QUIT every idle connection."""
        while True:
            try:
                connection = self._idle.get_nowait()
            except queue.Empty:
                return
            try:
                connection.quit()
            except (smtplib.SMTPException, OSError):
                _quietly_close(connection)


# A CR or LF would end the SMTP command early and let the rest of an address be read as a
# command of its own (RCPT TO another recipient); angle brackets would end the path. The
# pipelined path writes commands itself, so it cannot rely on smtplib's own check.
_UNSAFE_IN_ADDRESS = frozenset("\r\n<>\x00")


def _refuse_unsafe_addresses(sender: str, recipients: Sequence[str]) -> None:
    if not recipients:
        raise PermanentFailure("refused to send: no recipient")
    for address in (sender, *recipients):
        if _UNSAFE_IN_ADDRESS.intersection(address):
            raise PermanentFailure(
                f"refused to send: the address {address!r} holds characters that would "
                "break the SMTP command (CR, LF, NUL or angle brackets)"
            )


def _write(connection: smtplib.SMTP, *parts: bytes) -> None:
    """Send ``parts`` as one stream without joining them (a 70 KB copy per message):
    sendmsg gathers them; TLS sockets, which cannot, get them joined."""
    sock = connection.sock
    if sock is None:
        raise smtplib.SMTPServerDisconnected("the connection is closed")
    if isinstance(sock, ssl.SSLSocket):
        sock.sendall(b"".join(parts))
        return
    views = [memoryview(part) for part in parts if part]
    while views:
        sent = sock.sendmsg(views)
        while views and sent >= len(views[0]):
            sent -= len(views[0])
            views.pop(0)
        if views:
            views[0] = views[0][sent:]


def _dot_stuffed(data: bytes) -> bytes:
    """Double a "." that starts a line (RFC 5321 4.5.2); bytes.replace, not a regex: it is
    on the path of every message and a 70 KB digest makes the difference measurable."""
    data = data.replace(b"\n.", b"\n..")
    return b"." + data if data.startswith(b".") else data


def _reply(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {text}"


def _reset(connection: smtplib.SMTP) -> None:
    """Abort the half-done transaction so the connection can carry the next message."""
    try:
        connection.rset()
    except (smtplib.SMTPException, OSError):
        _quietly_close(connection)


def _quietly_close(connection: smtplib.SMTP) -> None:
    with contextlib.suppress(OSError):
        connection.close()


def get_transport(url: str) -> Transport:
    """Return the transport a ``MAIL_URL`` names (``file://``, ``memory://``, ``smtp://``)."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "memory":
        return MemoryTransport()
    if scheme == "file":
        path = unquote(urlsplit(url).path)
        if not path:
            raise ValueError(f"file transport needs a folder: {url!r}")
        return FileTransport(Path(path))
    if scheme in ("smtp", "smtps"):
        settings = SMTPSettings(url)
        if scheme == "smtps" and settings.tls == "none":
            settings.tls = "ssl"
            settings.port = urlsplit(url).port or 465
        return SMTPTransport(settings)
    raise ValueError(f"unknown mail transport {url!r}: use file://, smtp:// or memory://")


def app_transport(app: Flask) -> Transport:
    """The app's transport for ``MAIL_URL``, created once and kept on the app."""
    store: dict[str, Any] = app.extensions.setdefault("digest_mail", {})
    url = app.config["MAIL_URL"]
    if store.get("url") != url:
        store["transport"] = get_transport(url)
        store["url"] = url
    transport: Transport = store["transport"]
    return transport


def memory_outbox(app: Flask) -> list[OutboxMessage]:
    """The list of messages the app's ``memory://`` transport has kept."""
    transport = app_transport(app)
    if not isinstance(transport, MemoryTransport):
        raise TypeError(f"MAIL_URL is {app.config['MAIL_URL']!r}, not memory://")
    return transport.messages
