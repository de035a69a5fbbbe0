"""Schema management (Alembic through Flask-Migrate) and per-connection database settings."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, current_app
from flask_migrate import upgrade
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url


def upgrade_schema() -> None:
    """Apply every pending migration (creates the schema, and a SQLite file's folder, if new)."""
    url = make_url(current_app.config["SQLALCHEMY_DATABASE_URI"])
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    upgrade()


def tune_engines(app: Flask) -> None:
    """Give every SQLite connection the app opens the settings a web site needs (see below)."""
    from digest.extensions import db

    with app.app_context():
        engines: Mapping[str | None, Engine] = db.engines
    for engine in engines.values():
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_settings)


def _sqlite_settings(connection: Any, record: Any) -> None:
    # Write-ahead logging: readers never wait for the writer and the writer never waits for
    # readers, so gunicorn's workers can answer pages while one of them commits a sign-up.
    # synchronous=NORMAL is the setting SQLite documents for WAL: a commit no longer waits for
    # fsync (the log is synced at checkpoints), so a process crash loses nothing and a power
    # cut can lose only the last commits, never corrupt the file. WAL is remembered by the
    # file, synchronous by the connection; an in-memory database stays in "memory" mode.
    cursor = connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()
