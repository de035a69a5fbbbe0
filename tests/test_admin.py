"""The editor's desk: login, the guard on every /admin route, the desk, create-editor."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

from digest.extensions import db
from digest.models import AuditEvent, Edition, Editor
from digest.web.admin.blueprint import OPEN_ENDPOINTS
from tests.admin_fixtures import (
    DAY,
    PASSWORD,
    add_article,
    item_of,
    log_in,
    logged_in_client,
    make_editor,
)


def _sample_url(app: Flask, rule: object) -> str:
    """A concrete URL for a rule, filling each variable with a plausible value."""
    values = {}
    for name in rule.arguments:  # type: ignore[attr-defined]
        converter = rule._converters[name]  # type: ignore[attr-defined]
        if converter.__class__.__name__ == "IntegerConverter":
            values[name] = 1
        elif hasattr(converter, "items"):  # any(...): one of its words
            values[name] = sorted(converter.items)[0]
        else:
            values[name] = "2024-04-29"
    with app.test_request_context():
        from flask import url_for

        return url_for(rule.endpoint, **values)  # type: ignore[attr-defined]


def test_every_admin_route_refuses_anonymous_visitors(app: Flask, client: FlaskClient) -> None:
    rules = [r for r in app.url_map.iter_rules() if r.endpoint.startswith("admin.")]
    guarded = [r for r in rules if r.endpoint not in OPEN_ENDPOINTS]
    assert len(guarded) >= 4, "the walk must see the admin routes"
    for rule in guarded:
        url = _sample_url(app, rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = client.open(url, method=method)
            assert response.status_code in (302, 401), (method, url, response.status_code)
            if response.status_code == 302:
                assert response.headers["Location"].startswith("/admin/login"), url
    assert {"admin.login"} <= OPEN_ENDPOINTS


def test_login_page_and_wrong_password(app: Flask, client: FlaskClient) -> None:
    make_editor("ed@digest.test")
    page = client.get("/admin/login")
    assert page.status_code == 200
    assert 'name="password"' in page.get_data(as_text=True)
    response = log_in(client, "ed@digest.test", "wrong password")
    assert response.status_code == 401
    assert "Wrong email or password" in response.get_data(as_text=True)
    assert client.get("/admin/").status_code == 302


def test_login_reaches_the_desk_and_logout_ends_it(app: Flask, client: FlaskClient) -> None:
    make_editor("ed@digest.test")
    response = log_in(client, "ED@digest.test ", PASSWORD)
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/"
    desk = client.get("/admin/")
    assert desk.status_code == 200
    assert "ed@digest.test" in desk.get_data(as_text=True)
    assert desk.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'self'" in desk.headers["Content-Security-Policy"]
    assert client.post("/admin/logout").status_code == 302
    assert client.get("/admin/").status_code == 302
    actions = db.session.scalars(db.select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert actions == ["login", "logout"]


@pytest.mark.parametrize(
    "target",
    ["https://evil.example/admin", "//evil.example/admin", "/\\evil.example", "/elsewhere"],
)
def test_login_never_redirects_off_the_admin(app: Flask, target: str) -> None:
    make_editor("ed@digest.test")
    client = app.test_client()
    response = log_in(client, "ed@digest.test", PASSWORD, next=target)
    assert response.headers["Location"] == "/admin/"


def test_login_returns_to_the_page_asked_for(app: Flask, client: FlaskClient) -> None:
    make_editor("ed@digest.test")
    bounced = client.get("/admin/editions/")
    assert bounced.status_code == 302
    next_url = re.search(r"next=([^&]+)", bounced.headers["Location"]).group(1)
    from urllib.parse import unquote

    response = log_in(client, "ed@digest.test", PASSWORD, next=unquote(next_url))
    assert response.headers["Location"] == "/admin/editions/"


def test_repeated_failures_lock_the_account_with_429(app: Flask, client: FlaskClient) -> None:
    app.config.update(LOGIN_MAX_FAILURES=2)
    make_editor("ed@digest.test")
    assert log_in(client, "ed@digest.test", "bad one").status_code == 401
    assert log_in(client, "ed@digest.test", "bad two").status_code == 401
    locked = log_in(client, "ed@digest.test", PASSWORD)
    assert locked.status_code == 429
    assert "locked" in locked.get_data(as_text=True)
    assert client.get("/admin/").status_code == 302


def test_logout_everywhere_ends_sessions_on_other_devices(app: Flask) -> None:
    make_editor("ed@digest.test")
    laptop, phone = app.test_client(), app.test_client()
    assert log_in(laptop, "ed@digest.test").status_code == 302
    assert log_in(phone, "ed@digest.test").status_code == 302
    assert phone.get("/admin/").status_code == 200
    assert laptop.post("/admin/logout-everywhere").status_code == 302
    assert phone.get("/admin/").status_code == 302
    assert laptop.get("/admin/").status_code == 302
    assert log_in(phone, "ed@digest.test").status_code == 302
    assert phone.get("/admin/").status_code == 200


def test_forms_need_a_csrf_token_when_protection_is_on(app: Flask) -> None:
    app.config["WTF_CSRF_ENABLED"] = True
    make_editor("ed@digest.test")
    client = app.test_client()
    assert log_in(client, "ed@digest.test").status_code == 400
    page = client.get("/admin/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    assert log_in(client, "ed@digest.test", csrf_token=token).status_code == 302
    assert client.post("/admin/logout").status_code == 400


def test_desk_groups_the_days_articles_by_category_and_story(app: Flask) -> None:
    client = logged_in_client(app)
    add_article(
        "Le parlement vote la loi de finances",
        category="politics",
        category_confidence=0.92,
        category_evidence=["parlement", "loi"],
        source_name="L'opinion",
        story_key="budget",
    )
    add_article(
        "Budget : les députés adoptent le texte",
        category="politics",
        category_confidence=0.81,
        story_key="budget",
        source_name="Hespress",
    )
    add_article(
        "Le Wydad s'impose à domicile",
        category="sport",
        category_confidence=0.3,
        language="fr",
        source_name="Le360",
    )
    add_article("<script>alert(1)</script> headline", category="economy")
    db.session.commit()
    html = client.get("/admin/?date=2024-04-29").get_data(as_text=True)
    politics = html.index('id="section-politics"')
    economy = html.index('id="section-economy"')
    sport = html.index('id="section-sport"')
    assert politics < economy < sport
    assert "parlement, loi" in html and "L&#39;opinion" in html and "92%" in html
    assert html.count('class="story cluster"') == 1
    sport_block = html[sport:]
    assert "flagged" in sport_block[: sport_block.index("</article>")]
    assert "<script>alert(1)</script>" not in html
    assert "4 articles" in html and "1 flagged" in html


def test_desk_of_another_day_and_bad_dates(app: Flask) -> None:
    client = logged_in_client(app)
    add_article("Un titre du jour")
    db.session.commit()
    assert "Un titre du jour" not in client.get("/admin/?date=2024-04-28").get_data(as_text=True)
    assert client.get("/admin/?date=yesterday").status_code == 404
    assert client.get("/admin/editions/2024-13-45").status_code == 404
    assert client.get("/admin/editions/open?date=nope").status_code == 404


def test_edition_page_says_when_no_edition_exists(app: Flask) -> None:
    client = logged_in_client(app)
    response = client.get("/admin/editions/2024-04-29")
    assert response.status_code == 404
    assert "No edition has been built for 2024-04-29" in response.get_data(as_text=True)


def test_editions_list_links_each_day(app: Flask) -> None:
    client = logged_in_client(app)
    lead = add_article("Titre principal", category="health")
    db.session.add(
        Edition(
            day=DAY,
            status="draft",
            lead_article_id=lead.id,
            snapshot={"lead": item_of(lead), "sections": []},
        )
    )
    db.session.commit()
    html = client.get("/admin/editions/").get_data(as_text=True)
    assert 'href="/admin/editions/2024-04-29"' in html and "Titre principal" in html
    opened = client.get("/admin/editions/open?date=2024-04-29")
    assert opened.headers["Location"] == "/admin/editions/2024-04-29"


def test_create_editor_command_with_password_on_stdin(app: Flask) -> None:
    runner = app.test_cli_runner()
    result = runner.invoke(
        args=["create-editor", "Boss@Digest.test", "--role", "admin", "--password-stdin"],
        input=PASSWORD + "\n",
    )
    assert result.exit_code == 0, result.output
    editor = db.session.scalar(db.select(Editor).where(Editor.email == "boss@digest.test"))
    assert editor is not None and editor.role == "admin"
    client = app.test_client()
    assert log_in(client, "boss@digest.test").status_code == 302


def test_create_editor_command_asks_twice_and_refuses_bad_input(app: Flask) -> None:
    runner = app.test_cli_runner()
    mismatch = runner.invoke(
        args=["create-editor", "a@digest.test"],
        input=f"{PASSWORD}\nsomething else\n{PASSWORD}\n{PASSWORD}\n",
    )
    assert mismatch.exit_code == 0, mismatch.output
    assert "Error: The two entered values do not match." in mismatch.output
    again = runner.invoke(
        args=["create-editor", "a@digest.test", "--password-stdin"], input=PASSWORD + "\n"
    )
    assert again.exit_code == 1
    assert "already exists" in again.output
    assert "Traceback" not in again.output
    short = runner.invoke(
        args=["create-editor", "b@digest.test", "--password-stdin"], input="short\n"
    )
    assert short.exit_code == 1 and "at least" in short.output
    bad = runner.invoke(args=["create-editor", "nobody", "--password-stdin"], input=PASSWORD)
    assert bad.exit_code == 1 and "not an email address" in bad.output
    role = runner.invoke(args=["create-editor", "c@digest.test", "--role", "owner"])
    assert role.exit_code == 2
    assert db.session.scalar(db.select(db.func.count(Editor.id))) == 1


def test_every_admin_form_that_posts_carries_a_csrf_token() -> None:
    from tests.conftest import PROJECT_ROOT

    forms = 0
    for template in sorted((PROJECT_ROOT / "templates" / "web" / "admin").glob("*.html")):
        text = template.read_text(encoding="utf-8")
        for chunk in re.split(r"<form\b", text)[1:]:
            body = chunk.split("</form>", 1)[0]
            if 'method="post"' in body.split(">", 1)[0]:
                forms += 1
                assert 'name="csrf_token" value="{{ csrf_token() }}"' in body, template.name
    assert forms >= 20


def test_production_cookies_are_secure_and_http_only(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import make_test_app

    app = make_test_app(
        "sqlite://",
        tmp_path,
        ENV_NAME="production",
        SECRET_KEY="s" * 40,
        PUBLIC_URL="https://digest.example.org",
    )
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["REMEMBER_COOKIE_SECURE"] is True
    assert app.config["SESSION_COOKIE_HTTPONLY"] is True
    assert app.config["WTF_CSRF_ENABLED"] is True
