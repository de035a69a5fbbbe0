"""Reader for RSS 0.9x/1.0/2.0 and Atom feeds, through feedparser."""

from __future__ import annotations

import codecs
import datetime as dt
import re
import time
import xml.sax
from typing import Any
from urllib.parse import urljoin, urlsplit

import feedparser

from digest.ingest.encoding import UndecodableError, decode_bytes
from digest.ingest.errors import ReadError
from digest.ingest.items import Item, ParsedSource
from digest.ingest.normalize import clean_text, html_blocks, strip_html

_ROOT_CLOSE = re.compile(rb"</(?:[\w.-]+:)?(?:rss|feed|rdf)\s*>", re.IGNORECASE)
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>", re.IGNORECASE)
_DECLARED_ENCODING = re.compile(rb"^\s*<\?xml[^>]*encoding=[\"']([\w.:-]+)[\"']", re.IGNORECASE)
_IMG_SRC = re.compile(r"<img\b[^>]*\bsrc\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)
_SUMMARY_LIMIT = 2000


def safe_url(url: str | None, base: str | None = None) -> str | None:
    """An absolute http(s) URL, or None: a ``javascript:`` or ``data:`` link never survives."""
    if not url:
        return None
    url = url.strip()
    try:
        if base and base.lower().startswith(("http://", "https://")):
            url = urljoin(base, url)
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return url[:2000]


def _to_utf8_document(data: bytes, declared: str | None) -> bytes:
    """Decode with our own rules and hand feedparser UTF-8, so both agree on the text.

    feedparser trusts a declared latin-1 over UTF-8 bytes (and prints mojibake); our
    decoder checks the declaration against the bytes first.
    """
    if declared is None:
        match = _DECLARED_ENCODING.match(data[:200])
        declared = match.group(1).decode("ascii", "replace") if match else None
    try:
        text = decode_bytes(data, declared)
    except UndecodableError as error:
        raise ReadError(f"not a feed: {error}") from error
    text = _XML_DECLARATION.sub('<?xml version="1.0" encoding="utf-8"?>', text, count=1)
    return text.encode("utf-8")


_FIRST_TAG = re.compile(
    rb"^(?:\s|<\?.*?\?>|<!--.*?-->|<!doctype[^>]*>)*<([a-z][\w:.-]*)", re.IGNORECASE | re.DOTALL
)


def root_tag(data: bytes) -> str:
    """Local name of the document's first element ("rss", "feed", "rdf", "html"...), or ""."""
    head = data[:4096].removeprefix(codecs.BOM_UTF8)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        head = data[:8192].decode("utf-16", errors="replace").encode("utf-8")
    match = _FIRST_TAG.match(head)
    return match.group(1).decode("ascii", "replace").lower().split(":")[-1] if match else ""


def _is_truncated(data: bytes) -> bool:
    tail = data[-4096:]
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        tail = data.decode("utf-16", errors="replace")[-2048:].encode("utf-8")
    return _ROOT_CLOSE.search(tail) is None


def _when(entry: Any) -> dt.datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        value = entry.get(key)
        if isinstance(value, time.struct_time):
            # feedparser has already converted the source's offset to UTC.
            try:
                return dt.datetime(*value[:6], tzinfo=dt.UTC)
            except ValueError:
                continue
    return None


def _image(entry: Any, base: str | None) -> str | None:
    for media in entry.get("media_content") or []:
        kind = str(media.get("medium") or media.get("type") or "")
        if kind == "image" or kind.startswith("image/") or not kind:
            url = safe_url(media.get("url"), base)
            if url:
                return url
    for media in entry.get("media_thumbnail") or []:
        url = safe_url(media.get("url"), base)
        if url:
            return url
    for link in entry.get("links") or []:
        if link.get("rel") == "enclosure" and str(link.get("type", "")).startswith("image/"):
            url = safe_url(link.get("href"), base)
            if url:
                return url
    for html in [
        entry.get("summary") or "",
        *(c.get("value", "") for c in entry.get("content") or []),
    ]:
        match = _IMG_SRC.search(html)
        if match:
            url = safe_url(match.group(1), base)
            if url:
                return url
    return None


def _entry_item(entry: Any, base: str | None, feed_title: str | None) -> Item | None:
    summary_html = entry.get("summary") or ""
    summary_text = strip_html(summary_html).replace("\n", " ") if summary_html else ""
    summary = clean_text(summary_text)[:_SUMMARY_LIMIT] or None
    title = clean_text(strip_html(entry.get("title") or "").replace("\n", " "))
    if not title and summary:
        # Some RSS 0.9x items have only a description: its opening words stand in.
        title = summary if len(summary) <= 120 else summary[:117].rsplit(" ", 1)[0] + "…"
    if not title:
        return None
    blocks = None
    contents = [c for c in entry.get("content") or [] if c.get("value")]
    if contents:
        blocks = html_blocks(contents[0]["value"]) or None
    link = safe_url(entry.get("link"), base)
    guid = (entry.get("id") or "").strip() or None
    return Item(
        title=title,
        url=link,
        guid=guid[:2000] if guid else None,
        summary=summary,
        blocks=blocks,
        source_name=feed_title,
        author=clean_text(entry.get("author") or "")[:200] or None,
        image_url=_image(entry, base),
        published_at=_when(entry),
    )


def parse_feed(data: bytes, location: str, charset: str | None = None) -> ParsedSource:
    """Items of an RSS or Atom document; raises ``ReadError`` for what is not a whole feed."""
    if not data.strip():
        raise ReadError("empty feed")
    if root_tag(data) not in ("rss", "feed", "rdf"):
        raise ReadError("not an RSS or Atom feed: its first element is not <rss>, <feed> or <rdf>")
    if _is_truncated(data):
        raise ReadError("truncated feed: the document ends before its closing tag")
    document = _to_utf8_document(data, charset)
    base = location if location.lower().startswith(("http://", "https://")) else None
    headers = {"content-type": "application/xml; charset=utf-8"}
    if base:
        headers["content-location"] = base
    parsed = feedparser.parse(document, response_headers=headers, sanitize_html=True)
    problem = parsed.get("bozo_exception")
    if not parsed.get("version") and not parsed.entries:
        reason = f": {problem}" if problem else ""
        raise ReadError(f"not an RSS or Atom feed{reason}")
    if isinstance(problem, xml.sax.SAXException) and not parsed.entries and not parsed.feed:
        raise ReadError(f"malformed feed: {problem}")
    feed_title = clean_text(strip_html(parsed.feed.get("title") or "")) or None
    items: list[Item] = []
    for entry in parsed.entries:
        item = _entry_item(entry, base, feed_title)
        if item is not None:
            items.append(item)
    return ParsedSource(
        location=location,
        kind="feed",
        name=feed_title,
        headlines=[item.title for item in items],
        items=items,
    )
