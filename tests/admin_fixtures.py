"""Shared helpers for the admin tests: editors, logins, articles and editions on a fixed day."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from digest import accounts
from digest.extensions import db
from digest.models import Article, Editor

PASSWORD = "correct horse battery"
DAY = dt.date(2024, 4, 29)
NOON = dt.datetime(2024, 4, 29, 11, 0, tzinfo=dt.UTC)


def make_editor(email: str = "ed@digest.test", role: str = "editor") -> Editor:
    """Create and commit an editor with the shared test password."""
    editor = accounts.create_editor(db.session, email, PASSWORD, role, NOON)
    db.session.commit()
    return editor


def log_in(client: FlaskClient, email: str, password: str = PASSWORD, **extra: str) -> Any:
    """Post the login form and return the response (not followed)."""
    return client.post("/admin/login", data={"email": email, "password": password, **extra})


def logged_in_client(app: Flask, role: str = "editor", email: str | None = None) -> FlaskClient:
    """A test client with a fresh editor of ``role`` logged in."""
    address = email or f"{role}@digest.test"
    make_editor(address, role)
    client = app.test_client()
    response = log_in(client, address)
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def add_article(title: str, **fields: Any) -> Article:
    """Add an article seen on DAY (commit left to the caller)."""
    values: dict[str, Any] = {
        "fingerprint": hashlib.sha256(title.encode()).hexdigest(),
        "title": title,
        "title_key": title.lower(),
        "first_seen_at": NOON,
        "last_seen_at": NOON,
        "published_at": NOON,
        "language": "fr",
        "category": "other",
        "category_confidence": 0.9,
        "category_evidence": [],
    }
    values.update(fields)
    article = Article(**values)
    db.session.add(article)
    db.session.flush()
    return article


def item_of(article: Article) -> dict[str, Any]:
    """The snapshot item describing ``article``."""
    return {
        "article_id": article.id,
        "title": article.title,
        "url": article.url,
        "source": article.source_name,
        "published_at": article.published_at.isoformat() if article.published_at else None,
        "language": article.language,
        "category": article.category,
        "summary": article.summary,
        "paragraphs": [],
        "quote": None,
        "related": [],
    }
