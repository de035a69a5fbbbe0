"""Editors find, inspect, suppress and delete subscribers; admins import and export CSV."""

from __future__ import annotations

import datetime as dt
import io

from flask import Flask

from digest.extensions import db
from digest.models import AuditEvent, Delivery, DeliveryState, Edition, Subscriber
from tests.admin_fixtures import DAY, NOON, logged_in_client


def _reader(email: str, **fields: object) -> Subscriber:
    values: dict[str, object] = {
        "status": "active",
        "language": "fr",
        "categories": ["politics", "sport"],
        "created_at": NOON,
        "consent_at": NOON,
        "consent_source": "web",
        "consent_ip": "198.51.100.7",
        "confirmed_at": NOON,
    }
    values.update(fields)
    row = Subscriber(email=email, **values)
    db.session.add(row)
    db.session.flush()
    return row


def _emails(html: str) -> list[str]:
    body = html.split('<table class="data subscribers">', 1)[1].split("</table>", 1)[0]
    return sorted(
        part.split("</a>", 1)[0] for part in body.split('">')[1:] if "@" in part.split("</a>")[0]
    )


def test_search_and_filters_narrow_the_list(app: Flask) -> None:
    client = logged_in_client(app)
    _reader("amina@example.org", name="Amina Benali", language="fr")
    _reader("john@example.com", name="John", language="en", categories=["economy"])
    _reader("rosa@example.es", language="es", status="unsubscribed", categories=["sport"])
    _reader("odd_100%@example.org", language="fr", categories=["health"])
    db.session.commit()
    assert len(_emails(client.get("/admin/subscribers").get_data(as_text=True))) == 4
    found = client.get("/admin/subscribers?q=BENALI").get_data(as_text=True)
    assert _emails(found) == ["amina@example.org"]
    assert _emails(client.get("/admin/subscribers?category=sport").get_data(as_text=True)) == [
        "amina@example.org",
        "rosa@example.es",
    ]
    assert _emails(client.get("/admin/subscribers?language=en").get_data(as_text=True)) == [
        "john@example.com"
    ]
    assert _emails(
        client.get("/admin/subscribers?status=unsubscribed&category=sport").get_data(as_text=True)
    ) == ["rosa@example.es"]
    # Wildcards typed by the editor match themselves only.
    assert _emails(client.get("/admin/subscribers?q=100%25").get_data(as_text=True)) == [
        "odd_100%@example.org"
    ]
    assert _emails(client.get("/admin/subscribers?q=_").get_data(as_text=True)) == [
        "odd_100%@example.org"
    ]
    # Unknown filter values are ignored rather than failing.
    assert (
        len(
            _emails(client.get("/admin/subscribers?status=zzz&category=<x>").get_data(as_text=True))
        )
        == 4
    )


def test_a_subscribers_history_shows_consent_editions_and_bounces(app: Flask) -> None:
    client = logged_in_client(app)
    reader = _reader("amina@example.org")
    edition = Edition(day=DAY, status="sent", snapshot={}, sent_at=NOON)
    db.session.add(edition)
    db.session.flush()
    db.session.add_all(
        [
            Delivery(
                kind="digest",
                edition_id=edition.id,
                subscriber_id=reader.id,
                state=DeliveryState.SENT,
                sent_at=NOON,
                created_at=NOON,
                attempts=1,
            ),
            Delivery(
                kind="confirm",
                subscriber_id=reader.id,
                state=DeliveryState.BOUNCED,
                created_at=NOON - dt.timedelta(days=1),
                attempts=1,
                last_reply="550 5.1.1 mailbox unavailable",
            ),
        ]
    )
    db.session.commit()
    html = client.get(f"/admin/subscribers/{reader.id}").get_data(as_text=True)
    assert "via web" in html and "198.51.100.7" in html
    assert 'href="/admin/editions/2024-04-29"' in html
    assert "550 5.1.1 mailbox unavailable" in html
    assert client.get("/admin/subscribers/9999").status_code == 404


def test_suppressing_stops_mail_and_is_audited(app: Flask) -> None:
    client = logged_in_client(app)
    reader = _reader("amina@example.org")
    edition = Edition(day=DAY, status="sending", snapshot={})
    db.session.add(edition)
    db.session.flush()
    db.session.add(
        Delivery(
            kind="digest",
            edition_id=edition.id,
            subscriber_id=reader.id,
            state=DeliveryState.QUEUED,
        )
    )
    db.session.commit()
    assert client.post(f"/admin/subscribers/{reader.id}/suppress").status_code == 303
    db.session.expire_all()
    reader = db.session.get(Subscriber, reader.id)
    assert reader.status == "unsubscribed" and reader.unsubscribed_at is not None
    assert db.session.scalar(db.select(Delivery.state)) == DeliveryState.CANCELLED
    event = db.session.scalar(
        db.select(AuditEvent).where(AuditEvent.action == "subscriber.suppress")
    )
    assert event.target == "amina@example.org" and event.actor == "editor@digest.test"


