"""Stored articles: sorting, stories, editors' corrections and the lead article."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from flask import Flask
from sqlalchemy import select

from digest.extensions import db
from digest.models import Article, Correction, Editor
from digest.understand import choose_lead, classify_articles, record_correction
from digest.understand.text import normalize_key

NOW = dt.datetime(2026, 10, 22, 8, 0, tzinfo=dt.UTC)


def add_article(
    title: str,
    *,
    language: str | None = "fr",
    blocks: list[dict[str, str]] | None = None,
    published: dt.datetime | None = None,
    seen: dt.datetime = NOW,
) -> Article:
    article = Article(
        fingerprint=hashlib.sha256(title.encode()).hexdigest(),
        title=title,
        title_key=normalize_key(title),
        language=language,
        blocks=blocks,
        published_at=published,
        first_seen_at=seen,
        last_seen_at=seen,
    )
    db.session.add(article)
    db.session.flush()
    return article


def add_editor() -> Editor:
    editor = Editor(email="desk@digest.test", password_hash="x")
    db.session.add(editor)
    db.session.flush()
    return editor


def test_classify_articles_sorts_stored_headlines(app: Flask) -> None:
    budget = add_article("PLF 2026 : un tournant fiscal décisif pour les entreprises")
    match = add_article("Botola : le Raja s'impose dans le derby face au Wydad")
    unknown = add_article("Une journée pas comme les autres à Tanger")
    assert classify_articles(db.session, NOW) == 3
    db.session.commit()
    assert (budget.category, match.category, unknown.category) == ("economy", "sport", "other")
    assert budget.category_evidence and budget.category_confidence > 0.5
    assert unknown.category_confidence < 0.45
    assert all(a.story_key for a in (budget, match, unknown))
    assert len({budget.story_key, match.story_key, unknown.story_key}) == 3


def test_classify_articles_uses_the_body(app: Flask) -> None:
    article = add_article(
        "Une révolution imminente à Rabat",
        blocks=[{"type": "paragraph", "text": "Les médecins et les patients des hôpitaux."}],
    )
    classify_articles(db.session, NOW)
    assert article.category == "health"


def test_classify_articles_leaves_editors_choices_alone(app: Flask) -> None:
    article = add_article("Botola : le Raja s'impose dans le derby face au Wydad")
    article.category = "economy"
    article.category_by_editor = True
    assert classify_articles(db.session, NOW) == 0
    assert article.category == "economy"


def test_same_event_is_one_story_and_different_transfers_stay_apart(app: Flask) -> None:
    a = add_article("Le Roi reçoit les champions du monde U20 au palais royal de Rabat")
    b = add_article("Rabat : les champions du monde U20 reçus par le Roi au palais royal")
    c = add_article("Mercato : Hakim Ziyech rejoint le Wydad Casablanca")
    d = add_article("Mercato : Achraf Hakimi prolonge au PSG jusqu'en 2029")
    classify_articles(db.session, NOW)
    assert a.story_key == b.story_key
    assert len({a.story_key, c.story_key, d.story_key}) == 3


def test_story_key_survives_a_new_source(app: Flask) -> None:
    first = add_article("Inflation au Maroc : l'IPC en hausse de 0,4% en septembre selon le HCP")
    classify_articles(db.session, NOW)
    key = first.story_key
    later = NOW + dt.timedelta(hours=3)
    second = add_article(
        "HCP : l'IPC en hausse de 0,4% en septembre, inflation au Maroc", seen=later
    )
    classify_articles(db.session, later)
    assert first.story_key == key == second.story_key


def test_correction_teaches_same_headline_story_and_similar_ones(app: Flask) -> None:
    editor = add_editor()
    text = "Le Roi met le texte de la Fatwa sur la Zakat à disposition du public"
    corrected = add_article(text)
    sibling = add_article("Fatwa sur la Zakat : le Roi met le texte à disposition du public")
    unrelated = add_article("Botola : le Raja s'impose dans le derby face au Wydad")
    classify_articles(db.session, NOW)
    assert corrected.story_key == sibling.story_key
    assert corrected.category == sibling.category == "other"
    assert unrelated.category == "sport"

    correction = record_correction(db.session, corrected, "politics", editor, NOW)
    db.session.commit()
    assert isinstance(correction, Correction)
    assert (correction.old_category, correction.new_category) == ("other", "politics")
    assert corrected.category_by_editor and corrected.category == "politics"
    assert sibling.category == "politics", "the same story follows at once"

    # Tomorrow: the same headline from another source, and a similar one, are taught.
    tomorrow = NOW + dt.timedelta(days=1)
    again = add_article(text + " ", language="fr", seen=tomorrow)
    again.fingerprint = "another-source"
    similar = add_article(
        "Zakat : le Roi met le texte de la nouvelle Fatwa à disposition", seen=tomorrow
    )
    before = add_article("Décès de l'acteur Abdelkader Moutaâ à l'âge de 85 ans", seen=tomorrow)
    classify_articles(db.session, tomorrow)
    assert again.category == "politics"
    assert similar.category == "politics"
    assert unrelated.category == "sport", "an unrelated decision does not move"
    assert before.category == "other"


def test_taught_terms_move_new_headlines_but_not_strong_unrelated_ones(app: Flask) -> None:
    editor = add_editor()
    lesson = add_article("Spogomi : le Japon remporte la coupe du monde de ramassage des déchets")
    classify_articles(db.session, NOW)
    assert lesson.category == "sport"
    record_correction(db.session, lesson, "other", editor, NOW)
    later = NOW + dt.timedelta(hours=5)
    new = add_article("Spogomi : des bénévoles marocains en lice à Tokyo", seen=later)
    strong = add_article("Coupe du monde : le Maroc bat le Brésil en finale", seen=later)
    classify_articles(db.session, later)
    assert new.category == "other"
    assert any("taught" in item for item in new.category_evidence or [])
    assert strong.category == "sport"


def test_correction_rejects_an_unknown_category(app: Flask) -> None:
    article = add_article("Botola : le Raja s'impose dans le derby face au Wydad")
    with pytest.raises(ValueError, match="unknown category"):
        record_correction(db.session, article, "weather", None, NOW)
    assert db.session.scalars(select(Correction)).all() == []


def test_lead_is_a_full_article_even_against_bigger_stories(app: Flask) -> None:
    full = add_article(
        "IA au Maroc : une révolution dans le secteur de la santé",
        blocks=[{"type": "paragraph", "text": "Les médecins et les patients."}],
        published=NOW - dt.timedelta(days=400),
    )
    big = [
        add_article(f"Présidentielle : le scrutin reporté, annonce n°{i}", published=NOW)
        for i in range(3)
    ]
    classify_articles(db.session, NOW)
    assert choose_lead([*big, full]) is full
    full.excluded = True
    assert choose_lead([*big, full]) in big
    assert choose_lead([]) is None


def test_lead_prefers_important_then_covered_then_recent(app: Flask) -> None:
    body = [{"type": "paragraph", "text": "..."}]
    culture = add_article("Festival : un film primé", blocks=body, published=NOW)
    politics_old = add_article(
        "Élections : le parlement dissous", blocks=body, published=NOW - dt.timedelta(hours=5)
    )
    politics_new = add_article(
        "Gouvernement : le premier ministre démissionne", blocks=body, published=NOW
    )
    classify_articles(db.session, NOW)
    assert choose_lead([culture, politics_old, politics_new]) is politics_new
    # Coverage beats recency between equally important stories.
    politics_old.story_key = "s1"
    copy = add_article("Élections : le parlement dissous ce matin", published=NOW)
    copy.story_key = "s1"
    copy.category = "politics"
    politics_new.story_key = "s2"
    assert choose_lead([culture, politics_old, politics_new, copy]) is politics_old


def test_same_event_in_three_languages_is_one_story(app: Flask) -> None:
    french = add_article("Cambriolage au Louvre : des bijoux volés en plein jour")
    spanish = add_article("Robo en el Louvre: roban joyas de la corona en pleno día", language="es")
    english = add_article("Louvre heist: jewels stolen in daylight raid", language="en")
    other = add_article("Cambriolage à Tanger : une bijouterie visée en pleine nuit")
    classify_articles(db.session, NOW)
    assert french.story_key == spanish.story_key == english.story_key
    assert other.story_key != french.story_key


def test_new_headline_joins_a_story_the_editor_merged(app: Flask) -> None:
    a = add_article("Bank Al-Maghrib maintient son taux directeur à 2,25%")
    b = add_article("Politique monétaire : la banque centrale rassure les marchés")
    classify_articles(db.session, NOW)
    assert a.story_key != b.story_key
    # The editor merges them by hand (what the desk does); clustering keeps the merge.
    b.story_key = a.story_key
    a.story_by_editor = b.story_by_editor = True
    later = NOW + dt.timedelta(hours=2)
    c = add_article("Bank Al-Maghrib laisse son taux directeur inchangé à 2,25%", seen=later)
    classify_articles(db.session, later)
    assert a.story_key == b.story_key == c.story_key
    assert not c.story_by_editor
