"""Compose a day's edition: pick the lead, group stories into sections, freeze it as a snapshot."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from flask import current_app
from sqlalchemy import select

from digest.calendar import newsroom_zone
from digest.extensions import DbSession
from digest.models import Article, Edition, EditionStatus

# A snapshot keeps enough text for the web archive to show the full lead; headlines keep less.
SUMMARY_LIMIT = 600
RELATED_LIMIT = 5
# A pull quote is a short sentence; a whole paragraph in guillemets is not one.
QUOTE_MAX_CHARS = 240
_QUOTE_MARKS = "«»\"“”„‟'\u2018\u2019 \u00a0\u202f"
_ENCLOSED_QUOTE = re.compile(r"^\s*[«“\"]\s*(.+?)\s*[»”\"]\s*$", re.DOTALL)


class NothingToCompose(LookupError):
    """No article has been ingested yet, so there is no edition to build."""


def day_bounds(day: dt.date, timezone: str) -> tuple[dt.datetime, dt.datetime]:
    """Start (inclusive) and end (exclusive) of ``day`` in ``timezone``, as aware UTC datetimes."""
    zone = newsroom_zone(timezone)
    start = dt.datetime.combine(day, dt.time.min, tzinfo=zone)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time.min, tzinfo=zone)
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


def articles_for_day(session: DbSession, day: dt.date, timezone: str) -> list[Article]:
    """Articles first seen on ``day``; if none, those of the latest earlier day that has some.

    The fallback keeps a quiet morning (or a late ingest) from producing an empty digest:
    readers then get the most recent news rather than nothing.
    """
    start, end = day_bounds(day, timezone)
    visible = select(Article).where(Article.excluded.is_(False))
    found = list(
        session.scalars(
            visible.where(Article.first_seen_at >= start, Article.first_seen_at < end).order_by(
                Article.id
            )
        )
    )
    if found:
        return found
    latest = session.scalar(
        select(Article.first_seen_at)
        .where(Article.excluded.is_(False), Article.first_seen_at < end)
        .order_by(Article.first_seen_at.desc())
        .limit(1)
    )
    if latest is None:
        return []
    zone = newsroom_zone(timezone)
    latest_start, latest_end = day_bounds(_aware(latest).astimezone(zone).date(), timezone)
    return list(
        session.scalars(
            visible.where(
                Article.first_seen_at >= latest_start, Article.first_seen_at < latest_end
            ).order_by(Article.id)
        )
    )


def compose_edition(session: DbSession, day: dt.date, now: dt.datetime) -> Edition:
    """Create or refresh ``day``'s edition snapshot; a frozen edition is returned unchanged."""
    edition = session.scalar(select(Edition).where(Edition.day == day))
    if edition is not None and edition.is_frozen:
        return edition
    config = current_app.config
    articles = articles_for_day(session, day, config["TIMEZONE"])
    if not articles and edition is None:
        raise NothingToCompose(
            f"no articles to put in the edition of {day.isoformat()}: run `digest ingest` first"
        )
    if edition is None:
        edition = Edition(day=day, status=EditionStatus.DRAFT, snapshot={}, created_at=now)
        session.add(edition)

    lead = _pick_lead(session, edition, articles)
    edition.lead_article_id = lead.id if lead is not None else None
    edition.snapshot = build_snapshot(articles, lead, config["CATEGORY_ORDER"])
    edition.updated_at = now
    session.commit()
    return edition


def build_snapshot(
    articles: Sequence[Article], lead: Article | None, category_order: Iterable[str]
) -> dict[str, Any]:
    """The frozen content of an edition: the lead, then one section per category in order."""
    stories = _group_stories(a for a in articles if not a.excluded)
    lead_item: dict[str, Any] | None = None
    sections: dict[str, list[dict[str, Any]]] = {}
    for story in stories:
        if lead is not None and lead in story:
            related = [a for a in story if a is not lead]
            lead_item = _item(lead, related, full=True)
            continue
        head, related = story[0], story[1:]
        sections.setdefault(_category(head), []).append(_item(head, related))
    order = list(dict.fromkeys(category_order))
    # Categories the configuration does not list still appear, after the listed ones.
    order += sorted(set(sections) - set(order))
    return {
        "lead": lead_item,
        "sections": [
            {"category": category, "items": sections[category]}
            for category in order
            if sections.get(category)
        ],
    }


def fallback_lead(articles: Sequence[Article]) -> Article | None:
    """The lead without a smarter choice: the fullest article, else the first headline."""
    candidates = [a for a in articles if not a.excluded]
    if not candidates:
        return None
    full = [a for a in candidates if a.is_full]
    if full:
        return max(full, key=lambda a: (len(a.blocks or []), _timestamp(a.published_at), -a.id))
    return candidates[0]


