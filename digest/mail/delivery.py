"""The delivery ledger: queue one row per message, claim rows, send them, record the outcome.

States: ``queued`` -> ``sending`` (claimed by one live worker) -> ``sent``; or ``failed``
(temporary, retried at ``next_attempt_at``), ``bounced`` (permanent), ``cancelled`` (the
subscriber left before the message went out).

Crash safety: a worker marks each message ``sent`` in its own commit right after the server
accepted it (on PostgreSQL the commit travels while the next message is transferred, and is
confirmed before that message's final "."). A worker that dies leaves its claimed rows in
``sending``; the next worker sees that their owner is gone (its PostgreSQL advisory lock,
or the SQLite sender lock, was released by the operating system) and puts them back in the
queue. The only message that can arrive twice is the one the server had accepted when the
process died, before the ``sent`` commit: at most one per SMTP connection (see README,
"Delivery guarantees").
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import functools
import gc
import itertools
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import parseaddr
from select import select as wait_until_ready
from typing import Any

from flask import current_app
from sqlalchemy import Connection, and_, bindparam, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from digest.database import execute_dml
from digest.extensions import DbSession
from digest.mail.assembly import MessageFactory
from digest.mail.signing import SigningError
from digest.mail.transports import PermanentFailure, SMTPTransport, TemporaryFailure, Transport
from digest.mail.workers import SenderBusy, WorkerLease
from digest.models import (
    Delivery,
    DeliveryState,
    Edition,
    EditionStatus,
    SenderStatus,
    Subscriber,
    SubscriberStatus,
)

__all__ = [
    "DeliveryReport",
    "EditionHeld",
    "SendResult",
    "SenderBusy",
    "deliver_pending",
    "edition_categories",
    "enqueue_message",
    "finish_editions",
    "notice_payload",
    "queue_edition",
    "send_edition",
]

Clock = Callable[[], dt.datetime]


@dataclass
class DeliveryReport:
    """What one ``deliver_pending`` run did."""

    sent: int = 0
    retried: int = 0
    bounced: int = 0
    cancelled: int = 0
    recovered: int = 0
    paused: str | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def handled(self) -> int:
        """Messages that got an outcome in this run."""
        return self.sent + self.retried + self.bounced + self.cancelled


def enqueue_message(
    session: DbSession,
    subscriber: Subscriber,
    kind: str,
    subject: str,
    text: str,
    html: str | None,
    now: dt.datetime,
) -> Delivery:
    """Queue a transactional mail (confirmation, notice) through the ledger; caller commits."""
    if not subject.strip():
        raise ValueError("a message needs a subject")
    if kind == "digest":
        raise ValueError("digests are queued with queue_edition")
    delivery = Delivery(
        kind=kind,
        subscriber=subscriber,
        state=DeliveryState.QUEUED,
        attempts=0,
        created_at=now,
        next_attempt_at=now,
        payload={"subject": subject, "text": text, "html": html},
    )
    session.add(delivery)
    session.flush()
    return delivery


# Mail the newsroom's own staff asked for (a test of the edition, an editor's invitation):
# it goes whatever the address's standing as a reader, since unsubscribing from the digest
# is no refusal of these.
STAFF_KINDS: frozenset[str] = frozenset({"test", "invite"})


def staff_mailbox(
    session: DbSession, email: str, source: str, language: str, now: dt.datetime
) -> Subscriber:
    """The ledger row that mail to a staff address goes to; created (pending) when missing.

    A pending row is never sent a digest (only active readers are), so this adds no reader.
    """
    subscriber = session.scalar(select(Subscriber).where(Subscriber.email == email))
    if subscriber is None:
        subscriber = Subscriber(
            email=email,
            status=SubscriberStatus.PENDING,
            language=language,
            consent_source=source,
            created_at=now,
        )
        session.add(subscriber)
        session.flush()
    return subscriber


# A notice's links to sign when it is sent: template name -> purpose, or -> {"purpose": ...,
# "extra": {...}} for a link that carries extra signed data (``notice_payload``).
NoticeLinks = Mapping[str, str | Mapping[str, Any]]


def notice_payload(
    template: str, context: dict[str, Any], links: NoticeLinks | None = None
) -> dict[str, Any]:
    """What a notice's ledger row stores: its template, JSON context and links to sign.

    ``links`` maps a name in the template to a link purpose (``{"confirm_url": "confirm"}``),
    or to a purpose and the extra data its token carries (``{"confirm_url": {"purpose":
    "email", "extra": {"from": 7, "v": 2}}}``); the sender signs them for the mail's
    recipient when it sends (``digest.mail.assembly.notice_context``).
    """
    payload: dict[str, Any] = {"template": template, "context": context}
    if links:
        payload["links"] = links
    return payload


def edition_categories(edition: Edition) -> list[str]:
    """Categories that have something in the edition (lead included), in section order."""
    snapshot = edition.snapshot or {}
    found: list[str] = []
    lead = snapshot.get("lead")
    if lead and lead.get("category"):
        found.append(lead["category"])
    for section in snapshot.get("sections") or []:
        if section.get("items") and section.get("category") not in found:
            found.append(section["category"])
    return found


def queue_edition(session: DbSession, edition: Edition, now: dt.datetime) -> int:
    """Queue the edition for every active subscriber it has something for; returns rows added.

    Idempotent and safe to run concurrently: the unique (edition, subscriber) constraint
    with ON CONFLICT DO NOTHING means a second run, or a second scheduler, adds nothing.
    """
    present = set(edition_categories(edition))
    candidates = session.execute(
        select(Subscriber.id, Subscriber.categories, Subscriber.paused_until)
        .where(Subscriber.status == SubscriberStatus.ACTIVE)
        .where(
            ~select(Delivery.id)
            .where(Delivery.edition_id == edition.id, Delivery.subscriber_id == Subscriber.id)
            .exists()
        )
        .order_by(Subscriber.id)
        # Streamed in slices: 100,000 readers' preferences are never all in memory at once.
        .execution_options(yield_per=5000)
    )
    wanted: list[int] = []
    for part in candidates.partitions():
        wanted.extend(
            subscriber_id
            for subscriber_id, categories, paused_until in part
            if (not present or present & set(categories or ()))
            and (paused_until is None or paused_until < edition.day)
        )
    candidates.close()
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    # One small statement run for many rows (not one giant VALUES list per chunk, whose
    # compiled form would sit in the statement cache); RETURNING counts real inserts.
    statement = (
        insert(Delivery)
        .on_conflict_do_nothing(index_elements=["edition_id", "subscriber_id"])
        .returning(Delivery.id)
    )
    added = 0
    for start in range(0, len(wanted), 1000):
        rows = [
            {
                "kind": "digest",
                "edition_id": edition.id,
                "subscriber_id": subscriber_id,
                "state": DeliveryState.QUEUED,
                "attempts": 0,
                "created_at": now,
                "next_attempt_at": now,
            }
            for subscriber_id in wanted[start : start + 1000]
        ]
        added += len(session.execute(statement, rows).all())
    session.commit()
    if added >= 1000 and session.get_bind().dialect.name == "postgresql":
        # Fresh statistics before the first claim: planned on the empty table's, a claim
        # sorts every queued row instead of reading the claim index in order.
        session.execute(text("ANALYZE deliveries"))
        session.commit()
    return added


# Rows that still have somewhere to go: an edition with one of these is not finished.
OPEN_STATES = (DeliveryState.QUEUED, DeliveryState.SENDING, DeliveryState.FAILED)


def finish_editions(
    session: DbSession, now: dt.datetime, delivery_ids: Sequence[int] | None = None
) -> int:
    """Mark "sent" every sending edition whose deliveries all have a final state.

    Its finished time is its last message's ``sent_at`` (``now`` when none was accepted).
    Called by each sender after each batch, so the edition is finished by whichever process
    delivers its last message; ``delivery_ids`` limits the check to the batch's editions.
    One conditional UPDATE: two senders finishing at once both run it, the second changes
    nothing. An edition with no deliveries yet is left alone (its rows may be being queued).
    """
    here = Delivery.edition_id == Edition.id
    statement = (
        update(Edition)
        .where(
            Edition.status == EditionStatus.SENDING,
            select(Delivery.id).where(here).exists(),
            ~select(Delivery.id).where(here, Delivery.state.in_(OPEN_STATES)).exists(),
        )
        .values(
            status=EditionStatus.SENT,
            sent_at=func.coalesce(
                select(func.max(Delivery.sent_at)).where(here).scalar_subquery(), now
            ),
        )
        .execution_options(synchronize_session=False)
    )
    if delivery_ids is not None:
        statement = statement.where(
            Edition.id.in_(select(Delivery.edition_id).where(Delivery.id.in_(delivery_ids)))
        )
    finished = int(execute_dml(session, statement).rowcount or 0)
    session.commit()
    return finished


def pending_count(session: DbSession, now: dt.datetime, edition: Edition | None = None) -> int:
    """How many messages are waiting (queued, due for retry, or held by a worker)."""
    query = select(func.count(Delivery.id)).where(
        or_(
            Delivery.state.in_([DeliveryState.QUEUED, DeliveryState.SENDING]),
            and_(Delivery.state == DeliveryState.FAILED, Delivery.next_attempt_at <= now),
        )
    )
    if edition is not None:
        query = query.where(Delivery.edition_id == edition.id)
    return session.scalar(query) or 0


def sender_status(session: DbSession) -> SenderStatus:
    """The pause switch row, created on first use."""
    status = session.get(SenderStatus, 1)
    if status is None:
        # Several workers may start at once on an empty table: the first insert wins and
        # the others find its row, instead of failing on the primary key.
        insert = (
            postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
        )
        session.execute(
            insert(SenderStatus)
            .values(id=1, paused=False, consecutive_errors=0)
            .on_conflict_do_nothing(index_elements=["id"])
        )
        status = session.get(SenderStatus, 1)
        assert status is not None
    return status


def resume_sending(session: DbSession) -> None:
    """Clear an automatic pause (an editor decided the cause is fixed)."""
    status = sender_status(session)
    status.paused = False
    status.reason = None
    status.paused_at = None
    status.consecutive_errors = 0
    session.commit()


@dataclass
class _Settings:
    sender: str
    return_path: str | None
    batch_size: int
    retry_seconds: float
    max_attempts: int
    bounce_limit: int
    pause_after: int
    rate: float
    hourly_limit: int

    @classmethod
    def from_config(cls, config: Any) -> _Settings:
        return cls(
            sender=config["MAIL_FROM"],
            return_path=config.get("MAIL_RETURN_PATH"),
            batch_size=int(config.get("MAIL_BATCH_SIZE", 200)),
            retry_seconds=float(config.get("MAIL_RETRY_SECONDS", 300)),
            max_attempts=int(config.get("MAIL_MAX_ATTEMPTS", 8)),
            bounce_limit=int(config.get("MAIL_BOUNCE_LIMIT", 2)),
            pause_after=int(config.get("MAIL_PAUSE_AFTER", 25)),
            rate=float(config.get("MAIL_RATE", 0) or 0),
            hourly_limit=int(config.get("MAIL_HOURLY_LIMIT", 0) or 0),
        )


def envelope_sender(settings_return_path: str | None, from_header: str, delivery_id: int) -> str:
    """The SMTP MAIL FROM: VERP (``local+d<id>@domain``) when a return path is configured."""
    if settings_return_path:
        local, _, domain = settings_return_path.partition("@")
        return f"{local}+d{delivery_id}@{domain}"
    return _address_of(from_header)


@functools.lru_cache(maxsize=16)
def _address_of(from_header: str) -> str:
    # Parsed once per run rather than once per message.
    return parseaddr(from_header)[1]


def retry_delay(attempts: int, base_seconds: float, rng: random.Random) -> dt.timedelta:
    """Exponential backoff with full jitter around the nominal delay, capped at a day."""
    nominal = min(base_seconds * (2 ** max(attempts - 1, 0)), 86400.0)
    return dt.timedelta(seconds=nominal * (0.5 + rng.random()))


class Pacer:
    """Keeps the send rate under ``rate`` per second and ``hourly`` per sliding hour."""

    def __init__(
        self,
        rate: float,
        hourly: int,
        sent_last_hour: Callable[[], int],
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.hourly = hourly
        self.sent_last_hour = sent_last_hour
        self.monotonic = monotonic
        self.sleep = sleep
        self._next = 0.0
        self._window_used: int | None = None
        self._lock = threading.Lock()

    def hourly_budget_left(self) -> int | None:
        """Messages still allowed this hour (None: no hourly limit)."""
        if not self.hourly:
            return None
        if self._window_used is None:
            self._window_used = self.sent_last_hour()
        return max(self.hourly - self._window_used, 0)

    def wait(self) -> None:
        """Block until the next message may go (safe from several sending threads)."""
        if self.interval:
            with self._lock:
                current = self.monotonic()
                if current < self._next:
                    self.sleep(self._next - current)
                    current = self._next
                self._next = max(current, self._next) + self.interval

    def count(self) -> None:
        """One more message went out."""
        with self._lock:
            if self._window_used is not None:
                self._window_used += 1


def deliver_pending(
    session: DbSession,
    transport: Transport,
    now: dt.datetime,
    limit: int | None = None,
    *,
    clock: Clock | None = None,
    progress: Callable[[int], None] | None = None,
    rng: random.Random | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> DeliveryReport:
    """Send what is due, in claimed batches, recording each outcome as it happens.

    ``now`` is when the run starts; ``clock`` (default: ``now`` plus elapsed monotonic time)
    stamps outcomes in long runs. ``progress`` is called with the number of messages handled.
    Raises ``SenderBusy`` on SQLite when another sender holds the database.
    """
    from digest.settings import effective_config

    # Read at each run: an admin's change of sender reaches the next run of every worker.
    config = effective_config(session, current_app.config)
    settings = _Settings.from_config(config)
    start = time.monotonic()
    clock = clock or (lambda: now + dt.timedelta(seconds=time.monotonic() - start))
    rng = rng or random.Random()
    report = DeliveryReport()
    status = sender_status(session)
    session.commit()
    if status.paused:
        report.paused = status.reason or "sending is paused"
        return report

    factory = MessageFactory(session, config)
    pacer = Pacer(
        settings.rate,
        settings.hourly_limit,
        lambda: _sent_since(session, clock() - dt.timedelta(hours=1)),
    )
    run = _Run(
        session=session,
        transport=transport,
        settings=settings,
        factory=factory,
        pacer=pacer,
        clock=clock,
        rng=rng,
        report=report,
        progress=progress,
        should_stop=should_stop,
        consecutive_errors=status.consecutive_errors or 0,
    )
    ledger = _Ledger(session)
    with (
        WorkerLease(session) as lease,
        _kept_after_commit(session),
        _closing(ledger),
        _long_lived_objects_frozen(),
    ):
        report.recovered = lease.recover_abandoned()
        remaining = limit
        while remaining is None or remaining > 0:
            if run.stop_requested():
                break
            batch_size = (
                settings.batch_size if remaining is None else min(settings.batch_size, remaining)
            )
            budget = pacer.hourly_budget_left()
            if budget is not None:
                if budget == 0:
                    report.errors.append("hourly limit reached; the rest waits for the window")
                    break
                batch_size = min(batch_size, budget)
            claimed = _claim(session, lease.token, clock(), batch_size)
            if not claimed:
                break
            stopped = _send_batch(run, ledger, claimed)
            # Nothing of this batch stays in flight past it (release_claims below must not
            # put back a row whose "sent" is still on its way).
            ledger.settle()
            # Whichever sender delivers an edition's last message finishes the edition (after
            # the settle above, so this batch's outcomes are all visible).
            finish_editions(session, clock(), claimed)
            if remaining is not None:
                remaining -= len(claimed)
            if stopped:
                break
        # Anything still claimed (pause, stop request) goes back to the queue untouched.
        lease.release_claims()
        status = sender_status(session)
        if not status.paused and status.consecutive_errors != run.consecutive_errors:
            status.consecutive_errors = run.consecutive_errors
            session.commit()
    return report


@contextmanager
def _closing(ledger: _Ledger) -> Iterator[None]:
    try:
        yield
    finally:
        ledger.close()


@contextmanager
def _long_lived_objects_frozen() -> Iterator[None]:
    """Keep the garbage collector off what existed before the run (app, models, catalogues).

    A run allocates enough per message to trigger collections, and each full one walked
    every object of the process: about a sixth of the sender's CPU at 20,000 messages.
    Frozen objects are only skipped, not kept: unfreezing at the end hands them back.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextmanager
