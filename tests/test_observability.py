"""Heartbeats, structured logs, request ids and metrics: what an operator sees."""

from __future__ import annotations

import datetime as dt

import pytest
from flask import Flask
from sqlalchemy import func, select

from digest.extensions import db
from digest.models import Heartbeat
from digest.observability import beat, last_beat

MORNING = dt.datetime(2026, 3, 2, 7, 0, tzinfo=dt.UTC)


def test_a_beat_is_remembered_and_later_beats_move_it_forward(app: Flask) -> None:
    assert last_beat(db.session, "scheduler") is None
    beat(db.session, "scheduler", MORNING)
    beat(db.session, "scheduler", MORNING + dt.timedelta(minutes=1))
    db.session.expire_all()
    assert last_beat(db.session, "scheduler") == MORNING + dt.timedelta(minutes=1)
    assert db.session.scalar(select(func.count()).select_from(Heartbeat)) == 1


def test_beats_are_kept_per_process_name_and_stored_in_utc(app: Flask) -> None:
    casablanca = dt.timezone(dt.timedelta(hours=1))
    beat(db.session, "scheduler", MORNING)
    beat(db.session, "worker-a", dt.datetime(2026, 3, 2, 9, 30, tzinfo=casablanca))
    assert last_beat(db.session, "worker-a") == dt.datetime(2026, 3, 2, 8, 30, tzinfo=dt.UTC)
    assert last_beat(db.session, "scheduler") == MORNING


def test_a_beat_without_a_timezone_is_refused(app: Flask) -> None:
    with pytest.raises(ValueError, match="aware"):
        beat(db.session, "scheduler", dt.datetime(2026, 3, 2, 7, 0))
    assert last_beat(db.session, "scheduler") is None
