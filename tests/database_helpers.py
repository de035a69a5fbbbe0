"""Helpers for tests that watch the database: what the app sends it, requests on other
threads, and waiting until one of them waits for a lock."""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Generic, TypeVar

from flask import Flask
from sqlalchemy import event, select, text

from digest.extensions import db
from digest.models import Delivery, Subscriber

Result = TypeVar("Result")


def mail_kinds(email: str) -> list[str]:
    """The kinds of mail queued for ``email``, oldest first, read afresh from the database."""
    db.session.expire_all()
    return list(
        db.session.scalars(
            select(Delivery.kind)
            .join(Subscriber, Delivery.subscriber_id == Subscriber.id)
            .where(Subscriber.email == email)
            .order_by(Delivery.id)
        )
    )


def on_sqlite() -> bool:
    """Whether the app under test runs on SQLite (else PostgreSQL)."""
    return db.engine.dialect.name == "sqlite"


class AnotherRequest(threading.Thread, Generic[Result]):
    """``service(db.session, **arguments)`` on a thread of its own, as another web request:
    its own app context, session and pooled connection."""

    def __init__(
        self,
        app: Flask,
        service: Callable[..., Result],
        start: threading.Barrier | None = None,
        **arguments: Any,
    ) -> None:
        super().__init__()
        self.app, self.service, self.start_together = app, service, start
        self.arguments = arguments
        self.result: Result | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        with self.app.app_context():
            try:
                if self.start_together:
                    self.start_together.wait(timeout=10)
                self.result = self.service(db.session, **self.arguments)
            except BaseException as error:  # raised again in the test, by finish()
                self.error = error
            finally:
                db.session.remove()

    def finish(self) -> Result:
        """Wait for the request; its result, or its error raised here."""
        self.join(timeout=30)
        assert not self.is_alive(), "the request never finished"
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


def wait_until_a_statement_waits(count: int = 1) -> None:
    """Return once ``count`` requests wait behind the change the test holds open.

    Only PostgreSQL needs it, to be sure the request's statement began before that change
    commits. On SQLite the request's writing statement takes the write lock before it
    reads, so it runs after the held change whenever it starts.
    """
    if on_sqlite():
        return
    deadline = time.monotonic() + 10
    with db.engine.connect() as watcher:
        while time.monotonic() < deadline:
            waiting = watcher.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar()
            # pg_stat_activity is read once per transaction: a new one for each look.
            watcher.rollback()
            if waiting and waiting >= count:
                return
            time.sleep(0.01)
    raise AssertionError(f"fewer than {count} requests waited for the change held open")


def all_at_once(requests: list[AnotherRequest[Result]]) -> list[Result]:
    """Start ``requests`` together (each waits at one barrier before its service runs); their
    answers. How they then interleave is left to chance."""
    start = threading.Barrier(len(requests))
    for request in requests:
        request.start_together = start
        request.start()
    return [request.finish() for request in requests]


def the_daily_cap_held(email: str, answers: list[bool]) -> None:
    """After six requests for ``email`` sent ``all_at_once``: what they say they queued is
    what is stored, and the cap of three held however they interleaved."""
    queued = len(mail_kinds(email))
    # Each mail a request reported queued is stored, and no other.
    assert queued == answers.count(True)
    if on_sqlite():
        # The write lock puts the requests in a row: the first three queue, the rest count 3.
        assert queued == 3
    else:
        # A request that meets another's write steps aside, so fewer may get through, but
        # never more than the cap, and the first to write always does: 0 would be a lost
        # request, 4 a broken cap. (The exact answer for one fixed interleaving is asserted
        # by the tests built on all_behind_one_write.)
        assert 1 <= queued <= 3, f"{queued} mails queued by six requests at once"


def behind_held_writes(writes: Sequence[Any], request: AnotherRequest[Result]) -> Result:
    """Start ``request`` while ``writes`` are held uncommitted on another connection, and
    commit them once it waits behind them; its answer.

    So the request has begun before the writes land: on PostgreSQL its statement has taken
    its snapshot without them; on SQLite it waits for the write lock and then sees them.
    """
    with db.engine.connect() as other:
        for write in writes:
            other.execute(write)
        request.start()
        wait_until_a_statement_waits()
        other.commit()
    return request.finish()


def all_behind_one_write(write: Any, requests: list[AnotherRequest[Result]]) -> list[Result]:
    """Start ``requests`` while ``write`` is held uncommitted, and roll it back once every
    one of them waits behind it; their answers.

    So every request has begun before any can write: on PostgreSQL each statement has taken
    its snapshot and waits for the row; on SQLite each waits for the write lock.
    """
    with db.engine.connect() as other:
        other.execute(write)
        for request in requests:
            request.start()
        wait_until_a_statement_waits(len(requests))
        other.rollback()
    return [request.finish() for request in requests]


@contextlib.contextmanager
def database_work() -> Iterator[list[str]]:
    """What the app's connections send to the database while the block runs.

    SQLite: each statement, as the library runs it (BEGIN and COMMIT included). PostgreSQL:
    each statement the client asks the server to run (an Execute, or a Query for BEGIN,
    COMMIT and other simple statements), from libpq's protocol trace. Not round trips:
    psycopg prepares a statement on its fifth run on a connection, which costs that
    connection one more round trip once, whatever the address.
    """
    sent: list[str] = []
    traced: list[Any] = []
    with tempfile.TemporaryFile() as trace:

        def watch(dbapi_connection: Any, record: Any, proxy: Any) -> None:
            traced.append(dbapi_connection)
            if on_sqlite():
                dbapi_connection.set_trace_callback(sent.append)
            else:
                dbapi_connection.pgconn.trace(trace.fileno())

        event.listen(db.engine, "checkout", watch)
        try:
            yield sent
        finally:
            event.remove(db.engine, "checkout", watch)
            for dbapi_connection in traced:
                if on_sqlite():
                    dbapi_connection.set_trace_callback(None)
                else:
                    dbapi_connection.pgconn.untrace()
        trace.seek(0)
        sent.extend(
            message
            for message in trace.read().decode().splitlines()
            if "\tF\t" in message and message.split("\t")[3] in ("Execute", "Query")
        )