def _kept_after_commit(session: DbSession) -> Iterator[None]:
    """Keep loaded objects (editions, the status row) usable across the per-message commits.

    Expiring everything on each commit would reload the edition for every message.
    """
    target = session() if callable(session) else session  # scoped_session -> Session
    previous = target.expire_on_commit
    target.expire_on_commit = False
    try:
        yield
    finally:
        target.expire_on_commit = previous


def _sent_since(session: DbSession, since: dt.datetime) -> int:
    return (
        session.scalar(
            select(func.count(Delivery.id)).where(
                Delivery.state == DeliveryState.SENT, Delivery.sent_at >= since
            )
        )
        or 0
    )


def _claim(session: DbSession, token: str, now: dt.datetime, size: int) -> list[int]:
    """Atomically move up to ``size`` due rows to ``sending`` for this worker.

    PostgreSQL: each inner SELECT ... FOR UPDATE SKIP LOCKED lets concurrent workers take
    disjoint batches without waiting on each other. SQLite has no row locks (the clause is
    not rendered there); the UPDATEs run under the database write lock, and only one sender
    runs per SQLite database (WorkerLease), so batches cannot overlap either.

    Transactional mail (a confirmation someone is waiting for) goes before digests, and
    retries that are due before first attempts. Each of the four kinds is one range of the
    (state, edition_id, id) index read in order, so a claim reads about ``size`` index
    entries however many rows wait (one query with an OR and a sort read them all: ~50 ms
    per batch at 100,000 queued).
    """
    queued = Delivery.state == DeliveryState.QUEUED
    due_retry = and_(Delivery.state == DeliveryState.FAILED, Delivery.next_attempt_at <= now)
    transactional, digest = Delivery.edition_id.is_(None), Delivery.edition_id.is_not(None)
    kinds = (
        (transactional, due_retry),
        (transactional, queued),
        (digest, due_retry),
        (digest, queued),
    )
    ids: list[int] = []
    for kind, state in kinds:
        if len(ids) >= size:
            break
        due = (
            select(Delivery.id)
            .where(kind, state)
            .order_by(Delivery.state, Delivery.edition_id, Delivery.id)
            .limit(size - len(ids))
            .with_for_update(skip_locked=True)
        )
        result = session.execute(
            update(Delivery)
            .where(Delivery.id.in_(due.scalar_subquery()))
            .where(Delivery.state.in_([DeliveryState.QUEUED, DeliveryState.FAILED]))
            .values(state=DeliveryState.SENDING, claimed_by=token, claimed_at=now)
            .returning(Delivery.id)
            .execution_options(synchronize_session=False)
        )
        ids.extend(result.scalars().all())
    session.commit()
    return sorted(ids)


