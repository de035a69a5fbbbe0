"""The RFC 8058 one-click unsubscribe: a mail client's bare POST, with the signed link alone."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from digest import subscriptions, tokens
from digest.extensions import db
from digest.models import Delivery, Edition, Subscriber, SubscriberStatus
from digest.observability import as_utc

NOW = dt.datetime(2026, 3, 2, 8, 30, tzinfo=dt.UTC)
ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def _reader(email: str = "reader@example.org", **fields: object) -> Subscriber:
    values = {"language": "fr", "categories": ["sport"], "status": "active", **fields}
    reader = Subscriber(email=email, **values)
    db.session.add(reader)
    db.session.commit()
    return reader


def _with_mail(reader: Subscriber) -> None:
    """A digest queued, a digest sent and a confirmation queued for ``reader``."""
    for number, state in enumerate(("queued", "sent"), start=1):
        edition = db.session.scalar(select(Edition).where(Edition.day == dt.date(2026, 3, number)))
        if edition is None:
            edition = Edition(day=dt.date(2026, 3, number), snapshot={})
            db.session.add(edition)
            db.session.flush()
        digest = Delivery(kind="digest", edition_id=edition.id, subscriber=reader, state=state)
        db.session.add(digest)
    db.session.add(Delivery(kind="confirm", subscriber=reader, state="queued"))
    db.session.commit()


def _mails(email: str) -> list[tuple[str, str]]:
    db.session.expire_all()
    rows = db.session.execute(
        select(Delivery.kind, Delivery.state)
        .join(Subscriber, Delivery.subscriber_id == Subscriber.id)
        .where(Subscriber.email == email)
        .order_by(Delivery.id)
    )
    return [(kind, state) for kind, state in rows]


def _stored(email: str = "reader@example.org") -> Subscriber:
    db.session.expire_all()
    reader = db.session.scalar(select(Subscriber).where(Subscriber.email == email))
    assert reader is not None
    return reader


def _link(reader: Subscriber, purpose: str = "unsubscribe", now: dt.datetime | None = None) -> str:
    return f"/unsubscribe/{tokens.make_token(reader, purpose, now=now)}"


@pytest.fixture
def mail_client(app: Flask) -> FlaskClient:
    """What a mailbox provider sends from: no cookie, and CSRF on as in production."""
    app.config["WTF_CSRF_ENABLED"] = True
    return app.test_client(use_cookies=False)


def test_one_click_unsubscribes_and_cancels_only_the_queued_digests(
    mail_client: FlaskClient,
) -> None:
    reader = _reader(paused_until=dt.date(2026, 4, 1), status="paused")
    _with_mail(reader)
    bystander = _reader("bystander@example.org")
    _with_mail(bystander)
    response = mail_client.post(_link(reader), data=ONE_CLICK)
    assert response.status_code == 200
    assert response.get_data(as_text=True) == "Unsubscribed.\n"
    assert response.mimetype == "text/plain"
    assert response.headers["Cache-Control"] == "no-store"
    assert "Set-Cookie" not in response.headers
    left = _stored()
    assert left.status == SubscriberStatus.UNSUBSCRIBED
    assert left.unsubscribed_at is not None and left.paused_until is None
    assert _mails("reader@example.org") == [
        ("digest", "cancelled"),
        ("digest", "sent"),
        ("confirm", "queued"),
    ]
    # Nobody else's subscription or mail moved.
    assert _stored("bystander@example.org").status == SubscriberStatus.ACTIVE
    assert _mails("bystander@example.org") == [
        ("digest", "queued"),
        ("digest", "sent"),
        ("confirm", "queued"),
    ]


def test_one_click_leaves_the_row_as_the_unsubscribe_button_does(app: Flask) -> None:
    # The page's button (CSRF off here) takes the ORM path; the mail client's POST does not.
    by_button, by_mail = _reader("button@example.org"), _reader("mail@example.org")
    for reader in (by_button, by_mail):
        reader.paused_until = dt.date(2026, 4, 1)
        _with_mail(reader)
    client = app.test_client()
    assert client.post(_link(by_button)).status_code == 200
    assert client.post(_link(by_mail), data=ONE_CLICK).status_code == 200

    def row(email: str) -> tuple[object, ...]:
        reader = _stored(email)
        left = reader.unsubscribed_at is not None
        return (reader.status, left, reader.paused_until, reader.token_version, reader.categories)

    assert row("button@example.org") == row("mail@example.org")
    assert _mails("button@example.org") == _mails("mail@example.org")


@pytest.mark.parametrize("status", ["pending", "active", "paused", "bounced"])
def test_every_reader_who_has_not_left_can_leave_in_one_click(
    mail_client: FlaskClient, status: str
) -> None:
    reader = _reader(status=status)
    assert mail_client.post(_link(reader), data=ONE_CLICK).status_code == 200
    assert _stored().status == SubscriberStatus.UNSUBSCRIBED


def test_a_second_click_succeeds_and_changes_nothing(mail_client: FlaskClient) -> None:
    reader = _reader()
    _with_mail(reader)
    path = _link(reader)
    assert mail_client.post(path, data=ONE_CLICK).status_code == 200
    first = _stored().unsubscribed_at
    again = mail_client.post(path, data=ONE_CLICK)
    assert again.status_code == 200 and again.get_data(as_text=True) == "Unsubscribed.\n"
    assert _stored().unsubscribed_at == first
    assert _mails("reader@example.org") == [
        ("digest", "cancelled"),
        ("digest", "sent"),
        ("confirm", "queued"),
    ]


def test_an_unsubscribe_link_never_expires(mail_client: FlaskClient) -> None:
    reader = _reader()
    path = _link(reader, now=dt.datetime.now(dt.UTC) - dt.timedelta(days=3650))
    assert mail_client.post(path, data=ONE_CLICK).status_code == 200
    assert _stored().status == SubscriberStatus.UNSUBSCRIBED


def test_links_that_do_not_hold_get_the_error_page_and_change_nothing(
    mail_client: FlaskClient,
) -> None:
    reader = _reader()
    _with_mail(reader)
    genuine = _link(reader)
    revoked = _link(reader)
    tokens.revoke_links(reader)
    db.session.commit()
    gone = _reader("gone@example.org")
    gone_link = _link(gone)
    db.session.delete(gone)
    db.session.commit()
    old_confirm = _link(reader, "confirm", now=dt.datetime.now(dt.UTC) - dt.timedelta(days=30))
    cases = {
        revoked: (410, "n’est plus valable"),  # noqa: RUF001 (French typography)
        gone_link: (410, "n’est plus valable"),  # noqa: RUF001 (French typography)
        _link(reader, "manage"): (400, "destiné à une autre page"),
        old_confirm: (400, "destiné à une autre page"),
        genuine[:-3] + ("AAA" if not genuine.endswith("AAA") else "BBB"): (400, "incomplet"),
        genuine.replace(".", "", 1): (400, "incomplet"),
        "/unsubscribe/not-a-token": (400, "incomplet"),
    }
    for path, (status, words) in cases.items():
        response = mail_client.post(path, data=ONE_CLICK)
        assert response.status_code == status, path
        page = response.get_data(as_text=True)
        assert words in page and 'action="/new-link"' in page, path
    assert _stored().status == SubscriberStatus.ACTIVE
    assert _mails("reader@example.org") == [
        ("digest", "queued"),
        ("digest", "sent"),
        ("confirm", "queued"),
    ]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("List-Unsubscribe=one-click", "application/x-www-form-urlencoded"),
        ("List-Unsubscribe=One-Click-Please", "application/x-www-form-urlencoded"),
        ("List-Unsubscribe=", "application/x-www-form-urlencoded"),
        ("Unsubscribe=One-Click", "application/x-www-form-urlencoded"),
        ("", "application/x-www-form-urlencoded"),
        ('{"List-Unsubscribe": "One-Click"}', "application/json"),
        ("List-Unsubscribe=One-Click", "text/plain"),
    ],
)
def test_other_bodies_are_the_pages_form_and_need_its_csrf_token(
    mail_client: FlaskClient, body: str, content_type: str
) -> None:
    reader = _reader()
    response = mail_client.post(_link(reader), data=body, content_type=content_type)
    assert response.status_code == 400
    assert "Veuillez réessayer" in response.get_data(as_text=True)
    assert _stored().status == SubscriberStatus.ACTIVE


def test_the_one_click_word_in_the_address_is_not_the_body(mail_client: FlaskClient) -> None:
    reader = _reader()
    response = mail_client.post(_link(reader) + "?List-Unsubscribe=One-Click")
    assert response.status_code == 400
    assert _stored().status == SubscriberStatus.ACTIVE


def test_the_service_says_whether_the_reader_left_now(app: Flask) -> None:
    reader = _reader()
    token = tokens.make_token(reader, "unsubscribe")
    assert subscriptions.unsubscribe_by_link(db.session, token, NOW) is True
    assert subscriptions.unsubscribe_by_link(db.session, token, NOW) is False
    left_at = _stored().unsubscribed_at
    # Stored in UTC (SQLite hands it back without its time zone).
    assert left_at is not None and as_utc(left_at) == NOW
    with pytest.raises(tokens.WrongPurpose):
        subscriptions.unsubscribe_by_link(db.session, tokens.make_token(reader, "manage"), NOW)


def test_clicks_at_the_same_moment_unsubscribe_once(app: Flask) -> None:
    reader = _reader()
    _with_mail(reader)
    others = [_reader(f"other{n}@example.org") for n in range(3)]
    links = [tokens.make_token(reader, "unsubscribe")] * 5
    links += [tokens.make_token(other, "unsubscribe") for other in others]
    db.session.remove()
    start = threading.Barrier(len(links))
    answers: dict[int, bool] = {}
    errors: list[BaseException] = []

    def click(number: int, token: str) -> None:
        # Each thread is its own request: its own app context and connection.
        with app.app_context():
            try:
                start.wait(timeout=10)
                answers[number] = subscriptions.unsubscribe_by_link(db.session, token, NOW)
            except BaseException as error:  # reported below, with the test's own assertion
                errors.append(error)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=click, args=item) for item in enumerate(links)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    # The reader's five clicks: one unsubscribed them, four found them gone already.
    assert sorted(answers[n] for n in range(5)) == [False, False, False, False, True]
    assert [answers[n] for n in range(5, len(links))] == [True, True, True]
    statuses = db.session.scalars(select(Subscriber.status)).all()
    assert set(statuses) == {SubscriberStatus.UNSUBSCRIBED}
    assert _mails("reader@example.org") == [
        ("digest", "cancelled"),
        ("digest", "sent"),
        ("confirm", "queued"),
    ]


def test_a_click_racing_a_revocation_either_unsubscribes_or_changes_nothing(app: Flask) -> None:
    reader = _reader()
    token = tokens.make_token(reader, "unsubscribe")
    reader_id = reader.id
    db.session.remove()
    start = threading.Barrier(2)
    outcome: list[object] = []
    errors: list[BaseException] = []

    def click() -> None:
        with app.app_context():
            try:
                start.wait(timeout=10)
                outcome.append(subscriptions.unsubscribe_by_link(db.session, token, NOW))
            except tokens.Revoked as revoked:
                outcome.append(revoked)
            except BaseException as error:  # reported below, with the test's own assertion
                errors.append(error)
            finally:
                db.session.remove()

    def revoke() -> None:
        # A change of address at the same moment revokes every link already sent.
        with app.app_context():
            try:
                start.wait(timeout=10)
                stored = db.session.get(Subscriber, reader_id)
                assert stored is not None
                tokens.revoke_links(stored)
                db.session.commit()
            except BaseException as error:  # reported below, with the test's own assertion
                errors.append(error)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=click), threading.Thread(target=revoke)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    stored = _stored()
    assert stored.token_version == 2
    if outcome == [True]:
        assert stored.status == SubscriberStatus.UNSUBSCRIBED
    else:
        assert isinstance(outcome[0], tokens.Revoked)
        assert stored.status == SubscriberStatus.ACTIVE
