"""The preference centre: categories, language and name, pauses, and the change of address."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    and_,
    bindparam,
    delete,
    literal_column,
    select,
    union_all,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect

from digest import tokens
from digest.database import driver_connection
from digest.extensions import DbSession, db
from digest.models import CATEGORIES, Delivery, Subscriber, SubscriberStatus
from digest.subscriptions.addresses import (
    EmailTaken,
    clean_categories,
    clean_language,
    find_by_email,
    normalize_email,
)
from digest.subscriptions.statements import (
    _NEW_SUBSCRIBER_COLUMNS,
    _binds,
    _commit_first,
    _confirm_context,
    _deliveries,
    _DriverStatement,
    _insert_new_subscriber,
    _notice_values,
    _QueueingStatement,
    _sql_word,
    _sqlite_transaction,
    _subscribers,
    _under_daily_cap,
)


def update_preferences(
    session: DbSession,
    subscriber: Subscriber,
    *,
    categories: Sequence[str],
    language: str,
    name: str | None = None,
) -> None:
    """Save what the reader chose in the preference centre."""
    subscriber.categories = clean_categories(categories)
    subscriber.language = clean_language(language)
    if name is not None:
        subscriber.name = name.strip()[:200] or None
    session.commit()


def pause(session: DbSession, subscriber: Subscriber, *, days: int, today: dt.date) -> dt.date:
    """Stop digests for ``days`` days; returns the first day they come again."""
    if not 1 <= days <= 365:
        raise ValueError("a pause lasts between 1 and 365 days")
    if subscriber.status not in (SubscriberStatus.ACTIVE, SubscriberStatus.PAUSED):
        raise ValueError("only a confirmed subscription can be paused")
    subscriber.status = SubscriberStatus.PAUSED
    subscriber.paused_until = today + dt.timedelta(days=days)
    session.commit()
    return subscriber.paused_until


def resume(session: DbSession, subscriber: Subscriber) -> None:
    """End a pause now."""
    if subscriber.status == SubscriberStatus.PAUSED:
        subscriber.status = SubscriberStatus.ACTIVE
        subscriber.paused_until = None
        session.commit()


def resume_paused(session: DbSession, today: dt.date) -> int:
    """Reactivate every subscriber whose pause ends on or before ``today``; returns how many."""
    due = session.scalars(
        select(Subscriber).where(
            Subscriber.status == SubscriberStatus.PAUSED,
            Subscriber.paused_until.is_not(None),
            Subscriber.paused_until <= today,
        )
    ).all()
    for subscriber in due:
        subscriber.status = SubscriberStatus.ACTIVE
        subscriber.paused_until = None
    session.commit()
    return len(due)


# Consent source of the placeholder row that holds a requested new address until confirmed.
EMAIL_CHANGE_SOURCE = "email_change"


def _is_placeholder(subscriber: Subscriber) -> bool:
    return (
        subscriber.status == SubscriberStatus.PENDING
        and subscriber.consent_source == EMAIL_CHANGE_SOURCE
    )


def request_email_change(
    session: DbSession, subscriber: Subscriber, *, new_email: str, now: dt.datetime
) -> bool:
    """Mail a confirmation link to ``new_email``; the address changes only when it is followed.

    The new address is held by a pending placeholder row (stored now if the address is free,
    reused if a placeholder holds it already), and its ``email_change`` mail is queued under
    the daily cap (CONFIRM_MAILS_PER_DAY over CONFIRM_KINDS). A taken address gets nothing.
    Raises ``InvalidEmail``. Returns whether a mail was queued, for tests and logs: the page
    says the same thing either way.

    Every address costs the same work, so whoever holds a manage link cannot time the form
    to learn whether an address is subscribed: PostgreSQL runs one statement in autocommit
    and SQLite the same four statements in one transaction, whatever the address
    (``_EmailChangePostgresql``, ``_EmailChangeSqlite``). The link is signed when the mail
    is sent, for the placeholder, with the subscription it moves and that subscription's
    token version at request time (``read_email_change`` checks both).
    """
    address = normalize_email(new_email)
    if address == subscriber.email:
        return False
    row = _email_change_row(subscriber, address, now)
    _commit_first(session)
    engine = db.engine
    with driver_connection(engine) as driver:
        return _email_change_statement(engine.dialect).run(driver, row)


def _email_change_row(subscriber: Subscriber, address: str, now: dt.datetime) -> dict[str, Any]:
    """The parameters of the change-of-address statements: the placeholder a free address
    gets (the reader's choices, no consent record of its own), and its mail."""
    from digest.mail.delivery import notice_payload

    context = {"new_email": address, "max_age_days": _confirm_context()["max_age_days"]}
    moves = {"from": subscriber.id, "v": subscriber.token_version}
    return {
        "email": address,
        "status": SubscriberStatus.PENDING.value,
        "token_version": 1,
        "bounce_count": 0,
        "created_at": now,
        "name": subscriber.name,
        "language": subscriber.language,
        "categories": list(subscriber.categories or CATEGORIES),
        "consent_at": now,
        "consent_source": EMAIL_CHANGE_SOURCE,
        "consent_ip": None,
        "consent_user_agent": None,
        **_notice_values(now),
        "mail_payload": notice_payload(
            "email_change", context, {"confirm_url": {"purpose": "email", "extra": moves}}
        ),
    }


def _holds_a_change() -> ColumnElement[bool]:
    """The row is a placeholder holding the address typed (``_is_placeholder``, in SQL)."""
    return and_(
        _subscribers.c.email == bindparam("email", type_=_subscribers.c.email.type),
        _subscribers.c.status == _sql_word(SubscriberStatus.PENDING),
        _subscribers.c.consent_source == _sql_word(EMAIL_CHANGE_SOURCE),
    )


def _email_change_mail(subscriber_id: Any) -> dict[Column[Any], Any]:
    """The ``email_change`` notice's columns for an INSERT ... SELECT."""
    return {
        _deliveries.c.subscriber_id: subscriber_id,
        _deliveries.c.kind: _sql_word("email_change"),
        **_binds(_deliveries, ("state", "attempts", "created_at", "next_attempt_at"), "mail_"),
        _deliveries.c.payload: bindparam("mail_payload", type_=_deliveries.c.payload.type),
    }


class _EmailChangePostgresql(_QueueingStatement):
    """The change of address for PostgreSQL: one statement, compiled once, run in autocommit.

        WITH new AS (INSERT INTO subscribers ... ON CONFLICT (email) DO NOTHING RETURNING id),
        held AS (SELECT id, xmin FROM subscribers WHERE email = :email AND <a placeholder>),
        claimed AS (UPDATE subscribers SET status = status FROM held WHERE subscribers.id =
                    held.id AND subscribers.xmin = held.xmin RETURNING id),
        target AS (SELECT id FROM new UNION ALL SELECT id FROM claimed),
        queued AS (INSERT INTO deliveries ... SELECT id, 'email_change', ... FROM target
                   WHERE <its capped mails of the last day> < :cap RETURNING id)
        SELECT EXISTS (SELECT FROM queued), set_config('synchronous_commit', 'off', true)

    As for the sign-up (``_SignUpPostgresql`` says why, at Read Committed): every part reads
    the snapshot taken when the statement starts, so a free address is stored by ``new`` and
    not seen by ``held``, a placeholder is seen by ``held`` only, and a taken address (or the
    reader's own) by neither: nothing is written and nothing queued. What is guaranteed when
    requests meet:

    - Two changes to the same free address at the same moment store one placeholder: the
      second INSERT waits for the first and stores nothing, and its ``held`` does not see a
      row committed after its snapshot, so it queues nothing. One mail, for the first reader.
    - Queuing for an existing placeholder rewrites its row, unchanged, as the new-link form
      does (``_NewLinkPostgresql``): a second request for it at that moment (a change, a
      new link, a sign-up) waits, finds a newer row version than the one it counted mails
      for, and queues nothing. So the daily cap is exact against any number sent at once.
    - A sign-up or a change of address that turned the placeholder into a subscription after
      the snapshot also gives it a new version, so no change mail goes to a row that is no
      longer a placeholder; a placeholder deleted meanwhile is not found by the UPDATE.
    - A taken address writes nothing, so the commit has no log to wait for; one that queues a
      mail commits asynchronously, as the new-link form's does (its docstring says why and
      what a crash can lose), so the wait for the disk does not tell them apart either.
    """

    def __init__(self, dialect: Dialect) -> None:
        form = _binds(_subscribers, _NEW_SUBSCRIBER_COLUMNS)
        new = _insert_new_subscriber(postgresql.insert, form).cte("new")
        # xmin: the transaction that wrote the row's current version (see _SignUpPostgresql).
        version: ColumnElement[Any] = literal_column("subscribers.xmin")
        held = (
            select(_subscribers.c.id, version.label("version")).where(_holds_a_change()).cte("held")
        )
        claimed = (
            _subscribers.update()
            .where(_subscribers.c.id == held.c.id, version == held.c.version)
            .values(status=_subscribers.c.status)
            .returning(_subscribers.c.id)
            .cte("claimed")
        )
        target = union_all(select(new.c.id), select(claimed.c.id)).cte("target")
        mail = _email_change_mail(target.c.id)
        rows = select(*mail.values()).where(_under_daily_cap(target.c.id))
        super().__init__(mail, rows, dialect)


class _EmailChangeSqlite:
    """The change of address for SQLite: the same four statements for every address.

        BEGIN IMMEDIATE
        INSERT INTO subscribers ... ON CONFLICT (email) DO NOTHING
        INSERT INTO deliveries (...) SELECT id, 'email_change', ... FROM subscribers
        WHERE email = ? AND <a placeholder> AND <its capped mails of the last day> < ?
        COMMIT

    The placeholder the first INSERT stores is the row the second finds, as is one stored
    earlier; a taken address is found by neither. BEGIN IMMEDIATE takes the database's write
    lock first, so requests run one after another and the count under the cap is exact.
    """

    def __init__(self, dialect: Dialect) -> None:
        form = _binds(_subscribers, _NEW_SUBSCRIBER_COLUMNS)
        self.hold = _DriverStatement(_insert_new_subscriber(sqlite.insert, form), dialect)
        mail = _email_change_mail(_subscribers.c.id)
        wanted = and_(_holds_a_change(), _under_daily_cap(_subscribers.c.id))
        self.mail = _DriverStatement(
            _deliveries.insert()
            .from_select(list(mail), select(*mail.values()).where(wanted))
            .returning(_deliveries.c.id),
            dialect,
        )

    def run(self, driver: Any, row: dict[str, Any]) -> bool:
        """Hold the address and queue its mail if it gets one; whether it did."""
        with _sqlite_transaction(driver, immediate=True):
            self.hold.execute(driver, row)
            queued = self.mail.execute(driver, row) is not None
        return queued


@functools.lru_cache(maxsize=8)
def _email_change_statement(dialect: Dialect) -> _EmailChangePostgresql | _EmailChangeSqlite:
    # Per dialect object, as _sign_up_statement.
    if dialect.name == "postgresql":
        return _EmailChangePostgresql(dialect)
    return _EmailChangeSqlite(dialect)


def read_email_change(session: DbSession, token: str, now: dt.datetime) -> tuple[Subscriber, str]:
    """The subscriber whose address a change link moves, and the new address.

    Raises a ``tokens.TokenError`` when the link, or the subscriber's links, no longer hold.
    """
    placeholder, extra = tokens.read_token_payload(session, token, "email", now=now)
    owner = session.get(Subscriber, int(extra.get("from") or 0))
    if owner is None or owner.token_version != extra.get("v"):
        raise tokens.Revoked("the subscription this link moves has changed since")
    if not _is_placeholder(placeholder):
        raise tokens.Revoked("the new address has been used for another subscription")
    return owner, placeholder.email


def apply_email_change(session: DbSession, subscriber: Subscriber, new_email: str) -> None:
    """Switch to the confirmed new address and revoke every link sent to the old one."""
    address = normalize_email(new_email, check_deliverability=False)
    if address == subscriber.email:
        return
    holder = find_by_email(session, address)
    if holder is not None:
        if not _is_placeholder(holder):
            raise EmailTaken(address)
        # The placeholder only held the address for this moment; its mails go with it.
        session.execute(delete(Delivery).where(Delivery.subscriber_id == holder.id))
        session.delete(holder)
        session.flush()
    subscriber.email = address
    tokens.revoke_links(subscriber)
    session.commit()
