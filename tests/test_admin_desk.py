"""Editors change the day: categories (learned from), exclusions, stories, the lead, the intro."""

from __future__ import annotations

import datetime as dt

from flask import Flask

from digest import desk, richtext
from digest.extensions import db
from digest.models import Article, AuditEvent, Correction, Edition
from digest.understand import classify_articles
from tests.admin_fixtures import DAY, NOON, add_article, item_of, logged_in_client


def _post(client, path: str, **data: str):  # type: ignore[no-untyped-def]
    return client.post(path, data={"day": DAY.isoformat(), **data})


def test_correcting_a_category_is_stored_learned_and_shown(app: Flask) -> None:
    client = logged_in_client(app)
    article = add_article(
        "Le Raja remporte le derby", category="politics", category_confidence=0.31
    )
    db.session.commit()
    response = _post(client, f"/admin/articles/{article.id}/category", category="sport")
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/admin/?date=2024-04-29#article-{article.id}")
    db.session.expire_all()
    article = db.session.get(Article, article.id)
    assert (article.category, article.category_by_editor) == ("sport", True)
    correction = db.session.scalar(db.select(Correction))
    assert (correction.old_category, correction.new_category) == ("politics", "sport")
    assert correction.editor_id is not None
    html = client.get("/admin/?date=2024-04-29").get_data(as_text=True)
    sport = html[html.index('id="section-sport"') :]
    assert "Le Raja remporte le derby" in sport and "set by an editor" in sport
    assert "0 flagged" in html
    event = db.session.scalar(db.select(AuditEvent).where(AuditEvent.action == "correction"))
    assert (event.detail, event.ip) == ({"from": "politics", "to": "sport"}, "127.0.0.1")
    # Re-classification leaves the editor's choice alone.
    classify_articles(db.session, NOON)
    db.session.commit()
    assert db.session.get(Article, article.id).category == "sport"


def test_unknown_categories_and_articles_are_refused(app: Flask) -> None:
    client = logged_in_client(app)
    article = add_article("Un titre", category="other")
    db.session.commit()
    refused = _post(client, f"/admin/articles/{article.id}/category", category="gossip")
    assert refused.status_code == 303
    assert "Unknown category" in client.get("/admin/?date=2024-04-29").get_data(as_text=True)
    assert db.session.get(Article, article.id).category == "other"
    assert db.session.scalar(db.select(db.func.count(Correction.id))) == 0
    assert _post(client, "/admin/articles/999/category", category="sport").status_code == 404
    assert (
        _post(
            client, f"/admin/articles/{article.id}/category", category="sport", day="not-a-day"
        ).status_code
        == 404
    )


def test_excluding_and_including_an_article(app: Flask) -> None:
    client = logged_in_client(app)
    article = add_article("Publicité déguisée")
    db.session.commit()
    assert _post(client, f"/admin/articles/{article.id}/exclude").status_code == 303
    assert db.session.get(Article, article.id).excluded is True
    html = client.get("/admin/?date=2024-04-29").get_data(as_text=True)
    assert f'class="item excluded" id="article-{article.id}"' in html
    assert ">Include</button>" in html
    assert _post(client, f"/admin/articles/{article.id}/exclude", excluded="0").status_code == 303
    db.session.expire_all()
    assert db.session.get(Article, article.id).excluded is False


def test_merging_and_splitting_stories_survive_reclustering(app: Flask) -> None:
    client = logged_in_client(app)
    first = add_article("Le gouvernement présente le budget 2025", category="economy")
    second = add_article("Sécheresse : les barrages à 30 %", category="economy")
    db.session.commit()
    classify_articles(db.session, NOON)
    db.session.commit()
    assert first.story_key != second.story_key
    assert (
        _post(client, f"/admin/articles/{second.id}/merge", into=str(first.id)).status_code == 303
    )
    db.session.expire_all()
    first, second = db.session.get(Article, first.id), db.session.get(Article, second.id)
    assert first.story_key == second.story_key
    html = client.get("/admin/?date=2024-04-29").get_data(as_text=True)
    assert html.count('class="story cluster"') == 1 and "Split out" in html
    classify_articles(db.session, NOON)
    db.session.commit()
    assert first.story_key == second.story_key
    assert _post(client, f"/admin/articles/{second.id}/split").status_code == 303
    db.session.expire_all()
    first, second = db.session.get(Article, first.id), db.session.get(Article, second.id)
    assert first.story_key != second.story_key
    classify_articles(db.session, NOON)
    db.session.commit()
    assert first.story_key != second.story_key
    self_merge = _post(client, f"/admin/articles/{first.id}/merge", into=str(first.id))
    assert self_merge.status_code == 303
    assert "already in its own story" in client.get("/admin/").get_data(as_text=True)
    actions = db.session.scalars(db.select(AuditEvent.action)).all()
    assert "story.merge" in actions and "story.split" in actions


