"""Ingesting into the database: storage, dedupe, provenance, editors' changes, the CLI."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

from flask import Flask
from sqlalchemy import func, select

from digest.extensions import db
from digest.ingest import ingest_locations
from digest.models import Article, Source
from tests.conftest import SEED_FILE

DATA = Path(__file__).parent / "data" / "ingest"
NOW = dt.datetime(2026, 11, 28, 6, 0, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(days=1)
SEED_ARTICLE = "IA au Maroc : Une révolution imminente dans le secteur de la Santé"


def count_articles() -> int:
    return db.session.scalar(select(func.count(Article.id))) or 0


def article_titled(title: str) -> Article:
    return db.session.scalars(select(Article).where(Article.title == title)).one()


def test_seed_is_stored_with_language_blocks_and_provenance(app: Flask) -> None:
    report = ingest_locations(db.session, None, NOW)
    assert report.ok and report.added == 49
    assert count_articles() == 49
    article = article_titled(SEED_ARTICLE)
    assert article.source_name == "L'opinion"
    assert article.published_at is not None
    assert article.published_at.astimezone(dt.UTC).date() == dt.date(2024, 4, 29)
    assert article.language == "fr"
    assert article.is_full and article.blocks is not None
    assert article.blocks[0]["type"] == "paragraph"
    assert [s.location for s in article.sources] == [str(SEED_FILE.resolve())]
    headline = article_titled("Copa Mundial Femenina Sub-17: Marruecos cae ante Italia")
    assert headline.language == "es" and headline.blocks is None
    english = article_titled(
        "CAF Awards 2025 : U20s, local stars, and national team, Morocco shines across all levels"
    )
    assert english.language == "en"
    assert article_titled("Malawi. L'école gratuite pour tous dès 2026").language == "fr"
    assert headline.first_seen_at.astimezone(dt.UTC) == NOW
    # Seeds read by default are remembered for provenance but are not scheduled sources.
    source = db.session.scalars(select(Source)).one()
    assert (source.kind, source.status, source.enabled) == ("seed", "ok", False)


def test_second_ingest_adds_nothing_and_keeps_editor_changes(app: Flask) -> None:
    ingest_locations(db.session, [str(SEED_FILE)], NOW)
    article = article_titled(SEED_ARTICLE)
    article.category = "health"
    article.category_by_editor = True
    headline = article_titled("Malawi. L'école gratuite pour tous dès 2026")
    headline.excluded = True
    headline.category = "politics"
    db.session.commit()

    report = ingest_locations(db.session, [str(SEED_FILE)], LATER)
    assert report.ok and report.added == 0 and report.updated == 49
    assert count_articles() == 49
    db.session.expire_all()
    article = article_titled(SEED_ARTICLE)
    assert (article.category, article.category_by_editor) == ("health", True)
    assert article.first_seen_at.astimezone(dt.UTC) == NOW
    assert article.last_seen_at.astimezone(dt.UTC) == LATER
    headline = article_titled("Malawi. L'école gratuite pour tous dès 2026")
    assert (headline.excluded, headline.category) == (True, "politics")


def test_same_story_in_two_dumps_is_one_article_with_both_sources(
    app: Flask, tmp_path: Path
) -> None:
    copy = tmp_path / "copy.txt"
    # The copy spells the apostrophe and the space before ":" differently.
    copy.write_text(
        "Malawi. L\u2019école gratuite pour tous dès 2026\u00a0\u00a0Un titre nouveau\n",
        encoding="utf-8",
    )
    ingest_locations(db.session, [str(SEED_FILE)], NOW)
    report = ingest_locations(db.session, [str(copy)], LATER)
    assert (report.added, report.updated) == (1, 1)
    article = article_titled("Malawi. L'école gratuite pour tous dès 2026")
    assert sorted(s.name or "" for s in article.sources) == sorted(["copy.txt", SEED_FILE.name])
    assert article.last_seen_at.astimezone(dt.UTC) == LATER


def test_headline_then_full_article_becomes_one_full_article(app: Flask, tmp_path: Path) -> None:
    ticker = tmp_path / "ticker.txt"
    ticker.write_text("Tanger Med : nouveau record de conteneurs   Autre titre\n", encoding="utf-8")
    ingest_locations(db.session, [str(ticker)], NOW)
    assert article_titled("Tanger Med : nouveau record de conteneurs").blocks is None
    ingest_locations(db.session, [str(DATA / "two_articles.txt")], LATER)
    article = article_titled("Tanger Med : nouveau record de conteneurs")
    assert article.blocks and len(article.blocks) == 2
    assert article.source_name == "Hespress FR"
    # 2 from the first file, 6 in the second, one shared.
    assert count_articles() == 7


def test_cp1252_crlf_file_is_read_correctly(app: Flask, tmp_path: Path) -> None:
    text = (DATA / "two_articles.txt").read_text(encoding="utf-8").replace("\n", "\r\n")
    legacy = tmp_path / "legacy.txt"
    legacy.write_bytes(text.encode("cp1252"))
    report = ingest_locations(db.session, [str(legacy)], NOW)
    assert report.ok and report.added == 6
    article = article_titled("Budget : l'État lance un emprunt obligataire de 5 milliards")
    assert article.blocks is not None
    assert article.blocks[-1]["text"].endswith("l'investissement productif.")
    assert article_titled("La sécheresse pèse sur la campagne agricole 2024").language == "fr"


def test_bad_files_fail_alone_and_lose_nothing(app: Flask, tmp_path: Path) -> None:
    ingest_locations(db.session, [str(SEED_FILE)], NOW)
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n\n", encoding="utf-8")
    binary = tmp_path / "binary.txt"
    binary.write_bytes(bytes(range(256)) * 50)
    good = tmp_path / "good.txt"
    good.write_text("Un titre tout neuf   Un autre titre\n", encoding="utf-8")
    missing = tmp_path / "missing.txt"
    report = ingest_locations(
        db.session, [str(empty), str(binary), str(missing), str(good), str(SEED_FILE)], LATER
    )
    errors = {Path(r.location).name: r.error for r in report.sources if r.status == "error"}
    assert set(errors) == {"empty.txt", "binary.txt", "missing.txt"}
    assert "empty" in errors["empty.txt"]
    assert "binary" in errors["binary.txt"]
    assert "no such file" in errors["missing.txt"]
    assert count_articles() == 51
    # A configured source that later breaks keeps its articles and records the error.
    seed_source = db.session.scalars(select(Source).where(Source.name == SEED_FILE.name)).one()
    seed_source.location = str(binary.resolve())
    db.session.commit()
    report = ingest_locations(db.session, [str(binary)], LATER)
    assert not report.ok
    db.session.expire_all()
    seed_source = db.session.get(Source, seed_source.id)
    assert seed_source is not None and seed_source.status == "error"
    assert "binary" in (seed_source.last_error or "")
    assert len(seed_source.articles) == 49


def test_enabled_sources_replace_the_seed_default(app: Flask, tmp_path: Path) -> None:
    mine = tmp_path / "mine.txt"
    mine.write_text("Seul titre configuré\n", encoding="utf-8")
    db.session.add(Source(kind="seed", location=str(mine.resolve()), enabled=True))
    db.session.commit()
    report = ingest_locations(db.session, None, NOW)
    assert [Path(r.location).name for r in report.sources] == ["mine.txt"]
    assert count_articles() == 1


def test_directory_locations(app: Flask, tmp_path: Path) -> None:
    folder = tmp_path / "dumps"
    folder.mkdir()
    (folder / "picture.png").write_bytes(b"\x89PNG\r\n")
    report = ingest_locations(db.session, [str(folder)], NOW)
    assert not report.ok and "nothing readable" in (report.sources[0].error or "")
    shutil.copy(SEED_FILE, folder / "a.txt")
    shutil.copy(DATA / "two_articles.txt", folder / "b.txt")
    report = ingest_locations(db.session, [str(folder)], NOW)
    assert report.ok and [Path(r.location).name for r in report.sources] == ["a.txt", "b.txt"]
    assert count_articles() == 55


def test_cli_dry_run_json_prints_and_stores_nothing(app: Flask) -> None:
    result = app.test_cli_runner().invoke(
        args=["ingest", "--dry-run", "--json", str(DATA / "two_articles.txt")]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    (source,) = data["sources"]
    assert len(source["headlines"]) == 5
    assert [a["title"] for a in source["articles"]] == [
        "Budget : l'État lance un emprunt obligataire de 5 milliards",
        "Tanger Med : nouveau record de conteneurs",
    ]
    budget = source["articles"][0]
    assert (budget["source"], budget["date"]) == ("Le Matin", "2024-05-03")
    assert budget["paragraphs"][0].startswith("Le Trésor a annoncé jeudi")
    assert len(budget["paragraphs"]) == 10
    assert not any("Cliquez" in p for p in budget["paragraphs"])
    assert count_articles() == 0
    assert db.session.scalar(select(func.count(Source.id))) == 0


def test_cli_default_dry_run_reads_the_seed(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["ingest", "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    (source,) = json.loads(result.output)["sources"]
    assert len(source["headlines"]) == 48
    (article,) = source["articles"]
    assert (article["title"], article["source"], article["date"]) == (
        SEED_ARTICLE,
        "L'opinion",
        "2024-04-29",
    )


def test_cli_ingest_reports_and_exits_non_zero_on_failure(app: Flask, tmp_path: Path) -> None:
    runner = app.test_cli_runner()
    result = runner.invoke(args=["ingest", str(SEED_FILE)])
    assert result.exit_code == 0, result.output
    assert "49 new" in result.output
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    result = runner.invoke(args=["ingest", str(empty), str(tmp_path / "nope.txt")])
    assert result.exit_code != 0
    assert "empty file" in result.output and "no such file" in result.output
    assert "Traceback" not in result.output
    assert count_articles() == 49
    result = runner.invoke(args=["ingest", "--bogus"])
    assert result.exit_code == 2 and "No such option" in result.output


def test_a_configured_directory_reports_its_files(app: Flask, tmp_path: Path) -> None:
    folder = tmp_path / "dumps"
    folder.mkdir()
    shutil.copy(DATA / "two_articles.txt", folder / "a.txt")
    (folder / "b.txt").write_bytes(b"")
    runner = app.test_cli_runner()
    assert runner.invoke(args=["sources", "add", str(folder)]).exit_code == 0
    result = runner.invoke(args=["ingest"])
    assert result.exit_code == 1 and "empty file" in result.output
    assert count_articles() == 6
    db.session.expire_all()
    configured = db.session.scalars(select(Source).where(Source.enabled)).one()
    assert configured.location == str(folder.resolve())
    assert configured.status == "error" and "b.txt: empty file" in (configured.last_error or "")
    (folder / "b.txt").write_text("Un titre de plus\n", encoding="utf-8")
    assert runner.invoke(args=["ingest"]).exit_code == 0
    db.session.expire_all()
    configured = db.session.scalars(select(Source).where(Source.enabled)).one()
    assert (configured.status, configured.last_error) == ("ok", None)
    assert count_articles() == 7


def test_a_file_over_the_size_cap_fails_alone(app: Flask, tmp_path: Path) -> None:
    app.config["INGEST_MAX_BYTES"] = 4096
    small = tmp_path / "small.txt"
    small.write_text("Un titre   Un autre titre\n", encoding="utf-8")
    report = ingest_locations(db.session, [str(SEED_FILE), str(small)], NOW)
    big, ok = report.sources
    assert big.status == "error" and "too large: 12658 bytes (limit 4096)" in (big.error or "")
    assert ok.status == "ok" and count_articles() == 2