@dataclass
class Job:
    """One claimed row, read as plain values (no ORM object to expire or flush per message)."""

    id: int
    kind: str
    edition_id: int | None
    created_at: dt.datetime | None
    payload: dict[str, Any] | None
    attempts: int


_BATCH_COLUMNS = (
    Delivery.id,
    Delivery.kind,
    Delivery.edition_id,
    Delivery.created_at,
    Delivery.payload,
    Delivery.attempts,
    Subscriber.id,
    Subscriber.email,
    Subscriber.name,
    Subscriber.language,
    Subscriber.categories,
    Subscriber.status,
    Subscriber.token_version,
)


@dataclass(slots=True)
class _Run:
    """What every message of one ``deliver_pending`` run shares, batch after batch."""

    session: DbSession
    transport: Transport
    settings: _Settings
    factory: MessageFactory
    pacer: Pacer
    clock: Clock
    rng: random.Random
    report: DeliveryReport
    progress: Callable[[int], None] | None
    should_stop: Callable[[], bool] | None
    # Errors in a row, across batches and runs (the status row keeps it between runs).
    consecutive_errors: int

    def stop_requested(self) -> bool:
        return self.should_stop is not None and self.should_stop()

    def tick(self) -> None:
        """One more message handled, for the progress bar."""
        if self.progress is not None:
            self.progress(1)

    def count(self, outcome: str) -> bool:
        """Count one message's outcome; whether the errors in a row have now reached
        ``pause_after``, the point where sending must pause."""
        if outcome == "ok":
            self.consecutive_errors = 0
        elif outcome == "error":
            self.consecutive_errors += 1
            limit = self.settings.pause_after
            return bool(limit) and self.consecutive_errors >= limit
        return False

    def pause(self, detail: str) -> None:
        """Pause all sending until an editor resumes it, saying why (``detail``: the last
        error's reply)."""
        status = sender_status(self.session)
        status.consecutive_errors = self.consecutive_errors
        status.paused = True
        status.paused_at = self.clock()
        status.reason = f"paused after {self.consecutive_errors} consecutive errors; last: {detail}"
        self.report.paused = status.reason
        self.session.commit()


