"""The sources editors configure: add, list, remove, check."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy import select

from digest.extensions import DbSession
from digest.ingest.errors import ReadError
from digest.ingest.service import (
    READABLE_SUFFIXES,
    IngestReport,
    SourceReport,
    fetch_settings,
    read_location,
)
from digest.models import Source


class SourceError(ValueError):
    """A source location or reference that cannot be used; the message says why."""


def guess_kind(location: str) -> str:
    """The reader a location most likely needs, until its first read tells for sure."""
    lowered = location.lower().split("?", 1)[0]
    if lowered.endswith((".txt", ".text")) or Path(location).is_dir():
        return "seed"
    if lowered.endswith((".html", ".htm")):
        return "page"
    if lowered.endswith((".xml", ".rss", ".atom", ".rdf")) or any(
        word in lowered for word in ("rss", "feed", "atom")
    ):
        return "feed"
    return "page" if lowered.startswith(("http://", "https://")) else "seed"


def normalize_location(location: str) -> str:
    """An http(s) URL as given, or an existing local path made absolute."""
    location = location.strip()
    if not location:
        raise SourceError("empty location")
    if "://" in location:
        parts = urlsplit(location)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise SourceError(f"only http(s) URLs or local paths can be sources: {location}")
        return location
    path = Path(location).expanduser()
    if not path.exists():
        raise SourceError(f"no such file or directory: {location}")
    if path.is_file() and path.suffix.lower() not in READABLE_SUFFIXES:
        raise SourceError(
            f"{location} is not a readable kind of file "
            f"(expected {', '.join(sorted(READABLE_SUFFIXES))})"
        )
    return str(path.resolve())


def add_source(
    session: DbSession, location: str, name: str | None = None, enabled: bool = True
) -> Source:
    """Configure ``location`` as a source (or re-enable it if it is already known)."""
    location = normalize_location(location)
    source = session.scalars(select(Source).where(Source.location == location)).first()
    if source is None:
        source = Source(location=location, kind=guess_kind(location))
        session.add(source)
    source.enabled = enabled
    # Without a name, the first read names it (the feed's title, the page's site).
    if name:
        source.name = name.strip()[:200]
    session.flush()
    return source


def list_sources(session: DbSession) -> list[Source]:
    """Every known source, configured ones first."""
    return list(session.scalars(select(Source).order_by(Source.enabled.desc(), Source.id)))


def find_source(session: DbSession, reference: str) -> Source:
    """The source with this id or location; raises ``SourceError`` when there is none."""
    reference = reference.strip()
    source = None
    if reference.isdigit():
        source = session.get(Source, int(reference))
    if source is None:
        candidates = {reference}
        if "://" not in reference:
            candidates.add(str(Path(reference).expanduser().resolve()))
        source = session.scalars(select(Source).where(Source.location.in_(candidates))).first()
    if source is None:
        raise SourceError(f"no source {reference!r} (see `digest sources list`)")
    return source


def remove_source(session: DbSession, reference: str) -> Source:
    """Forget a source; its articles stay (other sources or editions may use them)."""
    source = find_source(session, reference)
    session.delete(source)
    session.flush()
    return source


def check_sources(
    session: DbSession, references: list[str] | None, now: dt.datetime
) -> IngestReport:
    """Fetch and parse sources without storing articles; record each one's status.

    Never conditional and never storing the ETag, so a check cannot make the next
    ingest miss new items.
    """
    if references:
        sources = [find_source(session, reference) for reference in references]
    else:
        sources = [source for source in list_sources(session) if source.enabled]
    settings = fetch_settings()
    report = IngestReport()
    for source in sources:
        entry = SourceReport(location=source.location, kind=source.kind)
        try:
            parsed = read_location(source.location, None, settings)
        except ReadError as error:
            entry.status, entry.error = "error", str(error)
            source.status, source.last_error = "error", entry.error
        else:
            entry.kind, entry.parsed, entry.found = parsed.kind, parsed, len(parsed.items)
            source.kind, source.status, source.last_error = parsed.kind, "ok", None
        report.sources.append(entry)
    session.flush()
    return report
