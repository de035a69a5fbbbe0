"""The reader's data exported or erased, and the subscriber list imported or exported as CSV."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from sqlalchemy import delete, select

from digest.extensions import DbSession
from digest.models import CATEGORIES, LANGUAGES, Delivery, Subscriber, SubscriberStatus
from digest.subscriptions.addresses import (
    _SPLIT,
    InvalidEmail,
    clean_categories,
    clean_language,
    find_by_email,
    normalize_email,
)
from digest.subscriptions.leaving import _cancel_queued

CSV_COLUMNS: tuple[str, ...] = ("email", "name", "language", "categories", "status")


def export_data(session: DbSession, subscriber: Subscriber) -> dict[str, Any]:
    """Everything stored about ``subscriber``, as a JSON-ready mapping."""

    def iso(value: dt.datetime | dt.date | None) -> str | None:
        return value.isoformat() if value else None

    deliveries = session.scalars(
        select(Delivery).where(Delivery.subscriber_id == subscriber.id).order_by(Delivery.id)
    ).all()
    return {
        "email": subscriber.email,
        "name": subscriber.name,
        "language": subscriber.language,
        "categories": list(subscriber.categories or []),
        "status": subscriber.status,
        "created_at": iso(subscriber.created_at),
        "confirmed_at": iso(subscriber.confirmed_at),
        "unsubscribed_at": iso(subscriber.unsubscribed_at),
        "paused_until": iso(subscriber.paused_until),
        "consent": {
            "at": iso(subscriber.consent_at),
            "source": subscriber.consent_source,
            "ip": subscriber.consent_ip,
            "user_agent": subscriber.consent_user_agent,
        },
        "mails": [
            {
                "kind": d.kind,
                "edition": iso(d.edition.day) if d.edition else None,
                "state": d.state,
                "created_at": iso(d.created_at),
                "sent_at": iso(d.sent_at),
            }
            for d in deliveries
        ],
    }


def delete_data(session: DbSession, subscriber: Subscriber) -> None:
    """Erase the subscriber and their delivery records; their links stop working."""
    # Explicit, because SQLite only cascades foreign keys when the pragma is on.
    session.execute(delete(Delivery).where(Delivery.subscriber_id == subscriber.id))
    session.delete(subscriber)
    session.commit()


# ---------------------------------------------------------------------- CSV import / export


@dataclass
class ImportProblem:
    """One line the import could not take, with the reason."""

    line: int
    email: str
    reason: str


@dataclass
class ImportReport:
    """What an import did (or would do, on a dry run)."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    # Addresses that had unsubscribed or bounced stay so, whatever the file says.
    kept_unsubscribed: list[str] = field(default_factory=list)
    problems: list[ImportProblem] = field(default_factory=list)
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        """Whether every line was usable."""
        return not self.problems


class CsvFormatError(ValueError):
    """The file is not a subscriber CSV at all (wrong header, not text)."""


