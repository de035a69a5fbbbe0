"""Crash safety and many workers, measured at a real SMTP server on loopback.

`digest send` is killed with SIGKILL at random moments, many times, then run to the end:
every subscriber must have the edition, and a recipient may have it twice only because of
the one message that was inside an SMTP transaction when a process died (so never more
duplicates than kills). Several `digest worker` processes on PostgreSQL must share the
queue without ever sending one delivery twice.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, select

from digest.extensions import db
from digest.mail.delivery import queue_edition
from digest.models import Delivery, DeliveryState, Edition, Subscriber
from tests.smtpd import RecordingHandler, smtp_server

DAY = "2026-11-28"
ROUNDS = int(os.environ.get("DIGEST_CRASH_ROUNDS", "8"))
READERS = 200


def _env(app: Flask, port: int, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DIGEST_ENV="testing",
        DIGEST_DATABASE_URL=app.config["DATABASE_URL"],
        DIGEST_MAIL_URL=f"smtp://127.0.0.1:{port}?timeout=10",
        DIGEST_SECRET_KEY=app.config["SECRET_KEY"],
        DIGEST_INSTANCE_PATH=app.instance_path,
        DIGEST_PUBLIC_URL="http://digest.test",
        DIGEST_MAIL_FROM="Le Digest <digest@digest.test>",
        DIGEST_MAIL_DOMAIN="digest.test",
        DIGEST_MAIL_BATCH_SIZE="15",
        DIGEST_LOG_LEVEL="WARNING",
    )
    env.update(extra)
    return env


def _digest(*args: str) -> list[str]:
    return [sys.executable, "-c", "from digest.cli import main; main()", *args]


def _prepare(count: int) -> list[str]:
    """A day of news and ``count`` confirmed readers; returns their addresses."""
    from tests.test_delivery_assembly import day_with_articles

    day_with_articles()
    emails = [f"reader{n:04d}@example.org" for n in range(count)]
    db.session.add_all(
        Subscriber(email=email, status="active", language=("fr", "en", "es")[n % 3])
        for n, email in enumerate(emails)
    )
    db.session.commit()
    return emails


def _sent_count() -> int:
    db.session.expire_all()
    return (
        db.session.scalar(
            select(func.count(Delivery.id)).where(Delivery.state == DeliveryState.SENT)
        )
        or 0
    )


@pytest.mark.parametrize("command", ["send", "worker"])
def test_sigkill_at_random_moments_never_loses_a_reader(
    app: Flask, tmp_path: Path, command: str
) -> None:
    emails = _prepare(READERS)
    if command == "send":
        args, finish = ["send", "--date", DAY], ["send", "--date", DAY]
    else:
        # The worker delivers what the scheduler queued; `--once` then finishes the queue.
        edition = db.session.scalar(select(Edition))
        assert edition is not None
        queue_edition(db.session, edition, edition.created_at)
        args, finish = ["worker", "--interval", "0.2"], ["worker", "--once"]
    rng = random.Random(f"20261128-{command}")
    handler = RecordingHandler(delay=0.008)
    kills = 0
    with smtp_server(handler) as (_, port):
        env = _env(app, port)
        for _ in range(ROUNDS):
            before = len(handler.received)
            process = subprocess.Popen(
                _digest(*args), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            if rng.random() < 0.3:
                # Anywhere, including start-up, edition building and claiming.
                time.sleep(rng.uniform(0.0, 3.0))
            else:
                # Right after the server accepted a message: the most dangerous moment, when
                # the sender has not yet recorded it as sent.
                target = before + rng.randint(1, 25)
                deadline = time.monotonic() + 60
                while len(handler.received) < target and process.poll() is None:
                    assert time.monotonic() < deadline, "the sender made no progress"
                    time.sleep(0.002)
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                kills += 1
            process.wait()
        # Then let it finish (a killed PostgreSQL session may need a moment to be noticed).
        for _ in range(5):
            done = subprocess.run(
                _digest(*finish), env=env, capture_output=True, text=True, timeout=300
            )
            assert done.returncode == 0, done.stderr
            if _sent_count() == READERS:
                break
            time.sleep(1)
    counts = handler.per_recipient()
    duplicates = sum(n - 1 for n in counts.values())
    print(
        f"\ncrash test ({command}): {kills} kills, {duplicates} duplicates, {len(counts)} readers"
    )
    assert set(counts) == set(emails), "every reader gets the edition"
    assert duplicates <= kills, f"{duplicates} duplicates for {kills} kills"
    assert _sent_count() == READERS


def test_several_workers_on_postgresql_share_the_queue_exactly_once(app: Flask) -> None:
    if db.engine.dialect.name != "postgresql":
        pytest.skip("several workers need PostgreSQL (SQLite allows one sender)")
    emails = _prepare(300)
    edition = db.session.scalar(select(Edition))
    assert edition is not None
    assert queue_edition(db.session, edition, edition.created_at) == 300
    handler = RecordingHandler(delay=0.002)
    with smtp_server(handler) as (_, port):
        env = _env(app, port, DIGEST_MAIL_BATCH_SIZE="10")
        workers = [
            subprocess.Popen(
                _digest("worker", "--interval", "0.2"),
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(3)
        ]
        deadline = time.monotonic() + 240
        while _sent_count() < 300:
            assert time.monotonic() < deadline, "workers stalled"
            assert all(w.poll() is None for w in workers), "a worker died"
            time.sleep(0.2)
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        outputs = [worker.communicate(timeout=30) for worker in workers]
        assert [w.returncode for w in workers] == [0, 0, 0], outputs
    assert handler.per_recipient() == {email: 1 for email in emails}
    busy = [out for out, _ in outputs if "sent" in out]
    assert len(busy) >= 2, "the work was shared between workers"


def test_two_schedulers_queueing_at_once_create_each_delivery_once(app: Flask) -> None:
    if db.engine.dialect.name != "postgresql":
        pytest.skip("concurrent schedulers share a database only on PostgreSQL")
    _prepare(400)
    edition = db.session.scalar(select(Edition))
    assert edition is not None
    edition_id, when = edition.id, edition.created_at
    db.session.commit()
    barrier = threading.Barrier(2)
    added: list[int] = []

    def scheduler() -> None:
        with app.app_context():
            mine = db.session.get(Edition, edition_id)
            barrier.wait()
            added.append(queue_edition(db.session, mine, when))
            db.session.remove()

    threads = [threading.Thread(target=scheduler) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(added)[-1] + sorted(added)[0] == 400
    assert db.session.scalar(select(func.count(Delivery.id))) == 400
