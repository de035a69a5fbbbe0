"""Editors' Markdown (the edition's introduction) as sanitized HTML and as plain text."""

from __future__ import annotations

import nh3
from markdown_it import MarkdownIt
from markdown_it.token import Token
from markupsafe import Markup

MAX_INTRO_CHARS = 2000

# What an introduction may contain in an email: paragraphs, emphasis, links, lists, quotes.
ALLOWED_TAGS = {"p", "br", "em", "strong", "a", "ul", "ol", "li", "blockquote", "code"}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}}
ALLOWED_SCHEMES = {"http", "https", "mailto"}

# Raw HTML in the source is shown as text, never passed through; images are not offered.
_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False}).disable(
    ["image", "heading", "lheading", "fence", "code", "hr", "table"], ignoreInvalid=True
)


def markdown_to_html(source: str | None) -> Markup:
    """The Markdown rendered by markdown-it-py, then sanitized by nh3: safe to embed."""
    if not source or not source.strip():
        return Markup("")
    rendered = _markdown.render(source)
    cleaned = nh3.clean(
        rendered,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=ALLOWED_SCHEMES,
        link_rel="noopener noreferrer",
    )
    return Markup(cleaned.strip())


def markdown_to_text(source: str | None) -> str:
    """The Markdown as plain text for the text part: links written as "text (url)"."""
    if not source or not source.strip():
        return ""
    lines: list[str] = []
    current: list[str] = []
    list_stack: list[list[int]] = []
    quote_depth = 0

    def flush(blank: bool) -> None:
        text = "".join(current).strip()
        current.clear()
        if text:
            prefix = "> " * quote_depth
            lines.extend(prefix + line for line in text.split("\n"))
        if blank and lines and lines[-1] != "":
            lines.append("")

    for token in _markdown.parse(source):
        kind = token.type
        if kind == "bullet_list_open":
            list_stack.append([0, 0])
        elif kind == "ordered_list_open":
            list_stack.append([1, int(token.attrGet("start") or 1)])
        elif kind in ("bullet_list_close", "ordered_list_close"):
            list_stack.pop()
            if not list_stack:
                flush(blank=True)
        elif kind == "list_item_open" and list_stack:
            ordered, number = list_stack[-1]
            indent = "  " * (len(list_stack) - 1)
            current.append(f"{indent}{number}. " if ordered else f"{indent}- ")
            if ordered:
                list_stack[-1][1] += 1
        elif kind == "list_item_close":
            flush(blank=False)
        elif kind == "blockquote_open":
            flush(blank=False)
            quote_depth += 1
        elif kind == "blockquote_close":
            flush(blank=True)
            quote_depth -= 1
        elif kind == "inline":
            current.append(_inline_text(token.children or []))
        elif kind == "paragraph_close" and not list_stack:
            flush(blank=True)
    flush(blank=False)
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines)


def _inline_text(children: list[Token]) -> str:
    parts: list[str] = []
    href_stack: list[tuple[str, int]] = []
    for child in children:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append("\n")
        elif child.type == "link_open":
            href_stack.append((str(child.attrGet("href") or ""), len(parts)))
        elif child.type == "link_close" and href_stack:
            href, start = href_stack.pop()
            label = "".join(parts[start:])
            if href and href != label and href.split(":", 1)[0].lower() in ALLOWED_SCHEMES:
                parts.append(f" ({href})")
    return "".join(parts)
