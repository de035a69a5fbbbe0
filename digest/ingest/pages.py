"""Reader for article pages (HTML), through trafilatura: main text without boilerplate."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import trafilatura

from digest.ingest.dates import parse_date
from digest.ingest.encoding import UndecodableError, decode_bytes
from digest.ingest.errors import ReadError
from digest.ingest.feeds import safe_url
from digest.ingest.items import Item, ParsedSource
from digest.ingest.normalize import clean_text, match_key

_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?([\w.:-]+)", re.IGNORECASE)
# trafilatura keeps the offset when asked for it; "2024-05-03" alone stays a date.
_DATE_PARAMS = {"outputformat": "%Y-%m-%dT%H:%M:%S%z", "original_date": True}


def _page_blocks(body: object, title: str) -> list[dict[str, str]]:
    blocks: list[dict[str, str]] = []
    for element in getattr(body, "iterchildren", lambda: [])():
        tag = element.tag
        text = clean_text(" ".join(element.itertext()))
        if not text:
            continue
        if tag == "head":
            # The page repeats its title as the first heading.
            if match_key(text) != match_key(title):
                blocks.append({"type": "heading", "text": text})
        elif tag == "quote":
            blocks.append({"type": "quote", "text": text})
        elif tag == "list":
            for entry in element.iterchildren():
                line = clean_text(" ".join(entry.itertext()))
                if line:
                    blocks.append({"type": "paragraph", "text": line})
        elif tag in ("p", "div", "code"):
            blocks.append({"type": "paragraph", "text": text})
    return blocks


def parse_page(data: bytes, location: str, charset: str | None = None) -> ParsedSource:
    """The article on an HTML page: title, author, date, site, paragraphs, lead image."""
    if not data.strip():
        raise ReadError("empty page")
    if charset is None:
        match = _META_CHARSET.search(data[:4096])
        charset = match.group(1).decode("ascii", "replace") if match else None
    try:
        html = decode_bytes(data, charset)
    except UndecodableError as error:
        raise ReadError(f"not a web page: {error}") from error
    url = location if location.lower().startswith(("http://", "https://")) else None
    document = trafilatura.bare_extraction(
        html,
        url=url,
        with_metadata=True,
        include_comments=False,
        include_tables=False,
        include_images=False,
        date_extraction_params=_DATE_PARAMS,
    )
    if document is None or isinstance(document, dict):
        raise ReadError("no article text found on the page")
    title = clean_text(document.title or "")
    if not title:
        raise ReadError("the page has no article title")
    blocks = _page_blocks(document.body, title)
    if not blocks:
        raise ReadError("no article text found on the page")
    site = clean_text(document.sitename or "") or (urlsplit(url).hostname if url else None)
    item = Item(
        title=title,
        url=safe_url(url),
        summary=next((b["text"] for b in blocks if b["type"] == "paragraph"), None),
        blocks=blocks,
        source_name=site,
        author=clean_text(document.author or "")[:200] or None,
        image_url=safe_url(document.image, url),
        published_at=parse_date(document.date) if document.date else None,
    )
    return ParsedSource(location=location, kind="page", name=site, headlines=[], items=[item])
