"""The editor's desk under /admin: every view requires a logged-in editor."""

from __future__ import annotations

from digest.web.admin import (
    auth,
    editions,
    numbers,
    people,
    settings,
    sources,
    subscribers,
    today,
)
from digest.web.admin.blueprint import bp

# The view modules register their routes on ``bp`` when imported.
__all__ = [
    "auth",
    "bp",
    "editions",
    "numbers",
    "people",
    "settings",
    "sources",
    "subscribers",
    "today",
]
