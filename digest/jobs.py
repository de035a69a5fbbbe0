"""The daily pipeline: ingest → classify → compose → queue → deliver, as one service call."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from digest.models import Edition

log = logging.getLogger(__name__)


@dataclass
class DailyReport:
    """What one run of the pipeline did, for logs and the command line."""

    day: dt.date
    ingest: Any = None
    edition_id: int | None = None
    queued: int = 0
    delivery: Any = None


def prepare_edition(session: Session, day: dt.date, now: dt.datetime) -> Edition:
    """Classify what was ingested (editors' choices kept), then compose the day's edition."""
    from digest.compose import compose_edition
    from digest.understand import classify_articles

    classify_articles(session, now)
    return compose_edition(session, day, now)


def run_daily(session: Session, *, day: dt.date, now: dt.datetime, transport: Any) -> DailyReport:
    """Ingest, classify, compose and send one day's edition; running it twice sends nobody twice."""
    from digest.ingest import ingest_locations
    from digest.mail.delivery import send_edition

    report = DailyReport(day=day)
    report.ingest = ingest_locations(session, None, now)
    edition = prepare_edition(session, day, now)
    report.edition_id = edition.id
    result = send_edition(session, transport, day, now)
    report.queued = result.queued
    report.delivery = result.report
    log.info("daily run for %s: edition %s, %d queued", day.isoformat(), edition.id, result.queued)
    return report