def _read_rows(stream: IO[str]) -> Iterable[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(stream)
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    if "email" not in header:
        raise CsvFormatError(
            "the first line must name the columns, with at least 'email' "
            f"(expected: {','.join(CSV_COLUMNS)})"
        )
    unknown = [h for h in header if h and h not in CSV_COLUMNS]
    if unknown:
        raise CsvFormatError(
            f"unknown column(s) {', '.join(unknown)}; expected: {','.join(CSV_COLUMNS)}"
        )
    reader.fieldnames = header
    for row in reader:
        # csv puts surplus cells under the key None.
        if None in row:
            yield reader.line_num, {"__surplus__": "1"}
            continue
        yield reader.line_num, {k: (v or "").strip() for k, v in row.items() if k}


def import_csv(
    session: DbSession, stream: IO[str], *, now: dt.datetime, dry_run: bool = False
) -> ImportReport:
    """Add or update subscribers from CSV (email,name,language,categories,status).

    Imported readers are recorded with consent source "import". Nothing is written when
    ``dry_run`` is set. Raises ``CsvFormatError`` when the header is unusable.
    """
    report = ImportReport(dry_run=dry_run)
    seen: set[str] = set()
    statuses = {s.value for s in SubscriberStatus}
    for line, row in _read_rows(stream):
        raw_email = row.get("email", "")
        if "__surplus__" in row:
            report.problems.append(ImportProblem(line, raw_email, "more cells than columns"))
            continue
        try:
            address = normalize_email(raw_email)
        except InvalidEmail as error:
            reason = f"{error} ({error.detail})" if error.detail else str(error)
            report.problems.append(ImportProblem(line, raw_email, reason))
            continue
        if address in seen:
            report.problems.append(ImportProblem(line, address, "appears twice in the file"))
            continue
        seen.add(address)
        language = row.get("language") or None
        if language and language not in LANGUAGES:
            report.problems.append(
                ImportProblem(line, address, f"language {language!r} is not one of fr, en, es")
            )
            continue
        raw_categories = [c for c in _SPLIT.split(row.get("categories", "")) if c]
        unknown = [c for c in raw_categories if c not in CATEGORIES]
        if unknown:
            report.problems.append(
                ImportProblem(line, address, f"unknown categories: {', '.join(unknown)}")
            )
            continue
        status = (row.get("status") or SubscriberStatus.ACTIVE).lower()
        if status not in statuses:
            report.problems.append(
                ImportProblem(line, address, f"status {status!r} is not one of {sorted(statuses)}")
            )
            continue
        _import_one(session, report, address, row, language, raw_categories, status, now)
    if dry_run:
        session.rollback()
    else:
        session.commit()
    return report


def _import_one(
    session: DbSession,
    report: ImportReport,
    address: str,
    row: dict[str, str],
    language: str | None,
    categories: list[str],
    status: str,
    now: dt.datetime,
) -> None:
    existing = find_by_email(session, address)
    if existing is None:
        subscriber = Subscriber(
            email=address,
            name=row.get("name") or None,
            language=clean_language(language),
            categories=clean_categories(categories),
            status=status,
            consent_at=now,
            consent_source="import",
            confirmed_at=now if status in ("active", "paused") else None,
            unsubscribed_at=now if status == "unsubscribed" else None,
        )
        session.add(subscriber)
        session.flush()
        report.created.append(address)
        return
    before = (existing.name, existing.language, list(existing.categories or []), existing.status)
    if row.get("name"):
        existing.name = row["name"][:200]
    if language:
        existing.language = language
    if categories:
        existing.categories = clean_categories(categories)
    left = existing.status in (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED)
    if left and status != existing.status:
        # A file must never resubscribe someone who left; only they can, by signing up.
        report.kept_unsubscribed.append(address)
    elif status != existing.status:
        existing.status = status
        if status == SubscriberStatus.UNSUBSCRIBED:
            existing.unsubscribed_at = now
            _cancel_queued(session, existing)
    after = (existing.name, existing.language, list(existing.categories or []), existing.status)
    if after != before:
        report.updated.append(address)
    elif address not in report.kept_unsubscribed:
        report.unchanged.append(address)


def export_csv(session: DbSession, stream: IO[str], statuses: Sequence[str] | None = None) -> int:
    """Write subscribers as CSV (email,name,language,categories,status); returns the count."""
    query = select(Subscriber).order_by(Subscriber.email)
    if statuses:
        query = query.where(Subscriber.status.in_(list(statuses)))
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    count = 0
    for subscriber in session.scalars(query):
        writer.writerow(
            [
                subscriber.email,
                subscriber.name or "",
                subscriber.language,
                ";".join(subscriber.categories or []),
                subscriber.status,
            ]
        )
        count += 1
    return count


def export_csv_text(session: DbSession, statuses: Sequence[str] | None = None) -> str:
    """The CSV export as a string (for tests and small lists)."""
    buffer = io.StringIO()
    export_csv(session, buffer, statuses)
    return buffer.getvalue()
