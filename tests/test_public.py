"""Subscriber pages: sign up, confirm, manage, leave; in French first; never a traceback."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from digest import tokens
from digest.extensions import db
from digest.models import Delivery, Edition, Subscriber, SubscriberStatus
from tests.public_helpers import deliver, links_in, mails_to, text_of


def _sign_up(
    client: FlaskClient,
    email: str = "reader@example.org",
    headers: dict[str, str] | None = None,
    **fields: object,
):
    data: dict[str, object] = {
        "email": email,
        "categories": ["politics", "sport"],
        "language": "fr",
        **fields,
    }
    return client.post("/", data=data, headers=headers)


def _subscriber(email: str) -> Subscriber | None:
    db.session.expire_all()
    return db.session.scalar(select(Subscriber).where(Subscriber.email == email))


def _active(email: str = "reader@example.org", language: str = "fr") -> Subscriber:
    subscriber = Subscriber(
        email=email, language=language, status=SubscriberStatus.ACTIVE, categories=["sport"]
    )
    db.session.add(subscriber)
    db.session.commit()
    return subscriber


def _html(response) -> str:
    return response.get_data(as_text=True)


# ------------------------------------------------------------------------------ home page


def test_home_page_is_french_by_default_with_every_section_checked(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    page = _html(response)
    assert '<html lang="fr">' in page
    assert "S’abonner" in page  # noqa: RUF001 (French typography)
    assert 'for="email">Adresse e-mail</label>' in page
    checked = re.findall(r'<input checked id="categories-\d" name="categories"', page)
    assert len(checked) == 5
    assert '<option selected value="fr">' in page


def test_home_page_speaks_english_and_spanish_when_asked(client: FlaskClient) -> None:
    english = _html(client.get("/", headers={"Accept-Language": "en-GB,en;q=0.9"}))
    assert '<html lang="en">' in english and ">Subscribe<" in english
    spanish = _html(client.get("/?lang=es"))
    assert '<html lang="es">' in spanish and "Suscribirse" in spanish
    # The switch is remembered in a cookie for the next pages.
    assert '<html lang="es">' in _html(client.get("/check-inbox"))


def test_home_page_features_the_latest_lead(client: FlaskClient) -> None:
    db.session.add(
        Edition(
            day=dt.date(2026, 3, 2),
            snapshot={
                "lead": {
                    "title": "IA au Maroc : Une révolution imminente dans le secteur de la Santé",
                    "url": "https://example.org/ia",
                    "source": "L'opinion",
                    "paragraphs": ["L'intelligence artificielle <b>arrive</b>."],
                },
                "sections": [],
            },
        )
    )
    db.session.commit()
    page = _html(client.get("/"))
    assert "IA au Maroc : Une révolution imminente" in page
    assert "L&#39;opinion" in page
    # Text from sources is escaped, never trusted as HTML.
    assert "&lt;b&gt;arrive&lt;/b&gt;" in page


# ------------------------------------------------------------------------ sign-up and confirm


def test_sign_up_confirm_by_button_and_receive_a_manage_link(
    app: Flask, client: FlaskClient
) -> None:
    response = client.post(
        "/",
        data={
            "email": "  Reader@EXAMPLE.org ",
            "name": "Amina",
            "categories": ["politics", "sport"],
            "language": "en",
        },
        headers={"User-Agent": "Browser/1.0"},
        environ_base={"REMOTE_ADDR": "203.0.113.7"},
    )
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/check-inbox")
    reader = _subscriber("reader@example.org")
    assert reader is not None and reader.status == SubscriberStatus.PENDING
    assert (reader.name, reader.language, reader.categories) == (
        "Amina",
        "en",
        ["politics", "sport"],
    )
    assert reader.consent_source == "web" and reader.consent_at is not None
    assert reader.consent_ip == "203.0.113.7" and reader.consent_user_agent == "Browser/1.0"

    (mail,) = mails_to(app, "reader@example.org")
    assert mail["Subject"] == "Confirm your subscription to Le Digest"
    assert "Hello Amina," in text_of(mail)
    (confirm_path,) = links_in(mail, "confirm")

    # Following the link (as a mail scanner would) shows a button and confirms nobody.
    page = client.get(confirm_path)
    assert page.status_code == 200
    assert '<html lang="en">' in _html(page) and "Confirm</button>" in _html(page)
    assert _subscriber("reader@example.org").status == SubscriberStatus.PENDING

    done = client.post(confirm_path)
    assert done.status_code == 200 and "Subscription confirmed" in _html(done)
    reader = _subscriber("reader@example.org")
    assert reader.status == SubscriberStatus.ACTIVE and reader.confirmed_at is not None
    manage_path = re.search(r'href="(/manage/[^"]+)"', _html(done)).group(1)
    assert client.get(manage_path).status_code == 200
    # Confirming twice is harmless.
    assert "already confirmed" in _html(client.post(confirm_path))


def test_international_domains_are_normalized(client: FlaskClient) -> None:
    assert _sign_up(client, "Leila@Bücher.Example").status_code == 303
    assert _subscriber("leila@xn--bcher-kva.example") is not None


@pytest.mark.parametrize(
    "bad",
    ["", "not-an-email", "a@b", "two@@example.org", "x" * 330 + "@example.org", "<script>@x.org"],
)
def test_invalid_addresses_get_an_error_beside_the_field(
    app: Flask, client: FlaskClient, bad: str
) -> None:
    response = _sign_up(client, bad)
    assert response.status_code == 422
    page = _html(response)
    error = re.search(r'<ul class="field-errors" id="email-error">\s*<li>([^<]+)</li>', page)
    assert error, page
    assert 'aria-describedby="email-error"' in page and 'aria-invalid="true"' in page
    assert "<script>@" not in page
    assert db.session.scalars(select(Subscriber)).all() == []
    assert deliver(app) == []


def test_choosing_no_section_is_an_error_not_a_silent_default(client: FlaskClient) -> None:
    response = client.post("/", data={"email": "reader@example.org", "language": "fr"})
    assert response.status_code == 422
    assert "Choisissez au moins une rubrique." in _html(response)
    assert _subscriber("reader@example.org") is None


def test_unknown_language_or_section_values_are_refused(client: FlaskClient) -> None:
    assert _sign_up(client, language="de").status_code == 422
    assert _sign_up(client, categories=["weather"]).status_code == 422
    assert _subscriber("reader@example.org") is None


def test_every_mistake_is_shown_beside_its_field_and_the_choices_are_kept(
    client: FlaskClient,
) -> None:
    response = _sign_up(
        client,
        "x" * 321,
        name="N" * 201,
        categories=["sport", "weather"],
        language="de",
        headers={"Accept-Language": "en"},
    )
    assert response.status_code == 422
    page = _html(response)
    errors = dict(re.findall(r'id="(\w+)-error">\s*<li>([^<]+)</li>', page))
    assert errors == {
        "email": "Field cannot be longer than 320 characters.",
        "name": "Field cannot be longer than 200 characters.",
        "categories": "&#39;weather&#39; is not a valid choice for this field.",
        "language": "Not a valid choice.",
    }
    assert 'value="' + "N" * 201 + '"' in page
    checked = re.findall(r'<input checked id="categories-\d"[^>]*value="(\w+)"', page)
    assert checked == ["sport"]
    assert _subscriber("reader@example.org") is None


def test_the_honeypot_looks_like_success_and_stores_nothing(
    app: Flask, client: FlaskClient
) -> None:
    response = _sign_up(client, website="http://spam.example")
    assert response.status_code == 303 and response.headers["Location"].endswith("/check-inbox")
    assert _subscriber("reader@example.org") is None
    assert deliver(app) == []


def test_blocked_domains_are_refused(app: Flask, client: FlaskClient) -> None:
    app.config["BLOCKED_EMAIL_DOMAINS"] = "mailinator.com, spam.example"
    for address in ("x@mailinator.com", "y@eu.spam.example"):
        response = _sign_up(client, address)
        assert response.status_code == 422
        assert "Les adresses de ce domaine ne peuvent pas s’abonner." in _html(response)  # noqa: RUF001 (French typography)
    assert _sign_up(client, "z@notspam.example").status_code == 303
    assert [s.email for s in db.session.scalars(select(Subscriber))] == ["z@notspam.example"]


def test_the_same_answer_for_new_pending_active_and_unsubscribed_addresses(
    app: Flask, client: FlaskClient
) -> None:
    _active("active@example.org")
    gone = _active("gone@example.org")
    gone.status = SubscriberStatus.UNSUBSCRIBED
    db.session.commit()
    _sign_up(client, "pending@example.org")

    answers = set()
    for address in (
        "new@example.org",
        "pending@example.org",
        "active@example.org",
        "gone@example.org",
    ):
        response = _sign_up(client, address)
        followed = client.get(response.headers["Location"])
        answers.add((response.status_code, response.headers["Location"], _html(followed)))
    assert len(answers) == 1


def test_signing_up_again_while_active_changes_nothing_and_mails_a_manage_link(
    app: Flask, client: FlaskClient
) -> None:
    _active("reader@example.org", language="en")
    _sign_up(client, "reader@example.org", categories=["health"], language="es", name="Mallory")
    reader = _subscriber("reader@example.org")
    assert (reader.status, reader.categories, reader.language, reader.name) == (
        "active",
        ["sport"],
        "en",
        None,
    )
    (mail,) = mails_to(app, "reader@example.org")
    assert mail["Subject"] == "You are already subscribed to Le Digest"
    assert links_in(mail, "manage") and not links_in(mail, "confirm")


def test_unsubscribed_readers_can_come_back_through_a_new_confirmation(
    app: Flask, client: FlaskClient
) -> None:
    reader = _active()
    reader.status = SubscriberStatus.UNSUBSCRIBED
    db.session.commit()
    _sign_up(client)
    assert _subscriber("reader@example.org").status == SubscriberStatus.PENDING
    (mail,) = mails_to(app, "reader@example.org")
    client.post(links_in(mail, "confirm")[0])
    assert _subscriber("reader@example.org").status == SubscriberStatus.ACTIVE


def test_at_most_three_confirmation_mails_per_address_per_day(
    app: Flask, client: FlaskClient
) -> None:
    for _ in range(5):
        assert _sign_up(client).status_code == 303
    assert len(mails_to(app, "reader@example.org")) == 3
    # The "new link" form counts towards the same cap.
    client.post("/new-link", data={"email": "reader@example.org"})
    assert len(mails_to(app, "reader@example.org")) == 3


def test_new_link_mails_the_right_link_and_answers_the_same_for_strangers(
    app: Flask, client: FlaskClient
) -> None:
    _active("active@example.org")
    _active("gone@example.org").status = SubscriberStatus.UNSUBSCRIBED
    db.session.commit()
    _sign_up(client, "pending@example.org")
    deliver(app)
    answers = set()
    for address in ("active", "pending", "gone", "stranger"):
        response = client.post("/new-link", data={"email": f"{address}@example.org"})
        answers.add((response.status_code, response.headers.get("Location")))
    assert answers == {(303, "/check-inbox")}
    assert links_in(mails_to(app, "active@example.org")[-1], "manage")
    assert links_in(mails_to(app, "pending@example.org")[-1], "confirm")
    assert mails_to(app, "gone@example.org") == mails_to(app, "stranger@example.org") == []
    # An address the site cannot use gets the form back with the reason beside the field.
    app.config["BLOCKED_EMAIL_DOMAINS"] = "spam.example"
    for address, reason in (
        ("nope", "Cette adresse e-mail n’est pas valide."),  # noqa: RUF001 (French typography)
        ("x@spam.example", "Les adresses de ce domaine ne peuvent pas s’abonner."),  # noqa: RUF001
    ):
        response = client.post("/new-link", data={"email": address})
        assert response.status_code == 422 and reason in _html(response)


# ---------------------------------------------------------------------------- bad links


def test_bad_links_get_a_clear_page_with_a_way_forward(app: Flask, client: FlaskClient) -> None:
    reader = _active()
    manage = tokens.make_token(reader, "manage")
    old_confirm = tokens.make_token(
        reader, "confirm", now=dt.datetime.now(dt.UTC) - dt.timedelta(days=8)
    )
    cases = {
        f"/manage/{manage[:-4]}abcd": (400, "incomplet ou abîmé"),
        "/manage/%00%ff": (400, "incomplet ou abîmé"),
        f"/confirm/{manage}": (400, "destiné à une autre page"),
        f"/unsubscribe/{manage}": (400, "destiné à une autre page"),
        f"/confirm/{old_confirm}": (410, "Ce lien a expiré"),
    }
    for path, (status, words) in cases.items():
        for method in ("get", "post"):
            response = getattr(client, method)(path)
            assert response.status_code == status, (path, method)
            page = _html(response)
            assert words in page
            assert 'action="/new-link"' in page and "Traceback" not in page
    tokens.revoke_links(reader)
    db.session.commit()
    response = client.get(f"/manage/{manage}")
    assert response.status_code == 410 and "n’est plus valable" in _html(response)  # noqa: RUF001 (French typography)
    assert client.get("/manage/").status_code == 404


# --------------------------------------------------------------------------- unsubscribe


def test_unsubscribe_page_asks_then_the_button_unsubscribes(client: FlaskClient) -> None:
    reader = _active()
    path = f"/unsubscribe/{tokens.make_token(reader, 'unsubscribe')}"
    page = client.get(path)
    assert page.status_code == 200 and "Se désabonner</button>" in _html(page)
    assert _subscriber("reader@example.org").status == SubscriberStatus.ACTIVE
    done = client.post(path)
    assert done.status_code == 200 and "Vous êtes désabonné" in _html(done)
    reader = _subscriber("reader@example.org")
    assert reader.status == SubscriberStatus.UNSUBSCRIBED and reader.unsubscribed_at is not None
    assert "déjà désabonné" in _html(client.get(path))


def test_one_click_unsubscribe_works_with_csrf_on_and_no_cookie(app: Flask) -> None:
    app.config["WTF_CSRF_ENABLED"] = True
    reader = _active()
    path = f"/unsubscribe/{tokens.make_token(reader, 'unsubscribe')}"
    client = app.test_client(use_cookies=False)
    # The page's own form still needs its CSRF token.
    refused = client.post(path, data={"submit": "1"})
    assert refused.status_code == 400
    assert _subscriber("reader@example.org").status == SubscriberStatus.ACTIVE
    # A mail client's RFC 8058 POST: the body alone, no cookie, no token.
    response = client.post(
        path,
        data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers
    assert _subscriber("reader@example.org").status == SubscriberStatus.UNSUBSCRIBED
    # Mail clients may retry: the second POST succeeds too.
    again = client.post(path, data={"List-Unsubscribe": "One-Click"})
    assert again.status_code == 200
    tampered = client.post(path[:-3] + "zzz", data={"List-Unsubscribe": "One-Click"})
    assert tampered.status_code == 400


# ----------------------------------------------------------------------------------- CSRF


def test_forms_without_a_csrf_token_change_nothing(app: Flask) -> None:
    app.config["WTF_CSRF_ENABLED"] = True
    client = app.test_client()
    reader = _active()
    manage = f"/manage/{tokens.make_token(reader, 'manage')}"
    for path, data in (
        ("/", {"email": "new@example.org", "categories": ["sport"], "language": "fr"}),
        ("/new-link", {"email": "reader@example.org"}),
        (manage, {"categories": ["health"], "language": "en"}),
        (manage + "/pause", {"days": "7"}),
        (manage + "/delete", {}),
        (f"/unsubscribe/{tokens.make_token(reader, 'unsubscribe')}", {}),
    ):
        response = client.post(path, data=data)
        assert response.status_code == 400, path
        assert "Veuillez réessayer" in _html(response)
    reader = _subscriber("reader@example.org")
    assert (reader.status, reader.categories) == ("active", ["sport"])
    assert _subscriber("new@example.org") is None


def test_a_sign_up_with_another_visitors_token_is_refused(app: Flask) -> None:
    # The sign-up is read without a FlaskForm: CSRFProtect's check of every POST guards it.
    app.config["WTF_CSRF_ENABLED"] = True
    stranger, reader = app.test_client(), app.test_client()
    page = _html(stranger.get("/"))
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    reader.get("/")
    for forged in (token, "forged"):
        response = _sign_up(reader, csrf_token=forged)
        assert response.status_code == 400
        assert "Veuillez réessayer" in _html(response)
    assert _subscriber("reader@example.org") is None


def test_sign_up_works_with_the_token_from_the_form(app: Flask) -> None:
    app.config["WTF_CSRF_ENABLED"] = True
    client = app.test_client()
    page = _html(client.get("/"))
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    response = _sign_up(client, csrf_token=token)
    assert response.status_code == 303
    assert _subscriber("reader@example.org") is not None


# ------------------------------------------------------------------------ preference centre


def test_preferences_change_sections_and_language(client: FlaskClient) -> None:
    reader = _active(language="fr")
    path = f"/manage/{tokens.make_token(reader, 'manage')}"
    page = _html(client.get(path))
    assert '<html lang="fr">' in page and "Vos préférences" in page
    saved = client.post(path, data={"categories": ["health", "economy"], "language": "es"})
    assert saved.status_code == 303
    reader = _subscriber("reader@example.org")
    assert (reader.categories, reader.language) == (["economy", "health"], "es")
    after = _html(client.get(saved.headers["Location"]))
    assert '<html lang="es">' in after and "Sus preferencias se han guardado." in after
    refused = client.post(path, data={"language": "en"})
    assert refused.status_code == 422 and 'id="categories-error"' in _html(refused)


def test_pausing_for_some_days_and_resuming(client: FlaskClient) -> None:
    reader = _active()
    path = f"/manage/{tokens.make_token(reader, 'manage')}"
    for bad in ("0", "366", "abc", ""):
        response = client.post(path + "/pause", data={"days": bad})
        assert response.status_code == 422
        assert 'id="days-error"' in _html(response)
    assert _subscriber("reader@example.org").status == SubscriberStatus.ACTIVE
    assert client.post(path + "/pause", data={"days": "10"}).status_code == 303
    reader = _subscriber("reader@example.org")
    assert reader.status == SubscriberStatus.PAUSED
    assert 9 <= (reader.paused_until - dt.date.today()).days <= 11
    assert "en pause jusqu’au" in _html(client.get(path))  # noqa: RUF001 (French typography)
    assert client.post(path + "/resume").status_code == 303
    reader = _subscriber("reader@example.org")
    assert (reader.status, reader.paused_until) == ("active", None)


def test_changing_address_needs_a_click_from_the_new_mailbox(
    app: Flask, client: FlaskClient
) -> None:
    reader = _active()
    manage = f"/manage/{tokens.make_token(reader, 'manage')}"
    response = client.post(manage + "/email", data={"new_email": "Moved@Example.NET"})
    assert response.status_code == 303
    assert _subscriber("reader@example.org").status == SubscriberStatus.ACTIVE  # not yet moved

    (mail,) = [m for m in deliver(app) if "Confirmez votre nouvelle adresse" in m["Subject"]]
    assert "moved@example.net" in [r.lower() for r in getattr(mail, "envelope_to", [mail["To"]])]
    (email_path,) = links_in(mail, "email")
    assert "moved@example.net" in _html(client.get(email_path))
    assert _subscriber("moved@example.net").status == SubscriberStatus.PENDING  # placeholder
    switched = client.post(email_path)
    assert switched.status_code == 303
    assert _subscriber("moved@example.net").status == SubscriberStatus.ACTIVE
    assert _subscriber("reader@example.org") is None
    # Links sent to the old address stop working; the new page works.
    assert client.get(manage).status_code == 410
    assert client.get(switched.headers["Location"]).status_code == 200
    assert client.post(email_path).status_code == 410


def test_changing_to_a_taken_address_sends_nothing_and_says_the_same(
    app: Flask, client: FlaskClient
) -> None:
    reader = _active()
    _active("taken@example.org")
    manage = f"/manage/{tokens.make_token(reader, 'manage')}"
    response = client.post(manage + "/email", data={"new_email": "taken@example.org"})
    assert response.status_code == 303 and "notice=email_sent" in response.headers["Location"]
    assert deliver(app) == []
    bad = client.post(manage + "/email", data={"new_email": "nope"})
    assert bad.status_code == 422 and 'id="new_email-error"' in _html(bad)


def test_download_my_data_is_confirmed_then_json(client: FlaskClient) -> None:
    reader = _active()
    reader.consent_ip, reader.consent_source = "198.51.100.4", "web"
    db.session.commit()
    path = f"/manage/{tokens.make_token(reader, 'manage')}/data"
    page = client.get(path)
    assert page.status_code == 200 and "Télécharger mes données</button>" in _html(page)
    response = client.post(path)
    assert response.mimetype == "application/json"
    assert "attachment" in response.headers["Content-Disposition"]
    data = json.loads(response.get_data(as_text=True))
    assert data["email"] == "reader@example.org"
    assert data["consent"]["ip"] == "198.51.100.4" and data["consent"]["source"] == "web"


def test_delete_my_data_is_confirmed_then_erases_everything(client: FlaskClient) -> None:
    reader = _active()
    manage = f"/manage/{tokens.make_token(reader, 'manage')}"
    page = client.get(manage + "/delete")
    assert page.status_code == 200 and "Supprimer définitivement mes données" in _html(page)
    assert _subscriber("reader@example.org") is not None
    done = client.post(manage + "/delete")
    assert done.status_code == 200 and "Vos données sont supprimées" in _html(done)
    assert _subscriber("reader@example.org") is None
    assert client.get(manage).status_code == 410


# ------------------------------------------------------------------------ headers, privacy


def test_pages_send_security_headers_and_token_pages_are_not_cached(client: FlaskClient) -> None:
    home = client.get("/")
    csp = home.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert home.headers["X-Frame-Options"] == "DENY"
    assert home.headers["Referrer-Policy"] == "no-referrer"
    reader = _active()
    manage = client.get(f"/manage/{tokens.make_token(reader, 'manage')}")
    assert manage.headers["Cache-Control"] == "no-store"
    assert "<script" not in _html(home) + _html(manage)


def test_consent_ip_is_hashed_when_configured(app: Flask, client: FlaskClient) -> None:
    app.config["CONSENT_HASH_IP"] = True
    client.post(
        "/",
        data={"email": "reader@example.org", "categories": ["sport"], "language": "fr"},
        environ_base={"REMOTE_ADDR": "203.0.113.9"},
    )
    stored = _subscriber("reader@example.org").consent_ip
    assert stored and "203.0.113.9" not in stored and len(stored) == 64


def test_sign_up_never_waits_on_smtp(app: Flask, client: FlaskClient) -> None:
    # Nothing listens on port 1: a sign-up that tried to send would fail or hang.
    app.config["MAIL_URL"] = "smtp://127.0.0.1:1"
    assert _sign_up(client).status_code == 303
    reader = _subscriber("reader@example.org")
    queued = db.session.scalars(select(Delivery).where(Delivery.subscriber_id == reader.id)).all()
    assert [(d.kind, d.state) for d in queued] == [("confirm", "queued")]
