"""Security headers on every response of the app: pages, errors, feeds, probes, static files.

A blueprint that needs another policy (the editors' desk frames its own previews and styles
charts inline) sets its header first; the app-wide defaults only fill what is missing.
"""

from __future__ import annotations

from flask import Flask, Response

# No inline scripts anywhere; pages reached through a signed link must not leak it to other
# sites (no Referrer) nor be framed by them (clickjacking a one-button page).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _add_security_headers(response: Response) -> Response:
    # One look at the headers already set, then appends: Headers.setdefault would scan them
    # (and raise and catch a KeyError) once per default, on every response of the site.
    present = set(response.headers.keys(lower=True))
    for name, value in SECURITY_HEADERS.items():
        if name.lower() not in present:
            response.headers.add(name, value)
    return response


def init_app(app: Flask) -> None:
    """Add the security headers to every response ``app`` sends (404s and 500s included)."""
    app.after_request(_add_security_headers)
