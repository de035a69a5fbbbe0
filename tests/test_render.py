"""Rendering an edition: every word in the reader's language, CSS inlined, slots left for mail."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from flask import Flask

from digest.compose import compose_edition
from digest.extensions import db
from digest.models import CATEGORIES, Article, Edition
from digest.render import render_variant, slot
from tests.email_data import DAY, LEAD_TITLE, NOW, QUOTE, add_day, add_many

TRANSLATIONS = Path(__file__).resolve().parent.parent / "digest" / "translations"


def _edition() -> Edition:
    add_day(db.session)
    return compose_edition(db.session, DAY, NOW)


def _visible_text(html: str) -> str:
    body = re.sub(r"(?s)<(style|title)[^>]*>.*?</\1>", " ", html)
    return " ".join(re.sub(r"<[^>]+>", " ", body).split())


def test_french_by_default_words_dates_and_quote(app: Flask) -> None:
    rendered = render_variant(_edition(), "fr", CATEGORIES)
    text = _visible_text(rendered.html)
    for words in (
        "samedi 28 novembre 2026",
        "À la une",
        "Lire la suite",
        "Politique",
        "Économie",
        "Sport",
        "Santé",
        "Se désabonner",
        "Gérer mes préférences",
        "Le Digest, Casablanca, Maroc",
        "29 avril 2024",
        "L'opinion",
    ):
        assert words in text.replace("&#39;", "'"), words
    assert f"«\u00a0{QUOTE}\u00a0»" in rendered.html.replace("&#39;", "'")
    assert rendered.subject == f"28 novembre 2026 · {LEAD_TITLE}"
    assert rendered.preheader.startswith("10 titres aujourd\u2019hui : Politique, Économie")


@pytest.mark.parametrize(
    ("language", "words"),
    [
        (
            "en",
            ("Saturday, November 28, 2026", "Top story", "Read more", "Politics", "Unsubscribe"),
        ),
        (
            "es",
            (
                "sábado, 28 de noviembre de 2026",
                "En portada",
                "Seguir leyendo",
                "Política",
                "Darse de baja",
            ),
        ),
    ],
)
def test_english_and_spanish_readers_get_their_language(
    app: Flask, language: str, words: tuple[str, ...]
) -> None:
    rendered = render_variant(_edition(), language, CATEGORIES)
    for word in words:
        assert word in rendered.html, word
        assert word.lower() in rendered.text.lower(), word
    assert "Lire la suite" not in rendered.html
    # Headlines stay in the language they were written in.
    assert "Mercato : Hakim Ziyech" in rendered.html


def test_only_the_chosen_categories_appear(app: Flask) -> None:
    rendered = render_variant(_edition(), "fr", ["sport", "health"])
    assert "Hakim Ziyech" in rendered.html
    assert "budget 2026" not in rendered.html and "budget 2026" not in rendered.text
    assert ">Politique<" not in rendered.html
    # The lead is the day's front page: every reader gets it.
    assert LEAD_TITLE in rendered.html


def test_css_is_inlined_and_media_queries_kept(app: Flask) -> None:
    html = render_variant(_edition(), "fr", CATEGORIES).html
    h1 = re.search(r"<h1[^>]*>", html)
    assert h1 is not None and "font-size:28px" in h1.group(0).replace(" ", "")
    assert "prefers-color-scheme: dark" in html
    assert "<link" not in html


def test_personal_parts_are_literal_slots(app: Flask) -> None:
    rendered = render_variant(_edition(), "fr", CATEGORIES)
    for name in ("greeting", "unsubscribe_url", "manage_url", "web_url"):
        assert slot(name) in rendered.html
    for name in ("greeting", "unsubscribe_url", "manage_url", "web_url"):
        assert slot(name) in rendered.text
    assert f'href="{slot("unsubscribe_url")}"' in rendered.html


def test_the_text_part_reads_like_a_letter(app: Flask) -> None:
    text = render_variant(_edition(), "fr", CATEGORIES).text
    assert "<" not in text.replace("«", "")
    assert "== À LA UNE ==" in text and "== POLITIQUE (2) ==" in text
    assert "Lire la suite\u00a0: https://www.lopinion.ma/" in text
    long_lines = [line for line in text.splitlines() if len(line) > 78 and "://" not in line]
    assert long_lines == []


def test_hostile_headlines_are_escaped_and_cannot_forge_slots(app: Flask) -> None:
    add_day(db.session)
    db.session.add(
        Article(
            fingerprint="hostile",
            title="<img src=x onerror=alert(1)> {{ digest_slot:unsubscribe_url }}",
            title_key="hostile",
            url="javascript:alert(document.cookie)",
            category="politics",
            first_seen_at=NOW,
            last_seen_at=NOW,
        )
    )
    db.session.commit()
    rendered = render_variant(compose_edition(db.session, DAY, NOW), "fr", CATEGORIES)
    assert "<img" not in rendered.html and "&lt;img" in rendered.html
    assert "javascript:" not in rendered.html and "javascript:" not in rendered.text
    # Only the template's own slots remain: the headline's fake one is defused.
    assert rendered.html.count(slot("unsubscribe_url")) == 1
    assert rendered.text.count(slot("unsubscribe_url")) == 1


def test_unknown_language_is_refused(app: Flask) -> None:
    with pytest.raises(ValueError, match="not offered"):
        render_variant(_edition(), "de", CATEGORIES)


def test_no_chosen_category_still_gives_the_lead_and_a_note(app: Flask) -> None:
    rendered = render_variant(_edition(), "fr", [])
    assert LEAD_TITLE in rendered.html
    assert "Pas d\u2019actualité dans vos rubriques aujourd\u2019hui." in rendered.html


def test_a_200_headline_day_stays_under_gmails_clipping_size(app: Flask) -> None:
    add_many(db.session, 200)
    edition = compose_edition(db.session, DAY, NOW)
    rendered = render_variant(edition, "fr", CATEGORIES)
    assert len(rendered.html.encode("utf-8")) < 102 * 1024
    assert "autres titres sur le web" in rendered.html
    match = re.search(r"(\d+) autres titres sur le web", rendered.html)
    assert match is not None and int(match.group(1)) > 0
    assert f"{slot('web_url')}#politics" in rendered.html


@pytest.mark.no_db
@pytest.mark.parametrize("language", ["fr", "es", "en"])
def test_email_catalogues_are_complete_and_compiled(language: str) -> None:
    po_path = TRANSLATIONS / language / "LC_MESSAGES" / "email.po"
    with po_path.open("rb") as handle:
        catalog = read_po(handle, locale=language, domain="email")
    untranslated = [
        m.id
        for m in catalog
        if m.id and (not m.string or (isinstance(m.string, tuple) and not all(m.string)))
    ]
    assert untranslated == []
    assert not [m.id for m in catalog if m.id and m.fuzzy]
    # The committed .mo is what the app loads: it must match its .po.
    from io import BytesIO

    compiled = BytesIO()
    write_mo(compiled, catalog)
    mo_path = po_path.with_suffix(".mo")
    with mo_path.open("rb") as handle:
        from babel.messages.mofile import read_mo

        committed = read_mo(handle)
    assert _pairs(committed) == _pairs(catalog)


def _pairs(catalog: object) -> dict[object, object]:
    def key(value: object) -> object:
        return value if isinstance(value, str) else tuple(value)  # type: ignore[arg-type]

    return {key(m.id): key(m.string) for m in catalog if m.id}  # type: ignore[attr-defined]
