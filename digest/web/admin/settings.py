"""Settings (admins only): what admins change at run time over config.py's defaults."""

from __future__ import annotations

from typing import Any

from flask import current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from digest import audit, settings
from digest.extensions import db
from digest.web.admin.blueprint import (
    ADMIN_ONLY_NAV,
    admin_required,
    bp,
    client_ip,
    current_editor,
    now,
)

ADMIN_ONLY_NAV.append(("admin.settings", "Settings"))


def _page(values: dict[str, str], errors: dict[str, str], status: int = 200) -> Any:
    base = current_app.config
    return (
        render_template(
            "web/admin/settings.html",
            specs=settings.SPECS,
            values=values,
            errors=errors,
            overridden=set(settings.overrides(db.session)),
            defaults={spec.key: spec.describe(base.get(spec.key)) for spec in settings.SPECS},
            history=audit.recent_events(db.session, action="settings.change", limit=10),
        ),
        status,
    )


@bp.route("/settings", methods=["GET", "POST"], endpoint="settings")
@admin_required
def settings_page() -> ResponseReturnValue:
    """Show the settings in force; a post saves them all or, if any is unusable, none."""
    base = current_app.config
    if request.method == "GET":
        return _page(settings.form_values(settings.effective_config(db.session, base)), {})
    values, errors = settings.read_form(request.form, base)
    if errors:
        typed = {name: str(value)[:400] for name, value in request.form.items()}
        typed.setdefault("approval_required", "")
        flash("Nothing was saved: correct the fields marked below.", "error")
        return _page(typed, errors, 400)
    changes = settings.save(db.session, values, base, current_editor(), now(), client_ip())
    db.session.commit()
    if changes:
        flash("Saved: " + ", ".join(settings.BY_KEY[c.key].title for c in changes) + ".", "info")
    else:
        flash("Nothing changed.", "info")
    return redirect(url_for("admin.settings")), 303
