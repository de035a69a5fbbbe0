"""Worker liveness: how one sender tells that rows claimed by another sender were abandoned.

On PostgreSQL each sender holds a session advisory lock named by its token on a connection of
its own. The database drops the lock the moment that connection dies (process killed, machine
gone), so "I can take your lock" proves "you are gone" on any machine, with no timeout to tune.

SQLite has no such locks and is used by one process on one machine: a sender holds an
exclusive ``flock`` on a file beside the database; a second sender is refused (``SenderBusy``)
and the holder may treat every row left in ``sending`` as abandoned.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import time
from pathlib import Path
from types import TracebackType
from typing import IO

from sqlalchemy import ColumnElement, Connection, select, text, update

from digest.database import execute_dml
from digest.extensions import DbSession
from digest.models import Delivery, DeliveryState

# First half of the two-integer advisory lock key: keeps ours apart from other applications'.
LOCK_NAMESPACE = 0x6D6C  # "ml"


# `digest serve` polls the queue every few seconds, holding the lock for a moment each time:
# a `digest send` typed meanwhile waits that moment out instead of being refused.
SQLITE_LOCK_WAIT_SECONDS = 10.0


def _flock_within(handle: IO[bytes], seconds: float) -> None:
    """Take an exclusive flock on ``handle``, retrying for ``seconds``; BlockingIOError after."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.1)


class SenderBusy(RuntimeError):
    """Another sender is already running on this SQLite database."""


class WorkerLease:
    """Held for the whole run of one sender; its ``token`` marks the rows it claims."""

    def __init__(self, session: DbSession) -> None:
        self.session = session
        engine = session.get_bind()
        self.dialect = engine.dialect.name
        self._connection: Connection | None = None
        self._lockfile: IO[bytes] | None = None
        if self.dialect == "postgresql":
            self.key = secrets.randbelow(2**31 - 1) + 1
            self.token = f"pg:{self.key}"
        else:
            self.key = 0
            self.token = f"local:{os.getpid()}:{secrets.token_hex(4)}"
        self._engine = engine

    def __enter__(self) -> WorkerLease:
        if self.dialect == "postgresql":
            self._connection = self._engine.connect()  # type: ignore[union-attr]
            self._connection.execute(
                text("SELECT pg_advisory_lock(:ns, :key)"), {"ns": LOCK_NAMESPACE, "key": self.key}
            )
            self._connection.commit()
        else:
            path = _lock_path(str(self._engine.url.database or "digest"))  # type: ignore[union-attr]
            handle = path.open("ab")
            try:
                _flock_within(handle, SQLITE_LOCK_WAIT_SECONDS)
            except BlockingIOError as error:
                handle.close()
                raise SenderBusy(
                    "another sender is running on this SQLite database; SQLite supports one "
                    "sender at a time (use PostgreSQL for several workers)"
                ) from error
            self._lockfile = handle
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        try:
            if kind is not None:
                self.session.rollback()
                self.release_claims()
        finally:
            if self._connection is not None:
                self._connection.close()  # closing the session ends the advisory lock
                self._connection = None
            if self._lockfile is not None:
                fcntl.flock(self._lockfile.fileno(), fcntl.LOCK_UN)
                self._lockfile.close()
                self._lockfile = None

    def recover_abandoned(self) -> int:
        """Put rows claimed by senders that no longer exist back in the queue; return how many."""
        owners = self.session.scalars(
            select(Delivery.claimed_by)
            .where(Delivery.state == DeliveryState.SENDING)
            .where(Delivery.claimed_by.is_not(None), Delivery.claimed_by != self.token)
            .distinct()
        ).all()
        unclaimed_sending = self.session.scalar(
            select(Delivery.id)
            .where(Delivery.state == DeliveryState.SENDING, Delivery.claimed_by.is_(None))
            .limit(1)
        )
        dead = [owner for owner in owners if owner is not None and self._is_dead(owner)]
        recovered = 0
        for owner in dead:
            recovered += self._requeue(Delivery.claimed_by == owner)
            self._forget(owner)
        if unclaimed_sending is not None:
            recovered += self._requeue(Delivery.claimed_by.is_(None))
        self.session.commit()
        return recovered

    def release_claims(self) -> int:
        """Give back this sender's rows that are still in ``sending``."""
        count = self._requeue(Delivery.claimed_by == self.token)
        self.session.commit()
        return count

    def _requeue(self, condition: ColumnElement[bool]) -> int:
        result = execute_dml(
            self.session,
            update(Delivery)
            .where(Delivery.state == DeliveryState.SENDING, condition)
            .values(state=DeliveryState.QUEUED, claimed_by=None)
            .execution_options(synchronize_session=False),
        )
        return int(result.rowcount or 0)

    def _is_dead(self, owner: str) -> bool:
        if self.dialect != "postgresql":
            # We hold the only sender lock, so any other owner is a dead process.
            return True
        if not owner.startswith("pg:") or self._connection is None:
            return True
        key = int(owner[3:])
        got = self._connection.execute(
            text("SELECT pg_try_advisory_lock(:ns, :key)"), {"ns": LOCK_NAMESPACE, "key": key}
        ).scalar()
        self._connection.commit()
        return bool(got)

    def _forget(self, owner: str) -> None:
        if self.dialect == "postgresql" and owner.startswith("pg:") and self._connection:
            self._connection.execute(
                text("SELECT pg_advisory_unlock(:ns, :key)"),
                {"ns": LOCK_NAMESPACE, "key": int(owner[3:])},
            )
            self._connection.commit()


def _lock_path(database: str) -> Path:
    if database in ("", ":memory:"):
        return Path(os.environ.get("TMPDIR", "/tmp")) / "digest-sender.lock"
    return Path(database + ".sender.lock")
