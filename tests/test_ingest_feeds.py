"""Reading RSS 0.9x/1.0/2.0, Atom and article pages into items, safely."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from digest.ingest.errors import ReadError
from digest.ingest.feeds import parse_feed, safe_url
from digest.ingest.pages import parse_page
from digest.ingest.service import parse_document, sniff_kind

DATA = Path(__file__).parent / "data" / "ingest"
FEED_URL = "https://courrier.example/rss.xml"


def by_title(items: list, start: str):  # type: ignore[no-untyped-def]
    return next(item for item in items if item.title.startswith(start))


def test_rss2_fields_cdata_entities_and_html() -> None:
    parsed = parse_feed((DATA / "rss2.xml").read_bytes(), FEED_URL)
    assert parsed.kind == "feed"
    assert parsed.name == "Le Courrier de l\u2019Atlas"
    assert len(parsed.items) == 4
    budget = by_title(parsed.items, "Budget 2025")
    assert budget.title == "Budget 2025 : l\u2019État lance un emprunt obligataire de 5 milliards"
    assert budget.guid == "courrier-4411"
    assert budget.author == "Salma Benali"
    assert budget.published_at == dt.datetime(2024, 5, 3, 8, 30, tzinfo=dt.UTC)
    assert budget.summary == "Le Trésor lance un emprunt\u00a0national. Lire"
    assert budget.image_url == "https://courrier.example/images/tresor.jpg"
    assert budget.blocks == [
        {
            "type": "paragraph",
            "text": "Le Trésor a annoncé jeudi le lancement d\u2019un emprunt obligataire.",
        },
        {"type": "heading", "text": "Des taux attractifs"},
        {
            "type": "paragraph",
            "text": "Les souscriptions sont ouvertes jusqu\u2019à la fin du mois.",
        },
        {"type": "quote", "text": "« Un signal de confiance »"},
    ]
    tanger = by_title(parsed.items, "Tanger Med")
    assert tanger.title == "Tanger Med : nouveau record de conteneurs & de camions"
    # Relative links are resolved against the feed's own URL.
    assert tanger.url == "https://courrier.example/economie/tanger-med-record"
    assert tanger.summary == "Plus de 800\u00a0000 conteneurs traités en avril un record."
    assert tanger.image_url == "https://courrier.example/images/tanger.jpg"
    liga = by_title(parsed.items, "Real Madrid")
    assert liga.published_at == dt.datetime(2024, 5, 5, 19, 0, tzinfo=dt.UTC)
    assert liga.image_url == "https://courrier.example/images/liga.jpg"


def test_nothing_executable_survives() -> None:
    parsed = parse_feed((DATA / "rss2.xml").read_bytes(), FEED_URL)
    for item in parsed.items:
        texts = [item.title, item.summary or "", *(b["text"] for b in item.blocks or [])]
        for text in texts:
            assert "<" not in text and "alert(" not in text and "evil" not in text
            assert "onclick" not in text and "onerror" not in text
        for url in (item.url, item.image_url):
            assert url is None or url.startswith(("http://", "https://"))
    worldcup = by_title(parsed.items, "Morocco wins")
    assert worldcup.url is None  # its link was javascript:


def test_rss091_rss1_and_atom() -> None:
    old = parse_feed((DATA / "rss091.xml").read_bytes(), "http://rapides.example/rss")
    assert [i.title for i in old.items] == [
        "La sécheresse pèse sur la campagne agricole",
        "Ramadan : horaires adaptés dans l'administration",
    ]
    rdf = parse_feed((DATA / "rss1.rdf").read_bytes(), "https://agence.example/rss")
    assert rdf.name == "Agence Sud"
    inflation = rdf.items[0]
    assert inflation.url == "https://agence.example/d/101"
    assert inflation.published_at == dt.datetime(2024, 10, 21, 9, 15, tzinfo=dt.UTC)
    atom = parse_feed((DATA / "atom.xml").read_bytes(), "https://hebdo.example/atom.xml")
    tanger, fes = atom.items
    assert tanger.title == "Tanger Med\u00a0: nouveau record de conteneurs & de camions"
    assert tanger.author == "Youssef Amrani"
    assert tanger.published_at == dt.datetime(2024, 5, 4, 18, 5, tzinfo=dt.UTC)
    assert fes.title == "Festival de Fès des musiques sacrées"
    assert fes.url == "https://hebdo.example/culture/fes"
    assert fes.published_at == dt.datetime(2024, 5, 5, 11, 30, tzinfo=dt.UTC)
    assert fes.image_url == "https://hebdo.example/img/fes.png"
    assert [b["type"] for b in fes.blocks or []] == ["paragraph", "heading", "paragraph"]


def test_declared_encodings_true_and_false() -> None:
    text = (DATA / "rss091.xml").read_text(encoding="utf-8")
    # Really latin-1, as declared.
    latin = parse_feed(text.encode("latin-1"), "http://rapides.example/rss")
    assert latin.items[0].title == "La sécheresse pèse sur la campagne agricole"
    # Declared latin-1 but sent as UTF-8 (the fixture file itself): no mojibake.
    wrong = parse_feed(text.encode("utf-8"), "http://rapides.example/rss")
    assert wrong.items[0].title == "La sécheresse pèse sur la campagne agricole"
    # Declared UTF-8 but sent as cp1252.
    declared_utf8 = text.replace("ISO-8859-1", "UTF-8").encode("cp1252")
    assert parse_feed(declared_utf8, "x").items[1].title.startswith("Ramadan : horaires adaptés")


def test_broken_feeds_are_refused_with_a_reason() -> None:
    whole = (DATA / "rss2.xml").read_bytes()
    with pytest.raises(ReadError, match="truncated"):
        parse_feed(whole[: len(whole) // 2], FEED_URL)
    with pytest.raises(ReadError, match="empty"):
        parse_feed(b"  \n", FEED_URL)
    with pytest.raises(ReadError):
        parse_feed(b"<rss><channel><item>" + bytes(range(256)) * 10 + b"</rss>", FEED_URL)
    with pytest.raises(ReadError, match="not an RSS or Atom feed"):
        parse_feed(b"<?xml version='1.0'?><catalog><book/></catalog>", FEED_URL)


def test_article_page_main_text_without_boilerplate() -> None:
    url = "https://courrier.example/economie/emprunt"
    parsed = parse_page((DATA / "article.html").read_bytes(), url)
    (item,) = parsed.items
    assert parsed.kind == "page" and parsed.name == "Le Courrier de l'Atlas"
    assert item.title == "Le Trésor lance un emprunt obligataire de 5 milliards"
    assert item.author == "Salma Benali"
    assert item.published_at == dt.datetime(2024, 5, 3, 8, 30, tzinfo=dt.UTC)
    assert item.image_url == "https://courrier.example/images/tresor-large.jpg"
    assert item.url == url
    blocks = item.blocks or []
    assert [b["type"] for b in blocks] == [
        "paragraph",
        "paragraph",
        "heading",
        "paragraph",
        "quote",
        "paragraph",
    ]
    assert blocks[0]["text"].startswith("Le Trésor a annoncé jeudi")
    everything = " ".join(b["text"] for b in blocks)
    for boilerplate in ("Accueil", "Les plus lus", "Tous droits réservés", "steal", "tracker"):
        assert boilerplate not in everything


def test_pages_without_an_article_are_refused() -> None:
    with pytest.raises(ReadError):
        parse_page(b"<html><head><title></title></head><body><nav>Menu</nav></body></html>", "x")
    with pytest.raises(ReadError):
        parse_page(b"", "x")


def test_content_sniffing_picks_the_reader() -> None:
    assert sniff_kind((DATA / "rss2.xml").read_bytes()) == "feed"
    assert sniff_kind((DATA / "rss1.rdf").read_bytes()) == "feed"
    assert sniff_kind((DATA / "atom.xml").read_bytes()) == "feed"
    assert sniff_kind((DATA / "rss091.xml").read_bytes()) == "feed"
    assert sniff_kind((DATA / "article.html").read_bytes()) == "page"
    assert sniff_kind((DATA / "two_articles.txt").read_bytes()) == "seed"
    assert sniff_kind(b"<p>fragment</p>", "text/html") == "page"
    assert parse_document("a.txt", b"Un titre   Un autre\n").headlines == [
        "Un titre",
        "Un autre",
    ]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("javascript:alert(1)", None),
        ("data:text/html,<script>", None),
        ("//cdn.example/x.jpg", "https://cdn.example/x.jpg"),
        ("/a", "https://courrier.example/a"),
        ("https://ok.example/p?q=1", "https://ok.example/p?q=1"),
        ("http://[bad", None),
    ],
)
def test_safe_url(url: str, expected: str | None) -> None:
    assert safe_url(url, FEED_URL) == expected
