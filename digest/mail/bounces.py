"""Delivery status notifications in, ledger and subscriber updates out.

Bounces are read with flufl.bounce (the detectors GNU Mailman uses: RFC 3464 DSNs and the
formats of common servers). When ``MAIL_RETURN_PATH`` is set each message left with a VERP
envelope sender (``bounces+d<id>@domain``), so a bounce names the exact delivery even when
the report itself is vague; otherwise the failed addresses are matched to subscribers.
Applying the same report twice changes nothing: a delivery is marked bounced only once.
"""

from __future__ import annotations

import datetime as dt
import email
import logging
import mailbox
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path

from flufl.bounce import all_failures
from sqlalchemy import func, select

from digest.extensions import DbSession
from digest.mail.delivery import record_hard_bounce
from digest.models import Delivery, DeliveryState, Subscriber

# "bounces+d123@example.org": the delivery id a VERP return path carries.
_VERP = re.compile(r"\+d(\d+)@", re.IGNORECASE)
# Headers a bounce may carry the original envelope sender (our VERP address) in.
_VERP_HEADERS = ("To", "Delivered-To", "X-Original-To", "Envelope-To", "Return-Path")


class BounceSourceError(ValueError):
    """The path holds no readable mail (missing, empty, not a file, maildir or mbox)."""


@dataclass
class BounceReport:
    """What reading a batch of bounce messages did."""

    messages: int = 0
    hard: int = 0
    soft: int = 0
    suppressed: int = 0
    already_known: int = 0
    unmatched: list[str] = field(default_factory=list)
    not_bounces: int = 0
    unreadable: int = 0


def read_messages(path: Path) -> Iterator[tuple[str, bytes]]:
    """Yield (name, raw bytes) for a single message file, an mbox, a Maildir or a folder."""
    if not path.exists():
        raise BounceSourceError(f"{path} does not exist")
    if path.is_dir():
        if (path / "cur").is_dir() or (path / "new").is_dir():
            box = mailbox.Maildir(str(path), factory=None, create=False)
            for key in box.iterkeys():
                with box.get_file(key) as handle:
                    yield key, handle.read()
            return
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise BounceSourceError(f"{path} holds no message files")
        for item in files:
            yield item.name, item.read_bytes()
        return
    data = path.read_bytes()
    if not data.strip():
        raise BounceSourceError(f"{path} is empty")
    if data.startswith(b"From "):
        mbox = mailbox.mbox(str(path), create=False)
        try:
            for index, key in enumerate(mbox.iterkeys()):
                yield f"{path.name}#{index + 1}", mbox.get_bytes(key)
        finally:
            mbox.close()
        return
    yield path.name, data


def process_bounces(
    session: DbSession, path: Path, now: dt.datetime, bounce_limit: int
) -> BounceReport:
    """Read every message at ``path`` and apply the failures it reports."""
    report = BounceReport()
    for name, raw in read_messages(path):
        report.messages += 1
        apply_bounce(session, name, raw, now, bounce_limit, report)
    session.commit()
    return report


def apply_bounce(
    session: DbSession,
    name: str,
    raw: bytes,
    now: dt.datetime,
    bounce_limit: int,
    report: BounceReport,
) -> None:
    """Apply one bounce message's failures to the ledger (the caller commits)."""
    try:
        message = email.message_from_bytes(raw)
        temporary, permanent = all_failures(message)
    except Exception as error:  # the detectors are heuristics over hostile input
        logging.getLogger(__name__).warning("cannot read bounce %s: %s", name, error)
        report.unreadable += 1
        return
    hard = {_address(a) for a in permanent} - {""}
    soft = {_address(a) for a in temporary} - {""} - hard
    if not hard and not soft:
        report.not_bounces += 1
        return
    verp = _verp_delivery(session, message)
    targets_hard: list[tuple[str, Delivery | None]]
    targets_soft: list[tuple[str, Delivery | None]]
    if verp is not None:
        # The return path names the delivery: trust it even when the report names a
        # forwarded address the subscriber never gave us.
        targets_hard = [("verp", verp)] if hard else []
        targets_soft = [("verp", verp)] if soft and not hard else []
    else:
        targets_hard = [(a, _delivery_for(session, a)) for a in sorted(hard)]
        targets_soft = [(a, _delivery_for(session, a)) for a in sorted(soft)]
    for address, delivery in targets_hard:
        if delivery is None:
            report.unmatched.append(address)
            continue
        if delivery.state == DeliveryState.BOUNCED:
            report.already_known += 1
            continue
        delivery.state = DeliveryState.BOUNCED
        delivery.claimed_by = None
        delivery.last_error = f"bounce report {name}: permanent failure"
        report.hard += 1
        if record_hard_bounce(delivery.subscriber, bounce_limit, now):
            report.suppressed += 1
    for address, delivery in targets_soft:
        if delivery is None:
            report.unmatched.append(address)
            continue
        delivery.last_error = f"bounce report {name}: temporary failure (delayed)"
        report.soft += 1


def _address(value: bytes | str) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return text.strip().strip("<>").lower()


def _verp_delivery(session: DbSession, message: Message) -> Delivery | None:
    for header in _VERP_HEADERS:
        for value in message.get_all(header) or []:
            match = _VERP.search(str(value))
            if match:
                return session.get(Delivery, int(match.group(1)))
    return None


def _delivery_for(session: DbSession, address: str) -> Delivery | None:
    """The newest delivery sent to a failed address."""
    return session.scalars(
        select(Delivery)
        .join(Subscriber, Delivery.subscriber_id == Subscriber.id)
        .where(func.lower(Subscriber.email) == address)
        .where(Delivery.state.in_([DeliveryState.SENT, DeliveryState.BOUNCED]))
        .order_by(Delivery.sent_at.desc().nulls_last(), Delivery.id.desc())
        .limit(1)
    ).first()
