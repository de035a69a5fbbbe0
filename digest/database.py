"""Schema management: Alembic migrations through Flask-Migrate."""

from __future__ import annotations

from pathlib import Path

from flask import current_app
from flask_migrate import upgrade
from sqlalchemy.engine import make_url


def upgrade_schema() -> None:
    """Apply every pending migration (creates the schema, and a SQLite file's folder, if new)."""
    url = make_url(current_app.config["SQLALCHEMY_DATABASE_URI"])
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    upgrade()
