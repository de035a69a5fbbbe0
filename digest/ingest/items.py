"""What every reader produces: parsed items, independent of the database."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

# Block types of an article body, in ``Article.blocks``.
BLOCK_TYPES = ("paragraph", "heading", "question", "quote")


@dataclass
class Item:
    """One headline or article as read from a source, before it meets the database."""

    title: str
    url: str | None = None
    guid: str | None = None
    summary: str | None = None
    # [{"type": "paragraph"|"heading"|"question"|"quote", "text": ...}]; None = headline only.
    blocks: list[dict[str, str]] | None = None
    source_name: str | None = None
    author: str | None = None
    image_url: str | None = None
    published_at: dt.datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view used by ``digest ingest --dry-run --json``."""
        return {
            "title": self.title,
            "source": self.source_name,
            "date": self.published_at.date().isoformat() if self.published_at else None,
            "published_at": self.published_at.isoformat() if self.published_at else None,
            "url": self.url,
            "guid": self.guid,
            "author": self.author,
            "image_url": self.image_url,
            "summary": self.summary,
            "paragraphs": [block["text"] for block in self.blocks or []],
            "blocks": self.blocks,
        }


@dataclass
class ParsedSource:
    """Everything read from one location: its headlines and its full articles."""

    location: str
    kind: str
    name: str | None = None
    headlines: list[str] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)
    # Conditional GET said nothing changed since the last fetch.
    not_modified: bool = False
    etag: str | None = None
    last_modified: str | None = None

    @property
    def articles(self) -> list[Item]:
        """The items whose body is known."""
        return [item for item in self.items if item.blocks]
