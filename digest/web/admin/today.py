"""The desk page: one day's articles by category and story, doubtful ones flagged."""

from __future__ import annotations

from flask import current_app, render_template, request
from flask.typing import ResponseReturnValue

from digest import desk
from digest.extensions import db
from digest.web.admin.blueprint import bp, local_today, parse_day


@bp.route("/", endpoint="desk")
def desk_page() -> ResponseReturnValue:
    """Today's desk, or another day's with ``?date=YYYY-MM-DD``."""
    requested = request.args.get("date")
    day = parse_day(requested) if requested else local_today()
    cfg = current_app.config
    board = desk.build_desk(
        db.session,
        day,
        cfg["TIMEZONE"],
        order=cfg.get("CATEGORY_ORDER", desk.CATEGORIES),
        flag_below=float(cfg.get("CATEGORY_FLAG_BELOW", desk.DEFAULT_FLAG_BELOW)),
    )
    return render_template("web/admin/desk.html", desk=board, today=local_today())
