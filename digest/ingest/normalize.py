"""Text cleanup for display and normalized keys for matching (dedupe, categorizing).

Display text keeps its typography (accents, guillemets, a single no-break space before
":"); keys drop everything that differs between two copies of the same headline.
"""

from __future__ import annotations

import re
import unicodedata
from html import unescape
from html.parser import HTMLParser

# Characters that carry no visible text; feeds and CMS exports leave them inside words.
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)
_APOSTROPHES = str.maketrans(dict.fromkeys("\u2019\u2018\u02bc\u0060\u00b4\u2032", "'"))
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SPACE_RUN = re.compile(r"\s{2,}")
# Anything that is neither a letter, a digit nor an apostrophe separates words in a key.
_KEY_SEPARATORS = re.compile(r"[^\w']+|_+")
_EDGE_APOSTROPHES = re.compile(r"(?<!\w)'|'(?!\w)")

# Elements whose text is never part of what a reader sees.
_SKIPPED_ELEMENTS = frozenset({"script", "style", "noscript", "template", "iframe", "object"})
_BLOCK_ELEMENTS = frozenset(
    {
        "p",
        "div",
        "br",
        "li",
        "ul",
        "ol",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "blockquote",
        "tr",
        "table",
        "section",
        "article",
        "header",
        "footer",
        "figure",
        "figcaption",
        "pre",
    }
)


class _TextExtractor(HTMLParser):
    """Collects the visible text of an HTML fragment, one line per block element."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED_ELEMENTS:
            self._skipping += 1
        elif tag in _BLOCK_ELEMENTS:
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK_ELEMENTS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_ELEMENTS:
            self._skipping = max(0, self._skipping - 1)
        elif tag in _BLOCK_ELEMENTS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def strip_html(fragment: str) -> str:
    """Visible text of an HTML fragment: tags, scripts and styles gone, entities decoded."""
    if "<" not in fragment and "&" not in fragment:
        return fragment
    parser = _TextExtractor()
    parser.feed(fragment)
    parser.close()
    lines = (clean_text(line) for line in "".join(parser.parts).split("\n"))
    return "\n".join(line for line in lines if line)


def clean_text(text: str) -> str:
    """Display text: NFC, no invisible or control characters, whitespace runs collapsed.

    A single no-break space (French typography before ":" or inside « ») is kept.
    """
    text = unicodedata.normalize("NFC", text).translate(_INVISIBLE)
    text = _CONTROL.sub(" ", text)
    return _SPACE_RUN.sub(" ", text).strip()


def match_key(text: str) -> str:
    """Normalized text for matching: no HTML, NFKC, case-folded, plain apostrophes,
    punctuation and every kind of space reduced to single spaces."""
    if "<" in text:
        text = strip_html(text)
    elif "&" in text:
        text = unescape(text)
    text = unicodedata.normalize("NFKC", text).translate(_INVISIBLE).casefold()
    text = text.translate(_APOSTROPHES)
    text = _KEY_SEPARATORS.sub(" ", text)
    text = _EDGE_APOSTROPHES.sub(" ", text)
    return " ".join(text.split())


_BLOCK_TYPE_OF = {
    "p": "paragraph",
    "li": "paragraph",
    "dd": "paragraph",
    "pre": "paragraph",
    "h1": "heading",
    "h2": "heading",
    "h3": "heading",
    "h4": "heading",
    "h5": "heading",
    "h6": "heading",
    "blockquote": "quote",
}


class _BlockExtractor(HTMLParser):
    """Splits an HTML body into typed text blocks (paragraphs, headings, quotes)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[dict[str, str]] = []
        self._kind = "paragraph"
        self._buffer: list[str] = []
        self._skipping = 0

    def _flush(self) -> None:
        text = clean_text("".join(self._buffer))
        if text:
            self.blocks.append({"type": self._kind, "text": text})
        self._buffer = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED_ELEMENTS:
            self._skipping += 1
        elif tag in _BLOCK_TYPE_OF:
            self._flush()
            # Paragraphs inside a blockquote stay quotes.
            if not (self._kind == "quote" and tag == "p"):
                self._kind = _BLOCK_TYPE_OF[tag]
        elif tag == "br":
            self._buffer.append(" ")
        elif tag in _BLOCK_ELEMENTS:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_ELEMENTS:
            self._skipping = max(0, self._skipping - 1)
        elif tag in _BLOCK_TYPE_OF or tag in _BLOCK_ELEMENTS:
            self._flush()
            if tag in _BLOCK_TYPE_OF and tag != "p":
                self._kind = "paragraph"

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self._buffer.append(data)


def html_blocks(fragment: str) -> list[dict[str, str]]:
    """Typed text blocks of an HTML body: [{"type": "paragraph"|"heading"|"quote", "text"}]."""
    parser = _BlockExtractor()
    parser.feed(fragment)
    parser.close()
    parser._flush()
    return parser.blocks
