"""The application starts only with a usable configuration, and its schema is migrated."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask import Flask
from sqlalchemy import create_engine, select, text
from sqlalchemy.pool import NullPool

from digest import ConfigError, create_app
from digest.extensions import db
from digest.models import Subscriber
from tests.conftest import make_test_app


def test_production_without_secret_key_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="DIGEST_SECRET_KEY"):
        create_app({"ENV_NAME": "production", "INSTANCE_PATH": str(tmp_path)})


def test_unknown_environment_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="DIGEST_ENV"):
        create_app({"ENV_NAME": "staging", "INSTANCE_PATH": str(tmp_path)})


def test_environment_variables_override_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_SEND_AT", "06:30")
    monkeypatch.setenv("DIGEST_TIMEZONE", "Africa/Lagos")
    app = create_app({"ENV_NAME": "testing", "INSTANCE_PATH": str(tmp_path)})
    assert app.config["SEND_AT"] == "06:30"
    assert app.config["TIMEZONE"] == "Africa/Lagos"
    assert app.config["MAIL_URL"] == "memory://"


def test_postgresql_urls_use_the_shipped_driver(tmp_path: Path) -> None:
    app = make_test_app("postgresql://u@127.0.0.1/x", tmp_path)
    assert app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql+psycopg://")


def test_init_builds_the_schema_the_models_describe(database_url: str, tmp_path: Path) -> None:
    app = make_test_app(database_url, tmp_path)
    with app.app_context():
        db.drop_all()
        with db.engine.begin() as connection:
            connection.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
        result = app.test_cli_runner().invoke(args=["init"])
        assert result.exit_code == 0, result.output
        assert "Database ready" in result.output
        # A second run is an upgrade with nothing to do.
        assert app.test_cli_runner().invoke(args=["init"]).exit_code == 0
        with db.engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), db.metadata)
        assert diff == [], "models changed without a migration: regenerate migrations/"
        db.drop_all()
        with db.engine.begin() as connection:
            connection.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
        db.engine.dispose()


def test_admin_and_public_blueprints_are_mounted(app: Flask) -> None:
    blueprints = set(app.blueprints)
    assert {"public", "admin"} <= blueprints


def test_init_creates_the_instance_folder_of_a_fresh_checkout(tmp_path: Path) -> None:
    fresh = tmp_path / "not-yet" / "instance"
    app = make_test_app(f"sqlite:///{fresh / 'digest.db'}", fresh)
    result = app.test_cli_runner().invoke(args=["init"])
    assert result.exit_code == 0, result.output
    assert (fresh / "digest.db").is_file()
    with app.app_context():
        db.engine.dispose()


def test_a_command_on_a_database_without_schema_says_to_run_init(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from digest.cli import main

    monkeypatch.setenv("DIGEST_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setattr("sys.argv", ["digest", "build", "--date", "2026-11-28"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 1
    assert "digest init" in capsys.readouterr().err


def _sign_up_form(email: str) -> dict[str, object]:
    return {"email": email, "categories": ["sport"], "language": "fr"}


def _end_every_other_session() -> None:
    """What a PostgreSQL restart does to pooled connections: each backend is told to go and
    closes its socket. Returns once those backends have exited."""
    url = db.engine.url.render_as_string(hide_password=False)
    with create_engine(url, poolclass=NullPool).connect() as admin:
        ended = admin.execute(
            text(
                "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND backend_type = 'client backend'"
            )
        ).scalar()
    assert ended, "the pool held no connection to end"


def test_requests_after_a_postgresql_restart_get_fresh_connections(app: Flask) -> None:
    if db.engine.dialect.name != "postgresql":
        pytest.skip("only a database server ends the pool's connections")
    client = app.test_client()
    assert client.post("/", data=_sign_up_form("ana@example.org")).status_code == 303
    db.session.remove()
    _end_every_other_session()
    # A new address (its own pooled connection), a known one (the session's) and a page
    # that reads the database all answer as before.
    assert client.post("/", data=_sign_up_form("bo@example.org")).status_code == 303
    assert client.post("/", data=_sign_up_form("ana@example.org")).status_code == 303
    assert client.get("/").status_code == 200
    emails = db.session.scalars(select(Subscriber.email).order_by(Subscriber.email)).all()
    assert emails == ["ana@example.org", "bo@example.org"]
