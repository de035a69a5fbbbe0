"""The ingest service: read each location, store its items, record how each source fared."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from digest.extensions import DbSession
from digest.ingest.aggregator import dump_items, parse_aggregator
from digest.ingest.encoding import UndecodableError, decode_bytes
from digest.ingest.errors import ReadError
from digest.ingest.feeds import parse_feed, root_tag
from digest.ingest.fetch import DEFAULT_USER_AGENT, FetchSettings, fetch_url
from digest.ingest.items import ParsedSource
from digest.ingest.pages import parse_page
from digest.ingest.store import store_items
from digest.models import Source

# Files a directory location contributes; anything else in it (images, archives) is skipped.
READABLE_SUFFIXES = frozenset({".txt", ".text", ".xml", ".rss", ".atom", ".html", ".htm"})
DEFAULT_MAX_BYTES = 10 * 1024 * 1024


@dataclass
class SourceReport:
    """How one location fared in one run."""

    location: str
    kind: str | None = None
    status: str = "ok"  # "ok", "unchanged" or "error"
    error: str | None = None
    found: int = 0
    added: int = 0
    updated: int = 0
    parsed: ParsedSource | None = field(default=None, repr=False)

    def to_dict(self, with_items: bool = False) -> dict[str, Any]:
        """JSON-ready view; ``with_items`` adds the parsed headlines and articles."""
        data: dict[str, Any] = {
            "location": self.location,
            "kind": self.kind,
            "status": self.status,
            "error": self.error,
            "found": self.found,
            "added": self.added,
            "updated": self.updated,
        }
        if with_items:
            parsed = self.parsed
            data["name"] = parsed.name if parsed else None
            data["headlines"] = list(parsed.headlines) if parsed else []
            data["articles"] = [item.to_dict() for item in parsed.articles] if parsed else []
        return data


@dataclass
class IngestReport:
    """The outcome of one ingest run, source by source."""

    sources: list[SourceReport] = field(default_factory=list)

    @property
    def added(self) -> int:
        """Articles created in this run."""
        return sum(report.added for report in self.sources)

    @property
    def updated(self) -> int:
        """Articles seen again (last seen moved, missing fields filled)."""
        return sum(report.updated for report in self.sources)

    @property
    def failed(self) -> list[SourceReport]:
        """The sources that could not be read."""
        return [report for report in self.sources if report.status == "error"]

    @property
    def ok(self) -> bool:
        """Whether every source was read."""
        return not self.failed

    def to_dict(self, with_items: bool = False) -> dict[str, Any]:
        """JSON-ready view of the whole run."""
        return {
            "ok": self.ok,
            "added": self.added,
            "updated": self.updated,
            "sources": [report.to_dict(with_items) for report in self.sources],
        }


Progress = Callable[[SourceReport], None]


def _is_url(location: str) -> bool:
    return location.lower().startswith(("http://", "https://"))


def _local_key(location: str) -> str:
    """Absolute path, so "seeds/x.txt" and "./seeds/x.txt" are one source."""
    return str(Path(location).expanduser().resolve())


def _requested(session: DbSession, locations: list[str] | None) -> list[str]:
    if locations is not None:
        return locations
    configured = list(
        session.scalars(select(Source.location).where(Source.enabled).order_by(Source.id))
    )
    return configured or [current_app.config["SEED_DIR"]]


def plan_locations(session: DbSession, locations: list[str] | None) -> list[str]:
    """Concrete locations to read: given ones (directories expanded), else the enabled
    sources, else the files of ``SEED_DIR``."""
    planned: list[str] = []
    for location in _requested(session, locations):
        location = location.strip()
        if not location:
            continue
        if _is_url(location):
            planned.append(location)
            continue
        path = Path(location).expanduser()
        if path.is_dir():
            files = sorted(
                child
                for child in path.iterdir()
                if child.is_file()
                and not child.name.startswith(".")
                and child.suffix.lower() in READABLE_SUFFIXES
            )
            if files:
                planned.extend(_local_key(str(child)) for child in files)
            else:
                # Kept in the plan so that reading it reports the problem.
                planned.append(_local_key(location))
        else:
            planned.append(_local_key(location))
    return planned


def fetch_settings() -> FetchSettings:
    """Fetch limits from the app config (``INGEST_*``), with safe defaults."""
    config = current_app.config
    return FetchSettings(
        timeout=float(config.get("INGEST_TIMEOUT", 10)),
        max_bytes=int(config.get("INGEST_MAX_BYTES", DEFAULT_MAX_BYTES)),
        max_redirects=int(config.get("INGEST_MAX_REDIRECTS", 5)),
        user_agent=str(
            config.get("INGEST_USER_AGENT")
            or f"{DEFAULT_USER_AGENT[:-1]}; +{config.get('PUBLIC_URL', '')})"
        ),
    )


_FEED_TYPES = ("application/rss+xml", "application/atom+xml", "application/rdf+xml")


def sniff_kind(data: bytes, content_type: str | None = None) -> str:
    """Which reader fits: "feed", "page" or "seed" (aggregator text), from the bytes."""
    root = root_tag(data)
    if root in ("rss", "feed", "rdf"):
        return "feed"
    if root in ("html", "head", "body") or content_type in ("text/html", "application/xhtml+xml"):
        return "page"
    if content_type in _FEED_TYPES or (root and content_type in ("application/xml", "text/xml")):
        return "feed"
    return "seed"


def parse_document(
    location: str, data: bytes, content_type: str | None = None, charset: str | None = None
) -> ParsedSource:
    """Parse the bytes read from ``location`` with the reader their content calls for."""
    if not data.strip():
        raise ReadError(f"empty file: {location}")
    if content_type is None and location.lower().endswith((".html", ".htm")):
        content_type = "text/html"
    kind = sniff_kind(data, content_type)
    if kind == "feed":
        return parse_feed(data, location, charset)
    if kind == "page":
        return parse_page(data, location, charset)
    try:
        text = decode_bytes(data, charset)
    except UndecodableError as error:
        raise ReadError(f"cannot decode {location}: {error}") from error
    dump = parse_aggregator(text)
    if not dump.headlines and not dump.articles:
        raise ReadError("no headlines or articles found in the text")
    return ParsedSource(
        location=location,
        kind="seed",
        name=location.rstrip("/").rsplit("/", 1)[-1],
        headlines=dump.headlines,
        items=dump_items(dump),
    )


def _read_file(location: str, settings: FetchSettings) -> ParsedSource:
    path = Path(location)
    if path.is_dir():
        raise ReadError(
            f"nothing readable in directory {location} "
            f"(expected files ending in {', '.join(sorted(READABLE_SUFFIXES))})"
        )
    if not path.exists():
        raise ReadError(f"no such file: {location}")
    try:
        size = path.stat().st_size
        if size > settings.max_bytes:
            raise ReadError(f"file too large: {size} bytes (limit {settings.max_bytes})")
        data = path.read_bytes()
    except OSError as error:
        raise ReadError(f"cannot read {location}: {error.strerror or error}") from error
    return parse_document(location, data)


def read_location(
    location: str, source: Source | None = None, settings: FetchSettings | None = None
) -> ParsedSource:
    """Read and parse one concrete location; raises ``ReadError`` with a clear message.

    With a known ``source``, URLs are fetched conditionally (its ETag / Last-Modified).
    """
    settings = settings or fetch_settings()
    if not _is_url(location):
        return _read_file(location, settings)
    fetched = fetch_url(
        location,
        settings,
        etag=source.etag if source else None,
        last_modified=source.last_modified if source else None,
    )
    if fetched.not_modified:
        return ParsedSource(
            location=location,
            kind=source.kind if source else "feed",
            name=source.name if source else None,
            not_modified=True,
            etag=fetched.etag,
            last_modified=fetched.last_modified,
        )
    parsed = parse_document(location, fetched.content, fetched.content_type, fetched.charset)
    parsed.etag, parsed.last_modified = fetched.etag, fetched.last_modified
    return parsed


def _find_source(session: DbSession, location: str) -> Source | None:
    return session.scalars(select(Source).where(Source.location == location)).first()


def preview_locations(
    session: DbSession, locations: list[str] | None, on_progress: Progress | None = None
) -> IngestReport:
    """Read and parse like ``ingest_locations`` but write nothing (``--dry-run``)."""
    report = IngestReport()
    settings = fetch_settings()
    for location in plan_locations(session, locations):
        entry = SourceReport(location=location)
        try:
            parsed = read_location(location, None, settings)
        except ReadError as error:
            entry.status, entry.error = "error", str(error)
        else:
            entry.kind, entry.parsed, entry.found = parsed.kind, parsed, len(parsed.items)
        report.sources.append(entry)
        if on_progress:
            on_progress(entry)
    return report


def _record_directories(
    session: DbSession, requested: list[str], report: IngestReport, now: dt.datetime
) -> None:
    """A configured directory's status sums up its files': "error" if any of them failed."""
    for location in requested:
        if _is_url(location) or not Path(location).expanduser().is_dir():
            continue
        folder = _local_key(location)
        source = _find_source(session, folder)
        if source is None:
            continue
        members = [
            entry
            for entry in report.sources
            if entry.location == folder or entry.location.startswith(folder.rstrip("/") + "/")
        ]
        failed = [entry for entry in members if entry.status == "error"]
        source.last_fetched_at = now
        source.status = "error" if failed else "ok"
        source.last_error = (
            "; ".join(f"{Path(e.location).name}: {e.error}" for e in failed)[:2000] or None
        )
        session.commit()


def _record_failure(session: DbSession, location: str, message: str, now: dt.datetime) -> None:
    """Store the error on a known source; a failed ad-hoc location leaves no row behind."""
    session.rollback()
    source = _find_source(session, location)
    if source is not None:
        source.status = "error"
        source.last_error = message
        source.last_fetched_at = now
        session.commit()


def ingest_locations(
    session: DbSession,
    locations: list[str] | None,
    now: dt.datetime,
    on_progress: Progress | None = None,
) -> IngestReport:
    """Read each location and store its articles, committing source by source.

    ``None`` reads the enabled sources, or ``SEED_DIR`` when none is configured. A source
    that fails is reported (and its error stored) without touching what others stored.
    Locations given here that are not configured sources are remembered, disabled, for
    provenance.
    """
    report = IngestReport()
    settings = fetch_settings()
    for location in plan_locations(session, locations):
        entry = SourceReport(location=location)
        report.sources.append(entry)
        try:
            known = _find_source(session, location)
            parsed = read_location(location, known, settings)
            entry.kind, entry.parsed, entry.found = parsed.kind, parsed, len(parsed.items)
            source = known or Source(
                kind=parsed.kind, location=location, name=(parsed.name or "")[:200], enabled=False
            )
            if known is None:
                session.add(source)
                session.flush()
            source.kind = parsed.kind
            if parsed.name and not source.name:
                source.name = parsed.name[:200]
            source.last_fetched_at = now
            source.last_error = None
            if parsed.not_modified:
                source.status = entry.status = "unchanged"
            else:
                source.status = "ok"
                source.etag = parsed.etag or source.etag
                source.last_modified = parsed.last_modified or source.last_modified
                stored = store_items(session, source, parsed.items, now)
                entry.added, entry.updated = stored.added, stored.updated
            session.commit()
        except ReadError as error:
            entry.status, entry.error = "error", str(error)
            _record_failure(session, location, entry.error, now)
        except SQLAlchemyError as error:
            entry.status = "error"
            entry.error = (
                f"could not store: {type(error).__name__}: {error.args[0] if error.args else error}"
            )
            _record_failure(session, location, entry.error, now)
        if on_progress:
            on_progress(entry)
    _record_directories(session, _requested(session, locations), report, now)
    return report
