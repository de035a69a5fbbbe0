"""Unsubscribing: from the preference centre, by an editor, or with a one-click link (RFC 8058)."""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any, NamedTuple

from sqlalchemy import bindparam, null, select
from sqlalchemy.engine import Dialect

from digest import tokens
from digest.database import driver_connection
from digest.extensions import DbSession, db
from digest.models import Delivery, DeliveryState, Subscriber, SubscriberStatus
from digest.subscriptions.statements import (
    _autocommit,
    _commit_first,
    _deliveries,
    _DriverStatement,
    _sqlite_transaction,
    _subscribers,
)


def unsubscribe(session: DbSession, subscriber: Subscriber, now: dt.datetime) -> bool:
    """Stop every mail to ``subscriber``; returns False when they had already left."""
    if subscriber.status == SubscriberStatus.UNSUBSCRIBED:
        return False
    subscriber.status = SubscriberStatus.UNSUBSCRIBED
    subscriber.unsubscribed_at = now
    subscriber.paused_until = None
    _cancel_queued(session, subscriber)
    session.commit()
    return True


def _cancel_queued(session: DbSession, subscriber: Subscriber) -> None:
    """Digests queued but not yet sent must not go out after the reader leaves."""
    for delivery in session.scalars(
        select(Delivery).where(
            Delivery.subscriber_id == subscriber.id,
            Delivery.state == DeliveryState.QUEUED,
            Delivery.kind == "digest",
        )
    ):
        delivery.state = DeliveryState.CANCELLED


# ---------------------------------------------------- one-click unsubscribe (RFC 8058)


def unsubscribe_by_link(session: DbSession, token: str, now: dt.datetime) -> bool:
    """``unsubscribe`` the reader an unsubscribe link was made for, with nothing but the link.

    What a mail client's one-click POST asks for, kept as cheap as a new address's sign-up:
    the link is checked in Python first, then PostgreSQL runs one statement in autocommit and
    SQLite a few in one transaction, through the driver, with no ORM object. The same changes
    as ``unsubscribe`` (queued digests cancelled, other mail kept); False when the reader
    had already left. Raises a ``tokens.TokenError``: ``Revoked`` when the subscriber is
    gone or their links were revoked since.
    """
    claim = tokens.check_link(token, "unsubscribe", now=now)
    _commit_first(session)
    engine = db.engine
    statement = _leave_statement(engine.dialect)
    values = {
        **_LEAVE_WORDS,
        "subscriber_id": claim.subscriber_id,
        "token_version": claim.token_version,
        "now": now,
    }
    with driver_connection(engine) as driver:
        for _attempt in range(3):
            standing = statement.run(driver, values)
            if standing is None or standing.token_version != claim.token_version:
                raise tokens.Revoked("the link no longer works")
            if standing.left_now:
                return True
            if standing.status == SubscriberStatus.UNSUBSCRIBED:
                return False
            # The row changed after the statement's snapshot and before its update (another
            # click at the same moment, a revoked link): decide again from the row as it is.
    raise RuntimeError(f"subscriber {claim.subscriber_id} kept changing during an unsubscribe")


class _Standing(NamedTuple):
    """The subscriber as an unsubscribe statement found them, and whether it made them leave."""

    left_now: bool
    token_version: int
    status: str


# The fixed words of the unsubscribe statements, as parameters: their values, not the
# enums (psycopg would send an Enum's name).
_LEAVE_WORDS: dict[str, str] = {
    "unsubscribed": SubscriberStatus.UNSUBSCRIBED.value,
    "queued": DeliveryState.QUEUED.value,
    "cancelled": DeliveryState.CANCELLED.value,
    "digest": "digest",
}


def _leave_update() -> Any:
    """UPDATE the link's subscriber to unsubscribed, if the link's version holds and they
    have not left already; as ``unsubscribe`` does."""
    return (
        _subscribers.update()
        .where(
            _subscribers.c.id == bindparam("subscriber_id"),
            _subscribers.c.token_version == bindparam("token_version"),
            _subscribers.c.status != bindparam("unsubscribed"),
        )
        .values(
            status=bindparam("unsubscribed"),
            unsubscribed_at=bindparam("now", type_=_subscribers.c.unsubscribed_at.type),
            paused_until=null(),
        )
    )


def _cancel_digests(whose: Any) -> Any:
    """UPDATE the queued digests of the subscribers ``whose`` names to cancelled, as
    ``_cancel_queued`` does; transactional mail and digests already sent stay."""
    return (
        _deliveries.update()
        .where(
            whose,
            _deliveries.c.state == bindparam("queued"),
            _deliveries.c.kind == bindparam("digest"),
        )
        .values(state=bindparam("cancelled"))
    )


class _LeaveStatement:
    """The one-click unsubscribe for PostgreSQL: one statement, compiled once, in autocommit.

    Its last part reads the row from the statement's snapshot, as it was before the update,
    which is what tells a reader who had already left from a revoked link.
    """

    def __init__(self, dialect: Dialect) -> None:
        gone = _leave_update().returning(_subscribers.c.id).cte("gone")
        cancelled = _cancel_digests(_deliveries.c.subscriber_id.in_(select(gone.c.id)))
        standing = (
            select(select(gone.c.id).exists(), _subscribers.c.token_version, _subscribers.c.status)
            .where(_subscribers.c.id == bindparam("subscriber_id"))
            .add_cte(cancelled.cte("cancelled"))
        )
        self.statement = _DriverStatement(standing, dialect)

    def run(self, driver: Any, values: dict[str, Any]) -> _Standing | None:
        """Unsubscribe if the link holds; the subscriber's standing, or None if unknown."""
        # One round trip: the statement is its own transaction.
        with _autocommit(driver):
            found = self.statement.execute(driver, values)
        return None if found is None else _Standing(*found)


class _LeaveStatementsSqlite(_LeaveStatement):
    """The one-click unsubscribe for SQLite, which has no UPDATE in a WITH: the update, then
    the digests' or a look at the row, in one transaction."""

    def __init__(self, dialect: Dialect) -> None:
        self.leave = _DriverStatement(_leave_update().returning(_subscribers.c.id), dialect)
        self.cancel = _DriverStatement(
            _cancel_digests(_deliveries.c.subscriber_id == bindparam("subscriber_id")), dialect
        )
        standing = select(_subscribers.c.token_version, _subscribers.c.status).where(
            _subscribers.c.id == bindparam("subscriber_id")
        )
        self.standing = _DriverStatement(standing, dialect)

    def run(self, driver: Any, values: dict[str, Any]) -> _Standing | None:
        """Unsubscribe if the link holds; the subscriber's standing, or None if unknown."""
        with _sqlite_transaction(driver, immediate=False):
            if self.leave.execute(driver, values) is not None:
                self.cancel.execute(driver, values)
                found: _Standing | None = _Standing(
                    True, values["token_version"], values["unsubscribed"]
                )
            else:
                # In the update's transaction, which holds SQLite's write lock: the row as
                # the update saw it.
                row = self.standing.execute(driver, values)
                found = None if row is None else _Standing(False, *row)
        return found


@functools.lru_cache(maxsize=8)
def _leave_statement(dialect: Dialect) -> _LeaveStatement:
    # Per dialect object (each engine has its own): its compiled SQL and type conversions.
    if dialect.name == "postgresql":
        return _LeaveStatement(dialect)
    return _LeaveStatementsSqlite(dialect)
