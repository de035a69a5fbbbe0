"""Sources (admins only): where news comes from, whether it worked, and switching them."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from digest.extensions import db
from digest.models import Source
from digest.web.admin.blueprint import (
    ADMIN_ONLY_NAV,
    admin_required,
    audit_action,
    bp,
)

ADMIN_ONLY_NAV.insert(0, ("admin.sources", "Sources"))
KINDS = ("feed", "page")


@bp.route("/sources", endpoint="sources")
@admin_required
def sources_page() -> ResponseReturnValue:
    """Every source with its last fetch, and the form to add a feed or page."""
    sources = db.session.scalars(select(Source).order_by(Source.enabled.desc(), Source.id)).all()
    return render_template("web/admin/sources.html", sources=sources, kinds=KINDS)


@bp.route("/sources/add", methods=["POST"])
@admin_required
def add_source() -> ResponseReturnValue:
    """Add an http(s) feed or article page; files on the server are for the command line."""
    location = request.form.get("location", "").strip()
    kind = request.form.get("kind", "feed")
    parts = urlsplit(location)
    if kind not in KINDS:
        flash(f"Unknown kind {kind!r}.", "error")
    elif parts.scheme not in ("http", "https") or not parts.netloc or len(location) > 2000:
        flash("Give the full http:// or https:// address of the feed or page.", "error")
    elif db.session.scalar(select(Source.id).where(Source.location == location)):
        flash("That source is already listed.", "error")
    else:
        name = request.form.get("name", "").strip()[:200] or parts.netloc
        db.session.add(Source(kind=kind, location=location, name=name, enabled=True))
        audit_action("source.add", target=location)
        db.session.commit()
        flash(f"{name} will be read at the next ingest.", "info")
    return redirect(url_for("admin.sources")), 303


@bp.route("/sources/<int:source_id>/toggle", methods=["POST"])
@admin_required
def toggle_source(source_id: int) -> ResponseReturnValue:
    """Switch a source on or off for the daily ingest."""
    source = db.session.get(Source, source_id)
    if source is None:
        abort(404)
    source.enabled = not source.enabled
    audit_action("source.enable" if source.enabled else "source.disable", target=source.location)
    db.session.commit()
    return redirect(url_for("admin.sources")), 303
