"""The public web archive: editions that went out, as pages and as an Atom feed."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET

import pytest
from flask import Flask
from flask.testing import FlaskClient

from digest.compose import compose_edition
from digest.extensions import db
from digest.models import Article, Edition, EditionStatus
from tests.email_data import DAY, LEAD_TITLE, NOW, QUOTE, add_day

ATOM = "{http://www.w3.org/2005/Atom}"


def _sent(day: dt.date = DAY, status: EditionStatus = EditionStatus.SENT) -> Edition:
    edition = compose_edition(db.session, day, NOW)
    edition.status = status
    edition.sent_at = NOW
    db.session.commit()
    return edition


def test_a_sent_edition_has_its_page(app: Flask, client: FlaskClient) -> None:
    add_day(db.session)
    _sent()
    page = client.get("/archive/2026-11-28?lang=fr")
    assert page.status_code == 200
    html = page.get_data(as_text=True).replace("&#39;", "'")
    assert "samedi 28 novembre 2026" in html
    assert LEAD_TITLE in html and QUOTE in html
    assert 'id="lead"' in html and 'id="politics"' in html and 'id="sport"' in html
    assert "Mercato : Hakim Ziyech rejoint le Wydad Casablanca" in html
    # The web page carries the whole lead article, where "Lire la suite" may point.
    assert "ne doit rien au hasard" in html
    assert 'href="/"' in html and "Recevoir Le Digest chaque matin par courriel" in html


@pytest.mark.parametrize(
    ("lang", "words"),
    [("en", ("Saturday, November 28, 2026", "Top story")), ("es", ("En portada", "Deportes"))],
)
def test_the_page_speaks_the_readers_language(
    app: Flask, client: FlaskClient, lang: str, words: tuple[str, ...]
) -> None:
    add_day(db.session)
    _sent()
    html = client.get(f"/archive/2026-11-28?lang={lang}").get_data(as_text=True)
    for word in words:
        assert word in html


def test_drafts_and_bad_dates_are_not_found(app: Flask, client: FlaskClient) -> None:
    add_day(db.session)
    compose_edition(db.session, DAY, NOW)
    assert client.get("/archive/2026-11-28").status_code == 404
    assert client.get("/archive/2026-13-45").status_code == 404
    assert client.get("/archive/yesterday").status_code == 404
    assert client.get("/archive/2020-01-01").status_code == 404
    assert "2026" not in client.get("/archive?lang=fr").get_data(as_text=True).split("<main")[1]


def test_the_archive_lists_sent_editions_newest_first(app: Flask, client: FlaskClient) -> None:
    add_day(db.session, seen=NOW - dt.timedelta(days=1))
    _sent(DAY - dt.timedelta(days=1))
    _sent(DAY, EditionStatus.SENDING)
    html = client.get("/archive?lang=fr").get_data(as_text=True)
    assert html.index("samedi 28 novembre 2026") < html.index("vendredi 27 novembre 2026")
    assert 'href="/archive/2026-11-27"' in html


def test_a_sent_page_never_changes_when_articles_do(app: Flask, client: FlaskClient) -> None:
    articles = add_day(db.session)
    _sent()
    articles[0].title = "Titre réécrit après l'envoi"
    db.session.commit()
    compose_edition(db.session, DAY, NOW + dt.timedelta(hours=2))
    html = client.get("/archive/2026-11-28").get_data(as_text=True)
    assert "réécrit" not in html and "IA au Maroc" in html


def test_the_atom_feed_is_valid_and_escapes_headlines(app: Flask, client: FlaskClient) -> None:
    add_day(db.session)
    db.session.add(
        Article(
            fingerprint="hostile",
            title="<script>alert('x')</script> & co",
            title_key="hostile",
            category="politics",
            first_seen_at=NOW,
            last_seen_at=NOW,
        )
    )
    db.session.commit()
    _sent()
    response = client.get("/archive.atom")
    assert response.status_code == 200
    assert response.mimetype == "application/atom+xml"
    root = ET.fromstring(response.get_data())
    entries = root.findall(f"{ATOM}entry")
    assert len(entries) == 1
    link = entries[0].find(f"{ATOM}link")
    assert link is not None and link.get("href") == "http://digest.test/archive/2026-11-28"
    assert "IA au Maroc" in (entries[0].findtext(f"{ATOM}title") or "")
    page = client.get("/archive/2026-11-28").get_data(as_text=True)
    assert "<script>alert" not in page and "&lt;script&gt;" in page


def test_an_empty_archive_says_so(app: Flask, client: FlaskClient) -> None:
    html = client.get("/archive?lang=fr").get_data(as_text=True)
    assert "Aucune édition n\u2019a encore été publiée." in html
    root = ET.fromstring(client.get("/archive.atom").get_data())
    assert root.findall(f"{ATOM}entry") == []
