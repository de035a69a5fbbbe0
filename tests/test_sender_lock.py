"""On SQLite one sender at a time: a second waits a moment for the first, then gives up."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from flask import Flask

from digest.extensions import db
from digest.mail import workers
from digest.mail.workers import SenderBusy, WorkerLease
from tests.conftest import make_test_app


@pytest.fixture
def sqlite_app(tmp_path: Path) -> Flask:
    """An app on a SQLite file (the lock is a file beside it)."""
    return make_test_app(f"sqlite:///{tmp_path / 'lock.db'}", tmp_path)


def test_a_second_sender_waits_for_a_short_poll_to_finish(
    sqlite_app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workers, "SQLITE_LOCK_WAIT_SECONDS", 5.0)
    with sqlite_app.app_context():
        first = WorkerLease(db.session).__enter__()
        releaser = threading.Timer(0.3, first.__exit__, args=(None, None, None))
        releaser.start()
        with WorkerLease(db.session) as second:
            assert second.token != first.token
        releaser.join()
        db.engine.dispose()


def test_a_second_sender_is_refused_while_the_first_keeps_sending(
    sqlite_app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workers, "SQLITE_LOCK_WAIT_SECONDS", 0.3)
    with sqlite_app.app_context():
        with (
            WorkerLease(db.session),
            pytest.raises(SenderBusy, match="PostgreSQL"),
            WorkerLease(db.session),
        ):
            pass
        db.engine.dispose()
