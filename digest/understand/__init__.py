"""Understanding the news: language, category, stories and the lead article."""

from __future__ import annotations

from digest.understand.categorizer import Categorizer, Classification, classify
from digest.understand.service import (
    choose_lead,
    classify_articles,
    load_memory,
    record_correction,
)

__all__ = [
    "Categorizer",
    "Classification",
    "choose_lead",
    "classify",
    "classify_articles",
    "load_memory",
    "record_correction",
]
