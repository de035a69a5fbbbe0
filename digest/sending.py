"""What editors do with an edition's mail: preview it as sent, test it, send, pause, cancel.

Each action is recorded in the audit trail with the editor and, when it comes from the web,
the address it came from (``ip``; the admin views pass the request's).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from sqlalchemy import func, select, update

from digest import audit
from digest.calendar import newsroom_zone, parse_send_at
from digest.database import execute_dml
from digest.extensions import DbSession
from digest.mail.assembly import MessageFactory
from digest.mail.delivery import (
    edition_categories,
    enqueue_message,
    queue_edition,
    resume_sending,
    sender_status,
    staff_mailbox,
)
from digest.mail.message import build_message, personal_links
from digest.models import (
    Delivery,
    DeliveryState,
    Edition,
    EditionStatus,
    Editor,
    Subscriber,
)
from digest.render import sample_personal

TEST_PREFIX = "[Test] "
# Why a row was cancelled by an editor: "send now" after a cancel queues these again.
CANCELLED_BY_EDITOR = "cancelled by an editor"


class SendingError(Exception):
    """The sending action cannot be done now; the message says why."""


@dataclass(frozen=True)
class Preview:
    """The parts of one built message an editor inspects."""

    message: EmailMessage
    subject: str
    headers: str
    html: str
    text: str
    language: str
    categories: tuple[str, ...]
    recipient: str


@dataclass(frozen=True)
class Progress:
    """Where an edition's sending stands, from its delivery rows."""

    status: str
    total: int
    queued: int
    sending: int
    sent: int
    failed: int
    bounced: int
    cancelled: int
    paused: str | None

    @property
    def finished(self) -> int:
        """Rows with a final outcome."""
        return self.sent + self.bounced + self.cancelled

    @property
    def done(self) -> bool:
        """Nothing is left to send (or retry)."""
        return self.total > 0 and self.queued + self.sending + self.failed == 0

    @property
    def percent(self) -> int:
        """Share of rows with a final outcome, 0-100."""
        return round(100 * self.finished / self.total) if self.total else 0

    def as_dict(self) -> dict[str, Any]:
        """The JSON the progress bar polls."""
        return {
            "status": self.status,
            "total": self.total,
            "queued": self.queued,
            "sending": self.sending,
            "sent": self.sent,
            "failed": self.failed,
            "bounced": self.bounced,
            "cancelled": self.cancelled,
            "paused": self.paused,
            "done": self.done,
            "percent": self.percent,
        }


def _raw_headers(message: EmailMessage) -> str:
    """The header block as it goes on the wire (folded and encoded)."""
    raw = message.as_bytes()
    for separator in (b"\r\n\r\n", b"\n\n"):
        head, found, _ = raw.partition(separator)
        if found:
            return head.decode("ascii", "replace").replace("\r\n", "\n")
    return raw.decode("ascii", "replace")


def _part(message: EmailMessage, subtype: str) -> str:
    body = message.get_body(preferencelist=(subtype,))
    if body is None:
        return ""
    content = body.get_content()
    return content if isinstance(content, str) else content.decode("utf-8", "replace")


def build_preview(
    session: DbSession,
    edition: Edition,
    config: Mapping[str, Any],
    *,
    subscriber: Subscriber | None = None,
    language: str = "fr",
    categories: Sequence[str] = (),
    recipient_email: str = "",
    now: dt.datetime | None = None,
) -> Preview:
    """The message a subscriber (or a stand-in reader of a variant) gets for ``edition``.

    The variant is chosen and rendered by the sender's own ``MessageFactory`` and the message
    built by ``build_message``, so the preview is what goes out. A stand-in gets the sample
    (non-personal) links instead of signed ones.
    """
    factory = MessageFactory(session, config)
    if subscriber is not None:
        reader = subscriber
        personal = personal_links(subscriber, edition)
    else:
        # Never added to the session: it only carries the variant's language and categories.
        reader = Subscriber(email=recipient_email, language=language, categories=list(categories))
        personal = sample_personal(edition, language)
    rendered = factory.variant(edition, reader)
    message = build_message(rendered, reader.email, personal, config, now=now)
    present = edition_categories(edition)
    wanted = set(reader.categories or ())
    shown = tuple(c for c in present if c in wanted) or tuple(present)
    return Preview(
        message=message,
        subject=str(message["Subject"]),
        headers=_raw_headers(message),
        html=_part(message, "html"),
        text=_part(message, "plain"),
        language=reader.language,
        categories=shown,
        recipient=reader.email,
    )


