"""Storing parsed items as ``Article`` rows: dedupe, provenance, editors' changes kept."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import ColumnElement, Text, any_, cast, insert, select
from sqlalchemy.dialects.postgresql import ARRAY

from digest.extensions import DbSession
from digest.ingest.items import Item
from digest.ingest.normalize import clean_text, match_key
from digest.models import Article, Source, article_sources
from digest.understand.language import detect_language

# Keeps each IN (...) list well under every driver's parameter limit (SQLite: 32766).
_CHUNK = 2000


@dataclass
class StoreResult:
    """How one batch of items met the database."""

    added: int = 0
    updated: int = 0


def canonical_url(url: str | None) -> str | None:
    """The URL used for matching: trimmed, scheme and host lower-cased, no fragment."""
    if not url:
        return None
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        return url[:2000] or None
    if parts.scheme not in ("http", "https"):
        return url[:2000] or None
    rebuilt = urlunsplit(
        (parts.scheme.lower(), parts.netloc.lower(), parts.path or "/", parts.query, "")
    )
    return rebuilt[:2000]


def fingerprint(guid: str | None, url: str | None, title_key: str) -> str:
    """Stable identity of an item: its guid, else its URL, else its normalized title."""
    basis = f"guid:{guid}" if guid else f"url:{url}" if url else f"title:{title_key}"
    return hashlib.sha256(basis.encode("utf-8")).hexdigest()


class _Index:
    """The articles a batch can match, by guid, URL, fingerprint and title key."""

    def __init__(self) -> None:
        self.by_guid: dict[str, Article | NewArticle] = {}
        self.by_url: dict[str, Article | NewArticle] = {}
        self.by_fingerprint: dict[str, Article | NewArticle] = {}
        self.by_title: dict[str, Article | NewArticle] = {}

    def add(self, article: Article | NewArticle) -> None:
        if article.guid:
            self.by_guid.setdefault(article.guid, article)
        if article.url:
            self.by_url.setdefault(article.url, article)
        self.by_fingerprint.setdefault(article.fingerprint, article)
        self.by_title.setdefault(article.title_key, article)

    def find(
        self, guid: str | None, url: str | None, fp: str, title_key: str
    ) -> Article | NewArticle | None:
        return (
            (self.by_guid.get(guid) if guid else None)
            or (self.by_url.get(url) if url else None)
            # A permalink guid in one feed is the link of the same story in another.
            or (self.by_url.get(guid) if guid else None)
            or (self.by_guid.get(url) if url else None)
            or self.by_fingerprint.get(fp)
            or self.by_title.get(title_key)
        )


def _chunks(values: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def _is_in(session: DbSession, column: Any, values: Sequence[str]) -> ColumnElement[bool]:
    """``column IN values``; on PostgreSQL ``= ANY(array)``, one parameter however many
    values (an expanded IN costs psycopg a slow conversion of thousands of placeholders)."""
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(cast(list(values), ARRAY(Text)))
    return column.in_(values)


def _load_index(
    session: DbSession, guids: set[str], urls: set[str], fps: set[str], titles: set[str]
) -> _Index:
    index = _Index()
    found: dict[int, Article] = {}
    for column, values in (
        (Article.guid, guids),
        (Article.url, urls),
        (Article.fingerprint, fps),
        (Article.title_key, titles),
    ):
        for chunk in _chunks(sorted(values)):
            for article in session.scalars(select(Article).where(_is_in(session, column, chunk))):
                found[article.id] = article
    # Oldest first, so a key shared by two rows resolves to the one seen first.
    for article_id in sorted(found):
        index.add(found[article_id])
    return index


def _language_text(item: Item) -> str:
    extra = item.summary or next((b["text"] for b in item.blocks or []), "")
    return f"{item.title}. {extra[:400]}" if extra else item.title


def _merge(article: Article, item: Item, url: str | None, now: dt.datetime) -> None:
    """Fill what the stored article lacks; editors' fields and the title stay as they are."""
    article.last_seen_at = now
    if article.guid is None and item.guid:
        article.guid = item.guid[:2000]
    if article.url is None and url:
        article.url = url
    for name in ("summary", "author", "image_url", "source_name", "published_at"):
        if getattr(article, name) is None and getattr(item, name) is not None:
            setattr(article, name, getattr(item, name))
    if not article.blocks and item.blocks:
        article.blocks = item.blocks
    if article.language is None:
        article.language = detect_language(_language_text(item))