def _send_batch(run: _Run, ledger: _Ledger, ids: list[int]) -> bool:
    """Send one claimed batch; True when the run must stop (paused or asked to stop)."""
    session = run.session
    rows = session.execute(
        select(*_BATCH_COLUMNS)
        .join(Subscriber, Delivery.subscriber_id == Subscriber.id)
        .where(Delivery.id.in_(ids))
        .order_by(Delivery.id)
    ).all()
    session.commit()
    threads = _parallelism(session, run.transport)
    if threads > 1:
        return _send_parallel(run, rows, threads)
    for row in rows:
        if run.stop_requested():
            return True
        outcome, detail = _deliver_one(run, ledger, Job(*row[:6]), _reader(row), run.report)
        run.tick()
        if run.count(outcome):
            run.pause(detail)
            return True
    return False


@dataclass(slots=True)
class Reader:
    """The subscriber as one message needs it, read with the claimed row.

    Plain values, not a transient ``Subscriber``: the ORM's instrumented constructor costs
    more than the rest of a message's bookkeeping.
    """

    id: int
    email: str
    name: str | None
    language: str
    categories: list[str] | None
    status: str
    token_version: int | None


def _reader(row: Any) -> Reader:
    return Reader(*row[6:13])


def _parallelism(session: DbSession, transport: Transport) -> int:
    """SMTP connections one sender uses at once: the pool size, on PostgreSQL only.

    Each thread records outcomes on a connection of its own; SQLite has one writer.
    """
    if session.get_bind().dialect.name != "postgresql":
        return 1
    if isinstance(transport, SMTPTransport):
        return transport.settings.pool_size
    return 1


