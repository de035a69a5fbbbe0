"""The data of one newsroom: sources, articles, editions, subscribers, deliveries, editors."""

from __future__ import annotations

import datetime as dt
import enum
from typing import TYPE_CHECKING, Any, ClassVar

from flask_login import UserMixin
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from digest.extensions import Base, db

if TYPE_CHECKING:
    # mypy cannot take an attribute such as ``db.Model`` as a base class (python/mypy#8603).
    # Flask-SQLAlchemy builds ``db.Model`` from ``Base``'s body, with the same metadata and
    # registry, so ``Base`` describes it; at runtime the models keep ``db.Model``.
    class Model(Base):
        # DeclarativeBase says FromClause (a class may map a SELECT); every model here maps a Table.
        __table__: ClassVar[Table]
else:
    Model = db.Model

# The order sections appear in by default; "other" is the fallback for low confidence.
CATEGORIES: tuple[str, ...] = ("politics", "economy", "sport", "health", "other")
LANGUAGES: tuple[str, ...] = ("fr", "en", "es")


def utcnow() -> dt.datetime:
    """Aware UTC now, for column defaults only (services take ``now`` as an argument)."""
    return dt.datetime.now(dt.UTC)


class EditionStatus(enum.StrEnum):
    DRAFT = "draft"
    APPROVED = "approved"
    SENDING = "sending"
    SENT = "sent"
    HELD = "held"


