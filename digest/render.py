"""Render an edition once per variant (language x chosen categories): inlined HTML and a text part.

Personal parts (greeting, signed links) are left as literal ``{{ digest_slot:name }}`` slots;
the mail layer fills them per subscriber, so premailer never runs once per reader.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import secrets
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any
from urllib.parse import urlsplit

from babel.dates import format_date
from babel.lists import format_list
from babel.numbers import format_decimal
from flask import Flask, current_app
from flask_babel import Domain, force_locale
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from premailer import Premailer

from digest import PROJECT_ROOT
from digest.models import CATEGORIES, Edition
from digest.richtext import markdown_to_html, markdown_to_text

TEMPLATE_DIR = PROJECT_ROOT / "templates" / "email"
TRANSLATIONS_DIR = PROJECT_ROOT / "digest" / "translations"
# Gmail clips a message whose HTML passes ~102 KB; keep room for the personal links and headers.
HTML_BUDGET_BYTES = 96_000
# Stories shown per section before "N more on the web"; halved until the HTML fits the budget.
STORIES_PER_SECTION = 12
SLOT_NAMES = ("greeting", "name", "unsubscribe_url", "manage_url", "web_url")
_SLOT_LITERAL = re.compile(r"\{\{\s*digest_slot:")
_ENV_KEY = "digest.email_jinja"

email_domain = Domain(translation_directories=[str(TRANSLATIONS_DIR)], domain="email")


@dataclass(frozen=True)
class RenderedVariant:
    """One variant of an edition, ready for the mail layer to personalize."""

    subject: str
    preheader: str
    html: str
    text: str


def slot(name: str) -> str:
    """The literal placeholder the mail layer replaces with a subscriber's value."""
    return "{{ digest_slot:" + name + " }}"


def gettext(message: str, /, **variables: Any) -> str:
    """Translate ``message`` from the email catalogue in the current (forced) locale."""
    translated = email_domain.get_translations().ugettext(message)
    return translated % variables if variables else translated


def ngettext(singular: str, plural: str, n: int, /, **variables: Any) -> str:
    """Plural-aware translation from the email catalogue; ``%(num)s`` defaults to ``n``."""
    translated = email_domain.get_translations().ungettext(singular, plural, n)
    variables.setdefault("num", n)
    return translated % variables


def category_label(category: str) -> str:
    """A category's name in the current locale (unknown categories keep their own name)."""
    labels = {
        "politics": gettext("Politics"),
        "economy": gettext("Economy"),
        "sport": gettext("Sport"),
        "health": gettext("Health"),
        "other": gettext("Other news"),
    }
    return labels.get(category, category.replace("_", " ").capitalize())


def brand_name(config: Any) -> str:
    """The newsletter's name: the display name of MAIL_FROM."""
    return parseaddr(str(config.get("MAIL_FROM", "")))[0] or "Le Digest"


def archive_url(config: Any, day: dt.date) -> str:
    """The public web page of an edition (same for every reader)."""
    return f"{config['PUBLIC_URL']}/archive/{day.isoformat()}"


def safe_link(url: str | None) -> str | None:
    """Only http(s) links from sources become links; anything else is dropped."""
    if not url:
        return None
    try:
        scheme = urlsplit(url.strip()).scheme.lower()
    except ValueError:
        return None
    return url.strip() if scheme in ("http", "https") else None