def _send_parallel(run: _Run, rows: Sequence[Any], threads: int) -> bool:
    """``_send_batch`` over ``threads`` SMTP connections at once (PostgreSQL).

    Variants are rendered here first, so the threads only fill slots, talk SMTP and record
    outcomes, each on its own database connection. At most ``threads`` messages are inside an
    SMTP transaction at any moment: that many may be sent twice if the process is killed.
    """
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    items = [(Job(*row[:6]), _reader(row)) for row in rows]
    for job, reader in items:
        if job.edition_id is not None:
            # A failure here is recorded on the row by the thread that meets it again.
            with contextlib.suppress(Exception):
                run.factory.prepared(run.factory.edition(job.edition_id), reader)
    # One ledger per thread, kept for the whole batch: a thread's mark in flight is settled
    # before that same thread's next message can be accepted, so at most ``threads``
    # accepted messages are unrecorded at any moment.
    own = threading.local()
    opened = [_Ledger(run.session) for _ in range(threads)]
    spare: queue.SimpleQueue[_Ledger] = queue.SimpleQueue()
    for ledger in opened:
        spare.put(ledger)
    halt = threading.Event()
    counting = threading.Lock()
    # The last reply of the error that reached pause_after, once one has.
    pausing: list[str] = []

    def work(item: tuple[Job, Reader]) -> DeliveryReport | None:
        if halt.is_set() or run.stop_requested():
            return None
        job, reader = item
        mine = DeliveryReport()
        ledger = getattr(own, "ledger", None)
        if ledger is None:
            # The pool never runs more than ``threads`` threads: one spare each.
            ledger = own.ledger = spare.get_nowait()
        with app.app_context():
            outcome, detail = _deliver_one(run, ledger, job, reader, mine)
        # Counted as each message ends (not in the batch's order), so the error that
        # reaches pause_after stops the other connections before they take another one.
        with counting:
            if run.count(outcome) and not halt.is_set():
                halt.set()
                pausing.append(detail)
        return mine

    stopped = False
    try:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for mine in pool.map(work, items):
                if mine is None:
                    stopped = True
                    continue
                report = run.report
                report.sent += mine.sent
                report.retried += mine.retried
                report.bounced += mine.bounced
                report.cancelled += mine.cancelled
                report.errors.extend(mine.errors)
                run.tick()
    finally:
        with contextlib.ExitStack() as closing:
            for ledger in opened:
                closing.callback(ledger.close)
    # After the threads: the session is this thread's alone.
    if pausing:
        run.pause(pausing[0])
    return stopped or halt.is_set()