def send_test(
    session: DbSession,
    edition: Edition,
    editor: Editor,
    config: Mapping[str, Any],
    now: dt.datetime,
    *,
    ip: str | None = None,
) -> Delivery:
    """Queue the real message to the editor's own address, subject prefixed "[Test]".

    It goes through the delivery ledger like any mail. An editor who is not a subscriber gets
    a pending subscriber row (never sent digests) so the ledger has someone to deliver to.
    """
    subscriber = staff_mailbox(
        session, editor.email, "editor-test", str(config.get("DEFAULT_LANGUAGE", "fr")), now
    )
    preview = build_preview(session, edition, config, subscriber=subscriber, now=now)
    delivery = enqueue_message(
        session,
        subscriber,
        "test",
        TEST_PREFIX + preview.subject,
        preview.text,
        preview.html,
        now,
    )
    audit.record(
        session,
        "edition.test",
        now,
        editor=editor,
        target=edition.day.isoformat(),
        detail={"to": editor.email},
        ip=ip,
    )
    return delivery


def _local_moment(day: dt.date, hhmm: str, timezone: str) -> dt.datetime:
    hour, minute = parse_send_at(hhmm)
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=newsroom_zone(timezone))


def approval_gate(edition: Edition, now: dt.datetime, config: Mapping[str, Any]) -> str:
    """What the scheduled send may do with ``edition`` at ``now``: "send", "wait" or "hold".

    Without approval mode everything not held goes. In approval mode a draft waits for an
    editor until APPROVAL_DEADLINE on its day, then APPROVAL_FALLBACK decides.
    """
    if edition.status == EditionStatus.HELD:
        return "hold"
    if not config.get("APPROVAL_REQUIRED") or edition.status != EditionStatus.DRAFT:
        return "send"
    deadline = _local_moment(
        edition.day, str(config.get("APPROVAL_DEADLINE", "09:00")), str(config["TIMEZONE"])
    )
    if now < deadline:
        return "wait"
    return "send" if config.get("APPROVAL_FALLBACK") == "send" else "hold"


def hold_unapproved(session: DbSession, edition: Edition, now: dt.datetime) -> None:
    """The deadline passed without approval: hold the edition (recorded as the scheduler)."""
    edition.status = EditionStatus.HELD
    audit.record(
        session,
        "edition.hold",
        now,
        actor="scheduler",
        target=edition.day.isoformat(),
        detail={"reason": "no approval by deadline"},
    )
    session.commit()


def approve(
    session: DbSession,
    edition: Edition,
    editor: Editor,
    now: dt.datetime,
    config: Mapping[str, Any] | None = None,
    *,
    ip: str | None = None,
) -> int | None:
    """Approve a draft (or held) edition for the scheduled send.

    In approval mode an approval after SEND_AT on the edition's day sends at once (the
    scheduled moment has passed); returns how many deliveries that queued, else None.
    """
    if edition.is_frozen:
        raise SendingError(f"The edition is already {edition.status}.")
    edition.status = EditionStatus.APPROVED
    edition.approved_at = now
    audit.record(
        session, "edition.approve", now, editor=editor, target=edition.day.isoformat(), ip=ip
    )
    if config and config.get("APPROVAL_REQUIRED"):
        send_at = _local_moment(edition.day, str(config["SEND_AT"]), str(config["TIMEZONE"]))
        if now >= send_at:
            return send_now(session, edition, editor, now)
    return None


def hold(
    session: DbSession, edition: Edition, editor: Editor, now: dt.datetime, *, ip: str | None = None
) -> None:
    """Hold an edition: the scheduled send leaves it alone until someone sends it."""
    if edition.is_frozen:
        raise SendingError(f"The edition is already {edition.status}.")
    edition.status = EditionStatus.HELD
    edition.approved_at = None
    audit.record(session, "edition.hold", now, editor=editor, target=edition.day.isoformat(), ip=ip)


