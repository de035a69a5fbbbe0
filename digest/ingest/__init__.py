"""Ingest: read sources (seed dumps, feeds, article pages), normalize, deduplicate, store."""

from __future__ import annotations

from digest.ingest.service import (
    IngestReport,
    ReadError,
    SourceReport,
    ingest_locations,
    plan_locations,
    preview_locations,
)

__all__ = [
    "IngestReport",
    "ReadError",
    "SourceReport",
    "ingest_locations",
    "plan_locations",
    "preview_locations",
]