class _Ledger:
    """Writes each message's outcome in its own commit: the crash-safety line (module doc).

    On PostgreSQL outcomes go through a connection of their own in autocommit mode with
    asynchronous commit: one round trip per message. The commit is visible to other workers
    at once, and a killed sender cannot lose it (the server has it); only a crash of the
    database server itself could, and then the message is sent again rather than lost.
    Elsewhere (SQLite) the session's own connection is used.

    ``mark_sent`` on PostgreSQL sends its UPDATE without waiting for the answer; ``settle``
    waits for it. The sender calls ``settle`` (as the transport's ``before_end`` barrier)
    before the next message's final "." and before any other write, so the round trip
    overlaps the next message's transfer while at most one accepted message per connection
    is ever unrecorded: the same boundary as a synchronous commit.
    """

    _names = itertools.count(1)

    def __init__(self, session: DbSession) -> None:
        self.session = session
        self._statements: dict[tuple[tuple[str, ...], bool], Any] = {}
        self._compiled: dict[tuple[tuple[str, ...], bool], tuple[str, dict[str, Any]]] = {}
        self._connection: Connection | None = None
        self._pgconn: Any = None
        self._mark_sent_name = b""
        self._in_flight = False
        if session.get_bind().dialect.name == "postgresql":
            connection = session.get_bind().connect()  # type: ignore[union-attr]
            self._connection = connection.execution_options(isolation_level="AUTOCOMMIT")
            self._connection.execute(text("SET synchronous_commit TO OFF"))
            # libpq's asynchronous calls (psycopg.pq) on the same session: PQsendQueryPrepared
            # ends in a Sync, so each mark is its own autocommitted transaction.
            self._pgconn = self._connection.connection.driver_connection.pgconn  # type: ignore[union-attr]
            self._mark_sent_name = f"digest_mark_sent_{next(self._names)}".encode("ascii")
            prepared = self._pgconn.prepare(
                self._mark_sent_name,
                b"UPDATE deliveries SET state = 'sent', sent_at = $2, message_id = $3,"
                b" last_reply = $4, last_error = NULL, claimed_by = NULL,"
                b" attempts = attempts + 1 WHERE id = $1",
            )
            _check(prepared)

    def mark_sent(self, job_id: int, sent_at: dt.datetime, message_id: str, reply: str) -> None:
        """Record that the server accepted the message (on PostgreSQL: in flight until settled)."""
        if self._pgconn is None:
            self.outcome(
                job_id,
                {
                    "state": DeliveryState.SENT,
                    "sent_at": sent_at,
                    "message_id": message_id,
                    "last_reply": reply,
                    "last_error": None,
                },
            )
            return
        self.settle()
        parameters = [
            str(job_id).encode("ascii"),
            sent_at.isoformat().encode("ascii"),
            message_id.encode("utf-8"),
            reply.encode("utf-8"),
        ]
        self._pgconn.send_query_prepared(self._mark_sent_name, parameters)
        self._in_flight = True

    def settle(self, block: bool = True) -> bool:
        """Wait until the mark in flight (if any) is committed; raise if it failed.

        With ``block=False`` only look: False means the mark is still on its way.
        """
        if not self._in_flight:
            return True
        pgconn = self._pgconn
        pgconn.consume_input()
        if pgconn.is_busy():
            if not block:
                return False
            while pgconn.is_busy():
                # select() lets other sending threads run while this one waits.
                wait_until_ready([pgconn.socket], [], [])
                pgconn.consume_input()
        self._in_flight = False
        results = []
        while (result := pgconn.get_result()) is not None:
            results.append(result)
        for result in results:
            _check(result)
        return True

    def _statement(self, keys: tuple[str, ...], attempt: bool) -> Any:
        statement = self._statements.get((keys, attempt))
        if statement is None:
            values: dict[str, Any] = {key: bindparam(f"v_{key}") for key in keys}
            values["claimed_by"] = None
            if attempt:
                values["attempts"] = Delivery.attempts + 1
            statement = update(Delivery).where(Delivery.id == bindparam("job_id")).values(values)
            self._statements[(keys, attempt)] = statement
        return statement

    def outcome(self, job_id: int, values: dict[str, Any], *, attempt: bool = True) -> None:
        """Record one delivery's new state (and count the attempt) in its own commit."""
        keys = tuple(sorted(values))
        parameters = {"job_id": job_id, **{f"v_{key}": values[key] for key in keys}}
        statement = self._statement(keys, attempt)
        if self._connection is not None:
            self.settle()
            # The SQL is compiled once per shape; per message only the driver runs.
            compiled = self._compiled.get((keys, attempt))
            if compiled is None:
                done = statement.compile(dialect=self._connection.dialect)
                compiled = (str(done), dict(done.params))
                self._compiled[(keys, attempt)] = compiled
            sql, defaults = compiled
            defaults.update(
                {k: (str(v) if isinstance(v, enum.Enum) else v) for k, v in parameters.items()}
            )
            self._connection.exec_driver_sql(sql, defaults)
        else:
            self.session.execute(
                statement, parameters, execution_options={"synchronize_session": False}
            )
            self.session.commit()

    def execute(self, statement: Any) -> None:
        """Run one more statement (subscriber bookkeeping) and commit it."""
        if self._connection is not None:
            self.settle()
            self._connection.execute(statement)
        else:
            self.session.execute(statement, execution_options={"synchronize_session": False})
            self.session.commit()

    def close(self) -> None:
        """Finish the mark in flight and give the connection back as it was."""
        connection = self._connection
        if connection is None:
            return
        try:
            self.settle()
            connection.exec_driver_sql(f"DEALLOCATE {self._mark_sent_name.decode('ascii')}")
            connection.execute(text("RESET synchronous_commit"))
        except BaseException:
            # A connection left mid-command must not go back to the pool.
            connection.invalidate()
            raise
        finally:
            connection.close()
            self._connection = None
            self._pgconn = None


