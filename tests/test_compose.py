"""Composing a day's edition: what readers get first, in which order, and that sent stays sent."""

from __future__ import annotations

import datetime as dt

import pytest
from flask import Flask
from sqlalchemy import func, select

from digest.compose import NothingToCompose, compose_edition, pull_quote
from digest.extensions import db
from digest.models import Article, Edition, EditionStatus
from tests.email_data import DAY, LEAD_TITLE, NOW, OPENING, QUOTE, add_day, headline, lead_article


def _titles(edition: Edition) -> dict[str, list[str]]:
    return {
        s["category"]: [item["title"] for item in s["items"]] for s in edition.snapshot["sections"]
    }


def test_lead_comes_first_with_its_opening_source_date_and_quote(app: Flask) -> None:
    add_day(db.session)
    edition = compose_edition(db.session, DAY, NOW)
    lead = edition.snapshot["lead"]
    assert lead["title"] == LEAD_TITLE
    assert lead["source"] == "L'opinion"
    assert lead["published_at"].startswith("2024-04-29")
    assert lead["paragraphs"][0] == OPENING
    assert lead["quote"] == QUOTE
    assert edition.lead_article_id == lead["article_id"]
    # The lead is not repeated in its section.
    assert LEAD_TITLE not in _titles(edition).get("health", [])


def test_sections_follow_the_configured_order_and_group_stories(app: Flask) -> None:
    add_day(db.session)
    edition = compose_edition(db.session, DAY, NOW)
    assert [s["category"] for s in edition.snapshot["sections"]] == [
        "politics",
        "economy",
        "sport",
        "health",
        "other",
    ]
    economy = edition.snapshot["sections"][1]["items"]
    # The two PLF headlines are one story: one item with the other beside it.
    plf = next(item for item in economy if item["title"].startswith("PLF"))
    assert [r["title"] for r in plf["related"]] == ["PLF 2026 : Un tournant fiscal décisif"]
    assert not any(item["title"] == "PLF 2026 : Un tournant fiscal décisif" for item in economy)


def test_editors_can_reorder_sections_in_config(app: Flask) -> None:
    app.config["CATEGORY_ORDER"] = ("sport", "health", "economy", "politics", "other")
    add_day(db.session)
    edition = compose_edition(db.session, DAY, NOW)
    assert [s["category"] for s in edition.snapshot["sections"]][:2] == ["sport", "health"]


def test_excluded_and_unclassified_articles(app: Flask) -> None:
    articles = add_day(db.session)
    articles[1].excluded = True
    db.session.add(headline(99, "Un titre pas encore classé", None))
    db.session.commit()
    edition = compose_edition(db.session, DAY, NOW)
    titles = _titles(edition)
    assert articles[1].title not in titles["politics"]
    assert "Un titre pas encore classé" in titles["other"]


def test_the_day_is_the_newsroom_day_not_the_utc_day(app: Flask) -> None:
    # 23:30 UTC on the 27th is already 00:30 on the 28th in Casablanca (UTC+1).
    late = dt.datetime(2026, 11, 27, 23, 30, tzinfo=dt.UTC)
    db.session.add(headline(1, "Vu après minuit à Casablanca", "politics", seen=late))
    db.session.add(
        headline(
            2,
            "Vu la veille au soir",
            "politics",
            seen=dt.datetime(2026, 11, 27, 22, 30, tzinfo=dt.UTC),
        )
    )
    db.session.commit()
    db.session.add(lead_article(seen=late))
    db.session.commit()
    edition = compose_edition(db.session, DAY, NOW)
    assert edition.snapshot["lead"]["title"] == LEAD_TITLE
    assert _titles(edition) == {"politics": ["Vu après minuit à Casablanca"]}


