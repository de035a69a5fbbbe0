"""Subscriber pages: home and sign-up, confirmation, preferences, unsubscribe."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("public", __name__)
