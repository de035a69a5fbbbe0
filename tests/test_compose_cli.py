"""`digest build` and `digest preview` as an operator uses them, bad input included."""

from __future__ import annotations

import email
from email import policy
from pathlib import Path

from flask import Flask
from flask.testing import FlaskCliRunner

from digest.extensions import db
from digest.models import Subscriber, SubscriberStatus
from tests.email_data import LEAD_TITLE, add_day


def test_build_then_preview_every_format(
    app: Flask, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    add_day(db.session)
    result = runner.invoke(args=["build", "--date", "2026-11-28"])
    assert result.exit_code == 0, result.output
    assert "Edition of 2026-11-28 (draft)" in result.output
    assert LEAD_TITLE in result.output

    out = tmp_path / "digest.eml"
    result = runner.invoke(
        args=["preview", "--date", "2026-11-28", "--format", "eml", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    message = email.message_from_bytes(out.read_bytes(), policy=policy.default)
    assert message.get_content_type() == "multipart/alternative"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "digest_slot" not in out.read_bytes().decode("ascii")

    result = runner.invoke(
        args=[
            "preview",
            "--date",
            "2026-11-28",
            "--format",
            "text",
            "--language",
            "en",
            "--categories",
            "sport,health",
        ]
    )
    assert result.exit_code == 0, result.output
    assert "TOP STORY" in result.output and "SPORT" in result.output
    assert "POLITICS" not in result.output

    result = runner.invoke(args=["preview", "--date", "2026-11-28"])
    assert result.exit_code == 0
    assert result.output.lstrip().startswith("<html") and "Lire la suite" in result.output


def test_preview_as_a_subscriber_uses_their_language_and_links(
    app: Flask, runner: FlaskCliRunner
) -> None:
    add_day(db.session)
    db.session.add(
        Subscriber(
            email="ana@example.org",
            name="Ana",
            language="es",
            categories=["sport"],
            status=SubscriberStatus.ACTIVE,
        )
    )
    db.session.commit()
    assert runner.invoke(args=["build", "--date", "2026-11-28"]).exit_code == 0
    result = runner.invoke(
        args=[
            "preview",
            "--date",
            "2026-11-28",
            "--format",
            "text",
            "--subscriber",
            "ana@example.org",
        ]
    )
    assert result.exit_code == 0, result.output
    assert "Hola, Ana:" in result.output and "DEPORTES" in result.output
    assert "http://digest.test/unsubscribe/" in result.output
    assert "POLÍTICA" not in result.output


def test_build_with_nothing_ingested_says_what_to_do(app: Flask, runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["build", "--date", "2026-11-28"])
    assert result.exit_code != 0
    assert "digest ingest" in result.output
    assert "Traceback" not in result.output


def test_bad_input_gets_a_clear_message(app: Flask, runner: FlaskCliRunner, tmp_path: Path) -> None:
    result = runner.invoke(args=["build", "--date", "28/11/2026"])
    assert result.exit_code == 2 and "YYYY-MM-DD" in result.output

    result = runner.invoke(args=["preview", "--date", "2026-11-28"])
    assert result.exit_code == 1
    assert "no edition for 2026-11-28" in result.output and "digest build" in result.output

    add_day(db.session)
    runner.invoke(args=["build", "--date", "2026-11-28"])
    result = runner.invoke(
        args=["preview", "--date", "2026-11-28", "--categories", "sport,weather"]
    )
    assert result.exit_code == 2 and "weather" in result.output

    result = runner.invoke(args=["preview", "--date", "2026-11-28", "--format", "pdf"])
    assert result.exit_code == 2

    result = runner.invoke(args=["preview", "--date", "2026-11-28", "--subscriber", "nobody@x.org"])
    assert result.exit_code == 1 and "nobody@x.org" in result.output

    missing_dir = tmp_path / "no" / "such" / "dir" / "out.eml"
    result = runner.invoke(args=["preview", "--date", "2026-11-28", "--out", str(missing_dir)])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "cannot write" in result.output or "out.eml" in result.output