class SubscriberStatus(enum.StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    PAUSED = "paused"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"


class DeliveryState(enum.StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    BOUNCED = "bounced"
    CANCELLED = "cancelled"


article_sources = Table(
    "article_sources",
    db.metadata,
    Column("article_id", ForeignKey("articles.id", ondelete="CASCADE"), primary_key=True),
    Column("source_id", ForeignKey("sources.id", ondelete="CASCADE"), primary_key=True),
)


class Source(Model):
    """A place news comes from: a seed dump, a feed, an article page."""

    __tablename__ = "sources"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # "seed", "feed", "page"
    location: Mapped[str] = mapped_column(String(2000), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    last_fetched_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str | None] = mapped_column(String(20))  # "ok", "unchanged", "error"
    last_error: Mapped[str | None] = mapped_column(Text)
    etag: Mapped[str | None] = mapped_column(String(500))
    last_modified: Mapped[str | None] = mapped_column(String(100))

    articles: Mapped[list[Article]] = relationship(
        secondary=article_sources, back_populates="sources"
    )


class Article(Model):
    """One headline or full article, deduplicated by ``fingerprint``."""

    __tablename__ = "articles"

    id: Mapped[int] = mapped_column(primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(Text)
    # Normalized title used for matching (NFC, plain spaces and quotes, lower case).
    title_key: Mapped[str] = mapped_column(Text, index=True)
    url: Mapped[str | None] = mapped_column(String(2000), index=True)
    guid: Mapped[str | None] = mapped_column(String(2000), index=True)
    source_name: Mapped[str | None] = mapped_column(String(200))
    author: Mapped[str | None] = mapped_column(String(200))
    summary: Mapped[str | None] = mapped_column(Text)
    # Full text as blocks: [{"type": "paragraph"|"heading"|"question"|"quote", "text": ...}].
    blocks: Mapped[list[dict[str, str]] | None] = mapped_column(JSON)
    image_url: Mapped[str | None] = mapped_column(String(2000))
    published_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    language: Mapped[str | None] = mapped_column(String(8))
    category: Mapped[str | None] = mapped_column(String(20), index=True)
    category_confidence: Mapped[float | None] = mapped_column(Float)
    category_evidence: Mapped[list[str] | None] = mapped_column(JSON)
    # True once an editor set the category: re-classification and re-ingest leave it alone.
    category_by_editor: Mapped[bool] = mapped_column(Boolean, default=False)
    story_key: Mapped[str | None] = mapped_column(String(64), index=True)
    # True once an editor merged or split the story: clustering leaves the key alone.
    story_by_editor: Mapped[bool] = mapped_column(Boolean, default=False)
    excluded: Mapped[bool] = mapped_column(Boolean, default=False)
    first_seen_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    sources: Mapped[list[Source]] = relationship(
        secondary=article_sources, back_populates="articles"
    )

    @property
    def is_full(self) -> bool:
        """Whether the body of the article is known, not only its headline."""
        return bool(self.blocks)


class Edition(Model):
    """One day's digest. ``snapshot`` freezes its items so a sent edition never changes."""

    __tablename__ = "editions"

    id: Mapped[int] = mapped_column(primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, unique=True)
    status: Mapped[str] = mapped_column(String(20), default=EditionStatus.DRAFT)
    lead_article_id: Mapped[int | None] = mapped_column(
        ForeignKey("articles.id", ondelete="SET NULL")
    )
    lead_pinned: Mapped[bool] = mapped_column(Boolean, default=False)
    intro: Mapped[str | None] = mapped_column(Text)
    # {"lead": item|None, "sections": [{"category": str, "items": [item, ...]}]}
    # where item = {"article_id", "title", "url", "source", "published_at" (ISO), "language",
    #               "category", "summary", "paragraphs": [...], "quote", "related": [item...]}
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    approved_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

    lead_article: Mapped[Article | None] = relationship()

    @property
    def is_frozen(self) -> bool:
        """Once sending starts the edition's content may no longer change."""
        return self.status in (EditionStatus.SENDING, EditionStatus.SENT)


class Subscriber(Model):
    """A reader, with consent record and preferences."""

    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    language: Mapped[str] = mapped_column(String(8), default="fr")
    categories: Mapped[list[str]] = mapped_column(JSON, default=lambda: list(CATEGORIES))
    status: Mapped[str] = mapped_column(String(20), default=SubscriberStatus.PENDING)
    token_version: Mapped[int] = mapped_column(Integer, default=1)
    consent_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    consent_ip: Mapped[str | None] = mapped_column(String(64))
    consent_source: Mapped[str | None] = mapped_column(String(64))  # "web", "import", ...
    consent_user_agent: Mapped[str | None] = mapped_column(String(300))
    confirmed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    unsubscribed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    paused_until: Mapped[dt.date | None] = mapped_column(Date)
    bounce_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Delivery(Model):
    """One message to one subscriber: a digest (edition set) or a transactional mail."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("edition_id", "subscriber_id"),
        # The sender's claim walks this index in order (state, then transactional mail
        # before digests, oldest first) instead of sorting every queued row per batch.
        Index("ix_deliveries_claim", "state", "edition_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), default="digest")  # "digest", "confirm", ...
    edition_id: Mapped[int | None] = mapped_column(ForeignKey("editions.id", ondelete="CASCADE"))
    # Indexed: a sign-up counts the address's mails of the last day (the daily cap), and an
    # export or erasure finds them all; without it each of those scans every delivery, so a
    # known address would answer measurably slower than a new one.
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    state: Mapped[str] = mapped_column(String(20), default=DeliveryState.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_reply: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(String(300))
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    claimed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # The worker holding a row in "sending"; a dead worker's rows go back to the queue.
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # For transactional mail: what to put in it (e.g. {"token": ...}); digests use the edition.
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    edition: Mapped[Edition | None] = relationship()
    subscriber: Mapped[Subscriber] = relationship()


class SenderStatus(Model):
    """The single row saying whether sending is paused (after repeated errors) and why."""

    __tablename__ = "sender_status"

    id: Mapped[int] = mapped_column(primary_key=True)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str | None] = mapped_column(Text)
    paused_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    consecutive_errors: Mapped[int] = mapped_column(Integer, default=0)


class Editor(UserMixin, Model):
    """A person allowed into /admin."""

    __tablename__ = "editors"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(300))
    role: Mapped[str] = mapped_column(String(20), default="editor")  # "admin" or "editor"
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # Bumped by "log out everywhere": sessions carry it and stop matching.
    session_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    def get_id(self) -> str:
        """Session id that changes when the editor logs out everywhere."""
        return f"{self.id}:{self.session_version}"


class Correction(Model):
    """An editor's category fix; the categorizer learns from these."""

    __tablename__ = "corrections"

    id: Mapped[int] = mapped_column(primary_key=True)
    article_id: Mapped[int | None] = mapped_column(ForeignKey("articles.id", ondelete="SET NULL"))
    editor_id: Mapped[int | None] = mapped_column(ForeignKey("editors.id", ondelete="SET NULL"))
    text: Mapped[str] = mapped_column(Text)
    language: Mapped[str | None] = mapped_column(String(8))
    old_category: Mapped[str | None] = mapped_column(String(20))
    new_category: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Heartbeat(Model):
    """The last time a long-running process (e.g. the scheduler) said it was alive."""

    __tablename__ = "heartbeats"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    beat_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class AuditEvent(Model):
    """One editor action (or failed login attempt): who, what, when, from where."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, index=True
    )
    editor_id: Mapped[int | None] = mapped_column(ForeignKey("editors.id", ondelete="SET NULL"))
    # The address as typed or as it was then: kept when the editor row is deleted.
    actor: Mapped[str | None] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(40), index=True)  # "login", "correction", ...
    target: Mapped[str | None] = mapped_column(String(300))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Failed logins are counted per address from here (lockout per IP).
    ip: Mapped[str | None] = mapped_column(String(64), index=True)


class ScheduledRun(Model):
    """One run of a scheduled job (the daily pipeline): when, what came of it, and why."""

    __tablename__ = "scheduled_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    job: Mapped[str] = mapped_column(String(40))  # "daily"
    day: Mapped[dt.date] = mapped_column(Date, index=True)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # "running", then "sent", "wait" / "hold" (approval mode), "nothing" or "failed".
    outcome: Mapped[str] = mapped_column(String(20), default="running")
    detail: Mapped[str | None] = mapped_column(Text)
    edition_id: Mapped[int | None] = mapped_column(ForeignKey("editions.id", ondelete="SET NULL"))


class Setting(Model):
    """An admin's run-time value for one config.py setting; without a row, config.py decides."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # The admin's address as it was then (kept when the account is removed).
    updated_by: Mapped[str | None] = mapped_column(String(320))
