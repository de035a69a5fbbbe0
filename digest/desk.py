"""The editor's desk: the day's articles grouped by category and story, and editors' changes.

Each change is recorded in the audit trail with the editor and, when it comes from the web,
the address it came from (``ip``; the admin views pass the request's).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from sqlalchemy import and_, or_, select

from digest import audit
from digest.compose import compose_edition
from digest.extensions import DbSession
from digest.models import CATEGORIES, Article, Correction, Edition, Editor
from digest.richtext import MAX_INTRO_CHARS
from digest.understand import record_correction

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


def day_articles(session: DbSession, day: dt.date, timezone: str) -> Sequence[Article]:
    """The articles the edition of ``day`` draws from, excluded ones included.

    Like composing: those first seen that day, else those of the latest earlier day with
    any; plus whatever the day's edition already holds.
    """
    start, end = day_window(day, timezone)
    in_edition = edition_article_ids(edition_of(session, day))
    window_start = start
    latest = session.scalar(
        select(Article.first_seen_at)
        .where(Article.first_seen_at < end)
        .order_by(Article.first_seen_at.desc())
        .limit(1)
    )
    if latest is not None and _as_utc(latest) < start:
        local_day = _as_utc(latest).astimezone(ZoneInfo(timezone)).date()
        window_start, end = day_window(local_day, timezone)
    seen = and_(Article.first_seen_at >= window_start, Article.first_seen_at < end)
    condition = or_(seen, Article.id.in_(in_edition)) if in_edition else seen
    return session.scalars(select(Article).where(condition).order_by(Article.id)).all()


def _as_utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


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
    stories: dict[str, DeskStory] = {}
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
        key = article.story_key or f"article-{article.id}"
        stories.setdefault(key, DeskStory(key=key)).items.append(item)
    # A story sits in the section of its first article, as in the composed edition.
    by_category: dict[str, dict[str, DeskStory]] = {}
    for key, story in stories.items():
        category = story.items[0].article.category or UNSORTED
        by_category.setdefault(category, {})[key] = story

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
    session: DbSession,
    day: dt.date,
    timezone: str,
    order: Sequence[str] = CATEGORIES,
    flag_below: float = DEFAULT_FLAG_BELOW,
) -> Desk:
    """The desk for ``day``: its articles, grouped, with the day's edition if built."""
    edition = edition_of(session, day)
    articles = day_articles(session, day, timezone)
    return group_desk(articles, day=day, edition=edition, order=order, flag_below=flag_below)


class DeskError(Exception):
    """An editor's change was refused; the message says why."""


class EditionFrozen(DeskError):
    """The edition is being sent or was sent: its content no longer changes."""


def edition_of(session: DbSession, day: dt.date) -> Edition | None:
    """The edition of ``day``, if one was built."""
    return session.scalar(select(Edition).where(Edition.day == day))


def ensure_editable(edition: Edition | None) -> None:
    """Refuse to touch an edition once sending started."""
    if edition is not None and edition.is_frozen:
        raise EditionFrozen(
            f"The edition of {edition.day.isoformat()} is {edition.status}: "
            "what subscribers received can no longer change."
        )


def refresh_draft(session: DbSession, day: dt.date, now: dt.datetime) -> Edition | None:
    """Rebuild the day's draft snapshot after an editor's change (frozen ones stay as sent)."""
    edition = edition_of(session, day)
    if edition is None or edition.is_frozen:
        return edition
    return compose_edition(session, day, now)


def change_category(
    session: DbSession,
    article: Article,
    category: str,
    editor: Editor,
    now: dt.datetime,
    *,
    ip: str | None = None,
) -> Correction:
    """Set an article's category as a correction the categorizer learns from."""
    if category not in CATEGORIES:
        raise DeskError(f"Unknown category {category!r}.")
    before = article.category
    correction = record_correction(session, article, category, editor, now)
    audit.record(
        session,
        "correction",
        now,
        editor=editor,
        target=_label(article),
        detail={"from": before, "to": category},
        ip=ip,
    )
    return correction


def set_excluded(
    session: DbSession,
    article: Article,
    excluded: bool,
    editor: Editor,
    now: dt.datetime,
    *,
    ip: str | None = None,
) -> None:
    """Leave an article out of editions (or bring it back)."""
    article.excluded = excluded
    audit.record(
        session,
        "exclude" if excluded else "include",
        now,
        editor=editor,
        target=_label(article),
        ip=ip,
    )


def pin_lead(
    session: DbSession,
    edition: Edition,
    article: Article | None,
    editor: Editor,
    now: dt.datetime,
    *,
    ip: str | None = None,
) -> None:
    """Make ``article`` the edition's lead whatever the automatic choice; None unpins."""
    ensure_editable(edition)
    if article is not None and article.excluded:
        raise DeskError("An excluded article cannot lead: include it first.")
    edition.lead_pinned = article is not None
    if article is not None:
        edition.lead_article_id = article.id
    audit.record(
        session,
        "lead.pin" if article else "lead.unpin",
        now,
        editor=editor,
        target=_label(article) if article else edition.day.isoformat(),
        ip=ip,
    )


def merge_story(
    session: DbSession,
    article: Article,
    into: Article,
    editor: Editor,
    now: dt.datetime,
    *,
    ip: str | None = None,
) -> str:
    """Put ``article``'s whole story into the story of ``into``; returns the kept key."""
    if article.id == into.id:
        raise DeskError("An article is already in its own story.")
    key = into.story_key or f"editor-{into.id}"
    into.story_key = key
    into.story_by_editor = True
    members = [article]
    if article.story_key:
        members = list(
            session.scalars(select(Article).where(Article.story_key == article.story_key))
        )
    for member in members:
        member.story_key = key
        member.story_by_editor = True
    audit.record(
        session,
        "story.merge",
        now,
        editor=editor,
        target=_label(into),
        detail={"merged": [m.id for m in members]},
        ip=ip,
    )
    return key


def split_story(
    session: DbSession, article: Article, editor: Editor, now: dt.datetime, *, ip: str | None = None
) -> str:
    """Take ``article`` out of its story into one of its own; returns its new key."""
    old = article.story_key
    article.story_key = f"editor-{article.id}"
    article.story_by_editor = True
    if old:
        # The rest of the story stays together as the editor saw it.
        for member in session.scalars(select(Article).where(Article.story_key == old)):
            member.story_by_editor = True
    audit.record(
        session,
        "story.split",
        now,
        editor=editor,
        target=_label(article),
        detail={"from": old},
        ip=ip,
    )
    return article.story_key


def set_intro(
    session: DbSession,
    edition: Edition,
    source: str,
    editor: Editor,
    now: dt.datetime,
    *,
    ip: str | None = None,
) -> None:
    """Store the edition's introduction (Markdown; rendered and sanitized when shown)."""
    ensure_editable(edition)
    text = (source or "").replace("\r\n", "\n").strip()
    if len(text) > MAX_INTRO_CHARS:
        raise DeskError(f"The introduction may have at most {MAX_INTRO_CHARS} characters.")
    edition.intro = text or None
    edition.updated_at = now
    audit.record(
        session,
        "intro",
        now,
        editor=editor,
        target=edition.day.isoformat(),
        detail={"chars": len(text)},
        ip=ip,
    )


def _label(article: Article) -> str:
    return f"#{article.id} {article.title}"[:300]
