"""Categorize and cluster stored articles; learn from editors; pick the lead article."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence

from sqlalchemy import or_, select

from digest.extensions import DbSession
from digest.models import CATEGORIES, Article, Correction, Editor
from digest.understand.categorizer import Categorizer, Memory, teach
from digest.understand.stories import Headline, cluster, story_key_for

# Articles seen this recently are re-sorted and re-clustered on each run (a day's edition
# and the day before, so that a story that started yesterday keeps its key).
WINDOW = dt.timedelta(days=2)
# How much each category weighs when choosing the lead: hard news first.
IMPORTANCE = {"politics": 3.0, "economy": 2.5, "health": 2.5, "sport": 2.0, "other": 1.0}


def article_body(article: Article) -> str | None:
    """The text beyond the headline: the paragraphs when known, else the summary."""
    if article.blocks:
        return " ".join(block.get("text", "") for block in article.blocks)
    return article.summary or None


def load_memory(session: DbSession) -> Memory:
    """Everything editors taught, oldest correction first so the newest wins."""
    memory = Memory()
    corrections = session.scalars(select(Correction).order_by(Correction.created_at, Correction.id))
    for correction in corrections:
        teach(memory, correction.text, correction.language or "fr", correction.new_category)
    return memory


def classify_articles(session: DbSession, now: dt.datetime) -> int:
    """Sort recent and unsorted articles not set by an editor, and assign story keys.

    Returns how many articles were (re)classified. Flushes; the caller commits.
    """
    categorizer = Categorizer(load_memory(session))
    articles = list(
        session.scalars(
            select(Article)
            .where(or_(Article.category.is_(None), Article.last_seen_at >= now - WINDOW))
            .order_by(Article.first_seen_at, Article.id)
        )
    )
    changed = 0
    for article in articles:
        if article.category_by_editor:
            continue
        result = categorizer.classify(article.title, article_body(article), article.language)
        if not article.language:
            article.language = result.language
        article.category = result.category
        article.category_confidence = result.confidence
        article.category_evidence = result.evidence
        changed += 1
    _assign_stories(articles)
    session.flush()
    return changed


def _assign_stories(articles: Sequence[Article]) -> None:
    numbers = cluster([Headline(a.title, a.language or "fr") for a in articles])
    groups: dict[int, list[Article]] = {}
    for article, number in zip(articles, numbers, strict=True):
        groups.setdefault(number, []).append(article)
    for members in groups.values():
        # Stories an editor merged or split keep their keys (re-clustering must not undo
        # them); a new headline of the same event joins the editor's story.
        fixed = [a.story_key for a in members if a.story_by_editor and a.story_key]
        if fixed:
            key = Counter(fixed).most_common(1)[0][0]
        else:
            # Keep a key already given to a member, so a story's key survives new sources.
            existing = sorted(a.story_key for a in members if a.story_key)
            key = existing[0] if existing else story_key_for(members[0].fingerprint)
        for article in members:
            if not article.story_by_editor:
                article.story_key = key
    stories: dict[str, list[Article]] = {}
    for article in articles:
        stories.setdefault(article.story_key or "", []).append(article)
    for members in stories.values():
        taught = [a for a in members if a.category_by_editor and a.category]
        if not taught:
            continue
        category = taught[-1].category
        note = f"same story as an editor's choice: {taught[-1].title}"
        for article in members:
            if not article.category_by_editor:
                article.category = category
                article.category_confidence = 1.0
                article.category_evidence = [note]


def record_correction(
    session: DbSession,
    article: Article,
    new_category: str,
    editor: Editor | None,
    now: dt.datetime,
) -> Correction:
    """Set ``article``'s category as an editor chose it and remember the lesson.

    The article's story follows at once; similar headlines follow on the next
    ``classify_articles``. Flushes; the caller commits.
    """
    if new_category not in CATEGORIES:
        raise ValueError(f"unknown category {new_category!r}; use one of {', '.join(CATEGORIES)}")
    correction = Correction(
        article_id=article.id,
        editor_id=editor.id if editor is not None else None,
        text=article.title,
        language=article.language,
        old_category=article.category,
        new_category=new_category,
        created_at=now,
    )
    session.add(correction)
    article.category = new_category
    article.category_confidence = 1.0
    article.category_evidence = ["set by an editor"]
    article.category_by_editor = True
    if article.story_key:
        siblings = session.scalars(
            select(Article).where(
                Article.story_key == article.story_key,
                Article.id != article.id,
                Article.category_by_editor.is_(False),
            )
        )
        for sibling in siblings:
            sibling.category = new_category
            sibling.category_confidence = 1.0
            sibling.category_evidence = [f"same story as an editor's choice: {article.title}"]
    session.flush()
    return correction


def choose_lead(articles: Sequence[Article]) -> Article | None:
    """The day's lead: a full article first, then the most important, widest-covered, newest.

    Coverage is how many of ``articles`` share the story. Excluded articles never lead;
    without any full article the best headline leads.
    """
    candidates = [a for a in articles if not a.excluded]
    if not candidates:
        return None
    coverage: dict[str, int] = {}
    for article in candidates:
        if article.story_key:
            coverage[article.story_key] = coverage.get(article.story_key, 0) + 1
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

    def rank(article: Article) -> tuple[bool, float, int, dt.datetime, int]:
        when = article.published_at or article.first_seen_at or epoch
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        return (
            article.is_full,
            IMPORTANCE.get(article.category or "other", 1.0),
            coverage.get(article.story_key or "", 1) + len(article.sources or ()),
            when,
            -(article.id or 0),
        )

    return max(candidates, key=rank)
