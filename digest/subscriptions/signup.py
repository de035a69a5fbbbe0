"""Sign-up (double opt-in), its confirmation, and the form that mails a new link."""

from __future__ import annotations

import datetime as dt
import enum
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Integer,
    and_,
    bindparam,
    case,
    exists,
    literal_column,
    null,
    select,
    union_all,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect

from digest.database import driver_connection
from digest.extensions import DbSession, db
from digest.models import Subscriber, SubscriberStatus
from digest.subscriptions.addresses import (
    clean_categories,
    clean_language,
    consent_ip,
    normalize_email,
)
from digest.subscriptions.statements import (
    _FORM_COLUMNS,
    _NEW_MAIL_COLUMNS,
    _NEW_SUBSCRIBER_COLUMNS,
    CONFIRM_LINKS,
    MANAGE_LINKS,
    _asynchronous_commit,
    _autocommit,
    _binds,
    _commit_first,
    _confirm_context,
    _deliveries,
    _DriverStatement,
    _insert_new_subscriber,
    _notice_columns,
    _notice_values,
    _QueueingStatement,
    _sql_word,
    _sql_words,
    _sqlite_transaction,
    _subscribers,
    _under_daily_cap,
)


class SignUpOutcome(enum.StrEnum):
    """What a sign-up did; the reader sees the same page whichever it is."""

    CREATED = "created"
    RESENT = "resent"
    RESUBSCRIBING = "resubscribing"
    ALREADY_ACTIVE = "already_active"
    CAPPED = "capped"
    HONEYPOT = "honeypot"
    # Another change to the address landed while this sign-up ran (the same form sent twice
    # at once, a confirmation, an unsubscription): that one stands, and this sign-up changed
    # nothing and queued nothing. PostgreSQL only: SQLite runs sign-ups one after another.
    CONCURRENT = "concurrent"


@dataclass
class SignUpResult:
    """The outcome of a sign-up, for tests and logs (never shown to the reader)."""

    outcome: SignUpOutcome
    subscriber_id: int | None = None
    mail_queued: bool = False


def sign_up(
    session: DbSession,
    *,
    email: str,
    now: dt.datetime,
    name: str | None = None,
    language: str | None = None,
    categories: Sequence[str] | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
    source: str = "web",
    honeypot: str | None = None,
) -> SignUpResult:
    """Start a double opt-in for ``email`` (raises ``InvalidEmail``); see ``SignUpOutcome``.

    The caller shows the same "check your inbox" page whatever the outcome, so the form
    never tells a stranger whether an address is subscribed; and every outcome costs the
    same work (``_store_sign_up``), so its speed does not tell them either.
    """
    address = normalize_email(email)
    if honeypot:
        return SignUpResult(SignUpOutcome.HONEYPOT)
    values = _sign_up_values(name, language, categories, ip, user_agent, source, now)
    return _store_sign_up(session, address, values, now)


# Confirmed readers keep their settings whoever fills in the form; they get their manage link.
_CONFIRMED = (SubscriberStatus.ACTIVE, SubscriberStatus.PAUSED)


def _store_sign_up(
    session: DbSession, address: str, values: dict[str, Any], now: dt.datetime
) -> SignUpResult:
    """Store the form for ``address`` and queue its mail, with the same work for every address.

    A new address is stored as pending with its confirmation queued. A pending, unsubscribed
    or bounced one takes the form's choices and consent and gets a fresh confirmation. An
    active or paused reader keeps their settings and gets their manage link ("already")
    instead: a stranger's form changes nothing for them. Mail is queued only under the daily
    cap (CONFIRM_MAILS_PER_DAY over CONFIRM_KINDS), and the rows are stored together or not
    at all.

    PostgreSQL does it all in one statement in autocommit: one round trip, no BEGIN and no
    COMMIT. SQLite runs the same five statements for every address in one transaction. A
    known address thus costs what a new one does, so a stranger timing the form cannot tell
    that an address is subscribed. The statements go through the driver on a pooled
    connection of their own (``digest.database.driver_connection``).
    """
    row = _sign_up_row(address, values, now)
    _commit_first(session)
    # The app's engine, as db.session would find it: asking db.session builds a Session,
    # which a request that only signs up an address otherwise never needs.
    engine = db.engine
    with driver_connection(engine) as driver:
        stored = _sign_up_statement(engine.dialect).run(driver, row)
    return _sign_up_result(stored)


# What the sign-up statements return: the subscriber's id, its status before the form
# (None for a new address) and whether a mail was queued; None when another change to the
# address won (SignUpOutcome.CONCURRENT).
_Stored = tuple[int, str | None, bool] | None


