"""The editor's desk under /admin: every view requires a logged-in editor."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("admin", __name__)
