"""Seeing a running digest: structured logs, request ids, Prometheus metrics, heartbeats."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from digest.models import Heartbeat

# The scheduler beats every minute; readiness tolerates a few missed beats before failing.
SCHEDULER_HEARTBEAT = "scheduler"


def as_utc(moment: dt.datetime) -> dt.datetime:
    """``moment`` as an aware UTC datetime (SQLite hands back naive values it stored as UTC)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


def beat(session: Session, name: str, now: dt.datetime) -> None:
    """Record that the process called ``name`` is alive at ``now``, and commit.

    A heartbeat is its own unit of work, so this commits. It is one upsert on the unique
    name: two schedulers started by mistake both beat without a duplicate-key error.
    """
    if now.tzinfo is None:
        raise ValueError("beat() needs an aware datetime (UTC)")
    moment = as_utc(now)
    dialect = session.get_bind().dialect.name
    if dialect in ("postgresql", "sqlite"):
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = insert(Heartbeat).values(name=name, beat_at=moment)
        statement = statement.on_conflict_do_update(
            index_elements=[Heartbeat.name], set_={"beat_at": moment}
        )
        session.execute(statement)
    else:
        # Other backends: read-then-write is good enough for a single scheduler.
        row = session.scalar(select(Heartbeat).where(Heartbeat.name == name))
        if row is None:
            session.add(Heartbeat(name=name, beat_at=moment))
        else:
            row.beat_at = moment
    session.commit()


def last_beat(session: Session, name: str) -> dt.datetime | None:
    """When ``name`` last beat (aware UTC), or None if it never did."""
    moment = session.scalar(select(Heartbeat.beat_at).where(Heartbeat.name == name))
    return as_utc(moment) if moment is not None else None
