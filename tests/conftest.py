"""Fixtures: an app per database backend (SQLite always, PostgreSQL when configured)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner

from digest import create_app
from digest.extensions import db

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SEED_DIR = PROJECT_ROOT / "seeds"
SEED_FILE = next(SEED_DIR.glob("*.txt"))
POSTGRES_URL = os.environ.get("DIGEST_TEST_DATABASE_URL")


def pytest_report_header() -> str:
    if POSTGRES_URL:
        return "database runs: SQLite and PostgreSQL"
    return "database runs: SQLite only (PostgreSQL runs skip: set DIGEST_TEST_DATABASE_URL)"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "no_db: the test needs no database backend")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each database test runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    if not POSTGRES_URL:
        pytest.skip("PostgreSQL run: set DIGEST_TEST_DATABASE_URL (CI sets it)")
    return POSTGRES_URL


def make_test_app(database_url: str, instance: Path, **overrides: Any) -> Flask:
    """An app on ``database_url`` with mail kept in memory and a fixed public URL."""
    config: dict[str, Any] = {
        "ENV_NAME": "testing",
        "INSTANCE_PATH": str(instance),
        "DATABASE_URL": database_url,
        "SECRET_KEY": "test-secret",
        "MAIL_URL": "memory://",
        "PUBLIC_URL": "http://digest.test",
        "MAIL_FROM": "Le Digest <digest@digest.test>",
        "MAIL_DOMAIN": "digest.test",
    }
    config.update(overrides)
    return create_app(config)


@pytest.fixture
def app(database_url: str, tmp_path: Path) -> Iterator[Flask]:
    """A configured app with an empty schema, dropped afterwards."""
    instance = tmp_path / "instance"
    instance.mkdir()
    app = make_test_app(database_url, instance)
    with app.app_context():
        db.drop_all()
        db.create_all()
        yield app
        db.session.remove()
        db.drop_all()
        db.engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client for the app."""
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    """A runner for the app's ``digest`` commands."""
    return app.test_cli_runner()
