"""Schema management: Alembic migrations through Flask-Migrate."""

from __future__ import annotations

from flask_migrate import upgrade


def upgrade_schema() -> None:
    """Apply every pending migration (creates the schema on an empty database)."""
    upgrade()
