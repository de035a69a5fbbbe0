"""Ingest throughput for a 10,000-item feed on SQLite and PostgreSQL, against feedparser alone.

feedparser parsing the same file is the ceiling: ingest parses with it, then cleans,
detects languages, deduplicates and stores. The ratio says what the rest costs.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import time
from pathlib import Path

import feedparser

ITEMS = 10_000
NOW = dt.datetime(2026, 11, 28, 6, 0, tzinfo=dt.UTC)
_WORDS = [
    "Maroc",
    "budget",
    "réforme",
    "santé",
    "football",
    "économie",
    "Rabat",
    "élection",
    "port",
    "récolte",
    "banque",
    "école",
    "Casablanca",
    "gouvernement",
    "ministre",
    "hôpital",
    "stade",
    "inflation",
    "tourisme",
    "énergie",
]


def make_feed(count: int) -> bytes:
    """An RSS 2.0 feed of ``count`` distinct, realistic-looking items."""
    parts = [
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        "<title>Fil massif</title><link>https://fil.example/</link><description>d</description>"
    ]
    start = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    for number in range(count):
        words = " ".join(_WORDS[(number * 7 + k) % len(_WORDS)] for k in range(8))
        when = (start - dt.timedelta(minutes=number)).strftime("%a, %d %b %Y %H:%M:%S +0000")
        parts.append(
            f"<item><title>Dépêche {number} : {words}</title>"
            f"<link>https://fil.example/d/{number}</link><guid>fil-{number}</guid>"
            f"<pubDate>{when}</pubDate><description><![CDATA[<p>Résumé&nbsp;{number} : "
            f"{words}.</p>]]></description></item>"
        )
    parts.append("</channel></rss>")
    return "\n".join(parts).encode("utf-8")


def _ingest_seconds(database_url: str, feed: Path, instance: Path) -> tuple[float, int, float]:
    from digest import create_app
    from digest.extensions import db
    from digest.ingest import ingest_locations

    app = create_app(
        {
            "ENV_NAME": "testing",
            "INSTANCE_PATH": str(instance),
            "DATABASE_URL": database_url,
            "SECRET_KEY": "bench",
        }
    )
    with app.app_context():
        db.drop_all()
        db.create_all()
        try:
            start = time.perf_counter()
            report = ingest_locations(db.session(), [str(feed)], NOW)
            seconds = time.perf_counter() - start
            if not report.ok:
                raise RuntimeError(f"ingest failed: {report.failed[0].error}")
            start = time.perf_counter()
            again = ingest_locations(db.session(), [str(feed)], NOW)
            repeat = time.perf_counter() - start
            if again.added:
                raise RuntimeError("a second ingest of the same feed added articles")
            return seconds, report.added, repeat
        finally:
            db.session.remove()
            db.drop_all()
            db.engine.dispose()


def run() -> list[str]:
    """Measure feedparser alone, then a full ingest on each available database."""
    from digest.understand.language import detect_language

    detect_language("warm the language models up")
    with tempfile.TemporaryDirectory() as folder:
        feed = Path(folder) / "big.xml"
        feed.write_bytes(make_feed(ITEMS))
        start = time.perf_counter()
        parsed = feedparser.parse(feed.read_bytes())
        ceiling = time.perf_counter() - start
        assert len(parsed.entries) == ITEMS
        lines = [
            f"{ITEMS:,} items, {feed.stat().st_size / 1e6:.1f} MB of RSS 2.0",
            f"feedparser alone: {ceiling:.2f}s = {ITEMS / ceiling:,.0f} items/s (ceiling)",
        ]
        databases = {"sqlite": f"sqlite:///{Path(folder) / 'bench.db'}"}
        # BENCH_DATABASE_URL as for the other benchmarks; the older name still counts.
        postgres = (
            os.environ.get("BENCH_DATABASE_URL")
            or os.environ.get("DIGEST_BENCH_DATABASE_URL")
            or os.environ.get("DIGEST_TEST_DATABASE_URL")
        )
        if postgres:
            databases["postgresql"] = postgres
        for name, url in databases.items():
            instance = Path(folder) / f"instance-{name}"
            instance.mkdir()
            seconds, added, repeat = _ingest_seconds(url, feed, instance)
            lines.append(
                f"ingest on {name}: {seconds:.2f}s = {added / seconds:,.0f} items/s, "
                f"ratio to feedparser {ceiling / seconds:.2f} ({seconds / ceiling:.1f}x its time)"
            )
            lines.append(
                f"  same file again on {name} (all seen, none added): {repeat:.2f}s = "
                f"{ITEMS / repeat:,.0f} items/s, ratio to feedparser {ceiling / repeat:.2f}"
            )
        if not postgres:
            lines.append("postgresql: skipped (set BENCH_DATABASE_URL)")
    return lines