def test_a_sent_edition_refuses_every_change_but_category_learning(app: Flask) -> None:
    client = logged_in_client(app)
    lead = add_article("Titre envoyé", category="politics")
    other = add_article("Autre titre", category="economy")
    snapshot = {"lead": item_of(lead), "sections": []}
    edition = Edition(
        day=DAY, status="sent", lead_article_id=lead.id, snapshot=snapshot, intro="Intro envoyée"
    )
    db.session.add(edition)
    db.session.commit()
    html = client.get("/admin/?date=2024-04-29").get_data(as_text=True)
    assert "Pin as lead" not in html and ">Exclude</button>" not in html
    assert "Set category" in html and "Build the edition" not in html
    for path, data in [
        (f"/admin/articles/{other.id}/exclude", {}),
        (f"/admin/articles/{other.id}/lead", {}),
        (f"/admin/articles/{other.id}/merge", {"into": str(lead.id)}),
        (f"/admin/articles/{other.id}/split", {}),
        ("/admin/editions/2024-04-29/build", {}),
        ("/admin/editions/2024-04-29/unpin", {}),
    ]:
        assert _post(client, path, **data).status_code == 303, path
        assert "can no longer change" in client.get("/admin/").get_data(as_text=True) or (
            path.endswith("/build")
        )
    assert (
        client.post(
            "/admin/editions/2024-04-29/intro", data={"intro": "Nouvelle intro"}
        ).status_code
        == 303
    )
    _post(client, f"/admin/articles/{lead.id}/category", category="health")
    db.session.expire_all()
    edition = db.session.scalar(db.select(Edition))
    assert edition.snapshot == snapshot
    assert edition.intro == "Intro envoyée"
    assert edition.lead_article_id == lead.id and not edition.lead_pinned
    assert db.session.get(Article, other.id).excluded is False
    assert db.session.get(Article, lead.id).category == "health"


def test_pinning_needs_an_edition_and_an_included_article(app: Flask) -> None:
    client = logged_in_client(app)
    article = add_article("Titre", excluded=True)
    db.session.commit()
    _post(client, f"/admin/articles/{article.id}/lead")
    assert "Build the edition first" in client.get("/admin/").get_data(as_text=True)
    edition = Edition(day=DAY, status="draft", snapshot={"lead": None, "sections": []})
    db.session.add(edition)
    db.session.commit()
    with_edition = desk.edition_of(db.session, DAY)
    assert with_edition is not None
    try:
        desk.pin_lead(db.session, with_edition, article, None, NOON)  # type: ignore[arg-type]
    except desk.DeskError as error:
        assert "excluded" in str(error)
    else:
        raise AssertionError("an excluded article was pinned")


def test_desk_falls_back_to_the_latest_day_with_articles_like_composing(app: Flask) -> None:
    client = logged_in_client(app)
    add_article("Hier encore")
    db.session.commit()
    later = client.get("/admin/?date=2024-05-02").get_data(as_text=True)
    assert "Hier encore" in later
    earlier = client.get("/admin/?date=2024-04-28").get_data(as_text=True)
    assert "Hier encore" not in earlier and "No articles for this day" in earlier


def test_intro_markdown_is_rendered_and_sanitized() -> None:
    html = richtext.markdown_to_html(
        "Bonjour **à tous** : [le site](https://digest.test) <script>alert(1)</script>\n\n"
        "[piège](javascript:alert(1)) <img src=x onerror=alert(1)>"
    )
    assert "<strong>à tous</strong>" in html
    assert '<a href="https://digest.test" rel="noopener noreferrer">le site</a>' in html
    assert (
        "<script" not in html and "<img" not in html and "javascript:" not in html.split("&lt;")[0]
    )
    assert 'href="javascript' not in html
    text = richtext.markdown_to_text("Voir [le site](https://digest.test).\n\n- un\n- deux")
    assert text == "Voir le site (https://digest.test).\n\n- un\n- deux"
    assert richtext.markdown_to_html("   ") == ""


def test_intro_longer_than_the_limit_is_refused(app: Flask) -> None:
    edition = Edition(day=DAY, status="draft", snapshot={})
    db.session.add(edition)
    db.session.commit()
    try:
        desk.set_intro(
            db.session,
            edition,
            "x" * (richtext.MAX_INTRO_CHARS + 1),
            None,  # type: ignore[arg-type]
            NOON + dt.timedelta(hours=1),
        )
    except desk.DeskError as error:
        assert "at most" in str(error)
    else:
        raise AssertionError("an over-long introduction was accepted")


def test_building_from_the_desk_then_pinning_another_lead(app: Flask) -> None:
    client = logged_in_client(app)
    empty = client.post("/admin/editions/2024-04-29/build")
    assert empty.status_code == 303
    assert "run `digest ingest` first" in client.get("/admin/").get_data(as_text=True)
    first = add_article("Le roi inaugure le port de Dakhla", category="politics")
    second = add_article("Le Raja champion", category="sport")
    db.session.commit()
    assert client.post("/admin/editions/2024-04-29/build").status_code == 303
    edition = desk.edition_of(db.session, DAY)
    assert edition is not None and edition.status == "draft"
    built = db.session.scalar(db.select(AuditEvent).where(AuditEvent.action == "edition.build"))
    # Who built it, and from where, as for every other action taken on the admin pages.
    assert (built.target, built.actor, built.ip) == (
        "2024-04-29",
        "editor@digest.test",
        "127.0.0.1",
    )
    other = second if edition.lead_article_id == first.id else first
    assert _post(client, f"/admin/articles/{other.id}/lead").status_code == 303
    db.session.expire_all()
    edition = desk.edition_of(db.session, DAY)
    assert edition.lead_pinned and edition.lead_article_id == other.id
    assert edition.snapshot["lead"]["article_id"] == other.id
    html = client.get("/admin/?date=2024-04-29").get_data(as_text=True)
    assert "Unpin the lead" in html
    lead_block = html[html.index(f'id="article-{other.id}"') :]
    assert 'class="badge lead"' in lead_block[: lead_block.index("</h3>")]
    assert client.post("/admin/editions/2024-04-29/unpin").status_code == 303
    db.session.expire_all()
    assert not desk.edition_of(db.session, DAY).lead_pinned
