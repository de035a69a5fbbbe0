"""The daily pipeline: ingest → classify → compose → queue → deliver, as one service call."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from flask import current_app

from digest.extensions import DbSession
from digest.models import Edition, EditionStatus, ScheduledRun
from digest.observability import log_context

log = logging.getLogger(__name__)


@dataclass
class DailyReport:
    """What one run of the pipeline did, for logs and the command line."""

    day: dt.date
    ingest: Any = None
    edition_id: int | None = None
    queued: int = 0
    delivery: Any = None
    # "send"; "wait" / "hold" when approval mode kept the edition back; "nothing" to compose.
    gate: str = "send"


def prepare_edition(session: DbSession, day: dt.date, now: dt.datetime) -> Edition:
    """Classify what was ingested (editors' choices kept), then compose the day's edition."""
    from digest.compose import compose_edition
    from digest.understand import classify_articles

    classify_articles(session, now)
    return compose_edition(session, day, now)


def run_daily(session: DbSession, *, day: dt.date, now: dt.datetime, transport: Any) -> DailyReport:
    """Ingest, classify, compose and send one day's edition; running it twice sends nobody twice."""
    from digest.compose import NothingToCompose
    from digest.ingest import ingest_locations
    from digest.mail.delivery import send_edition
    from digest.sending import approval_gate, hold_unapproved
    from digest.settings import effective_config
    from digest.subscriptions import resume_paused

    report = DailyReport(day=day)
    # Readers whose pause ends today are back in today's edition.
    resume_paused(session, day)
    report.ingest = ingest_locations(session, None, now)
    try:
        edition = prepare_edition(session, day, now)
    except NothingToCompose as error:
        # Every source failed or is empty: nothing to send today, and that is no crash.
        log.warning("daily run for %s: %s", day.isoformat(), error)
        report.gate = "nothing"
        return report
    report.edition_id = edition.id
    # Every log line of the run names the edition it is about.
    with log_context(edition_id=edition.id):
        # Approval mode: a draft waits for an editor until the deadline, then is sent or held.
        report.gate = approval_gate(edition, now, effective_config(session, current_app.config))
        if report.gate == "hold" and edition.status != EditionStatus.HELD:
            hold_unapproved(session, edition, now)
        if report.gate != "send":
            log.info("daily run for %s: edition %s", day.isoformat(), report.gate)
            return report
        result = send_edition(session, transport, day, now)
        report.queued = result.queued
        report.delivery = result.report
        log.info("daily run for %s: %d queued", day.isoformat(), result.queued)
        return report


def waiting_is_over(session: DbSession, day: dt.date, now: dt.datetime) -> bool:
    """Whether the day's run left its edition waiting for approval and the wait has ended.

    True once the deadline has passed (the fallback then sends or holds it) or approval mode
    was turned off meanwhile; False while it still waits, or when nothing waited.
    """
    from sqlalchemy import select

    from digest.sending import approval_gate
    from digest.settings import effective_config

    last = session.scalar(
        select(ScheduledRun)
        .where(ScheduledRun.job == "daily", ScheduledRun.day == day)
        .order_by(ScheduledRun.started_at.desc(), ScheduledRun.id.desc())
        .limit(1)
    )
    if last is None or last.outcome != "wait" or last.edition_id is None:
        return False
    edition = session.get(Edition, last.edition_id)
    if edition is None or edition.status != EditionStatus.DRAFT:
        return False
    return approval_gate(edition, now, effective_config(session, current_app.config)) != "wait"


def run_daily_recorded(
    session: DbSession, *, day: dt.date, now: dt.datetime, transport: Any
) -> ScheduledRun:
    """Run the day's pipeline and record the run (shown to editors), failures included."""
    run = ScheduledRun(job="daily", day=day, started_at=now, outcome="running")
    session.add(run)
    session.commit()
    run_id = run.id
    try:
        report = run_daily(session, day=day, now=now, transport=transport)
    except Exception as error:
        session.rollback()
        run = session.get_one(ScheduledRun, run_id)
        run.outcome, run.detail = "failed", f"{type(error).__name__}: {error}"[:2000]
        run.finished_at = dt.datetime.now(dt.UTC)
        session.commit()
        raise
    run = session.get_one(ScheduledRun, run_id)
    run.edition_id = report.edition_id
    run.outcome = "sent" if report.gate == "send" else report.gate
    if report.delivery is not None:
        run.detail = (
            f"{report.queued} queued, {report.delivery.sent} sent, "
            f"{report.delivery.retried} to retry, {report.delivery.bounced} bounced"
        )
    run.finished_at = dt.datetime.now(dt.UTC)
    session.commit()
    return run