def send_now(
    session: DbSession, edition: Edition, editor: Editor, now: dt.datetime, *, ip: str | None = None
) -> int:
    """Freeze the edition and queue it for every subscriber; the workers deliver it.

    Returns how many deliveries were queued (rows an editor cancelled are queued again).
    """
    if edition.status == EditionStatus.SENT and not _has_cancelled_rows(session, edition):
        raise SendingError("This edition has been sent already.")
    if not edition.is_frozen:
        edition.status = EditionStatus.SENDING
        if edition.approved_at is None:
            edition.approved_at = now
    else:
        edition.status = EditionStatus.SENDING
    requeued = execute_dml(
        session,
        update(Delivery)
        .where(
            Delivery.edition_id == edition.id,
            Delivery.state == DeliveryState.CANCELLED,
            Delivery.last_error == CANCELLED_BY_EDITOR,
        )
        .values(state=DeliveryState.QUEUED, last_error=None, next_attempt_at=now),
    ).rowcount
    audit.record(session, "edition.send", now, editor=editor, target=edition.day.isoformat(), ip=ip)
    session.commit()
    queued = queue_edition(session, edition, now)
    return queued + (requeued or 0)


def _has_cancelled_rows(session: DbSession, edition: Edition) -> bool:
    return bool(
        session.scalar(
            select(func.count(Delivery.id)).where(
                Delivery.edition_id == edition.id,
                Delivery.state == DeliveryState.CANCELLED,
                Delivery.last_error == CANCELLED_BY_EDITOR,
            )
        )
    )


def pause(session: DbSession, editor: Editor, now: dt.datetime, *, ip: str | None = None) -> None:
    """Stop all sending after the messages in hand; nothing is lost, resume continues."""
    status = sender_status(session)
    status.paused = True
    status.paused_at = now
    status.reason = f"paused by {editor.email}"
    audit.record(session, "sending.pause", now, editor=editor, ip=ip)


def resume(session: DbSession, editor: Editor, now: dt.datetime, *, ip: str | None = None) -> None:
    """Let the workers send again."""
    audit.record(session, "sending.resume", now, editor=editor, ip=ip)
    resume_sending(session)


def cancel(
    session: DbSession, edition: Edition, editor: Editor, now: dt.datetime, *, ip: str | None = None
) -> int:
    """Cancel every delivery of the edition not yet handed over; returns how many.

    Messages already accepted by the mail server cannot be called back. An edition nobody
    received goes back to held (it may be edited again); otherwise it counts as sent.
    """
    cancelled = (
        execute_dml(
            session,
            update(Delivery)
            .where(
                Delivery.edition_id == edition.id,
                Delivery.state.in_([DeliveryState.QUEUED, DeliveryState.FAILED]),
            )
            .values(state=DeliveryState.CANCELLED, last_error=CANCELLED_BY_EDITOR),
        ).rowcount
        or 0
    )
    delivered = session.scalar(
        select(func.count(Delivery.id)).where(
            Delivery.edition_id == edition.id,
            Delivery.state.in_([DeliveryState.SENT, DeliveryState.BOUNCED, DeliveryState.SENDING]),
        )
    )
    if delivered:
        edition.status = EditionStatus.SENT
        edition.sent_at = edition.sent_at or now
    else:
        edition.status = EditionStatus.HELD
    audit.record(
        session,
        "edition.cancel",
        now,
        editor=editor,
        target=edition.day.isoformat(),
        detail={"cancelled": cancelled},
        ip=ip,
    )
    return cancelled


def finish_if_done(session: DbSession, edition: Edition, report: Progress) -> bool:
    """Mark a sending edition sent once its ledger has nothing left; True when it changed."""
    if edition.status != EditionStatus.SENDING or not report.done:
        return False
    edition.status = EditionStatus.SENT
    edition.sent_at = (
        session.scalar(select(func.max(Delivery.sent_at)).where(Delivery.edition_id == edition.id))
        or edition.sent_at
    )
    return True


def progress(session: DbSession, edition: Edition) -> Progress:
    """Counts of the edition's deliveries by state, and the pause switch."""
    counts = dict(
        session.execute(
            select(Delivery.state, func.count(Delivery.id))
            .where(Delivery.edition_id == edition.id)
            .group_by(Delivery.state)
        ).all()
    )
    status = sender_status(session)
    return Progress(
        status=edition.status,
        total=sum(counts.values()),
        queued=counts.get(DeliveryState.QUEUED, 0),
        sending=counts.get(DeliveryState.SENDING, 0),
        sent=counts.get(DeliveryState.SENT, 0),
        failed=counts.get(DeliveryState.FAILED, 0),
        bounced=counts.get(DeliveryState.BOUNCED, 0),
        cancelled=counts.get(DeliveryState.CANCELLED, 0),
        paused=(status.reason or "paused") if status.paused else None,
    )
