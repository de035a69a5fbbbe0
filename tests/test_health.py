"""/healthz and /readyz: what a load balancer or an orchestrator is told."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from digest.extensions import db
from digest.observability import beat
from tests.conftest import make_test_app


def _drop_everything() -> None:
    db.session.remove()
    db.drop_all()
    with db.engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")


@pytest.fixture
def migrated_app(database_url: str, tmp_path: Path) -> Iterator[Flask]:
    """An app whose database was built by `digest init` (migrations), not create_all."""
    app = make_test_app(database_url, tmp_path)
    with app.app_context():
        _drop_everything()
        result = app.test_cli_runner().invoke(args=["init"])
        assert result.exit_code == 0, result.output
        yield app
        _drop_everything()
        db.engine.dispose()


def _now() -> dt.datetime:
    # /readyz reads the wall clock (it is an edge), so beats are placed relative to it.
    return dt.datetime.now(dt.UTC)


def test_healthz_answers_without_touching_the_database(tmp_path: Path) -> None:
    app = make_test_app(f"sqlite:///{tmp_path / 'missing' / 'nowhere.db'}", tmp_path)
    response = app.test_client().get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_ready_when_migrated_and_the_scheduler_beat_recently(migrated_app: Flask) -> None:
    beat(db.session, "scheduler", _now() - dt.timedelta(seconds=30))
    response = migrated_app.test_client().get("/readyz")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["status"] == "ready"
    assert {name for name, check in body["checks"].items() if check["ok"]} == {
        "database",
        "migrations",
        "scheduler",
    }
    assert response.headers["Cache-Control"] == "no-store"


def test_not_ready_when_the_scheduler_never_beat(migrated_app: Flask) -> None:
    response = migrated_app.test_client().get("/readyz")
    assert response.status_code == 503
    scheduler = response.get_json()["checks"]["scheduler"]
    assert scheduler["ok"] is False
    assert "digest scheduler" in scheduler["detail"]


def test_not_ready_when_the_heartbeat_is_stale(migrated_app: Flask) -> None:
    beat(db.session, "scheduler", _now() - dt.timedelta(minutes=10))
    response = migrated_app.test_client().get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["scheduler"]["ok"] is False
    assert "limit 180s" in body["checks"]["scheduler"]["detail"]


def test_the_heartbeat_limit_is_configurable(migrated_app: Flask) -> None:
    beat(db.session, "scheduler", _now() - dt.timedelta(minutes=10))
    migrated_app.config["HEARTBEAT_MAX_AGE_SECONDS"] = 3600
    assert migrated_app.test_client().get("/readyz").status_code == 200


def test_not_ready_when_the_schema_was_never_migrated(app: Flask, client: FlaskClient) -> None:
    # The `app` fixture builds tables with create_all: no migration is recorded.
    response = client.get("/readyz")
    assert response.status_code == 503
    migrations = response.get_json()["checks"]["migrations"]
    assert migrations["ok"] is False
    assert "digest init" in migrations["detail"]


def test_not_ready_when_the_database_is_at_an_unknown_revision(migrated_app: Flask) -> None:
    beat(db.session, "scheduler", _now())
    with db.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = 'f00dfacef00d'")
    response = migrated_app.test_client().get("/readyz")
    assert response.status_code == 503
    assert "f00dfacef00d" in response.get_json()["checks"]["migrations"]["detail"]


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://nobody@127.0.0.1:9/none",  # nothing listens on the discard port
        "sqlite:////nonexistent-directory/digest.db",
    ],
)
def test_not_ready_and_no_error_page_when_the_database_is_unreachable(
    url: str, tmp_path: Path
) -> None:
    app = make_test_app(url, tmp_path)
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    checks = response.get_json()["checks"]
    assert checks["database"]["ok"] is False
    assert checks["database"]["detail"].startswith("unreachable")
    assert checks["scheduler"]["ok"] is False


def test_probes_are_not_rate_limited(tmp_path: Path) -> None:
    app = make_test_app(
        f"sqlite:///{tmp_path / 'x.db'}",
        tmp_path,
        RATELIMIT_ENABLED=True,
        RATELIMIT_DEFAULT="2 per minute",
    )
    client = app.test_client()
    assert [client.get("/healthz").status_code for _ in range(5)] == [200] * 5
