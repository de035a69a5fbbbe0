"""APScheduler wiring: the daily pipeline at SEND_AT, the delivery poll, the heartbeat.

Started only by `digest serve` and `digest scheduler`, never by create_app: gunicorn
workers and the reloader would otherwise each run the daily job.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from flask import Flask

from digest.calendar import newsroom_today, newsroom_zone, parse_send_at

log = logging.getLogger(__name__)
# APScheduler logs every run of the minutely jobs at INFO; only its warnings matter here.
logging.getLogger("apscheduler").setLevel(logging.WARNING)


def daily_trigger(send_at: str, timezone: str) -> CronTrigger:
    """Every day at ``send_at`` (HH:MM) in ``timezone``."""
    hour, minute = parse_send_at(send_at)
    return CronTrigger(hour=hour, minute=minute, timezone=newsroom_zone(timezone))


def build_scheduler(app: Flask, *, blocking: bool, deliver: bool) -> BaseScheduler:
    """A scheduler with the daily job (and, if ``deliver``, the delivery poll) for ``app``."""
    zone = newsroom_zone(app.config["TIMEZONE"])
    scheduler: BaseScheduler = (
        BlockingScheduler(timezone=zone) if blocking else BackgroundScheduler(timezone=zone)
    )
    scheduler.add_job(
        run_daily_job,
        daily_trigger(app.config["SEND_AT"], app.config["TIMEZONE"]),
        args=[app],
        id="daily",
        max_instances=1,
        coalesce=True,
        # A process that was down at SEND_AT still sends when it comes back within the hour.
        misfire_grace_time=3600,
    )
    # Approval mode and its deadline are settings admins change at run time, so instead of a
    # trigger fixed at start a minutely check re-runs the pipeline for an edition that waited
    # once its wait is over (deadline passed, or approval mode turned off).
    scheduler.add_job(
        approval_deadline_job,
        "interval",
        minutes=1,
        args=[app],
        id="approval-deadline",
        max_instances=1,
        coalesce=True,
    )
    scheduler.add_job(
        beat_job,
        "interval",
        minutes=1,
        args=[app],
        id="heartbeat",
        # Beat at once, so /readyz is green from the start rather than a minute later.
        next_run_time=dt.datetime.now(zone),
    )
    if deliver:
        scheduler.add_job(
            deliver_job,
            "interval",
            seconds=app.config["DELIVERY_POLL_SECONDS"],
            args=[app],
            id="deliver",
            max_instances=1,
            coalesce=True,
        )
    return scheduler


@contextmanager
def _job(app: Flask, what: str) -> Iterator[None]:
    """Run a job's body in an app context; log its failure instead of killing the scheduler."""
    from digest.extensions import db

    with app.app_context():
        try:
            yield
        except Exception:
            # A scheduler must outlive one bad run; the next run starts from a clean session.
            log.exception("%s failed", what)
            db.session.rollback()


def run_daily_job(app: Flask) -> None:
    """Scheduled edge: read the clock, run the day's pipeline."""
    from digest.extensions import db
    from digest.jobs import run_daily_recorded
    from digest.mail.transports import app_transport

    now = dt.datetime.now(dt.UTC)
    day = newsroom_today(app.config["TIMEZONE"], now)
    with _job(app, f"daily run for {day.isoformat()}"):
        run_daily_recorded(db.session, day=day, now=now, transport=app_transport(app))


def approval_deadline_job(app: Flask) -> None:
    """Scheduled edge: when today's waiting edition may wait no longer, run the pipeline again."""
    from digest.extensions import db
    from digest.jobs import run_daily_recorded, waiting_is_over
    from digest.mail.transports import app_transport

    now = dt.datetime.now(dt.UTC)
    day = newsroom_today(app.config["TIMEZONE"], now)
    with _job(app, f"approval deadline check for {day.isoformat()}"):
        if waiting_is_over(db.session, day, now):
            run_daily_recorded(db.session, day=day, now=now, transport=app_transport(app))


def deliver_job(app: Flask) -> None:
    """Scheduled edge: send whatever is queued (confirmation mails, retries, digests)."""
    from digest.extensions import db
    from digest.mail.delivery import SenderBusy, deliver_pending
    from digest.mail.transports import app_transport

    with _job(app, "delivery poll"):
        try:
            deliver_pending(db.session, app_transport(app), dt.datetime.now(dt.UTC))
        except SenderBusy:
            # A `digest send` is running on this SQLite database; the next poll catches up.
            log.info("another sender is running; this delivery poll is skipped")


def beat_job(app: Flask) -> None:
    """Scheduled edge: record that the scheduler is alive (read by /readyz)."""
    from digest.extensions import db
    from digest.observability import beat

    with _job(app, "heartbeat"):
        beat(db.session, "scheduler", dt.datetime.now(dt.UTC))
