"""Schema management (Alembic through Flask-Migrate), per-connection database settings, a
pooled connection lent for statements run through the driver, and the typed result of a
session's INSERT, UPDATE or DELETE."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from select import POLLIN, poll
from typing import Any, cast

from flask import Flask, current_app
from flask_migrate import upgrade
from sqlalchemy import event
from sqlalchemy.engine import CursorResult, Dialect, Engine, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.sql.dml import UpdateBase

from digest.extensions import DbSession


def upgrade_schema() -> None:
    """Apply every pending migration (creates the schema, and a SQLite file's folder, if new)."""
    url = make_url(current_app.config["SQLALCHEMY_DATABASE_URI"])
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    upgrade()


def tune_engines(app: Flask) -> None:
    """Give every SQLite connection the app opens the settings a web site needs, and check
    each pooled PostgreSQL connection is still open before lending it (see below)."""
    from digest.extensions import db

    with app.app_context():
        engines: Mapping[str | None, Engine] = db.engines
    for engine in engines.values():
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_settings)
        elif engine.dialect.name == "postgresql":
            event.listen(engine, "checkout", _ClosedByServer(engine.dialect))


def execute_dml(session: DbSession, statement: UpdateBase) -> CursorResult[Any]:
    """Run an INSERT, UPDATE or DELETE in ``session``; its result carries ``rowcount``.

    ``Session.execute`` types every result as a ``Result``, but a DML statement's is a
    ``CursorResult`` (``Connection.execute`` says so; ``Session.execute`` has no such overload).
    """
    return cast(CursorResult[Any], session.execute(statement))


@contextmanager
def driver_connection(engine: Engine) -> Iterator[Any]:
    """The DBAPI connection of one of ``engine``'s pooled connections, for a statement run
    through the driver (SQLAlchemy's execution and a Session cost several times a short one).

    It goes back to the pool afterwards, which rolls back whatever the driver still holds
    open; one the server dropped is invalidated instead. Driver errors come out as
    SQLAlchemy's exception classes, without their parameters (a reader's address and IP).
    """
    dialect = engine.dialect
    try:
        connection = engine.raw_connection()
        try:
            yield connection.dbapi_connection
        except dialect.loaded_dbapi.Error as error:
            if dialect.is_disconnect(error, connection.dbapi_connection, None):
                connection.invalidate(error)
            raise
        finally:
            connection.close()
    except dialect.loaded_dbapi.Error as error:
        raise DBAPIError.instance(
            None, None, error, dialect.loaded_dbapi.Error, hide_parameters=True, dialect=dialect
        ) from error


def _sqlite_settings(connection: Any, record: Any) -> None:
    # Write-ahead logging: readers never wait for the writer and the writer never waits for
    # readers, so gunicorn's workers can answer pages while one of them commits a sign-up.
    # synchronous=NORMAL is the setting SQLite documents for WAL: a commit no longer waits for
    # fsync (the log is synced at checkpoints), so a process crash loses nothing and a power
    # cut can lose only the last commits, never corrupt the file. WAL is remembered by the
    # file, synchronous by the connection; an in-memory database stays in "memory" mode.
    cursor = connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


class _ClosedByServer:
    """Replace a pooled PostgreSQL connection the server has closed, without a round trip.

    When PostgreSQL restarts (or ends a session: pg_terminate_backend, idle_session_timeout),
    each backend writes its client a last error and closes the socket, so a pooled
    connection's socket turns readable while no query runs. An idle connection has nothing
    else to read (this app never LISTENs), so only then is it pinged (a TLS record the driver
    has not read yet passes the ping); if the ping fails, the pool opens a fresh connection
    before the request gets one. pool_pre_ping instead sends SELECT 1 on every checkout: a
    round trip and some 15 microseconds of CPU per request. Like the ping, this cannot see a
    server that dies after the check; a statement that meets a closed connection still fails
    and tells the pool (SQLAlchemy's disconnect handling).
    """

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect

    def __call__(self, dbapi_connection: Any, record: Any, proxy: Any) -> None:
        if dbapi_connection.closed:
            raise DisconnectionError("the pooled connection is closed")
        # poll, not select: a busy process's descriptors can pass select's limit of 1024.
        waiting = poll()
        waiting.register(dbapi_connection.fileno(), POLLIN)
        if not waiting.poll(0):
            return
        try:
            self.dialect.do_ping(dbapi_connection)
        except self.dialect.loaded_dbapi.Error as error:
            if dbapi_connection.closed or self.dialect.is_disconnect(error, dbapi_connection, None):
                raise DisconnectionError("the server closed the pooled connection") from error
            raise