def render_variant(
    edition: Edition,
    language: str,
    categories: Sequence[str],
    config: Mapping[str, Any] | None = None,
) -> RenderedVariant:
    """Render ``edition`` in ``language`` with only ``categories``: subject, preheader, parts.

    ``config`` is the configuration in force (admins' settings included); default: the app's.
    """
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    config = config if config is not None else app.config
    if language not in config["LANGUAGES"]:
        raise ValueError(
            f"language {language!r} is not offered; choose one of {', '.join(config['LANGUAGES'])}"
        )
    chosen = list(dict.fromkeys(categories))
    env = _environment(app)
    with force_locale(language):
        context = _context(edition, language, chosen, config)
        limit = STORIES_PER_SECTION
        while True:
            context["sections"] = _sections(edition, chosen, limit)
            html = _inline(env.get_template("digest.html").render(**context))
            if len(html.encode("utf-8")) <= HTML_BUDGET_BYTES or limit == 1:
                break
            limit = max(1, limit // 2)
        text = env.get_template("digest.txt").render(**context)
    marker = context["marker"]
    return RenderedVariant(
        subject=context["subject"],
        preheader=context["preheader"],
        html=_finish(html, marker),
        text=_finish(text, marker).strip() + "\n",
    )


def _context(edition: Edition, language: str, chosen: Sequence[str], config: Any) -> dict[str, Any]:
    snapshot = edition.snapshot or {}
    lead = snapshot.get("lead")
    all_sections = [s for s in snapshot.get("sections", []) if s.get("category") in chosen]
    headline_count = sum(_headlines(s) for s in all_sections) + (1 if lead else 0)
    brand = brand_name(config)
    long_date = format_date(edition.day, format="full", locale=language)
    short_date = format_date(edition.day, format="long", locale=language)
    if lead:
        subject = f"{short_date} · {_one_line(lead['title'], 140)}"
    else:
        subject = gettext("%(brand)s of %(date)s", brand=brand, date=short_date)
    labels = [category_label(s["category"]) for s in all_sections]
    if labels:
        preheader = ngettext(
            "%(num)s headline today: %(sections)s.",
            "%(num)s headlines today: %(sections)s.",
            headline_count,
            num=format_decimal(headline_count, locale=language),
            sections=format_list(labels, locale=language),
        )
    elif lead:
        preheader = _one_line(lead.get("summary") or lead["title"], 150)
    else:
        preheader = gettext("No news in your sections today.")
    # A per-render nonce: text from a source can never forge a personal slot.
    marker = "ds" + secrets.token_hex(6)
    return {
        "marker": marker,
        "slot": lambda name: Markup(f"{marker}{SLOT_NAMES.index(name)}x"),
        "lang": language,
        "brand": brand,
        "subject": subject,
        "preheader": preheader,
        "long_date": long_date,
        "edition": edition,
        # The editor's introduction is Markdown: sanitized HTML for the HTML part, text for text.
        "intro": markdown_to_text(edition.intro),
        "intro_html": markdown_to_html(edition.intro),
        "lead": lead,
        "postal_address": config.get("POSTAL_ADDRESS", ""),
        "site_url": config["PUBLIC_URL"],
        "toc": [
            (s["category"], category_label(s["category"]), _headlines(s)) for s in all_sections
        ],
        "quote_marks": quote_marks(language),
        # French sets a space before a colon; the text part uses it between labels and links.
        "colon": "\u00a0: " if language == "fr" else ": ",
        "no_sections": not all_sections,
    }


def _sections(edition: Edition, chosen: Sequence[str], limit: int) -> list[dict[str, Any]]:
    sections = []
    for section in (edition.snapshot or {}).get("sections", []):
        if section.get("category") not in chosen:
            continue
        items = section.get("items", [])
        shown = items[:limit]
        hidden = sum(1 + len(item.get("related", [])) for item in items[limit:])
        sections.append(
            {
                "category": section["category"],
                "label": category_label(section["category"]),
                "count": _headlines(section),
                "items": shown,
                "more": hidden,
            }
        )
    return sections


def _headlines(section: dict[str, Any]) -> int:
    return sum(1 + len(item.get("related", [])) for item in section.get("items", []))


def _environment(app: Flask) -> Environment:
    env = app.extensions.get(_ENV_KEY)
    if env is None:
        env = Environment(
            loader=FileSystemLoader(str(TEMPLATE_DIR)),
            autoescape=select_autoescape(["html"]),
            extensions=["jinja2.ext.i18n"],
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        env.install_gettext_callables(  # type: ignore[attr-defined]
            gettext, ngettext, newstyle=True
        )
        env.filters.update(
            link=safe_link,
            when=_format_when,
            wrap=_wrap,
            one_line=_one_line,
            category_label=category_label,
            number=lambda n, lang: format_decimal(n, locale=lang),
        )
        app.extensions[_ENV_KEY] = env
    return env


def _inline(html: str) -> str:
    # Inlining is what makes the design survive Gmail and Outlook, which drop or ignore
    # most <style> rules; the media queries (phones, dark mode) stay in the <style> block.
    return str(
        Premailer(
            html,
            allow_network=False,
            keep_style_tags=False,
            strip_important=False,
            remove_classes=False,
            disable_validation=True,
            cssutils_logging_level=logging.CRITICAL,
        ).transform(pretty_print=False)
    )


def _finish(rendered: str, marker: str) -> str:
    # Source text that happens to contain a slot literal is defused before the real slots go in.
    rendered = _SLOT_LITERAL.sub("{\u200b{ digest_slot:", rendered)
    for index, name in enumerate(SLOT_NAMES):
        rendered = rendered.replace(f"{marker}{index}x", slot(name))
    return rendered


def _format_when(value: str | None, language: str) -> str:
    if not value:
        return ""
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return ""
    return format_date(moment.date(), format="long", locale=language)


def _wrap(text: str, width: int = 72, indent: str = "") -> str:
    return textwrap.fill(
        " ".join(str(text).split()),
        width=width,
        initial_indent=indent,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0].rstrip(",;:.") + "…"


def quote_marks(language: str) -> tuple[str, str]:
    """Opening and closing quotation marks as each language prints them."""
    if language == "fr":
        return ("«\u00a0", "\u00a0»")
    return ("«", "»") if language == "es" else ("“", "”")


def all_categories() -> Iterable[str]:
    """Every category a subscriber can choose, in the default order."""
    return CATEGORIES


def sample_personal(edition: Edition, language: str) -> dict[str, str]:
    """Slot values for a preview with no subscriber: a plain greeting and non-personal links."""
    config = current_app.config
    base = config["PUBLIC_URL"]
    with force_locale(language):
        greeting = gettext("Hello,")
    return {
        "greeting": greeting,
        "name": "",
        "unsubscribe_url": f"{base}/unsubscribe/preview",
        "manage_url": f"{base}/manage/preview",
        "web_url": f"{archive_url(config, edition.day)}?lang={language}",
    }
