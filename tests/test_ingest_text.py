"""Reading aggregator dumps: ticker, articles, furniture, dates, encodings, normalization."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digest.ingest.aggregator import (
    classify_block,
    dump_items,
    is_furniture,
    parse_aggregator,
    parse_publication,
)
from digest.ingest.dates import parse_date
from digest.ingest.encoding import UndecodableError, decode_bytes
from digest.ingest.normalize import clean_text, match_key, strip_html
from tests.conftest import SEED_FILE

DATA = Path(__file__).parent / "data" / "ingest"
NBSP = "\u00a0"


def seed_text() -> str:
    return SEED_FILE.read_text(encoding="utf-8")


def test_seed_ticker_gives_its_48_headlines_in_order() -> None:
    dump = parse_aggregator(seed_text())
    assert len(dump.headlines) == 48
    assert dump.headlines[0].startswith("Le conseil communal de Casablanca adopte")
    assert dump.headlines[-1] == "Décès de l'acteur Abdelkader Moutaâ à l'âge de 85 ans"
    assert "Copa Mundial Femenina Sub-17: Marruecos cae ante Italia" in dump.headlines
    assert all(NBSP * 2 not in h and h == h.strip() for h in dump.headlines)
    assert not any("signalé" in h for h in dump.headlines)


def test_seed_article_has_title_source_date_and_typed_blocks() -> None:
    (article,) = parse_aggregator(seed_text()).articles
    assert article.title == "IA au Maroc : Une révolution imminente dans le secteur de la Santé"
    assert article.source_name == "L'opinion"
    assert article.published_at is not None
    assert article.published_at.date() == dt.date(2024, 4, 29)
    blocks = article.blocks or []
    kinds = [block["type"] for block in blocks]
    texts = [block["text"] for block in blocks]
    assert texts[0].startswith("Dans un contexte où les besoins en matière de santé")
    assert texts[-1].startswith("Les médecins doivent être prêts à s'adapter")
    headings = [b["text"] for b in blocks if b["type"] == "heading"]
    assert headings == [
        "Moins de temps, moins de coûts",
        "Un cadre réglementaire adapté",
        "Trois questions au Pr Amal Bourquia",
    ]
    questions = [b["text"] for b in blocks if b["type"] == "question"]
    assert questions == [
        "Où en est le Maroc dans le déploiement de l'IA dans le parcours de soins ?",
        "Est-il, selon vous, temps d'élaborer un cadre légal pour l'intégration de l'IA "
        "dans la santé ?",
        "Qu'en est-il de la formation des professionnels de Santé ?",
    ]
    assert kinds.count("quote") == 1
    assert kinds.count("paragraph") == 17
    joined = "\n".join(texts)
    for furniture in ("Merci d'avoir signalé", "Cliquez ici", "automatiquement bloquée"):
        assert furniture not in joined


def test_a_dump_the_parser_was_not_written_for() -> None:
    dump = parse_aggregator((DATA / "two_articles.txt").read_text(encoding="utf-8"))
    assert dump.headlines == [
        "Le port de Tanger Med bat un record de trafic en avril",
        "La sécheresse pèse sur la campagne agricole 2024",
        "Real Madrid gana la Liga con cuatro jornadas de antelación",
        "Budget : l\u2019État lance un emprunt obligataire de 5 milliards",
        "Ramadan : les horaires de travail adaptés dans l'administration",
    ]
    first, second = dump.articles
    assert (first.source_name, first.published_at and first.published_at.date()) == (
        "Le Matin",
        dt.date(2024, 5, 3),
    )
    assert [b["type"] for b in first.blocks or []] == [
        "paragraph",
        "paragraph",
        "heading",
        "paragraph",
        "quote",
        "heading",
        "question",
        "paragraph",
        "question",
        "paragraph",
    ]
    assert (second.title, second.source_name) == (
        "Tanger Med : nouveau record de conteneurs",
        "Hespress FR",
    )
    assert second.published_at and second.published_at.date() == dt.date(2024, 5, 4)
    assert len(second.blocks or []) == 2
    # The ticker headline and the article with the same title are one item, the article.
    items = dump_items(dump)
    assert len(items) == 6
    budget = [i for i in items if match_key(i.title) == match_key(first.title)]
    assert len(budget) == 1 and budget[0].blocks


def test_crlf_and_bare_cr_read_like_lf() -> None:
    text = seed_text()
    for newline in ("\r\n", "\r"):
        dump = parse_aggregator(text.replace("\n", newline))
        assert len(dump.headlines) == 48
        assert len(dump.articles[0].blocks or []) == 24
        assert all("\r" not in b["text"] for b in dump.articles[0].blocks or [])


def test_headlines_only_and_articles_only() -> None:
    ticker_only = parse_aggregator(f"Un{NBSP * 3}Deux   Trois\n\nMerci d'avoir signalé!\n")
    assert ticker_only.headlines == ["Un", "Deux", "Trois"] and ticker_only.articles == []
    article_only = parse_aggregator(
        "Titre seul\nPublié dans La Vie éco le 29 avril 2024\n\nUn paragraphe complet.\n"
    )
    assert article_only.headlines == []
    assert article_only.articles[0].source_name == "La Vie éco"
    assert article_only.articles[0].blocks == [
        {"type": "paragraph", "text": "Un paragraphe complet."}
    ]


def test_publication_line_spellings() -> None:
    assert parse_publication("Publié dans L'opinion le 29 - 04 - 2024") == (
        "L'opinion",
        dt.datetime(2024, 4, 29, 12, tzinfo=dt.UTC),
    )
    source, date = parse_publication("Publié dans Maroc le Jour le 29 avril 2024") or ("", None)
    assert source == "Maroc le Jour" and date and date.date() == dt.date(2024, 4, 29)
    source, date = parse_publication("Publié dans Médias24 le 2024-04-29T08:15:00+01:00") or (
        "",
        None,
    )
    assert source == "Médias24" and date == dt.datetime(2024, 4, 29, 7, 15, tzinfo=dt.UTC)
    assert parse_publication("Publié dans Le360") == ("Le360", None)
    assert parse_publication("Le président a publié dans la soirée un communiqué") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("29 - 04 - 2024", dt.date(2024, 4, 29)),
        ("29/04/2024", dt.date(2024, 4, 29)),
        ("29 avril 2024", dt.date(2024, 4, 29)),
        ("1er août 2024", dt.date(2024, 8, 1)),
        ("Lundi 29 Avril 2024", dt.date(2024, 4, 29)),
        ("2024-04-29", dt.date(2024, 4, 29)),
        ("29 de abril de 2024", dt.date(2024, 4, 29)),
        ("April 29, 2024", dt.date(2024, 4, 29)),
        ("31 - 02 - 2024", None),
        ("29 avril", None),
        ("demain", None),
    ],
)
def test_dates(text: str, expected: dt.date | None) -> None:
    parsed = parse_date(text)
    assert (parsed.date() if parsed else None) == expected
    if parsed:
        assert parsed.tzinfo is not None


def test_block_types() -> None:
    assert classify_block("- Pourquoi maintenant ?")["type"] == "question"
    assert classify_block("\u2013 Parce que le temps presse.") == {
        "type": "paragraph",
        "text": "Parce que le temps presse.",
    }
    assert classify_block("« Une phrase forte »")["type"] == "quote"
    assert classify_block('"D\'ici peu", dit-elle, "tout change". Et voilà.')["type"] == "paragraph"
    assert classify_block("Un cadre réglementaire adapté")["type"] == "heading"
    assert is_furniture("Cliquez ici pour lire l'article depuis sa source.")
    assert not is_furniture("Cliquez sur la carte pour voir les résultats par région, dit-il.")


def test_match_key_ignores_typography_but_display_keeps_it() -> None:
    plain = "Budget : l'Etat lance un emprunt"
    fancy = f"<b>Budget</b>{NBSP}: l\u2019Etat\u200b lance un  emprunt"
    assert match_key(plain) == match_key(fancy) == "budget l'etat lance un emprunt"
    assert match_key("« L'IA »") == match_key('"L\'IA"')
    assert match_key("Santé") != match_key("Sante")  # accents are meaning, kept
    assert match_key("e\u0301t\u00e9") == match_key("\u00e9t\u00e9")  # NFC / NFD agree
    assert (
        clean_text(f"IA au Maroc{NBSP}: une\u200b révolution  ")
        == f"IA au Maroc{NBSP}: une révolution"
    )
    assert strip_html('<p onclick="x()">Un <script>alert(1)</script>texte</p>') == "Un texte"


def test_encodings() -> None:
    text = "Le président a annoncé « déjà » l\u2019été, 5 €\r\n"
    assert decode_bytes(text.encode("utf-8")) == text
    assert decode_bytes(text.encode("utf-8-sig")) == text
    assert decode_bytes(text.encode("utf-16")) == text
    assert decode_bytes(text.encode("cp1252")) == text
    latin = "Le président a annoncé « déjà » l'été à Fès.\n" * 3
    assert decode_bytes(latin.encode("latin-1")) == latin
    # A wrong declaration loses to the bytes: UTF-8 declared latin-1, cp1252 declared UTF-8.
    assert decode_bytes(text.encode("utf-8"), "iso-8859-1") == text
    assert decode_bytes(text.encode("cp1252"), "utf-8") == text
    assert decode_bytes(text.encode("cp1252"), "no-such-charset") == text
    with pytest.raises(UndecodableError):
        decode_bytes(bytes(range(256)) * 8)
    with pytest.raises(UndecodableError):
        decode_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00\xff" * 200)


def test_seed_survives_cp1252_and_crlf() -> None:
    # The seed's few characters outside cp1252 are dropped before encoding.
    text = seed_text().encode("cp1252", errors="ignore").decode("cp1252").replace("\n", "\r\n")
    dump = parse_aggregator(decode_bytes(text.encode("cp1252")))
    assert len(dump.headlines) == 48
    assert (
        dump.articles[0].title
        == "IA au Maroc : Une révolution imminente dans le secteur de la Santé"
    )


# Headline text: no line breaks, no runs of spaces, nothing that looks like furniture.
_headline = (
    st.text(
        alphabet=st.characters(
            blacklist_categories=("Cs", "Cc", "Zl", "Zp", "Zs", "Cf"),
            blacklist_characters="-\u2013\u2014\u2022*",
        ),
        min_size=1,
        max_size=40,
    )
    .flatmap(
        lambda first: st.lists(
            st.text(
                alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp", "Zs", "Cf")),
                min_size=1,
                max_size=15,
            ),
            max_size=6,
        ).map(lambda words: " ".join([first, *words]))
    )
    .filter(lambda h: clean_text(h) == h and match_key(h) and not is_furniture(h))
    .filter(lambda h: parse_publication(h) is None)
)
_separator = st.sampled_from(["  ", "   ", NBSP * 4, f"{NBSP} {NBSP}", "\t", NBSP * 2])


@settings(max_examples=150, deadline=None)
@given(st.lists(_headline, min_size=1, max_size=12), _separator, st.booleans())
def test_generated_tickers_round_trip(headlines: list[str], separator: str, crlf: bool) -> None:
    text = separator.join(headlines) + separator + ("\r\n" if crlf else "\n")
    assert parse_aggregator(text).headlines == headlines


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_parser_never_raises_on_arbitrary_text(text: str) -> None:
    dump = parse_aggregator(text)
    for item in dump_items(dump):
        assert item.title.strip()


_word = st.text(alphabet="abcdefghijklmnopqrstuvwxyzéèàçôû", min_size=2, max_size=9)
_sentence = st.lists(_word, min_size=3, max_size=25).map(lambda w: " ".join(w).capitalize() + ".")
_title = st.lists(_word, min_size=2, max_size=10).map(lambda w: " ".join(w).capitalize())
_source = st.sampled_from(["L'opinion", "Le Matin", "Hespress FR", "Médias24", "Maroc le Jour"])
_day = st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2030, 12, 31))
_MONTH_NAMES = ["janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août",
                "septembre", "octobre", "novembre", "décembre"]  # fmt: skip
_spellings = st.sampled_from(
    [
        lambda d: f"{d.day:02d} - {d.month:02d} - {d.year}",
        lambda d: f"{d.day} {_MONTH_NAMES[d.month - 1]} {d.year}",
        lambda d: d.isoformat(),
    ]
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(_title, min_size=0, max_size=8, unique_by=match_key),
    st.lists(
        st.tuples(_title, _source, _day, _spellings, st.lists(_sentence, min_size=1, max_size=5)),
        max_size=3,
        unique_by=lambda article: match_key(article[0]),
    ),
    st.sampled_from(["\n", "\r\n"]),
)
def test_generated_dumps_round_trip(
    headlines: list[str],
    articles: list[tuple],
    newline: str,  # type: ignore[type-arg]
) -> None:
    parts = [f"{NBSP * 4}".join(headlines) + NBSP * 4, "", "Merci d'avoir signalé!", ""]
    for title, source, day, spell, paragraphs in articles:
        parts += [title, f"Publié dans {source} le {spell(day)}", ""]
        for paragraph in paragraphs:
            parts += [paragraph, ""]
        parts += ["Cliquez ici pour lire l'article depuis sa source.", "", ""]
    dump = parse_aggregator(newline.join(parts))
    assert dump.headlines == headlines
    assert [
        (a.title, a.source_name, a.published_at and a.published_at.date()) for a in dump.articles
    ] == [(title, source, day) for title, source, day, _, _ in articles]
    assert [[b["text"] for b in a.blocks or []] for a in dump.articles] == [
        paragraphs for *_, paragraphs in articles
    ]