def test_only_admins_delete_import_and_export(app: Flask) -> None:
    editor = logged_in_client(app, "editor")
    reader = _reader("amina@example.org")
    db.session.commit()
    assert editor.post(f"/admin/subscribers/{reader.id}/delete").status_code == 403
    assert editor.get("/admin/subscribers/export.csv").status_code == 403
    upload = {"file": (io.BytesIO(b"email\nx@example.org\n"), "s.csv")}
    assert (
        editor.post(
            "/admin/subscribers/import", data=upload, content_type="multipart/form-data"
        ).status_code
        == 403
    )
    assert db.session.get(Subscriber, reader.id) is not None


def test_deleting_erases_the_reader_and_their_records(app: Flask) -> None:
    admin = logged_in_client(app, "admin")
    reader = _reader("amina@example.org")
    db.session.add(Delivery(kind="confirm", subscriber_id=reader.id, state="sent"))
    db.session.commit()
    assert admin.post(f"/admin/subscribers/{reader.id}/delete").status_code == 303
    db.session.expire_all()
    assert db.session.scalar(db.select(db.func.count(Subscriber.id))) == 0
    assert db.session.scalar(db.select(db.func.count(Delivery.id))) == 0
    assert (
        db.session.scalar(
            db.select(AuditEvent.target).where(AuditEvent.action == "subscriber.delete")
        )
        == "amina@example.org"
    )


CSV = (
    "email,name,language,categories,status\n"
    "new@example.org,Nouvelle,fr,politics;sport,active\n"
    "amina@example.org,Amina B.,en,,\n"
    "not-an-address,,fr,,\n"
    "bad@example.org,,de,,\n"
    "left@example.org,,fr,,active\n"
)


def _upload(client, body: bytes, dry_run: bool):  # type: ignore[no-untyped-def]
    data = {"file": (io.BytesIO(body), "readers.csv")}
    if dry_run:
        data["dry_run"] = "1"
    return client.post("/admin/subscribers/import", data=data, content_type="multipart/form-data")


def test_import_dry_run_reports_and_changes_nothing_then_imports(app: Flask) -> None:
    admin = logged_in_client(app, "admin")
    _reader("amina@example.org", name="Amina")
    _reader("left@example.org", status="unsubscribed")
    db.session.commit()
    report = _upload(admin, CSV.encode(), dry_run=True)
    html = report.get_data(as_text=True)
    assert report.status_code == 200 and "Dry run" in html
    assert 'data-count="created">1<' in html and 'data-count="updated">1<' in html
    assert 'data-count="problems">2<' in html and 'data-count="kept">1<' in html
    assert "not-an-address" in html and "&#39;de&#39;" in html
    db.session.expire_all()
    assert db.session.scalar(db.select(db.func.count(Subscriber.id))) == 2
    assert (
        db.session.scalar(db.select(Subscriber.name).where(Subscriber.email == "amina@example.org"))
        == "Amina"
    )
    done = _upload(admin, CSV.encode(), dry_run=False).get_data(as_text=True)
    assert "Import done" in done
    db.session.expire_all()
    assert db.session.scalar(db.select(db.func.count(Subscriber.id))) == 3
    assert (
        db.session.scalar(
            db.select(Subscriber.status).where(Subscriber.email == "left@example.org")
        )
        == "unsubscribed"
    )
    event = db.session.scalar(
        db.select(AuditEvent).where(AuditEvent.action == "subscribers.import")
    )
    assert event.detail == {"created": 1, "updated": 1, "problems": 2}


def test_broken_uploads_say_why_and_store_nothing(app: Flask) -> None:
    admin = logged_in_client(app, "admin")
    for body, reason in [
        ("email\nx@example.org\n".encode("utf-16"), "not UTF-8"),
        (b"", ""),
        (b"name,age\nA,3\n", ""),
    ]:
        response = _upload(admin, body, dry_run=False)
        assert response.status_code == 303
        page = admin.get("/admin/subscribers").get_data(as_text=True)
        assert 'class="flash flash-error"' in page
        assert reason in page
    missing = admin.post("/admin/subscribers/import", data={}, content_type="multipart/form-data")
    assert missing.status_code == 303
    assert "Choose a CSV file" in admin.get("/admin/subscribers").get_data(as_text=True)
    assert db.session.scalar(db.select(db.func.count(Subscriber.id))) == 0


def test_export_downloads_the_same_csv_as_the_cli(app: Flask) -> None:
    admin = logged_in_client(app, "admin")
    _reader("amina@example.org", name="Amina")
    _reader("rosa@example.es", language="es", status="unsubscribed", categories=["sport"])
    db.session.commit()
    response = admin.get("/admin/subscribers/export.csv")
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    lines = response.get_data(as_text=True).splitlines()
    assert lines[0] == "email,name,language,categories,status"
    assert "amina@example.org,Amina,fr,politics;sport,active" in lines
    cli = app.test_cli_runner().invoke(args=["subscribers", "export"])
    assert cli.output.splitlines() == lines
    only = admin.get("/admin/subscribers/export.csv?status=unsubscribed").get_data(as_text=True)
    assert only.splitlines()[1:] == ["rosa@example.es,,es,sport,unsubscribed"]
