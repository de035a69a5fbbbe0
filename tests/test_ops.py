"""Operating digest: bad configuration refused, `digest status`, `backup`, `doctor`."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskCliRunner

from digest import ConfigError, create_app
from digest.extensions import db
from digest.models import Delivery, Edition, Source, Subscriber
from digest.observability import beat
from tests.conftest import make_test_app

DIGEST = Path(sys.executable).parent / "digest"


# --- configuration is refused at start ------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "value", "expected"),
    [
        ("DATABASE_URL", "mysql://root@localhost/digest", "sqlite:///"),
        ("MAIL_URL", "sendmail:///usr/sbin/sendmail", "smtp://"),
        ("MAIL_FROM", "digest at example.org", "address"),
        ("PUBLIC_URL", "digest.example.org", "https://"),
        ("PUBLIC_URL", "ftp://digest.example.org", "https://"),
        ("LANGUAGES", "fr,en", "JSON list"),
        ("LANGUAGES", ["fr", "de"], "JSON list"),
        ("LANGUAGES", [], "JSON list"),
        ("DEFAULT_LANGUAGE", "es", "one of LANGUAGES"),
        ("CATEGORY_ORDER", ["sport", "sport"], "distinct"),
        ("CONFIRM_MAX_AGE_DAYS", 0, "positive"),
        ("CONFIRM_MAX_AGE_DAYS", "seven", "positive"),
        ("CONFIRM_MAX_AGE_DAYS", True, "positive"),
        ("HEARTBEAT_MAX_AGE_SECONDS", -5, "positive"),
        ("RATELIMIT_STORAGE_URL", "memcached://127.0.0.1", "redis://"),
        ("LOG_FORMAT", "xml", '"json"'),
        ("LOG_LEVEL", "LOUD", "WARNING"),
        ("METRICS_ENABLED", "yes", "true or false"),
        ("METRICS_TOKEN", "short", "16 characters"),
        ("POSTAL_ADDRESS", "  ", "postal address"),
    ],
)
def test_invalid_settings_are_refused_naming_the_variable(
    tmp_path: Path, setting: str, value: Any, expected: str
) -> None:
    overrides = {setting: value}
    if setting == "DEFAULT_LANGUAGE":
        overrides["LANGUAGES"] = ["fr", "en"]
    with pytest.raises(ConfigError) as caught:
        make_test_app(f"sqlite:///{tmp_path / 'x.db'}", tmp_path, **overrides)
    message = str(caught.value)
    assert f"DIGEST_{setting}=" in message
    assert expected in message


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        make_test_app(
            f"sqlite:///{tmp_path / 'x.db'}", tmp_path, LOG_FORMAT="xml", MAIL_FROM="nobody"
        )
    assert "DIGEST_LOG_FORMAT" in str(caught.value)
    assert "DIGEST_MAIL_FROM" in str(caught.value)


def test_environment_values_are_validated_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_CONFIRM_MAX_AGE_DAYS", "-1")
    with pytest.raises(ConfigError, match="DIGEST_CONFIRM_MAX_AGE_DAYS=-1"):
        create_app({"ENV_NAME": "testing", "INSTANCE_PATH": str(tmp_path)})
    monkeypatch.setenv("DIGEST_CONFIRM_MAX_AGE_DAYS", "3")
    monkeypatch.setenv("DIGEST_LANGUAGES", '["fr", "en"]')
    monkeypatch.setenv("DIGEST_METRICS_ENABLED", "false")
    app = create_app({"ENV_NAME": "testing", "INSTANCE_PATH": str(tmp_path)})
    assert app.config["CONFIRM_MAX_AGE_DAYS"] == 3
    assert app.config["LANGUAGES"] == ["fr", "en"]
    assert app.config["METRICS_ENABLED"] is False


def test_the_console_script_prints_the_problem_not_a_traceback(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DIGEST_INSTANCE_PATH": str(tmp_path),
        "DIGEST_LOG_FORMAT": "xml",
        "DIGEST_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
    }
    result = subprocess.run(
        [str(DIGEST), "status"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "DIGEST_LOG_FORMAT='xml'" in result.stderr
    assert "Traceback" not in result.stderr


# --- digest status ------------------------------------------------------------------


def _half_sent_edition(now: dt.datetime) -> None:
    edition = Edition(day=now.date(), status="sending")
    readers = [Subscriber(email=f"r{i}@example.org", status="active") for i in range(3)]
    db.session.add_all([edition, *readers])
    db.session.add_all(
        [
            Delivery(
                edition=edition,
                subscriber=readers[0],
                state="sent",
                last_reply="250 ok",
                sent_at=now - dt.timedelta(minutes=2),
            ),
            Delivery(edition=edition, subscriber=readers[1], state="queued"),
            Delivery(
                edition=edition,
                subscriber=readers[2],
                state="failed",
                attempts=8,
                last_error="451 4.7.1 greylisted, try again later",
            ),
            Source(
                kind="feed",
                location="https://down.example/rss",
                name="Down FM",
                status="error",
                last_error="HTTP 503\nretry-after: 60",
                last_fetched_at=now - dt.timedelta(minutes=30),
            ),
        ]
    )
    db.session.commit()
    beat(db.session, "scheduler", now - dt.timedelta(seconds=40))


def test_status_on_a_fresh_install(runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["status"])
    assert result.exit_code == 0, result.output
    assert "none yet" in result.output
    assert "scheduler heartbeat: never" in result.output


def test_status_summarizes_editions_queue_runs_and_errors(
    app: Flask, runner: FlaskCliRunner
) -> None:
    now = dt.datetime.now(dt.UTC)
    _half_sent_edition(now)
    result = runner.invoke(args=["status"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"{now.date().isoformat()}  #" in out
    assert "deliveries: failed 1, queued 1, sent 1" in out
    assert "1 queued (1 due now)" in out
    assert "SMTP replies: 250 x1" in out
    assert "sign-ups 3" in out
    assert "ingest: 1 sources, 1 failing" in out
    assert "source Down FM: HTTP 503" in out
    assert "retry-after" not in out  # one line per error
    assert "8 attempts): 451 4.7.1 greylisted" in out
    assert "s ago)" in out  # the heartbeat, 40-odd seconds old
    assert "edition last built: 20" in out
    assert "last finished sending: never" in out


def test_status_as_json(app: Flask, runner: FlaskCliRunner) -> None:
    _half_sent_edition(dt.datetime.now(dt.UTC))
    result = runner.invoke(args=["status", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["queue_depth"] == 1
    assert {"kind": "digest", "state": "sent", "count": 1} in data["deliveries"]
    assert data["sources"][0]["status"] == "error"


def test_status_without_a_schema_says_what_to_run(tmp_path: Path) -> None:
    app = make_test_app(f"sqlite:///{tmp_path / 'empty.db'}", tmp_path)
    result = app.test_cli_runner().invoke(args=["status"])
    assert result.exit_code == 1
    assert "digest init" in result.output
    assert "Traceback" not in result.output


# --- digest backup ------------------------------------------------------------------


@pytest.fixture
def sqlite_app(tmp_path: Path) -> Flask:
    """An app on a migrated SQLite file with three subscribers."""
    instance = tmp_path / "instance"
    instance.mkdir()
    app = make_test_app(f"sqlite:///{instance / 'digest.db'}", instance)
    with app.app_context():
        assert app.test_cli_runner().invoke(args=["init"]).exit_code == 0
        db.session.add_all(Subscriber(email=f"s{i}@example.org") for i in range(3))
        db.session.commit()
        db.session.remove()
    return app


def _rows(path: Path, table: str) -> int:
    with sqlite3.connect(path) as connection:
        return connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_backup_copies_a_sqlite_database_that_opens_on_its_own(
    sqlite_app: Flask, tmp_path: Path
) -> None:
    target = tmp_path / "copies" / "monday.db"
    result = sqlite_app.test_cli_runner().invoke(args=["backup", "--output", str(target)])
    assert result.exit_code == 0, result.output
    assert f"to {target}" in result.output
    assert "subscribers 3" in result.output
    assert _rows(target, "subscribers") == 3
    assert _rows(target, "alembic_version") == 1
    assert not list(target.parent.glob("*.partial"))


def test_backup_names_the_copy_after_the_time_in_the_instance_folder(sqlite_app: Flask) -> None:
    result = sqlite_app.test_cli_runner().invoke(args=["backup"])
    assert result.exit_code == 0, result.output
    copies = list((Path(sqlite_app.instance_path) / "backups").glob("digest-*Z.db"))
    assert len(copies) == 1
    assert _rows(copies[0], "subscribers") == 3


def test_backup_takes_a_consistent_snapshot_while_someone_writes(
    sqlite_app: Flask, tmp_path: Path
) -> None:
    live = Path(sqlite_app.instance_path) / "digest.db"
    writer = sqlite3.connect(live)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute(
            "INSERT INTO subscribers (email, language, categories, status, token_version, "
            "bounce_count, created_at) VALUES ('late@example.org', 'fr', '[]', 'pending', 1, 0, "
            "'2026-03-02 07:00:00')"
        )
        target = tmp_path / "during.db"
        result = sqlite_app.test_cli_runner().invoke(args=["backup", "-o", str(target)])
        assert result.exit_code == 0, result.output
        writer.commit()
    finally:
        writer.close()
    # The copy holds what was committed when it was taken, not the half-done transaction.
    assert _rows(target, "subscribers") == 3
    assert _rows(live, "subscribers") == 4


def test_backup_never_overwrites_an_existing_file(sqlite_app: Flask, tmp_path: Path) -> None:
    target = tmp_path / "precious.db"
    target.write_text("yesterday's backup")
    result = sqlite_app.test_cli_runner().invoke(args=["backup", "-o", str(target)])
    assert result.exit_code == 1
    assert "already exists" in result.output
    assert target.read_text() == "yesterday's backup"


def test_backup_of_a_missing_database_is_a_clear_error(tmp_path: Path) -> None:
    app = make_test_app(f"sqlite:///{tmp_path / 'gone.db'}", tmp_path)
    result = app.test_cli_runner().invoke(args=["backup", "-o", str(tmp_path / "b.db")])
    assert result.exit_code == 1
    assert "no database at" in result.output
    assert not (tmp_path / "gone.db").exists()  # looking must not create it


def test_backup_of_a_corrupt_file_leaves_nothing_behind(tmp_path: Path) -> None:
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"this is not a database" * 100)
    app = make_test_app(f"sqlite:///{broken}", tmp_path)
    result = app.test_cli_runner().invoke(args=["backup", "-o", str(tmp_path / "b.db")])
    assert result.exit_code == 1
    assert "SQLite could not copy" in result.output
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != "") == ["broken.db"]


def test_postgresql_backup_prints_pg_dump_without_the_password(tmp_path: Path) -> None:
    app = make_test_app("postgresql://news:hunter2@db.internal:5433/digest", tmp_path)
    result = app.test_cli_runner().invoke(args=["backup", "-o", "/var/backups/d.dump"])
    assert result.exit_code == 0, result.output
    assert (
        "pg_dump --host db.internal --port 5433 --username news --format=custom --no-owner "
        "--file /var/backups/d.dump digest"
    ) in result.output
    assert "pg_restore --host db.internal --port 5433 --username news --clean" in result.output
    assert "hunter2" not in result.output


@pytest.mark.skipif(not shutil.which("pg_dump"), reason="pg_dump is not installed")
def test_the_printed_pg_dump_command_really_backs_up_and_restores(
    app: Flask, tmp_path: Path
) -> None:
    if not app.config["DATABASE_URL"].startswith("postgres"):
        pytest.skip("PostgreSQL only")
    db.session.add(Subscriber(email="keep@example.org"))
    db.session.commit()
    dump = tmp_path / "d.dump"
    result = app.test_cli_runner().invoke(args=["backup", "-o", str(dump)])
    lines = [line.strip() for line in result.output.splitlines()]
    pg_dump = next(line for line in lines if line.startswith("pg_dump "))
    pg_restore = next(line for line in lines if line.startswith("pg_restore "))
    subprocess.run(pg_dump, shell=True, check=True, timeout=120)
    db.session.query(Subscriber).delete()
    db.session.commit()
    subprocess.run(pg_restore, shell=True, check=True, timeout=120)
    db.session.expire_all()
    assert [s.email for s in db.session.query(Subscriber)] == ["keep@example.org"]


# --- digest doctor ------------------------------------------------------------------


def _production(tmp_path: Path, **overrides: Any) -> Flask:
    settings: dict[str, Any] = {
        "ENV_NAME": "production",
        "SECRET_KEY": "9f1c2e7ab34d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f",
        "PUBLIC_URL": "https://digest.lematin.ma",
        "MAIL_FROM": "Le Digest <digest@lematin.ma>",
        "MAIL_DOMAIN": "lematin.ma",
        "MAIL_URL": "smtp://digest:pw@smtp.lematin.ma:587?tls=starttls",
        "RATELIMIT_STORAGE_URL": "redis://127.0.0.1:6379/0",
    }
    settings.update(overrides)
    # Only the configuration is checked (--skip-database): nothing listens at this address.
    return make_test_app("postgresql://digest@127.0.0.1:9/digest", tmp_path, **settings)


def test_doctor_passes_a_development_checkout(runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["doctor", "--skip-database"])
    assert result.exit_code == 0, result.output
    assert "0 to fix" in result.output


def test_doctor_lists_what_to_fix_before_production(tmp_path: Path) -> None:
    app = _production(
        tmp_path,
        SECRET_KEY="dev-only-not-secret",
        PUBLIC_URL="http://digest.lematin.ma",
        MAIL_FROM="Le Digest <digest@localhost>",
        MAIL_URL="file:///tmp/outbox",
        RATELIMIT_STORAGE_URL="memory://",
    )
    result = app.test_cli_runner().invoke(args=["doctor", "--skip-database"])
    assert result.exit_code == 1
    out = result.output
    assert "FAIL  secret key" in out and "published default" in out
    assert "secrets.token_hex(32)" in out
    assert "FAIL  public url" in out and "need https" in out
    assert "FAIL  sender" in out and "localhost" in out
    assert "WARN  mail transport" in out
    assert "WARN  rate limits" in out
    assert "WARN  dkim" in out and "openssl genrsa" in out
    assert "3 to fix" in out


@pytest.mark.parametrize(
    ("key", "complaint"),
    [("short-but-random-Xq9", "20 characters"), ("ab" * 20, "too few characters")],
)
def test_doctor_refuses_weak_secret_keys(tmp_path: Path, key: str, complaint: str) -> None:
    result = (
        _production(tmp_path, SECRET_KEY=key)
        .test_cli_runner()
        .invoke(args=["doctor", "--skip-database"])
    )
    assert result.exit_code == 1
    assert complaint in result.output


@pytest.mark.skipif(not shutil.which("openssl"), reason="openssl is not installed")
def test_doctor_accepts_a_dkim_key_made_with_the_documented_command(tmp_path: Path) -> None:
    from digest.doctor import DKIM_KEYGEN

    subprocess.run(DKIM_KEYGEN, shell=True, cwd=tmp_path, check=True, capture_output=True)
    key = tmp_path / "dkim-private.pem"
    key.chmod(0o600)
    app = _production(tmp_path, DKIM_SELECTOR="mail2026", DKIM_KEY_FILE=str(key))
    result = app.test_cli_runner().invoke(args=["doctor", "--skip-database"])
    assert result.exit_code == 0, result.output
    assert "ok    dkim" in result.output and "mail2026" in result.output
    assert "WARN" not in result.output


@pytest.mark.parametrize(
    ("contents", "complaint"),
    [(None, "cannot read DKIM key"), ("-----BEGIN PUBLIC KEY-----\n", "PEM private key")],
)
def test_doctor_catches_a_dkim_key_that_cannot_sign(
    tmp_path: Path, contents: str | None, complaint: str
) -> None:
    key = tmp_path / "dkim.pem"
    if contents is not None:
        key.write_text(contents)
    app = _production(tmp_path, DKIM_SELECTOR="s1", DKIM_KEY_FILE=str(key))
    result = app.test_cli_runner().invoke(args=["doctor", "--skip-database"])
    assert result.exit_code == 1
    assert complaint in result.output


def test_doctor_reports_an_unmigrated_database(app: Flask, runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["doctor"])
    assert result.exit_code == 1
    assert "FAIL  migrations" in result.output
    assert "digest init" in result.output


def test_doctor_catches_a_dkim_key_that_only_looks_right(tmp_path: Path) -> None:
    pytest.importorskip("digest.mail.signing", reason="the DKIM signer is not installed")
    key = tmp_path / "dkim.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
    key.chmod(0o600)
    app = _production(tmp_path, DKIM_SELECTOR="s1", DKIM_KEY_FILE=str(key))
    result = app.test_cli_runner().invoke(args=["doctor", "--skip-database"])
    assert result.exit_code == 1
    assert "FAIL  dkim" in result.output