class NewArticle:
    """A row about to be inserted: matchable like an ``Article``, without ORM bookkeeping."""

    __slots__ = ("fingerprint", "guid", "row", "title_key", "url")

    def __init__(self, row: dict[str, Any]) -> None:
        self.row = row
        self.fingerprint: str = row["fingerprint"]
        self.guid: str | None = row["guid"]
        self.url: str | None = row["url"]
        self.title_key: str = row["title_key"]


def _new_article(
    item: Item, title: str, title_key: str, url: str | None, fp: str, now: dt.datetime
) -> NewArticle:
    return NewArticle(
        {
            "fingerprint": fp,
            "title": title,
            "title_key": title_key,
            "url": url,
            "guid": item.guid[:2000] if item.guid else None,
            "source_name": item.source_name[:200] if item.source_name else None,
            "author": item.author[:200] if item.author else None,
            "summary": item.summary,
            "blocks": item.blocks,
            "image_url": item.image_url[:2000] if item.image_url else None,
            "published_at": item.published_at,
            "language": detect_language(_language_text(item)),
            "category_by_editor": False,
            "excluded": False,
            "first_seen_at": now,
            "last_seen_at": now,
        }
    )


def _insert_new(session: DbSession, articles: list[NewArticle]) -> list[int]:
    """Insert new articles in one executemany and return their ids.

    A plain executemany without RETURNING lets the driver reuse one statement; the
    ORM's per-object flush builds a huge multi-row statement per batch on PostgreSQL,
    which psycopg spends most of a large feed's time converting.
    """
    if not articles:
        return []
    session.execute(insert(Article), [article.row for article in articles])
    ids: list[int] = []
    fingerprints = [article.fingerprint for article in articles]
    for chunk in _chunks(fingerprints):
        ids.extend(
            session.scalars(select(Article.id).where(_is_in(session, Article.fingerprint, chunk)))
        )
    return ids


def store_items(
    session: DbSession, source: Source, items: Sequence[Item], now: dt.datetime
) -> StoreResult:
    """Add new items as articles and refresh the ones already stored; link them to ``source``.

    The same story (same guid, URL or normalized title) becomes one article whatever
    the number of sources or runs; nothing is committed here.
    """
    prepared = []
    for item in items:
        title = clean_text(item.title)
        title_key = match_key(title)
        if not title_key:
            continue
        url = canonical_url(item.url)
        guid = item.guid.strip() if item.guid and item.guid.strip() else None
        item.guid = guid
        prepared.append((item, title, title_key, url, fingerprint(guid, url, title_key)))
    guids = {p[0].guid for p in prepared if p[0].guid}
    urls = {p[3] for p in prepared if p[3]}
    index = _load_index(
        session,
        guids | urls,
        urls | guids,
        {p[4] for p in prepared},
        {p[2] for p in prepared},
    )
    result = StoreResult()
    touched: dict[int, Article] = {}
    new_articles: list[NewArticle] = []
    for item, title, title_key, url, fp in prepared:
        article = index.find(item.guid, url, fp, title_key)
        if article is None:
            # Kept out of the session: new rows go in below as one bulk INSERT.
            article = _new_article(item, title, title_key, url, fp, now)
            index.add(article)
            new_articles.append(article)
            result.added += 1
            continue
        if isinstance(article, NewArticle):
            # Repeated within this batch: the first copy is what gets inserted.
            continue
        _merge(article, item, url, now)
        if article.id not in touched:
            touched[article.id] = article
            result.updated += 1
    session.flush()
    new_ids = _insert_new(session, new_articles)
    linked = set(
        session.scalars(
            select(article_sources.c.article_id).where(article_sources.c.source_id == source.id)
        )
    )
    article_ids = [*touched, *new_ids]
    rows = [
        {"article_id": article_id, "source_id": source.id}
        for article_id in article_ids
        if article_id not in linked
    ]
    if rows:
        session.execute(insert(article_sources), rows)
    return result
