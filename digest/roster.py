"""The subscriber list as editors browse it: search and filters, and one reader's history."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import String, cast, func, or_, select

from digest.extensions import DbSession
from digest.models import Delivery, Subscriber


@dataclass(frozen=True)
class Filters:
    """What the editor asked for on the subscribers page."""

    query: str = ""
    status: str = ""
    category: str = ""
    language: str = ""


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def search(
    session: DbSession, filters: Filters, *, page: int = 1, size: int = 50
) -> tuple[Sequence[Subscriber], int]:
    """One page of subscribers matching ``filters`` (newest first) and the total count."""
    query = select(Subscriber)
    if filters.query:
        pattern = _like(filters.query.strip().lower())
        query = query.where(
            or_(
                func.lower(Subscriber.email).like(pattern, escape="\\"),
                func.lower(func.coalesce(Subscriber.name, "")).like(pattern, escape="\\"),
            )
        )
    if filters.status:
        query = query.where(Subscriber.status == filters.status)
    if filters.language:
        query = query.where(Subscriber.language == filters.language)
    if filters.category:
        # Categories are a JSON list; its text holds each chosen name in quotes on every backend.
        query = query.where(
            cast(Subscriber.categories, String).like(_like(f'"{filters.category}"'), escape="\\")
        )
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(Subscriber.created_at.desc(), Subscriber.id.desc())
        .limit(size)
        .offset((max(page, 1) - 1) * size)
    ).all()
    return rows, total


def history(session: DbSession, subscriber: Subscriber) -> Sequence[Delivery]:
    """Every mail to ``subscriber``, newest first: editions received, bounces, confirmations."""
    return session.scalars(
        select(Delivery)
        .where(Delivery.subscriber_id == subscriber.id)
        .order_by(Delivery.created_at.desc(), Delivery.id.desc())
    ).all()
