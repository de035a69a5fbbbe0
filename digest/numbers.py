"""The numbers editors look at: per edition outcomes, the audience, category popularity."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

from sqlalchemy import func, select

from digest.extensions import DbSession
from digest.models import (
    CATEGORIES,
    Delivery,
    DeliveryState,
    Edition,
    Subscriber,
    SubscriberStatus,
)


@dataclass
class EditionNumbers:
    """What happened to one edition's mail."""

    edition: Edition
    recipients: int = 0
    delivered: int = 0
    failed: int = 0
    bounced: int = 0
    cancelled: int = 0
    pending: int = 0
    unsubscribed_after: int = 0
    reasons: list[tuple[str, int]] = field(default_factory=list)


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def edition_numbers(session: DbSession, limit: int = 14) -> list[EditionNumbers]:
    """The latest ``limit`` editions, newest first, with their delivery outcomes."""
    editions = list(session.scalars(select(Edition).order_by(Edition.day.desc()).limit(limit)))
    if not editions:
        return []
    ids = [edition.id for edition in editions]
    counts: dict[int, Counter[str]] = {edition_id: Counter() for edition_id in ids}
    for edition_id, state, count in session.execute(
        select(Delivery.edition_id, Delivery.state, func.count(Delivery.id))
        .where(Delivery.edition_id.in_(ids), Delivery.kind == "digest")
        .group_by(Delivery.edition_id, Delivery.state)
    ):
        # A transactional mail has no edition, but in_(ids) leaves those rows out.
        counts[cast(int, edition_id)][state] = count
    reasons: dict[int, Counter[str]] = {edition_id: Counter() for edition_id in ids}
    for edition_id, error, reply, count in session.execute(
        select(Delivery.edition_id, Delivery.last_error, Delivery.last_reply, func.count())
        .where(
            Delivery.edition_id.in_(ids),
            Delivery.state.in_([DeliveryState.FAILED, DeliveryState.BOUNCED]),
        )
        .group_by(Delivery.edition_id, Delivery.last_error, Delivery.last_reply)
    ):
        reason = " — ".join(part for part in (error, reply) if part) or "unknown"
        reasons[cast(int, edition_id)][reason[:200]] += count
    # "Unsubscribed after it": readers of the edition who left before the next one went out.
    starts = {e.id: _utc(e.sent_at) or _utc(e.approved_at) for e in editions}
    by_day = sorted(editions, key=lambda e: e.day)
    ends: dict[int, dt.datetime | None] = {}
    for index, edition in enumerate(by_day):
        following = by_day[index + 1] if index + 1 < len(by_day) else None
        ends[edition.id] = starts.get(following.id) if following is not None else None
    result = []
    for edition in editions:
        tally = counts[edition.id]
        numbers = EditionNumbers(
            edition=edition,
            recipients=sum(tally.values()),
            delivered=tally[DeliveryState.SENT],
            failed=tally[DeliveryState.FAILED],
            bounced=tally[DeliveryState.BOUNCED],
            cancelled=tally[DeliveryState.CANCELLED],
            pending=tally[DeliveryState.QUEUED] + tally[DeliveryState.SENDING],
            reasons=reasons[edition.id].most_common(5),
        )
        start = starts[edition.id]
        if start is not None:
            left = select(func.count(Subscriber.id)).where(
                Subscriber.id.in_(
                    select(Delivery.subscriber_id).where(
                        Delivery.edition_id == edition.id, Delivery.state == DeliveryState.SENT
                    )
                ),
                Subscriber.unsubscribed_at >= start,
            )
            end = ends[edition.id]
            if end is not None:
                left = left.where(Subscriber.unsubscribed_at < end)
            numbers.unsubscribed_after = session.scalar(left) or 0
        result.append(numbers)
    return result


def status_counts(session: DbSession) -> list[tuple[str, int]]:
    """How many subscribers are in each status, in the lifecycle's order."""
    found = dict(
        session.execute(
            select(Subscriber.status, func.count(Subscriber.id)).group_by(Subscriber.status)
        ).all()
    )
    return [(status.value, int(found.get(status.value, 0))) for status in SubscriberStatus]


def category_popularity(
    session: DbSession, categories: Sequence[str] = CATEGORIES
) -> list[tuple[str, int]]:
    """How many active subscribers chose each category."""
    tally: Counter[str] = Counter()
    for chosen in session.scalars(
        select(Subscriber.categories).where(Subscriber.status == SubscriberStatus.ACTIVE)
    ):
        tally.update(set(chosen or ()))
    return [(category, tally[category]) for category in categories]


def audience_over_time(
    session: DbSession, today: dt.date, days: int = 30
) -> list[tuple[dt.date, int]]:
    """Confirmed readers who had not left, at the end of each of the last ``days`` days.

    Bounced addresses carry no date of leaving, so they are left out of the whole history.
    """
    rows = session.execute(
        select(Subscriber.confirmed_at, Subscriber.unsubscribed_at).where(
            Subscriber.confirmed_at.is_not(None), Subscriber.status != SubscriberStatus.BOUNCED
        )
    ).all()
    spans = [(_utc(joined), _utc(left)) for joined, left in rows]
    points = []
    for offset in range(days - 1, -1, -1):
        day = today - dt.timedelta(days=offset)
        end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=dt.UTC)
        count = sum(
            1
            for joined, left in spans
            if joined is not None and joined < end and (left is None or left >= end)
        )
        points.append((day, count))
    return points
