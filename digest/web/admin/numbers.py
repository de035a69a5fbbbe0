"""The numbers page: per edition outcomes and the audience over time, as server-drawn charts."""

from __future__ import annotations

from flask import current_app, render_template
from flask.typing import ResponseReturnValue

from digest import numbers
from digest.extensions import db
from digest.models import CATEGORIES
from digest.web.admin.blueprint import bp, local_today
from digest.web.admin.charts import bar_chart, line_chart, stacked_columns


@bp.route("/numbers", endpoint="numbers")
def numbers_page() -> ResponseReturnValue:
    """Recipients, delivered, failed (with reasons), bounced and departures per edition."""
    editions = numbers.edition_numbers(db.session, limit=14)
    statuses = numbers.status_counts(db.session)
    order = list(current_app.config.get("CATEGORY_ORDER", CATEGORIES))
    popularity = numbers.category_popularity(db.session, order)
    audience = numbers.audience_over_time(db.session, local_today(), days=30)
    charts = {
        "editions": stacked_columns(
            "Messages per edition",
            [
                (n.edition.day.strftime("%d/%m"), (n.delivered, n.failed, n.bounced))
                for n in reversed(editions)
            ],
            ("delivered", "failed", "bounced"),
        ),
        "statuses": bar_chart("Subscribers by status", statuses),
        "categories": bar_chart("Active subscribers per category", popularity),
        "audience": line_chart(
            "Confirmed readers over the last 30 days",
            [(day.strftime("%d/%m"), count) for day, count in audience],
        ),
    }
    return render_template(
        "web/admin/numbers.html",
        editions=editions,
        statuses=statuses,
        popularity=popularity,
        audience=audience,
        charts=charts,
    )