def _pick_lead(session: DbSession, edition: Edition, articles: Sequence[Article]) -> Article | None:
    if edition.lead_pinned and edition.lead_article_id is not None:
        pinned = session.get(Article, edition.lead_article_id)
        if pinned is not None and not pinned.excluded:
            if pinned not in articles:
                articles = [*articles, pinned]
            return pinned
    chooser = _understand_chooser()
    if chooser is not None:
        chosen = chooser(list(articles))
        if chosen is not None and not chosen.excluded:
            return chosen
    return fallback_lead(articles)


def _understand_chooser() -> Callable[[list[Article]], Article | None] | None:
    # The understand area owns lead selection; until it offers one, compose uses its fallback.
    try:
        from digest import understand
    except ImportError:
        return None
    return getattr(understand, "choose_lead", None)


def _group_stories(articles: Iterable[Article]) -> list[list[Article]]:
    """Articles sharing a story key form one story, its fullest and earliest article first."""
    stories: dict[str, list[Article]] = {}
    for article in articles:
        key = article.story_key or f"article:{article.id}"
        stories.setdefault(key, []).append(article)
    ordered = []
    for story in stories.values():
        story.sort(key=lambda a: (not a.is_full, a.id))
        ordered.append(story)
    # Stories told by several sources first; otherwise the order news arrived in.
    ordered.sort(key=lambda story: (-len(story), story[0].id))
    return ordered


def _category(article: Article) -> str:
    return article.category or "other"


def _item(article: Article, related: Sequence[Article] = (), full: bool = False) -> dict[str, Any]:
    paragraphs = [
        block["text"].strip()
        for block in (article.blocks or [])
        if block.get("type") == "paragraph" and str(block.get("text") or "").strip()
    ]
    summary = (article.summary or "").strip() or (paragraphs[0] if paragraphs else "")
    item: dict[str, Any] = {
        "article_id": article.id,
        "title": article.title.strip(),
        "url": article.url,
        "source": _source_name(article),
        "published_at": _aware(article.published_at).isoformat() if article.published_at else None,
        "language": article.language,
        "category": _category(article),
        "summary": _shorten(summary, SUMMARY_LIMIT),
        "paragraphs": paragraphs if full else paragraphs[:1],
        "quote": pull_quote(article) if full else None,
        "related": [_item(other) for other in related[:RELATED_LIMIT]],
    }
    return item


def pull_quote(article: Article) -> str | None:
    """A short quotation from the article: a quote block, else a paragraph that is one quotation."""
    blocks = article.blocks or []
    candidates = [b for b in blocks if b.get("type") == "quote"] + [
        b for b in blocks if b.get("type") in ("paragraph", "heading")
    ]
    for block in candidates:
        text = str(block.get("text") or "").strip()
        enclosed = _ENCLOSED_QUOTE.match(text)
        if block.get("type") == "quote":
            text = enclosed.group(1) if enclosed else text.strip(_QUOTE_MARKS)
        elif enclosed:
            text = enclosed.group(1)
        else:
            continue
        text = text.strip()
        if text and len(text) <= QUOTE_MAX_CHARS:
            return text
    return None


def _source_name(article: Article) -> str | None:
    if article.source_name:
        return article.source_name
    for source in article.sources:
        # A seed dump's name is its file name, not a publisher: never show it to readers.
        if source.name and source.kind != "seed":
            return source.name
    return None


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut.rstrip(",;:.") + "…"


def _aware(moment: dt.datetime) -> dt.datetime:
    # SQLite hands back naive datetimes even for timezone-aware columns; they were stored as UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def _timestamp(moment: dt.datetime | None) -> float:
    return _aware(moment).timestamp() if moment is not None else 0.0


PUBLISHED = (EditionStatus.SENDING, EditionStatus.SENT)


def published_editions(session: DbSession, limit: int = 60) -> list[Edition]:
    """Editions that went out (sending or sent), newest first: the public archive."""
    return list(
        session.scalars(
            select(Edition)
            .where(Edition.status.in_([str(s) for s in PUBLISHED]))
            .order_by(Edition.day.desc())
            .limit(limit)
        )
    )


def published_edition(session: DbSession, day: dt.date) -> Edition | None:
    """The edition of ``day`` if it went out; drafts stay private to editors."""
    return session.scalar(
        select(Edition).where(Edition.day == day, Edition.status.in_([str(s) for s in PUBLISHED]))
    )
