"""The editor's desk: the day's articles grouped by category and story, and editors' changes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from digest.models import CATEGORIES, Article, Edition

# Below this confidence the categorizer's choice is flagged for an editor's look.
DEFAULT_FLAG_BELOW = 0.5
UNSORTED = "unsorted"


@dataclass
class DeskItem:
    """One article on the desk with what an editor needs to judge it."""

    article: Article
    flagged: bool
    in_edition: bool
    is_lead: bool


@dataclass
class DeskStory:
    """Articles about the same story (same ``story_key``), biggest story first."""

    key: str
    items: list[DeskItem] = field(default_factory=list)


@dataclass
class DeskSection:
    """One category's stories."""

    category: str
    stories: list[DeskStory] = field(default_factory=list)

    @property
    def count(self) -> int:
        """How many articles the section holds."""
        return sum(len(story.items) for story in self.stories)


@dataclass
class Desk:
    """Everything the desk page shows for one day."""

    day: dt.date
    edition: Edition | None
    sections: list[DeskSection]
    flagged: int
    total: int


def day_window(day: dt.date, timezone: str) -> tuple[dt.datetime, dt.datetime]:
    """The UTC instants where ``day`` begins and ends in ``timezone``."""
    zone = ZoneInfo(timezone)
    start = dt.datetime.combine(day, dt.time(0), tzinfo=zone)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=zone)
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


def edition_article_ids(edition: Edition | None) -> set[int]:
    """The ids of the articles an edition's snapshot holds (lead, items and related)."""
    ids: set[int] = set()
    if edition is None or not edition.snapshot:
        return ids

    def walk(item: dict[str, object] | None) -> None:
        if not item:
            return
        article_id = item.get("article_id")
        if isinstance(article_id, int):
            ids.add(article_id)
        for related in item.get("related") or []:  # type: ignore[attr-defined]
            walk(related)

    walk(edition.snapshot.get("lead"))
    for section in edition.snapshot.get("sections") or []:
        for item in section.get("items") or []:
            walk(item)
    return ids


def day_articles(session: Session, day: dt.date, timezone: str) -> Sequence[Article]:
    """Articles of ``day``: first seen or published that day, plus those in its edition."""
    start, end = day_window(day, timezone)
    edition = session.scalar(select(Edition).where(Edition.day == day))
    in_edition = edition_article_ids(edition)
    conditions = [
        and_(Article.first_seen_at >= start, Article.first_seen_at < end),
        and_(Article.published_at >= start, Article.published_at < end),
    ]
    if in_edition:
        conditions.append(Article.id.in_(in_edition))
    query = select(Article).where(or_(*conditions)).order_by(Article.id)
    return session.scalars(query).all()


def is_flagged(article: Article, flag_below: float = DEFAULT_FLAG_BELOW) -> bool:
    """Whether an editor should check this article's category."""
    if article.category_by_editor:
        return False
    if article.category is None or article.category_confidence is None:
        return True
    return article.category_confidence < flag_below


def group_desk(
    articles: Iterable[Article],
    *,
    day: dt.date,
    edition: Edition | None,
    order: Sequence[str] = CATEGORIES,
    flag_below: float = DEFAULT_FLAG_BELOW,
) -> Desk:
    """Arrange articles by category (in ``order``) and story, flagging doubtful ones."""
    in_edition = edition_article_ids(edition)
    lead_id = edition.lead_article_id if edition is not None else None
    by_category: dict[str, dict[str, DeskStory]] = {}
    flagged = total = 0
    for article in articles:
        item = DeskItem(
            article=article,
            flagged=is_flagged(article, flag_below),
            in_edition=article.id in in_edition,
            is_lead=article.id == lead_id,
        )
        flagged += item.flagged
        total += 1
        category = article.category or UNSORTED
        key = article.story_key or f"article-{article.id}"
        stories = by_category.setdefault(category, {})
        stories.setdefault(key, DeskStory(key=key)).items.append(item)

    def story_rank(story: DeskStory) -> tuple[int, int, int]:
        lead_first = 0 if any(item.is_lead for item in story.items) else 1
        return (lead_first, -len(story.items), min(item.article.id for item in story.items))

    known = [category for category in order if category in by_category]
    extra = sorted(set(by_category) - set(order) - {UNSORTED})
    tail = [UNSORTED] if UNSORTED in by_category else []
    sections = [
        DeskSection(category, sorted(by_category[category].values(), key=story_rank))
        for category in (*known, *extra, *tail)
    ]
    return Desk(day=day, edition=edition, sections=sections, flagged=flagged, total=total)


def build_desk(
    session: Session,
    day: dt.date,
    timezone: str,
    order: Sequence[str] = CATEGORIES,
    flag_below: float = DEFAULT_FLAG_BELOW,
) -> Desk:
    """The desk for ``day``: its articles, grouped, with the day's edition if built."""
    edition = session.scalar(select(Edition).where(Edition.day == day))
    articles = day_articles(session, day, timezone)
    return group_desk(articles, day=day, edition=edition, order=order, flag_below=flag_below)
