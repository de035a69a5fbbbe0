"""The digest's HTML part in a real browser: phone and desktop widths, light and dark."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from digest.compose import compose_edition
from digest.extensions import db
from digest.mail.message import build_message
from digest.render import render_variant, sample_personal
from tests.browser import chromium, needs_chromium
from tests.conftest import PROJECT_ROOT, make_test_app
from tests.email_data import DAY, LEAD_TITLE, NOW, add_day

ARTIFACTS = Path(os.environ.get("DIGEST_TEST_ARTIFACTS", PROJECT_ROOT / "test-artifacts"))
CHOSEN = ["politics", "economy", "sport", "health"]
LABELS = {"politics": "Politique", "economy": "Économie", "sport": "Sport", "health": "Santé"}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.no_db,
    needs_chromium,
]


@pytest.fixture(scope="module")
def digest_html(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The HTML part of a subscriber's message, as the mail client receives it."""
    tmp = tmp_path_factory.mktemp("browser")
    app: Flask = make_test_app(f"sqlite:///{tmp / 'b.db'}", tmp)
    with app.app_context():
        db.create_all()
        add_day(db.session)
        edition = compose_edition(db.session, DAY, NOW)
        rendered = render_variant(edition, "fr", CHOSEN)
        message = build_message(
            rendered, "r@example.org", sample_personal(edition, "fr"), app.config
        )
        html_part = message.get_body(("html",))
        assert html_part is not None
        path = tmp / "digest.html"
        path.write_text(html_part.get_content(), encoding="utf-8")
        db.session.remove()
        db.engine.dispose()
    yield path


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """One headless Chromium for the module."""
    with chromium() as browser:
        yield browser


@pytest.mark.parametrize("width", [375, 640])
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_fits_the_screen_and_shows_the_lead_and_every_chosen_section(
    browser: object, digest_html: Path, width: int, scheme: str
) -> None:
    page = browser.new_page(  # type: ignore[attr-defined]
        viewport={"width": width, "height": 800}, color_scheme=scheme
    )
    try:
        # Remote content blocked, as in a mail client with images off.
        page.route("http*://**", lambda route: route.abort())
        page.goto(digest_html.as_uri())
        scroll = page.evaluate("document.scrollingElement.scrollWidth")
        assert scroll <= width, f"horizontal scrolling at {width}px ({scroll}px wide)"
        lead = page.get_by_role("heading", level=1)
        assert lead.inner_text().strip() == LEAD_TITLE
        assert lead.is_visible()
        box = lead.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width
        assert page.get_by_text("« Il est nécessaire d'encadrer", exact=False).is_visible()
        assert page.get_by_role("link", name="Lire la suite →").is_visible()
        for category in CHOSEN:
            header = page.locator(f"#{category} .section-title")
            header.scroll_into_view_if_needed()
            assert header.is_visible() and header.inner_text().strip() == LABELS[category]
        assert page.locator("#other").count() == 0
        card = page.locator("table.card").first
        background = card.evaluate("e => getComputedStyle(e).backgroundColor")
        # Dark mode turns the white card dark; light mode keeps it white.
        assert (background == "rgb(255, 255, 255)") == (scheme == "light")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"digest-{width}-{scheme}.png"), full_page=True)
    finally:
        page.close()