def _check(result: Any) -> None:
    """Raise the database's error for a failed libpq result."""
    from psycopg import pq

    if result.status not in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK):
        message = (result.error_message or b"").decode("utf-8", "replace").strip()
        raise LedgerError(f"cannot record a delivery outcome: {message}")


class LedgerError(RuntimeError):
    """The database refused to record an outcome."""


def _deliver_one(
    run: _Run, ledger: _Ledger, job: Job, reader: Reader, report: DeliveryReport
) -> tuple[str, str]:
    """Send one message, commit its outcome and count it in ``report``; returns
    ("ok"|"error"|"skip", detail)."""
    settings, clock = run.settings, run.clock
    # A paused reader gets no digest, but does get the link they just asked for.
    allowed = (
        (SubscriberStatus.ACTIVE,)
        if job.kind == "digest"
        else (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING, SubscriberStatus.PAUSED)
    )
    if reader.status not in allowed and job.kind not in STAFF_KINDS:
        ledger.outcome(
            job.id,
            {"state": DeliveryState.CANCELLED, "last_error": f"subscriber is {reader.status}"},
            attempt=False,
        )
        report.cancelled += 1
        return "skip", ""
    try:
        message_id, message_bytes = run.factory.assemble(job, reader, clock())
    except SigningError:
        raise
    except Exception as error:
        # Any failure to build one message (a broken edition, a missing template) is recorded
        # on that row and retried later; it must not stop the other subscribers' mail.
        detail = f"cannot build the message: {error}"
        _fail(run, ledger, job, detail, None, report)
        return "error", detail
    run.pacer.wait()
    try:
        reply = run.transport.send(
            message_bytes,
            envelope_sender(settings.return_path, settings.sender, job.id),
            [reader.email],
            before_end=ledger.settle,
        )
    except PermanentFailure as error:
        ledger.outcome(
            job.id,
            {
                "state": DeliveryState.BOUNCED,
                "last_reply": error.reply,
                "last_error": "rejected by the receiving server",
            },
        )
        # After the delivery: a crash in between undercounts a bounce, never counts one twice.
        ledger.execute(
            update(Subscriber)
            .where(Subscriber.id == reader.id)
            .values(bounce_count=func.coalesce(Subscriber.bounce_count, 0) + 1)
        )
        if settings.bounce_limit:
            ledger.execute(
                update(Subscriber)
                .where(
                    Subscriber.id == reader.id,
                    Subscriber.bounce_count >= settings.bounce_limit,
                    Subscriber.status.in_([SubscriberStatus.ACTIVE, SubscriberStatus.PENDING]),
                )
                .values(status=SubscriberStatus.BOUNCED)
            )
        report.bounced += 1
        return "ok", error.reply
    except TemporaryFailure as error:
        _fail(run, ledger, job, "temporary failure", error.reply, report)
        return "error", error.reply
    # This commit is the line between "sent" and "will be sent again after a crash"; on
    # PostgreSQL it completes before the next message can be accepted (``before_end``).
    ledger.mark_sent(job.id, clock(), message_id, reply)
    run.pacer.count()
    report.sent += 1
    return "ok", reply


