"""Articles shaped like the seed's day, written for the compose/render/message tests."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from digest.models import Article

DAY = dt.date(2026, 11, 28)
# 06:00 UTC is 07:00 in Casablanca: the morning the digest goes out.
NOW = dt.datetime(2026, 11, 28, 6, 0, tzinfo=dt.UTC)
LEAD_TITLE = "IA au Maroc : Une révolution imminente dans le secteur de la Santé"
QUOTE = "Il est nécessaire d'encadrer par des lois l'intégration de l'IA dans les soins de santé"
OPENING = (
    "Dans un contexte où les besoins en matière de santé ne font qu'augmenter, les outils IA "
    "peuvent s'avérer d'une aide considérable pour le diagnostic ou l'orientation thérapeutique."
)

HEADLINES: list[tuple[str, str, str | None]] = [
    # (title, category, story key)
    ("Le conseil communal de Casablanca adopte le budget 2026", "politics", None),
    ("Nasser Bourita et Jean-Noël Barrot font le point sur le partenariat", "politics", None),
    ("PLF 2026. Cap sur l'Etat social et l'accélération des réformes", "economy", "plf"),
    ("PLF 2026 : Un tournant fiscal décisif", "economy", "plf"),
    ("Inflation au Maroc : +0,4% sur l'IPC en septembre (HCP)", "economy", None),
    ("Mercato : Hakim Ziyech rejoint le Wydad Casablanca", "sport", None),
    ("Gessime Yassine, la révélation marocaine qui affole la Ligue 1", "sport", None),
    ("« L'IA peut transformer chaque donnée en vie sauvée »", "health", None),
    ("La Nuit de l'Horreur : une expérience cinématographique immersive", "other", None),
]


def lead_article(seen: dt.datetime = NOW) -> Article:
    """The seed's full article, as ingest stores it."""
    return Article(
        fingerprint="lead-ia-sante",
        title=LEAD_TITLE,
        title_key=LEAD_TITLE.lower(),
        url="https://www.lopinion.ma/IA-au-Maroc_a51234.html",
        source_name="L'opinion",
        published_at=dt.datetime(2024, 4, 29, 9, 0, tzinfo=dt.UTC),
        language="fr",
        category="health",
        blocks=[
            {"type": "paragraph", "text": OPENING},
            {
                "type": "paragraph",
                "text": "L'apport de l'Intelligence Artificielle ne doit rien au hasard.",
            },
            {"type": "heading", "text": "Moins de temps, moins de coûts"},
            {"type": "heading", "text": "Trois questions au Pr Amal Bourquia"},
            {"type": "quote", "text": f"« {QUOTE} »"},
            {"type": "question", "text": "Où en est le Maroc dans le déploiement de l'IA ?"},
        ],
        first_seen_at=seen,
        last_seen_at=seen,
    )


def headline(
    index: int,
    title: str,
    category: str | None,
    story: str | None = None,
    seen: dt.datetime = NOW,
    url: str | None = "auto",
) -> Article:
    """One headline of the ticker (no body)."""
    return Article(
        fingerprint=f"headline-{index}-{seen.date().isoformat()}",
        title=title,
        title_key=title.lower(),
        url=f"https://news.example.ma/{index}" if url == "auto" else url,
        source_name="Le Matin",
        language="fr",
        category=category,
        story_key=story,
        first_seen_at=seen,
        last_seen_at=seen,
    )


def add_day(session: Session, seen: dt.datetime = NOW) -> list[Article]:
    """Store the lead and the headlines above, all first seen at ``seen``."""
    articles = [lead_article(seen)] + [
        headline(i, title, category, story, seen)
        for i, (title, category, story) in enumerate(HEADLINES)
    ]
    session.add_all(articles)
    session.commit()
    return articles


def add_many(session: Session, count: int, seen: dt.datetime = NOW) -> None:
    """A heavy news day: ``count`` long headlines spread over every category."""
    categories = ("politics", "economy", "sport", "health", "other")
    session.add(lead_article(seen))
    session.add_all(
        headline(
            1000 + i,
            f"Titre {i} : une longue manchette sur l'actualité du jour au Maroc, en Afrique "
            f"et dans le monde, avec assez de mots pour remplir deux lignes ({i})",
            categories[i % len(categories)],
            f"story-{i // 2}",
            seen,
        )
        for i in range(count)
    )
    session.commit()