def _sign_up_result(stored: _Stored) -> SignUpResult:
    if stored is None:
        return SignUpResult(SignUpOutcome.CONCURRENT)
    subscriber_id, was, queued = stored
    if not queued:
        outcome = SignUpOutcome.CAPPED
    elif was is None:
        outcome = SignUpOutcome.CREATED
    elif was == SubscriberStatus.PENDING:
        outcome = SignUpOutcome.RESENT
    elif was in _CONFIRMED:
        outcome = SignUpOutcome.ALREADY_ACTIVE
    else:
        outcome = SignUpOutcome.RESUBSCRIBING
    return SignUpResult(outcome, int(subscriber_id), queued)


def _sign_up_row(address: str, values: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    """The parameters of the sign-up statements: the form, what the model's defaults would
    add to a new row (no ORM runs here), both mails the address may get, and the cap."""
    from digest.mail.delivery import notice_payload

    return {
        **values,
        "email": address,
        "status": SubscriberStatus.PENDING.value,
        "token_version": 1,
        "bounce_count": 0,
        "created_at": now,
        **_notice_values(now),
        # Links are signed when the mail is sent (the id of a new row is not known before the
        # statement runs), so both mails are the same for every address.
        "confirm_payload": notice_payload("confirm", _confirm_context(), CONFIRM_LINKS),
        "already_payload": notice_payload("manage_link", {"already": True}, MANAGE_LINKS),
    }


def _refreshed_columns(form: dict[Column[Any], Any]) -> dict[Column[Any], Any]:
    """SET for a stored address: the form's values, except that an active or paused row keeps
    its own (decided on the row being written, so a confirmation landing first counts)."""
    confirmed = _subscribers.c.status.in_(_sql_words(_CONFIRMED))
    return {
        _subscribers.c[name]: case(
            (confirmed, _subscribers.c[name]), else_=form[_subscribers.c[name]]
        )
        for name in _FORM_COLUMNS
    }


class _SignUpPostgresql:
    """The sign-up for PostgreSQL: one statement, compiled once, run in autocommit.

        WITH new AS (INSERT INTO subscribers ... ON CONFLICT (email) DO NOTHING RETURNING id),
        seen AS (SELECT id, status, xmin FROM subscribers WHERE email = :email),
        refreshed AS (UPDATE subscribers SET <the form, or for an active or paused row its own
                      values> FROM seen WHERE subscribers.id = seen.id
                      AND subscribers.xmin = seen.xmin RETURNING id, seen.status AS was),
        target AS (SELECT id, NULL AS was FROM new UNION ALL SELECT id, was FROM refreshed),
        queued AS (INSERT INTO deliveries ... SELECT id, <confirm, or already if was is
                   active or paused>, ... FROM target WHERE <its capped mails of the last
                   day> < :cap RETURNING subscriber_id)
        SELECT id, was, EXISTS (SELECT FROM queued),
               set_config('synchronous_commit', 'off', true) FROM target

    Why this holds (PostgreSQL manual, "Data-Modifying Statements in WITH" and "Read
    Committed Isolation Level"; autocommit runs each statement at the server's default
    level, Read Committed, which this relies on):

    - Every part of the statement reads the one snapshot taken when it starts, and none
      sees another's writes. When ``new`` stores the address, ``seen`` finds nothing and
      nothing is refreshed; when the address is known, ``new`` stores nothing and ``seen``
      holds its row. No row is written twice by the statement, which PostgreSQL forbids.
    - ON CONFLICT DO NOTHING waits for a transaction that is storing the same address and,
      once it commits, stores nothing, though that row is not in this statement's snapshot.
      Two sign-ups of a new address at the same moment therefore store one row, and the
      second, which sees neither a row of its own nor the other's, changes and queues
      nothing: one confirmation (SignUpOutcome.CONCURRENT).
    - UPDATE waits for a transaction writing the same row, then evaluates its WHERE again on
      the row's newest version. xmin, the transaction that wrote a row version, changes with
      every write (a lock, such as a new mail's foreign key check, leaves it alone), so the
      version test passes only if nobody changed the row after the snapshot: the status
      ``seen`` read, the choice of mail and the count under the cap are those of the row
      being written. If a confirmation, an unsubscription or another sign-up got there
      first, nothing is refreshed or queued and that change stands (CONCURRENT).
    - So an active or paused row is written too, with its own values: that write is what
      makes a second sign-up of the address at the same moment step aside, which keeps the
      cap exact under concurrency (the count cannot see a mail queued after the snapshot).
      And every address costs the same: one row stored or rewritten, one mail counted and
      queued.

    The transaction commits asynchronously (``_asynchronous_commit``): the page answers
    once the log is in the server's memory, not on disk. Under load that wait and the
    switches around it cost more than the statement itself (a fifth more sign-ups per
    second without them in ``python -m bench signup``, README). What a crash of the
    database server can cost is a sign-up of the last fraction of a second, whole: the
    reader gets no mail and signs up again. Nothing is mailed for a sign-up that could
    still be lost: the delivery worker's claim commits synchronously, and its flush puts
    every earlier commit on disk first. Confirming, leaving and changing settings stay
    synchronous: their page tells the reader it is done, and nothing would tell them
    otherwise.
    """

    def __init__(self, dialect: Dialect) -> None:
        form = _binds(_subscribers, _NEW_SUBSCRIBER_COLUMNS)
        new = _insert_new_subscriber(postgresql.insert, form).cte("new")
        # xmin: the transaction that wrote the row's current version (see above).
        version: ColumnElement[Any] = literal_column("subscribers.xmin")
        seen = (
            select(_subscribers.c.id, _subscribers.c.status, version.label("version"))
            .where(_subscribers.c.email == form[_subscribers.c.email])
            .cte("seen")
        )
        refreshed = (
            _subscribers.update()
            .where(_subscribers.c.id == seen.c.id, version == seen.c.version)
            .values(_refreshed_columns(form))
            .returning(_subscribers.c.id, seen.c.status.label("was"))
            .cte("refreshed")
        )
        target = union_all(
            select(new.c.id, null().label("was")), select(refreshed.c.id, refreshed.c.was)
        ).cte("target")
        mail = _notice_columns(
            target.c.id,
            when=target.c.was.in_(_sql_words(_CONFIRMED)),
            then=("already", "already_payload"),
            otherwise=("confirm", "confirm_payload"),
        )
        queued = (
            _deliveries.insert()
            .from_select(list(mail), select(*mail.values()).where(_under_daily_cap(target.c.id)))
            .returning(_deliveries.c.subscriber_id)
            .cte("queued")
        )
        outcome = select(
            target.c.id,
            target.c.was,
            exists(select(queued.c.subscriber_id)).label("queued"),
            _asynchronous_commit(),
        )
        self.statement = _DriverStatement(outcome, dialect)

    def run(self, driver: Any, row: dict[str, Any]) -> _Stored:
        """Store the sign-up and queue its mail; what was done (see ``_Stored``)."""
        # One round trip: the statement is its own transaction.
        with _autocommit(driver):
            found = self.statement.execute(driver, row)
        return None if found is None else (int(found[0]), found[1], bool(found[2]))


class _SignUpSqlite:
    """The sign-up for SQLite: the same decisions, as plain statements in one transaction.

    BEGIN IMMEDIATE takes the database's write lock before the address is looked up, so
    sign-ups run one after another and what the lookup finds holds until COMMIT. Every
    address runs the same five statements: BEGIN IMMEDIATE, the lookup, the INSERT of a new
    row or the UPDATE of the stored one (an active or paused row is rewritten with its own
    values, as on PostgreSQL, so that it costs the same), the mail under the cap, COMMIT.
    """

    def __init__(self, dialect: Dialect) -> None:
        form = _binds(_subscribers, _NEW_SUBSCRIBER_COLUMNS)
        self.seen = _DriverStatement(
            select(_subscribers.c.id, _subscribers.c.status).where(
                _subscribers.c.email == form[_subscribers.c.email]
            ),
            dialect,
        )
        self.insert = _DriverStatement(_insert_new_subscriber(sqlite.insert, form), dialect)
        self.refresh = _DriverStatement(
            _subscribers.update()
            .where(_subscribers.c.id == bindparam("subscriber_id", type_=Integer))
            .values(_refreshed_columns(form)),
            dialect,
        )
        mail = _binds(_deliveries, ("subscriber_id", *_NEW_MAIL_COLUMNS), "mail_")
        self.mail = _DriverStatement(
            _deliveries.insert()
            .from_select(
                list(mail),
                select(*mail.values()).where(_under_daily_cap(mail[_deliveries.c.subscriber_id])),
            )
            .returning(_deliveries.c.id),
            dialect,
        )

    def run(self, driver: Any, row: dict[str, Any]) -> _Stored:
        """Store the sign-up and queue its mail; what was done (see ``_Stored``)."""
        # The lookup must already hold the lock, or another sign-up could change what it saw.
        with _sqlite_transaction(driver, immediate=True):
            seen = self.seen.execute(driver, row)
            if seen is None:
                subscriber_id, was = int(self.insert.execute(driver, row)[0]), None
            else:
                subscriber_id, was = int(seen[0]), str(seen[1])
                self.refresh.execute(driver, {**row, "subscriber_id": subscriber_id})
            already = was in _CONFIRMED
            mail = {
                **row,
                "mail_subscriber_id": subscriber_id,
                "mail_kind": "already" if already else "confirm",
                "mail_payload": row["already_payload" if already else "confirm_payload"],
            }
            queued = self.mail.execute(driver, mail) is not None
        return subscriber_id, was, queued


@functools.lru_cache(maxsize=8)
def _sign_up_statement(dialect: Dialect) -> _SignUpPostgresql | _SignUpSqlite:
    # Per dialect object (each engine has its own): its compiled SQL and type conversions.
    if dialect.name == "postgresql":
        return _SignUpPostgresql(dialect)
    return _SignUpSqlite(dialect)


def _sign_up_values(
    name: str | None,
    language: str | None,
    categories: Sequence[str] | None,
    ip: str | None,
    user_agent: str | None,
    source: str,
    now: dt.datetime,
) -> dict[str, Any]:
    """The columns a sign-up form sets: choices and the consent record."""
    return {
        "name": (name or "").strip()[:200] or None,
        "language": clean_language(language),
        "categories": clean_categories(categories),
        "consent_at": now,
        "consent_source": source[:64],
        "consent_ip": consent_ip(ip),
        "consent_user_agent": (user_agent or "")[:300] or None,
    }


def send_new_link(session: DbSession, *, email: str, now: dt.datetime) -> bool:
    """Mail a fresh link to ``email`` if it is subscribed (raises ``InvalidEmail``).

    A pending address gets its confirmation again; an active or paused reader gets a link
    to their preferences ("new_link"); an unknown address, or one that unsubscribed or
    bounced, gets nothing (leaving is undone by signing up again). Mail is queued only under
    the daily cap (CONFIRM_MAILS_PER_DAY over CONFIRM_KINDS). Returns whether a mail was
    queued, for tests and logs: the page says the same thing either way.

    Every address costs the same: one statement in autocommit on either database, which
    looks the address up, decides the mail and queues it, and which an unknown address runs
    too, finding nothing (``_NewLinkPostgresql``, ``_NewLinkSqlite``). So a stranger timing
    the form cannot tell whether an address is subscribed.
    """
    row = _new_link_row(normalize_email(email), now)
    _commit_first(session)
    engine = db.engine
    with driver_connection(engine) as driver:
        return _new_link_statement(engine.dialect).run(driver, row)


# Who the new-link form mails a link to.
_NEW_LINK_STATUSES = (SubscriberStatus.PENDING, *_CONFIRMED)


def _new_link_row(address: str, now: dt.datetime) -> dict[str, Any]:
    """The parameters of the new-link statement: the address and both mails it may get."""
    from digest.mail.delivery import notice_payload

    return {
        "email": address,
        **_notice_values(now),
        "confirm_payload": notice_payload("confirm", _confirm_context(), CONFIRM_LINKS),
        "manage_payload": notice_payload("manage_link", {"already": False}, MANAGE_LINKS),
    }


def _new_link_wanted() -> ColumnElement[bool]:
    """The row the new-link form mails: the address typed, with a status that gets a link,
    and fewer than :cap of the capped mails since :since."""
    return and_(
        _subscribers.c.email == bindparam("email", type_=_subscribers.c.email.type),
        _subscribers.c.status.in_(_sql_words(_NEW_LINK_STATUSES)),
        _under_daily_cap(_subscribers.c.id),
    )


def _new_link_mail(subscriber_id: Any, status: Any) -> dict[Column[Any], Any]:
    return _notice_columns(
        subscriber_id,
        when=status == _sql_word(SubscriberStatus.PENDING),
        then=("confirm", "confirm_payload"),
        otherwise=("new_link", "manage_payload"),
    )


class _NewLinkPostgresql(_QueueingStatement):
    """The new-link form for PostgreSQL: one statement, compiled once, run in autocommit.

        WITH seen AS (SELECT id, xmin FROM subscribers WHERE email = :email AND <pending,
                      active or paused> AND <its capped mails of the last day> < :cap),
        claimed AS (UPDATE subscribers SET status = status FROM seen WHERE subscribers.id =
                    seen.id AND subscribers.xmin = seen.xmin RETURNING id, status),
        queued AS (INSERT INTO deliveries ... SELECT id, <confirm if pending, else new_link>,
                   ... FROM claimed RETURNING id)
        SELECT EXISTS (SELECT FROM queued), set_config('synchronous_commit', 'off', true)

    The daily cap is exact, as for the sign-up (``_SignUpPostgresql`` says why it holds):
    ``seen`` counts the mails in the statement's snapshot, so requests for the address sent
    at the same moment could each count two mails of three and each queue one. So queuing
    a mail also rewrites the subscriber's row, unchanged, which gives it a new xmin: the
    second request's UPDATE waits for the first to commit, finds a newer version of the row
    than the one it counted for, and queues nothing. A sign-up of the address at that moment
    steps aside in the same way, and this one for it, and so does a change of address to a
    placeholder (``_EmailChangePostgresql``). So the cap holds against any number of these
    forms sent at once. The per-address rate limit (SIGNUP_RATE_LIMIT_PER_EMAIL) would bound
    the excess without this, but only when limits are on and their counters shared by every
    web process.

    Queuing a mail writes to the log, and a commit that wrote waits until the log is on disk;
    an unknown address, one that left or a capped one writes nothing, and that wait (from a
    fraction of a millisecond to several, by disk) would tell them apart. So this statement's
    transaction commits asynchronously (set_config with is_local true is SET LOCAL): the
    commit returns once the log is in the server's memory, and the WAL writer puts it on
    disk within wal_writer_delay (PostgreSQL manual, "Asynchronous Commit"). A crash of the
    server just then can lose the queued mail, never store it in part: the reader asks again.
    """

    def __init__(self, dialect: Dialect) -> None:
        # xmin: the transaction that wrote the row's current version (see _SignUpPostgresql).
        version: ColumnElement[Any] = literal_column("subscribers.xmin")
        seen = (
            select(_subscribers.c.id, version.label("version"))
            .where(_new_link_wanted())
            .cte("seen")
        )
        claimed = (
            _subscribers.update()
            .where(_subscribers.c.id == seen.c.id, version == seen.c.version)
            .values(status=_subscribers.c.status)
            .returning(_subscribers.c.id, _subscribers.c.status)
            .cte("claimed")
        )
        mail = _new_link_mail(claimed.c.id, claimed.c.status)
        super().__init__(mail, select(*mail.values()), dialect)


class _NewLinkSqlite:
    """The new-link form for SQLite: one INSERT ... SELECT, run in autocommit.

        INSERT INTO deliveries (...) SELECT id, <confirm if pending, else new_link>, ...
        FROM subscribers WHERE email = ? AND <pending, active or paused>
        AND <its capped mails of the last day> < ? RETURNING id

    A writing statement takes the database's write lock before it reads anything, so
    requests run one after another and the count under the cap is exact. With WAL and
    synchronous=NORMAL (``digest.database``) no commit waits for the disk: a request that
    queues a mail costs a few more pages written to the log than one that queues none.
    """

    def __init__(self, dialect: Dialect) -> None:
        mail = _new_link_mail(_subscribers.c.id, _subscribers.c.status)
        self.statement = _DriverStatement(
            _deliveries.insert()
            .from_select(list(mail), select(*mail.values()).where(_new_link_wanted()))
            .returning(_deliveries.c.id),
            dialect,
        )

    def run(self, driver: Any, row: dict[str, Any]) -> bool:
        """Queue the address's mail if it gets one; whether it did."""
        with _autocommit(driver):
            return self.statement.execute(driver, row) is not None


@functools.lru_cache(maxsize=8)
def _new_link_statement(dialect: Dialect) -> _NewLinkPostgresql | _NewLinkSqlite:
    # Per dialect object, as _sign_up_statement.
    if dialect.name == "postgresql":
        return _NewLinkPostgresql(dialect)
    return _NewLinkSqlite(dialect)


class ConfirmOutcome(enum.StrEnum):
    """What following a confirmation link did."""

    CONFIRMED = "confirmed"
    ALREADY = "already"
    LEFT = "left"


def confirm(session: DbSession, subscriber: Subscriber, now: dt.datetime) -> ConfirmOutcome:
    """Turn a pending subscription active; confirming twice changes nothing."""
    if subscriber.status == SubscriberStatus.PENDING:
        subscriber.status = SubscriberStatus.ACTIVE
        subscriber.confirmed_at = now
        subscriber.unsubscribed_at = None
        subscriber.paused_until = None
        session.commit()
        return ConfirmOutcome.CONFIRMED
    if subscriber.status in (SubscriberStatus.ACTIVE, SubscriberStatus.PAUSED):
        return ConfirmOutcome.ALREADY
    return ConfirmOutcome.LEFT