def _fail(
    run: _Run,
    ledger: _Ledger,
    job: Job,
    error: str,
    reply: str | None,
    report: DeliveryReport,
) -> None:
    settings = run.settings
    attempts = job.attempts + 1
    values: dict[str, Any] = {"last_error": error, "last_reply": reply}
    if attempts >= settings.max_attempts:
        values["state"] = DeliveryState.BOUNCED
        values["last_error"] = f"gave up after {attempts} attempts: {error}"
        report.bounced += 1
    else:
        values["state"] = DeliveryState.FAILED
        values["next_attempt_at"] = run.clock() + retry_delay(
            attempts, settings.retry_seconds, run.rng
        )
        report.retried += 1
    ledger.outcome(job.id, values)
    report.errors.append(f"{job.id}: {reply or error}")


def record_hard_bounce(subscriber: Subscriber, limit: int, now: dt.datetime) -> bool:
    """Count a permanent failure; suppress the subscriber at ``limit``. True if suppressed."""
    subscriber.bounce_count = (subscriber.bounce_count or 0) + 1
    if (
        limit
        and subscriber.bounce_count >= limit
        and subscriber.status
        in (
            SubscriberStatus.ACTIVE,
            SubscriberStatus.PENDING,
        )
    ):
        subscriber.status = SubscriberStatus.BOUNCED
        return True
    return False


class EditionHeld(LookupError):
    """An editor held the edition: it is not sent until released."""


@dataclass
class SendResult:
    """What ``send_edition`` did: rows added to the queue, the delivery run, what is left."""

    edition: Edition
    queued: int
    report: DeliveryReport
    remaining: int


def send_edition(
    session: DbSession,
    transport: Transport,
    day: dt.date,
    now: dt.datetime,
    limit: int | None = None,
    *,
    on_start: Callable[[int], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> SendResult:
    """Build the day's edition if missing, freeze it, queue it, deliver what is due."""
    edition = session.scalar(select(Edition).where(Edition.day == day))
    if edition is None:
        from digest.jobs import prepare_edition

        edition = prepare_edition(session, day, now)
        session.commit()
    if edition.status == EditionStatus.HELD:
        raise EditionHeld(f"the edition of {day.isoformat()} is held by an editor")
    if not edition.is_frozen:
        # From here on the content may not change: subscribers must all get the same edition.
        edition.status = EditionStatus.SENDING
        session.commit()
    queued = queue_edition(session, edition, now)
    if on_start is not None:
        due = pending_count(session, now)
        on_start(due if limit is None else min(due, limit))
    report = deliver_pending(session, transport, now, limit, progress=progress)
    remaining = (
        session.scalar(
            select(func.count(Delivery.id)).where(
                Delivery.edition_id == edition.id,
                Delivery.state.in_(
                    [DeliveryState.QUEUED, DeliveryState.SENDING, DeliveryState.FAILED]
                ),
            )
        )
        or 0
    )
    # The sender finished it if its last message went in this run; reread what it wrote.
    session.refresh(edition)
    if remaining == 0 and edition.status != EditionStatus.SENT:
        # Nobody to send to (or every row was already final): finished now.
        edition.status = EditionStatus.SENT
        edition.sent_at = now
        session.commit()
    return SendResult(edition=edition, queued=queued, report=report, remaining=remaining)
