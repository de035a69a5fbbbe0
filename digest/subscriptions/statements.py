"""What the statements run through the driver share: compiling, autocommit, the daily cap."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import sqlite3
from collections.abc import Iterable, Iterator
from typing import Any

from flask import current_app
from sqlalchemy import (
    Column,
    ColumnElement,
    Integer,
    Select,
    Table,
    bindparam,
    case,
    exists,
    func,
    literal_column,
    select,
    true,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import scoped_session

from digest.extensions import DbSession
from digest.models import Delivery, DeliveryState, Subscriber

# Kinds of transactional mail a stranger can trigger by typing an address into a form;
# together they are capped per address per day so the site cannot be used to flood an inbox.
CONFIRM_KINDS: tuple[str, ...] = ("confirm", "already", "new_link", "email_change")


# The links each notice carries, by template name -> purpose; the sender signs them.
CONFIRM_LINKS: dict[str, str] = {"confirm_url": "confirm"}
MANAGE_LINKS: dict[str, str] = {"manage_url": "manage", "unsubscribe_url": "unsubscribe"}


def _confirm_context() -> dict[str, Any]:
    return {"max_age_days": int(current_app.config.get("CONFIRM_MAX_AGE_DAYS", 7))}


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


@contextlib.contextmanager
def _sqlite_transaction(driver: Any, *, immediate: bool) -> Iterator[None]:
    """The block's statements as one SQLite transaction: committed when it ends, rolled back
    if it raises.

    ``immediate`` takes the database's write lock first (BEGIN IMMEDIATE), for a block that
    reads before it writes: the driver would open a deferred transaction only at the first
    write, and another writer could change what the block read. A block that writes first
    needs no such thing.
    """
    try:
        if immediate:
            driver.execute("BEGIN IMMEDIATE")
        yield
        driver.commit()
    except BaseException:
        driver.rollback()
        raise


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


def _asynchronous_commit() -> ColumnElement[Any]:
    """A column that makes the statement's own transaction commit asynchronously.

    set_config with is_local true is SET LOCAL: it ends with the transaction, so the pooled
    connection goes back to the pool with synchronous commits, as every other statement
    expects. The commit returns once the log is in the server's memory, and the WAL writer
    puts it on disk within three times wal_writer_delay (600 ms by default); a crash of the
    server in that window loses the transaction whole, never part of it (PostgreSQL manual,
    "Asynchronous Commit").
    """
    return func.set_config(_sql_word("synchronous_commit"), _sql_word("off"), true())


class _QueueingStatement:
    """A PostgreSQL statement that may queue a notice, run in autocommit: ``mail``'s columns
    selected by ``rows`` go into the ledger, and the statement answers whether one did.

    It commits asynchronously: a request that queues a mail must not wait for a log flush
    that a request queuing none never makes (``_NewLinkPostgresql`` says why and what a
    crash can lose).
    """

    def __init__(self, mail: dict[Column[Any], Any], rows: Select[Any], dialect: Dialect) -> None:
        queued = (
            _deliveries.insert()
            .from_select(list(mail), rows)
            .returning(_deliveries.c.id)
            .cte("queued")
        )
        self.statement = _DriverStatement(
            select(exists(select(queued.c.id)), _asynchronous_commit()), dialect
        )

    def run(self, driver: Any, row: dict[str, Any]) -> bool:
        """Run the statement for ``row``; whether it queued a mail."""
        with _autocommit(driver):
            return bool(self.statement.execute(driver, row)[0])
