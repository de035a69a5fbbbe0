"""A real SMTP server on loopback (aiosmtpd) that records what it accepted and can misbehave."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

from aiosmtpd.controller import Controller

# A policy returns None to accept, an SMTP reply ("451 try later") to refuse, or "drop" to
# cut the connection without answering.
Policy = Callable[[str], str | None]


@dataclass
class Received:
    """One message the server accepted, for one recipient."""

    sender: str
    recipient: str
    data: bytes

    @property
    def message(self) -> EmailMessage:
        """The message parsed back with the stdlib parser."""
        parsed = BytesParser(policy=policy.default).parsebytes(self.data)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class RecordingHandler:
    """aiosmtpd handler: keeps accepted messages; policies decide refusals per recipient."""

    received: list[Received] = field(default_factory=list)
    rcpt_policy: Policy | None = None
    data_policy: Policy | None = None
    connections: int = 0
    # Seconds to wait before answering DATA: makes a run long enough to be interrupted.
    delay: float = 0.0
    # Advertise PIPELINING (aiosmtpd reads pipelined commands in order but does not say so).
    pipelining: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        with self.lock:
            self.connections += 1
        session.host_name = hostname
        if self.pipelining:
            responses.insert(1, "250-PIPELINING")
        return responses

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        reply = self.rcpt_policy(address) if self.rcpt_policy else None
        if reply == "drop":
            server.transport.close()
            return "421 closing"
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        recipient = envelope.rcpt_tos[0]
        reply = self.data_policy(recipient) if self.data_policy else None
        if reply == "drop":
            server.transport.close()
            return "421 closing"
        if reply:
            return reply
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.received.append(
                    Received(
                        envelope.mail_from,
                        rcpt,
                        bytes(envelope.original_content or envelope.content),
                    )
                )
        return "250 Message accepted"

    def per_recipient(self) -> Counter[str]:
        """How many messages each recipient got."""
        with self.lock:
            return Counter(item.recipient for item in self.received)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def smtp_server(
    handler: RecordingHandler | None = None, port: int | None = None, **kwargs: Any
) -> Iterator[tuple[RecordingHandler, int]]:
    """Run a recording SMTP server on 127.0.0.1 for the duration of the block."""
    handler = handler or RecordingHandler()
    port = port or free_port()
    controller = Controller(
        handler, hostname="127.0.0.1", port=port, data_size_limit=None, **kwargs
    )
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()
