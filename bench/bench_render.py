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

from digest.compose import compose_edition
from digest.extensions import db
from digest.mail.message import build_message
from digest.models import CATEGORIES, Edition
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
    from tests.email_data import add_many

    add_many(db.session, 200)
    return compose_edition(db.session, DAY, NOW)


def run() -> list[str]:
    """Messages per second, both ways, for one variant of a 200-headline edition."""
    from tests.conftest import make_test_app

    with tempfile.TemporaryDirectory() as tmp:
        app = make_test_app(f"sqlite:///{Path(tmp) / 'bench.db'}", Path(tmp))
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
