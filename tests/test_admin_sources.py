"""Admins list, add and switch sources; editors cannot."""

from __future__ import annotations

from flask import Flask

from digest.extensions import db
from digest.models import AuditEvent, Source
from tests.admin_fixtures import logged_in_client


def test_admin_adds_and_switches_sources(app: Flask) -> None:
    admin = logged_in_client(app, "admin")
    assert "No source configured" in admin.get("/admin/sources").get_data(as_text=True)
    added = admin.post(
        "/admin/sources/add",
        data={"location": "https://example.org/feed.xml", "kind": "feed", "name": "Exemple"},
    )
    assert added.status_code == 303
    source = db.session.scalar(db.select(Source))
    assert (source.location, source.kind, source.name, source.enabled) == (
        "https://example.org/feed.xml",
        "feed",
        "Exemple",
        True,
    )
    assert admin.post(f"/admin/sources/{source.id}/toggle").status_code == 303
    db.session.refresh(source)
    assert source.enabled is False
    html = admin.get("/admin/sources").get_data(as_text=True)
    assert f'id="source-{source.id}" class="disabled"' in html and ">Enable<" in html
    actions = db.session.scalars(db.select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert actions[-2:] == ["source.add", "source.disable"]


def test_local_paths_bad_urls_and_duplicates_are_refused(app: Flask) -> None:
    admin = logged_in_client(app, "admin")
    admin.post("/admin/sources/add", data={"location": "https://example.org/a", "kind": "page"})
    for location, kind in [
        ("/etc/passwd", "feed"),
        ("file:///etc/passwd", "feed"),
        ("javascript:alert(1)", "feed"),
        ("https://example.org/a", "page"),
        ("https://example.org/b", "ftp"),
    ]:
        assert (
            admin.post("/admin/sources/add", data={"location": location, "kind": kind}).status_code
            == 303
        )
    assert db.session.scalar(db.select(db.func.count(Source.id))) == 1
    assert admin.post("/admin/sources/99/toggle").status_code == 404


def test_editors_cannot_touch_sources(app: Flask) -> None:
    editor = logged_in_client(app, "editor")
    assert editor.get("/admin/sources").status_code == 403
    assert (
        editor.post("/admin/sources/add", data={"location": "https://example.org/x"}).status_code
        == 403
    )
    assert db.session.scalar(db.select(db.func.count(Source.id))) == 0