def test_a_quiet_day_falls_back_to_the_latest_ingested_news(app: Flask) -> None:
    # The seed's article is dated 2024 but was ingested two days ago; nothing since.
    add_day(db.session, seen=NOW - dt.timedelta(days=2))
    edition = compose_edition(db.session, DAY, NOW)
    assert edition.snapshot["lead"]["title"] == LEAD_TITLE
    assert "politics" in _titles(edition)


def test_nothing_ingested_is_a_clear_error_and_stores_nothing(app: Flask) -> None:
    with pytest.raises(NothingToCompose, match="digest ingest"):
        compose_edition(db.session, DAY, NOW)
    assert db.session.scalar(select(func.count()).select_from(Edition)) == 0


def test_rebuilding_a_draft_refreshes_it_without_a_second_edition(app: Flask) -> None:
    add_day(db.session)
    first = compose_edition(db.session, DAY, NOW)
    db.session.add(headline(50, "Nouvelle dépêche de la matinée", "politics"))
    db.session.commit()
    later = NOW + dt.timedelta(minutes=30)
    second = compose_edition(db.session, DAY, later)
    assert second.id == first.id
    assert "Nouvelle dépêche de la matinée" in _titles(second)["politics"]
    assert db.session.scalar(select(func.count()).select_from(Edition)) == 1


@pytest.mark.parametrize("status", [EditionStatus.SENDING, EditionStatus.SENT])
def test_a_frozen_edition_never_changes(app: Flask, status: EditionStatus) -> None:
    articles = add_day(db.session)
    edition = compose_edition(db.session, DAY, NOW)
    edition.status = status
    db.session.commit()
    before = edition.snapshot
    articles[1].title = "Titre corrigé après l'envoi"
    articles[2].excluded = True
    db.session.add(headline(77, "Dépêche arrivée après l'envoi", "sport"))
    db.session.commit()
    again = compose_edition(db.session, DAY, NOW + dt.timedelta(hours=3))
    db.session.expire_all()
    assert db.session.get(Edition, again.id).snapshot == before


def test_a_pinned_lead_stays_the_lead(app: Flask) -> None:
    articles = add_day(db.session)
    edition = compose_edition(db.session, DAY, NOW)
    edition.lead_article_id = articles[6].id
    edition.lead_pinned = True
    db.session.commit()
    edition = compose_edition(db.session, DAY, NOW)
    assert edition.snapshot["lead"]["title"] == articles[6].title
    # The article that was the lead goes back to its section.
    assert LEAD_TITLE in _titles(edition)["health"]


def test_without_a_full_article_a_headline_leads(app: Flask) -> None:
    db.session.add(headline(1, "Seule dépêche du jour", "sport"))
    db.session.commit()
    edition = compose_edition(db.session, DAY, NOW)
    assert edition.snapshot["lead"]["title"] == "Seule dépêche du jour"
    assert edition.snapshot["sections"] == []


@pytest.mark.no_db
def test_pull_quote_is_short_and_stripped_of_its_marks() -> None:
    article = lead_article()
    assert pull_quote(article) == QUOTE
    article.blocks = [{"type": "paragraph", "text": "« " + "mot " * 200 + "»"}]
    assert pull_quote(article) is None
    article.blocks = [{"type": "paragraph", "text": "Une phrase sans citation."}]
    assert pull_quote(article) is None
    article.blocks = None
    assert pull_quote(article) is None


def test_hostile_article_content_is_kept_as_text(app: Flask) -> None:
    db.session.add(
        Article(
            fingerprint="hostile",
            title="<script>alert(1)</script>" + "x" * 5000,
            title_key="hostile",
            url="javascript:alert(1)",
            blocks=[{"type": "paragraph"}, {"type": "quote", "text": ""}, {"text": "no type"}],
            category="politics",
            first_seen_at=NOW,
            last_seen_at=NOW,
        )
    )
    db.session.commit()
    edition = compose_edition(db.session, DAY, NOW)
    assert edition.snapshot["lead"]["title"].startswith("<script>")
    assert edition.snapshot["lead"]["quote"] is None
