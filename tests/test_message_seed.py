"""The issue's acceptance path: the seed's day, previewed as .eml, passes every wire check."""

from __future__ import annotations

import datetime as dt
import email
import re
import shutil
import subprocess
from email import policy
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskCliRunner

from digest.calendar import newsroom_today
from digest.extensions import db
from digest.ingest import ingest_locations

SEED_LEAD = "IA au Maroc : Une révolution imminente dans le secteur de la Santé"
SEED_QUOTE = (
    "Il est nécessaire d'encadrer par des lois l'intégration de l'IA dans les soins de santé"
)


def test_the_seed_day_as_eml_passes_every_check(
    app: Flask, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    # The seed's article is dated 2024 but ingested "today": the digest must still show it.
    now = dt.datetime.now(dt.UTC)
    ingest_locations(db.session, None, now)
    db.session.commit()
    day = newsroom_today(app.config["TIMEZONE"], now)
    built = runner.invoke(args=["build", "--date", day.isoformat()])
    assert built.exit_code == 0, built.output
    out = tmp_path / "seed.eml"
    result = runner.invoke(
        args=["preview", "--date", day.isoformat(), "--format", "eml", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    raw = out.read_bytes()

    assert all(line.endswith(b"\r") or not line for line in raw.split(b"\n")[:-1])
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    message = email.message_from_bytes(raw, policy=policy.default)
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert message["From"].addresses[0].display_name == "Le Digest"
    assert message["Message-ID"].endswith("@digest.test>")
    assert SEED_LEAD in message["Subject"]
    assert message["List-Unsubscribe"].startswith("<http://digest.test/unsubscribe/")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")  # type: ignore[union-attr]
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert len(html.encode("utf-8")) < 102 * 1024
    assert SEED_QUOTE in " ".join(text.split()) and SEED_QUOTE in html.replace("&#39;", "'")
    assert "Lire la suite" in text and "Lire la suite" in html
    for section in ("POLITIQUE", "ÉCONOMIE", "SPORT", "SANTÉ"):
        assert re.search(rf"^== {section} \(\d+\) ==$", text, re.MULTILINE), section
    assert ".txt" not in text  # a seed file's name is not a source

    spamassassin = shutil.which("spamassassin")
    if spamassassin is None:
        pytest.skip("SpamAssassin is not installed (.ci/run installs `spamassassin`)")
    report = subprocess.run(
        [spamassassin, "-L", "-t"], input=raw, capture_output=True, timeout=120, check=False
    ).stdout.decode("utf-8", "replace")
    score = re.search(r"^X-Spam-Status: \w+, score=(-?[\d.]+)", report, re.MULTILINE)
    assert score is not None and float(score.group(1)) < 1.0, report[-3000:]
