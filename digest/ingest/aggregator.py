"""Reader for aggregator text dumps (the seed's layout).

Layout: a ticker of headlines separated by runs of spaces or no-break spaces, then zero
or more articles, each a title line, a "Publié dans SOURCE le DATE" line and body lines
(paragraphs, subheadings, pull quotes, "- " questions and answers). Page furniture
("Merci d'avoir signalé!", "Cliquez ici pour lire l'article…") is dropped wherever it is.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from digest.ingest.dates import parse_date
from digest.ingest.items import Item
from digest.ingest.normalize import clean_text, match_key

# Two or more horizontal spaces of any kind, or a tab, end one ticker headline.
_TICKER_SEPARATOR = re.compile(r"[ \u00a0\u2007\u202f\u3000]{2,}|\t+")
_PUBLISHED = re.compile(
    r"^(?:publi\w*\s+(?:dans|sur|par)|published\s+(?:in|by|on)|publicado\s+(?:en|por))"
    r"\s+(?P<rest>.+)$",
    re.IGNORECASE,
)
_PUBLISHED_DATE_FIRST = re.compile(
    r"^(?:publi\w*|published|publicado)\s+(?:le|on|el)\s+(?P<date>.+?)\s+"
    r"(?:dans|sur|par|in|by|en|por)\s+(?P<source>.+)$",
    re.IGNORECASE,
)
_DATE_JOINER = re.compile(r"\s+(?:le|on|el|,)\s+|,\s*", re.IGNORECASE)
_LIST_MARKER = re.compile(r"^[-\u2013\u2014\u2022*]\s+")
_QUOTE_OPEN = '«\u201c\u201e"'
_QUOTE_CLOSE = '»\u201d"'
_SENTENCE_END = '.!?…:;,»"\u201d)'

# Page furniture of aggregator pages, as match keys: whole lines that start with these.
_FURNITURE_PREFIXES = (
    "merci d'avoir signalé",
    "cette image sera automatiquement bloquée",
    "cliquez ici pour lire l'article",
    "lire l'article depuis sa source",
    "lire la suite",
    "lire aussi",
    "voir aussi",
    "signaler cette image",
    "partager sur",
)
_FURNITURE_LINES = frozenset({"signaler", "partager", "publicité", "commentaires", "advertisement"})


@dataclass
class AggregatorDump:
    """The headlines of the ticker and the full articles of one dump."""

    headlines: list[str] = field(default_factory=list)
    articles: list[Item] = field(default_factory=list)


def is_furniture(line: str) -> bool:
    """Whether ``line`` is page chrome rather than news."""
    if len(line) > 200:
        return False
    key = match_key(line)
    return key in _FURNITURE_LINES or key.startswith(_FURNITURE_PREFIXES)


def parse_publication(line: str) -> tuple[str, dt.datetime | None] | None:
    """("L'opinion", 2024-04-29) from "Publié dans L'opinion le 29 - 04 - 2024", else None."""
    text = clean_text(line)
    match = _PUBLISHED_DATE_FIRST.match(text)
    if match and parse_date(match["date"]):
        return match["source"].strip(), parse_date(match["date"])
    match = _PUBLISHED.match(text)
    if not match:
        return None
    rest = match["rest"].strip()
    # The source name may itself contain " le " ("Maroc le Jour"): the date is the
    # longest tail after a joiner that reads as a date.
    for joiner in _DATE_JOINER.finditer(rest):
        published = parse_date(rest[joiner.end() :])
        if published and joiner.start() > 0:
            return rest[: joiner.start()].strip(), published
    return rest, None


def split_ticker(line: str) -> list[str]:
    """The headlines of one ticker line."""
    pieces = (clean_text(piece) for piece in _TICKER_SEPARATOR.split(line))
    return [piece for piece in pieces if piece and not is_furniture(piece)]


def classify_block(line: str) -> dict[str, str]:
    """One body line as a typed block: paragraph, heading, question or quote."""
    text = clean_text(line)
    marker = _LIST_MARKER.match(text)
    if marker:
        body = text[marker.end() :].strip()
        kind = "question" if body.endswith("?") else "paragraph"
        return {"type": kind, "text": body}
    if (
        len(text) > 2
        and text[0] in _QUOTE_OPEN
        and text[-1] in _QUOTE_CLOSE
        and not any(mark in text[1:-1] for mark in "«»\u201c\u201d")
    ):
        return {"type": "quote", "text": text}
    if (
        len(text) <= 120
        and len(text.split()) <= 14
        and text[-1] not in _SENTENCE_END
        and (text[0].isupper() or text[0].isdigit())
    ):
        return {"type": "heading", "text": text}
    return {"type": "paragraph", "text": text}


def _body_blocks(lines: list[str]) -> list[dict[str, str]]:
    blocks = [classify_block(line) for line in lines if line.strip() and not is_furniture(line)]
    # A "heading" that closes the body is a short last paragraph, not a section title.
    if len(blocks) > 1 and blocks[-1]["type"] == "heading":
        blocks[-1] = {"type": "paragraph", "text": blocks[-1]["text"]}
    return blocks


def parse_aggregator(text: str) -> AggregatorDump:
    """Parse a dump into its ticker headlines and its articles; never raises on text."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    # (title index, publication line index, (source, date)) for each article.
    headers: list[tuple[int, int, tuple[str, dt.datetime | None]]] = []
    floor = 0
    for index, line in enumerate(lines):
        publication = parse_publication(line) if line.strip() else None
        if publication is None:
            continue
        title_index = index - 1
        while title_index >= floor and (
            not lines[title_index].strip() or is_furniture(lines[title_index])
        ):
            title_index -= 1
        if title_index < floor or not clean_text(lines[title_index]):
            continue
        headers.append((title_index, index, publication))
        floor = index + 1

    dump = AggregatorDump()
    ticker_end = headers[0][0] if headers else len(lines)
    for line in lines[:ticker_end]:
        if line.strip() and not is_furniture(line):
            dump.headlines.extend(split_ticker(line))
    for number, (title_index, header_index, (source, published)) in enumerate(headers):
        body_end = headers[number + 1][0] if number + 1 < len(headers) else len(lines)
        title = clean_text(_TICKER_SEPARATOR.sub(" ", lines[title_index]))
        blocks = _body_blocks(lines[header_index + 1 : body_end])
        dump.articles.append(
            Item(
                title=title,
                source_name=source or None,
                published_at=published,
                blocks=blocks or None,
                summary=next((b["text"] for b in blocks if b["type"] == "paragraph"), None),
            )
        )
    return dump


def dump_items(dump: AggregatorDump) -> list[Item]:
    """Items to store: each headline once, and an article replaces the headline it equals."""
    items: list[Item] = []
    seen: dict[str, Item] = {}
    for article in dump.articles:
        key = match_key(article.title)
        if key and key not in seen:
            seen[key] = article
            items.append(article)
    for headline in dump.headlines:
        key = match_key(headline)
        if key and key not in seen:
            seen[key] = Item(title=headline)
            items.append(seen[key])
    return items
