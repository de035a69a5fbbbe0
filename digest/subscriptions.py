"""The subscription service: sign-up, confirmation, preferences, leaving, import and export.

Every function takes the session and ``now`` (or ``today``) explicitly and commits its own
work, so views and commands stay thin. Mail is never sent from here: it is queued in the
delivery ledger, by the statement that stores the request, and the delivery worker renders
it and signs its links (``digest.mail.assembly.notice_context``) when it sends it.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import enum
import functools
import hashlib
import hmac
import io
import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, NamedTuple

from email_validator import (
    EmailNotValidError,
    EmailUndeliverableError,
    ValidatedEmail,
    caching_resolver,
    validate_email,
)
from flask import current_app
from flask_babel import gettext
from sqlalchemy import (
    CTE,
    Column,
    ColumnElement,
    Integer,
    Table,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    literal_column,
    null,
    select,
    true,
    union_all,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import scoped_session

from config import split_host_port
from digest import tokens
from digest.database import driver_connection
from digest.extensions import DbSession, db
from digest.models import (
    CATEGORIES,
    LANGUAGES,
    Delivery,
    DeliveryState,
    Subscriber,
    SubscriberStatus,
)

if TYPE_CHECKING:
    from dns.resolver import Resolver

# Kinds of transactional mail a stranger can trigger by typing an address into a form;
# together they are capped per address per day so the site cannot be used to flood an inbox.
CONFIRM_KINDS: tuple[str, ...] = ("confirm", "already", "new_link", "email_change")
CSV_COLUMNS: tuple[str, ...] = ("email", "name", "language", "categories", "status")
# Separators accepted between list items (categories in CSV, domains in config).
_SPLIT = re.compile(r"[;|,\s]+")


class InvalidEmail(ValueError):
    """The address cannot receive the digest; ``str(error)`` is a message for the reader."""

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        # The validator's own (English) explanation, for logs and the import report.
        self.detail = detail


class BlockedDomain(InvalidEmail):
    """The address belongs to a domain this site refuses (config BLOCKED_EMAIL_DOMAINS)."""


class EmailTaken(Exception):
    """Another subscriber already uses the address asked for."""


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


def normalize_email(raw: str, check_deliverability: bool | None = None) -> str:
    """The canonical form of an address (lower case, ASCII domain), or ``InvalidEmail``."""
    if check_deliverability is None:
        check_deliverability = bool(current_app.config.get("EMAIL_CHECK_DELIVERABILITY", False))
    text = (raw or "").strip()
    if not text:
        raise InvalidEmail(gettext("Enter your email address."))
    if len(text) > 320:
        raise InvalidEmail(gettext("This email address is too long."))
    try:
        if check_deliverability:
            info = validate_email(text, check_deliverability=True, dns_resolver=_dns_resolver())
            address = _canonical(info)
        else:
            address = _checked_syntax(text)
    except EmailUndeliverableError as error:
        raise InvalidEmail(
            gettext("No mail can be delivered to this domain: check the part after the @."),
            detail=str(error),
        ) from error
    except EmailNotValidError as error:
        raise InvalidEmail(
            gettext("This is not a valid email address."), detail=str(error)
        ) from error
    domain = address.rsplit("@", 1)[1]
    for blocked in blocked_domains():
        if domain == blocked or domain.endswith("." + blocked):
            raise BlockedDomain(gettext("Addresses at this domain cannot subscribe."))
    return address


@functools.lru_cache(maxsize=64)
def _checked_syntax(text: str) -> str:
    """The canonical form of ``text`` if its syntax is valid (no DNS), else the validator's error.

    Cached for the last few addresses: with rate limits on, a sign-up checks its address
    twice in one request (the per-address limit's key, then the sign-up itself), and the
    check is pure. Refused addresses raise, so they are not kept.
    """
    return _canonical(validate_email(text, check_deliverability=False))


def _canonical(info: ValidatedEmail) -> str:
    # Mailboxes are case-insensitive in practice, and one reader must map to one row.
    return (info.ascii_email or info.normalized).lower()


def _dns_resolver() -> Resolver:
    """The resolver for deliverability checks, from EMAIL_DNS_SERVERS and EMAIL_DNS_TIMEOUT."""
    value = current_app.config.get("EMAIL_DNS_SERVERS") or ()
    servers = _SPLIT.split(value) if isinstance(value, str) else [str(v) for v in value]
    timeout = float(current_app.config.get("EMAIL_DNS_TIMEOUT", 5.0))
    return _cached_resolver(tuple(s.strip() for s in servers if s.strip()), timeout)


@functools.cache
def _cached_resolver(servers: tuple[str, ...], timeout: float) -> Resolver:
    # One per process and setting: its answer cache spares a burst of sign-ups from one
    # domain a lookup each. dnspython is imported here: it is slow to import, and most
    # sites never turn the check on.
    from dns.nameserver import Do53Nameserver
    from dns.resolver import Resolver

    resolver = Resolver(configure=not servers)
    if servers:
        resolver.nameservers = [Do53Nameserver(*split_host_port(s, 53)) for s in servers]
    return caching_resolver(timeout=timeout, dns_resolver=resolver)  # type: ignore[arg-type]


def blocked_domains() -> list[str]:
    """BLOCKED_EMAIL_DOMAINS as a list, whether configured as a list or a comma-separated string."""
    value = current_app.config.get("BLOCKED_EMAIL_DOMAINS") or ()
    items = _SPLIT.split(value) if isinstance(value, str) else [str(v) for v in value]
    return [d.strip().lower().lstrip("@") for d in items if d.strip()]


def clean_categories(categories: Iterable[str] | None) -> list[str]:
    """Known categories in the site's order; an empty or unknown choice means all of them."""
    chosen = {c for c in (categories or ()) if c in CATEGORIES}
    return [c for c in CATEGORIES if c in chosen] or list(CATEGORIES)


def clean_language(language: str | None) -> str:
    """A supported language, or the site's default."""
    if language in LANGUAGES:
        return str(language)
    return str(current_app.config.get("DEFAULT_LANGUAGE", "fr"))


def consent_ip(ip: str | None) -> str | None:
    """The IP as stored in the consent record: keyed hash when CONSENT_HASH_IP is set."""
    if not ip:
        return None
    if not current_app.config.get("CONSENT_HASH_IP", False):
        return ip[:64]
    key = str(current_app.config["SECRET_KEY"]).encode()
    return hmac.new(key, ip.encode(), hashlib.sha256).hexdigest()


def find_by_email(session: DbSession, email: str) -> Subscriber | None:
    """The subscriber with this (already normalized) address, if any."""
    return session.scalar(select(Subscriber).where(Subscriber.email == email))


# The links each notice carries, by template name -> purpose; the sender signs them.
CONFIRM_LINKS: dict[str, str] = {"confirm_url": "confirm"}
MANAGE_LINKS: dict[str, str] = {"manage_url": "manage", "unsubscribe_url": "unsubscribe"}


def _confirm_context() -> dict[str, Any]:
    return {"max_age_days": int(current_app.config.get("CONFIRM_MAX_AGE_DAYS", 7))}


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


_subscribers = Subscriber.__table__
_deliveries = Delivery.__table__
# What a sign-up form writes: the reader's choices, the consent record and the status.
_FORM_COLUMNS = (
    "name",
    "language",
    "categories",
    "consent_at",
    "consent_source",
    "consent_ip",
    "consent_user_agent",
    "status",
)
_NEW_SUBSCRIBER_COLUMNS = ("email", "token_version", "bounce_count", "created_at", *_FORM_COLUMNS)
_NEW_MAIL_COLUMNS = ("kind", "state", "attempts", "created_at", "next_attempt_at", "payload")
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


def _commit_first(session: DbSession) -> None:
    """Commit the caller's open transaction before rows change through another connection.

    For the services that run their statements through the driver: they commit the caller's
    work anyway, and first, because their connection could otherwise wait on locks this
    session holds.
    """
    if _in_transaction(session):
        session.commit()


@contextlib.contextmanager
def _autocommit(driver: Any) -> Iterator[None]:
    """Each statement run on ``driver`` in the block is its own transaction: no BEGIN, no COMMIT.

    The pool hands out connections in the engine's transaction mode, so it is set back after.
    """
    if isinstance(driver, sqlite3.Connection):
        # Python 3.11's sqlite3 has no autocommit attribute; no isolation level means the same.
        previous = driver.isolation_level
        driver.isolation_level = None
        try:
            yield
        finally:
            driver.isolation_level = previous
        return
    driver.autocommit = True
    try:
        yield
    finally:
        if not driver.closed:
            driver.autocommit = False


def _in_transaction(session: DbSession) -> bool:
    """Whether ``session`` has begun a transaction, without building one for db.session.

    A web request that only signs up an address never needs a Session object, and a
    scoped_session forwards neither ``in_transaction`` nor ``get_transaction``.
    """
    if isinstance(session, scoped_session):
        if not session.registry.has():
            return False
        session = session.registry()
    return session.in_transaction()


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


def _notice_values(now: dt.datetime) -> dict[str, Any]:
    """The parameters of a notice queued by a statement: what the model's defaults would put
    in its ledger row, and the daily cap it is queued under (``_under_daily_cap``)."""
    return {
        "mail_state": DeliveryState.QUEUED.value,
        "mail_attempts": 0,
        "mail_created_at": now,
        "mail_next_attempt_at": now,
        "cap": int(current_app.config.get("CONFIRM_MAILS_PER_DAY", 3)),
        "since": now - dt.timedelta(days=1),
    }


def _binds(table: Table, columns: Iterable[str], prefix: str = "") -> dict[Column[Any], Any]:
    """A typed parameter per column, so values get the column's conversions (JSON, dates)."""
    return {table.c[name]: bindparam(prefix + name, type_=table.c[name].type) for name in columns}


def _sql_word(word: str) -> Any:
    """A code constant (a status, a mail kind) written into the SQL as a person would write
    it; what a visitor typed always goes in as a parameter."""
    assert re.fullmatch(r"[a-z_]+", word), word
    return literal_column(f"'{word}'")


def _sql_words(words: Iterable[str]) -> list[Any]:
    return [_sql_word(word) for word in words]


def _insert_new_subscriber(insert: Any, form: dict[Column[Any], Any]) -> Any:
    """INSERT ... ON CONFLICT (email) DO NOTHING RETURNING id, for a new address's row."""
    return (
        insert(_subscribers)
        .values(form)
        .on_conflict_do_nothing(index_elements=[_subscribers.c.email])
        .returning(_subscribers.c.id)
    )


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


def _under_daily_cap(subscriber_id: Any) -> Any:
    """Whether the address got fewer than :cap of the mails a stranger can trigger since :since."""
    mails = (
        select(func.count())
        .select_from(_deliveries)
        .where(
            _deliveries.c.subscriber_id == subscriber_id,
            _deliveries.c.kind.in_(_sql_words(CONFIRM_KINDS)),
            _deliveries.c.created_at > bindparam("since", type_=_deliveries.c.created_at.type),
        )
        .scalar_subquery()
    )
    return mails < bindparam("cap", type_=Integer)


def _notice_columns(
    subscriber_id: Any, when: Any, then: tuple[str, str], otherwise: tuple[str, str]
) -> dict[Column[Any], Any]:
    """A notice's columns for an INSERT ... SELECT: ``then`` (a kind and the parameter holding
    its payload) for a row where ``when`` holds, ``otherwise`` for the others."""
    json = _deliveries.c.payload.type
    return {
        _deliveries.c.subscriber_id: subscriber_id,
        _deliveries.c.kind: case((when, _sql_word(then[0])), else_=_sql_word(otherwise[0])),
        **_binds(_deliveries, ("state", "attempts", "created_at", "next_attempt_at"), "mail_"),
        _deliveries.c.payload: case(
            (when, bindparam(then[1], type_=json)), else_=bindparam(otherwise[1], type_=json)
        ),
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
        SELECT id, was, EXISTS (SELECT FROM queued) FROM target

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
            target.c.id, target.c.was, exists(select(queued.c.subscriber_id)).label("queued")
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
        try:
            # The driver would open a deferred transaction only at the first write; the
            # lookup must already hold the lock, or another sign-up could change what it saw.
            driver.execute("BEGIN IMMEDIATE")
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
            driver.commit()
        except BaseException:
            driver.rollback()
            raise
        return subscriber_id, was, queued


@functools.lru_cache(maxsize=8)
def _sign_up_statement(dialect: Dialect) -> _SignUpPostgresql | _SignUpSqlite:
    # Per dialect object (each engine has its own): its compiled SQL and type conversions.
    if dialect.name == "postgresql":
        return _SignUpPostgresql(dialect)
    return _SignUpSqlite(dialect)


class _DriverStatement:
    """A Core statement compiled for a dialect, with its parameters' order and conversions."""

    def __init__(self, statement: Any, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql: str = compiled.string
        self.positional = compiled.positiontup is not None
        self.names: tuple[str, ...] = tuple(compiled.positiontup or compiled.binds)
        self.conversions: tuple[tuple[str, Any], ...] = tuple(
            (name, convert)
            for bind, name in compiled.bind_names.items()
            if (convert := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None
        )

    def execute(self, driver: Any, values: dict[str, Any]) -> Any:
        """Run on a DBAPI connection; the first row returned, if any."""
        parameters = {name: values[name] for name in self.names}
        for name, convert in self.conversions:
            parameters[name] = convert(parameters[name])
        cursor = driver.cursor()
        try:
            if self.positional:
                cursor.execute(self.sql, tuple(parameters[name] for name in self.names))
            else:
                cursor.execute(self.sql, parameters)
            return cursor.fetchone() if cursor.description else None
        finally:
            cursor.close()


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


class _NewLinkPostgresql:
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
        queued = (
            _deliveries.insert()
            .from_select(list(mail), select(*mail.values()))
            .returning(_deliveries.c.id)
            .cte("queued")
        )
        self.statement = _whether_queued(queued, dialect)

    def run(self, driver: Any, row: dict[str, Any]) -> bool:
        """Queue the address's mail if it gets one; whether it did."""
        with _autocommit(driver):
            return bool(self.statement.execute(driver, row)[0])


def _whether_queued(queued: CTE, dialect: Dialect) -> _DriverStatement:
    """SELECT whether ``queued`` stored a mail, committing asynchronously: a request that
    queues one must not wait for a log flush that a request queuing none never makes (see
    ``_NewLinkPostgresql``)."""
    # set_config with is_local true is SET LOCAL: this statement's transaction only.
    asynchronous_commit = func.set_config(_sql_word("synchronous_commit"), _sql_word("off"), true())
    return _DriverStatement(select(exists(select(queued.c.id)), asynchronous_commit), dialect)


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
        try:
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
            driver.commit()
        except BaseException:
            driver.rollback()
            raise
        return found


@functools.lru_cache(maxsize=8)
def _leave_statement(dialect: Dialect) -> _LeaveStatement:
    # Per dialect object (each engine has its own): its compiled SQL and type conversions.
    if dialect.name == "postgresql":
        return _LeaveStatement(dialect)
    return _LeaveStatementsSqlite(dialect)


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


class _EmailChangePostgresql:
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
        queued = (
            _deliveries.insert()
            .from_select(list(mail), select(*mail.values()).where(_under_daily_cap(target.c.id)))
            .returning(_deliveries.c.id)
            .cte("queued")
        )
        self.statement = _whether_queued(queued, dialect)

    def run(self, driver: Any, row: dict[str, Any]) -> bool:
        """Hold the address and queue its mail if it gets one; whether it did."""
        with _autocommit(driver):
            return bool(self.statement.execute(driver, row)[0])


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
        try:
            driver.execute("BEGIN IMMEDIATE")
            self.hold.execute(driver, row)
            queued = self.mail.execute(driver, row) is not None
            driver.commit()
        except BaseException:
            driver.rollback()
            raise
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


def export_data(session: DbSession, subscriber: Subscriber) -> dict[str, Any]:
    """Everything stored about ``subscriber``, as a JSON-ready mapping."""

    def iso(value: dt.datetime | dt.date | None) -> str | None:
        return value.isoformat() if value else None

    deliveries = session.scalars(
        select(Delivery).where(Delivery.subscriber_id == subscriber.id).order_by(Delivery.id)
    ).all()
    return {
        "email": subscriber.email,
        "name": subscriber.name,
        "language": subscriber.language,
        "categories": list(subscriber.categories or []),
        "status": subscriber.status,
        "created_at": iso(subscriber.created_at),
        "confirmed_at": iso(subscriber.confirmed_at),
        "unsubscribed_at": iso(subscriber.unsubscribed_at),
        "paused_until": iso(subscriber.paused_until),
        "consent": {
            "at": iso(subscriber.consent_at),
            "source": subscriber.consent_source,
            "ip": subscriber.consent_ip,
            "user_agent": subscriber.consent_user_agent,
        },
        "mails": [
            {
                "kind": d.kind,
                "edition": iso(d.edition.day) if d.edition else None,
                "state": d.state,
                "created_at": iso(d.created_at),
                "sent_at": iso(d.sent_at),
            }
            for d in deliveries
        ],
    }


def delete_data(session: DbSession, subscriber: Subscriber) -> None:
    """Erase the subscriber and their delivery records; their links stop working."""
    # Explicit, because SQLite only cascades foreign keys when the pragma is on.
    session.execute(delete(Delivery).where(Delivery.subscriber_id == subscriber.id))
    session.delete(subscriber)
    session.commit()


# ---------------------------------------------------------------------- CSV import / export


@dataclass
class ImportProblem:
    """One line the import could not take, with the reason."""

    line: int
    email: str
    reason: str


@dataclass
class ImportReport:
    """What an import did (or would do, on a dry run)."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    # Addresses that had unsubscribed or bounced stay so, whatever the file says.
    kept_unsubscribed: list[str] = field(default_factory=list)
    problems: list[ImportProblem] = field(default_factory=list)
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        """Whether every line was usable."""
        return not self.problems


class CsvFormatError(ValueError):
    """The file is not a subscriber CSV at all (wrong header, not text)."""


def _read_rows(stream: IO[str]) -> Iterable[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(stream)
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    if "email" not in header:
        raise CsvFormatError(
            "the first line must name the columns, with at least 'email' "
            f"(expected: {','.join(CSV_COLUMNS)})"
        )
    unknown = [h for h in header if h and h not in CSV_COLUMNS]
    if unknown:
        raise CsvFormatError(
            f"unknown column(s) {', '.join(unknown)}; expected: {','.join(CSV_COLUMNS)}"
        )
    reader.fieldnames = header
    for row in reader:
        # csv puts surplus cells under the key None.
        if None in row:
            yield reader.line_num, {"__surplus__": "1"}
            continue
        yield reader.line_num, {k: (v or "").strip() for k, v in row.items() if k}


def import_csv(
    session: DbSession, stream: IO[str], *, now: dt.datetime, dry_run: bool = False
) -> ImportReport:
    """Add or update subscribers from CSV (email,name,language,categories,status).

    Imported readers are recorded with consent source "import". Nothing is written when
    ``dry_run`` is set. Raises ``CsvFormatError`` when the header is unusable.
    """
    report = ImportReport(dry_run=dry_run)
    seen: set[str] = set()
    statuses = {s.value for s in SubscriberStatus}
    for line, row in _read_rows(stream):
        raw_email = row.get("email", "")
        if "__surplus__" in row:
            report.problems.append(ImportProblem(line, raw_email, "more cells than columns"))
            continue
        try:
            address = normalize_email(raw_email)
        except InvalidEmail as error:
            reason = f"{error} ({error.detail})" if error.detail else str(error)
            report.problems.append(ImportProblem(line, raw_email, reason))
            continue
        if address in seen:
            report.problems.append(ImportProblem(line, address, "appears twice in the file"))
            continue
        seen.add(address)
        language = row.get("language") or None
        if language and language not in LANGUAGES:
            report.problems.append(
                ImportProblem(line, address, f"language {language!r} is not one of fr, en, es")
            )
            continue
        raw_categories = [c for c in _SPLIT.split(row.get("categories", "")) if c]
        unknown = [c for c in raw_categories if c not in CATEGORIES]
        if unknown:
            report.problems.append(
                ImportProblem(line, address, f"unknown categories: {', '.join(unknown)}")
            )
            continue
        status = (row.get("status") or SubscriberStatus.ACTIVE).lower()
        if status not in statuses:
            report.problems.append(
                ImportProblem(line, address, f"status {status!r} is not one of {sorted(statuses)}")
            )
            continue
        _import_one(session, report, address, row, language, raw_categories, status, now)
    if dry_run:
        session.rollback()
    else:
        session.commit()
    return report


def _import_one(
    session: DbSession,
    report: ImportReport,
    address: str,
    row: dict[str, str],
    language: str | None,
    categories: list[str],
    status: str,
    now: dt.datetime,
) -> None:
    existing = find_by_email(session, address)
    if existing is None:
        subscriber = Subscriber(
            email=address,
            name=row.get("name") or None,
            language=clean_language(language),
            categories=clean_categories(categories),
            status=status,
            consent_at=now,
            consent_source="import",
            confirmed_at=now if status in ("active", "paused") else None,
            unsubscribed_at=now if status == "unsubscribed" else None,
        )
        session.add(subscriber)
        session.flush()
        report.created.append(address)
        return
    before = (existing.name, existing.language, list(existing.categories or []), existing.status)
    if row.get("name"):
        existing.name = row["name"][:200]
    if language:
        existing.language = language
    if categories:
        existing.categories = clean_categories(categories)
    left = existing.status in (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED)
    if left and status != existing.status:
        # A file must never resubscribe someone who left; only they can, by signing up.
        report.kept_unsubscribed.append(address)
    elif status != existing.status:
        existing.status = status
        if status == SubscriberStatus.UNSUBSCRIBED:
            existing.unsubscribed_at = now
            _cancel_queued(session, existing)
    after = (existing.name, existing.language, list(existing.categories or []), existing.status)
    if after != before:
        report.updated.append(address)
    elif address not in report.kept_unsubscribed:
        report.unchanged.append(address)


def export_csv(session: DbSession, stream: IO[str], statuses: Sequence[str] | None = None) -> int:
    """Write subscribers as CSV (email,name,language,categories,status); returns the count."""
    query = select(Subscriber).order_by(Subscriber.email)
    if statuses:
        query = query.where(Subscriber.status.in_(list(statuses)))
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    count = 0
    for subscriber in session.scalars(query):
        writer.writerow(
            [
                subscriber.email,
                subscriber.name or "",
                subscriber.language,
                ";".join(subscriber.categories or []),
                subscriber.status,
            ]
        )
        count += 1
    return count


def export_csv_text(session: DbSession, statuses: Sequence[str] | None = None) -> str:
    """The CSV export as a string (for tests and small lists)."""
    buffer = io.StringIO()
    export_csv(session, buffer, statuses)
    return buffer.getvalue()
