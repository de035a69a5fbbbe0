"""Digest assembly per subscriber: render once per variant, then fill slots, vs rendering each time.

The architecture promises that Jinja + premailer run once per (language, categories) variant
and only the personal parts are filled per subscriber. This measures both ways on the same
200-headline day, so the ratio shows what that promise buys.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from digest import create_app
from digest.compose import compose_edition
from digest.extensions import db
from digest.mail.message import build_message
from digest.models import CATEGORIES, Article, Edition
from digest.render import render_variant, sample_personal

DAY = dt.date(2026, 11, 28)
NOW = dt.datetime(2026, 11, 28, 6, 0, tzinfo=dt.UTC)
SUBSCRIBERS = 40


def _per_second(work: Callable[[], object], seconds: float = 2.0) -> float:
    work()  # warm-up: templates compiled, catalogues loaded
    done = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        work()
        done += 1
    return done / (time.perf_counter() - start)


def _edition() -> Edition:
    """A heavy day: one full article and 200 long headlines, two per story, in every section."""
    categories = ("politics", "economy", "sport", "health", "other")
    db.session.add(
        Article(
            fingerprint="bench-lead",
            title="IA au Maroc : Une révolution imminente dans le secteur de la Santé",
            title_key="ia au maroc",
            source_name="L'opinion",
            category="health",
            blocks=[{"type": "paragraph", "text": "Dans un contexte où les besoins " * 8}],
            first_seen_at=NOW,
            last_seen_at=NOW,
        )
    )
    for i in range(200):
        title = (
            f"Titre {i} : une longue manchette sur l'actualité du jour au Maroc, en Afrique "
            f"et dans le monde, avec assez de mots pour remplir deux lignes"
        )
        db.session.add(
            Article(
                fingerprint=f"bench-{i}",
                title=title,
                title_key=title.lower(),
                url=f"https://news.example.ma/{i}",
                source_name="Le Matin",
                category=categories[i % len(categories)],
                story_key=f"story-{i // 2}",
                first_seen_at=NOW,
                last_seen_at=NOW,
            )
        )
    db.session.commit()
    return compose_edition(db.session, DAY, NOW)


def run() -> list[str]:
    """Messages per second, both ways, for one variant of a 200-headline edition."""
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(
            {
                "ENV_NAME": "testing",
                "INSTANCE_PATH": tmp,
                "DATABASE_URL": f"sqlite:///{Path(tmp) / 'bench.db'}",
                "SECRET_KEY": "bench",
                "MAIL_FROM": "Le Digest <digest@digest.test>",
                "MAIL_DOMAIN": "digest.test",
            }
        )
        with app.app_context():
            db.create_all()
            edition = _edition()
            personal = sample_personal(edition, "fr")
            rendered = render_variant(edition, "fr", CATEGORIES)

            def naive() -> object:
                again = render_variant(edition, "fr", CATEGORIES)
                return build_message(again, "r@example.org", personal, app.config, now=NOW)

            def once() -> object:
                return build_message(rendered, "r@example.org", personal, app.config, now=NOW)

            base = _per_second(naive)
            ours = _per_second(once)
            size = len(rendered.html.encode("utf-8"))
            variant_ms = 1000 / base
            db.session.remove()
            db.engine.dispose()
    per_run_naive = SUBSCRIBERS / base
    per_run_ours = variant_ms / 1000 + SUBSCRIBERS / ours
    return [
        f"200-headline edition, French, all sections: HTML part {size:,} bytes (limit 102 KB)",
        f"baseline render+build per subscriber: {base:,.1f} messages/s",
        f"render once, fill slots per subscriber: {ours:,.1f} messages/s",
        f"ratio once/baseline: {ours / base:.1f}x",
        f"{SUBSCRIBERS} subscribers in one variant: {per_run_naive:.2f}s vs {per_run_ours:.2f}s",
    ]
