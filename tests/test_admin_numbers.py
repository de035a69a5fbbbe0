"""The numbers editors look at, drawn on the server as SVG."""

from __future__ import annotations

import datetime as dt

from flask import Flask

from digest import numbers
from digest.extensions import db
from digest.models import Delivery, DeliveryState, Edition, Subscriber, SubscriberStatus
from digest.web.admin.charts import bar_chart, line_chart, stacked_columns
from tests.admin_fixtures import DAY, NOON, logged_in_client

SENT_AT = NOON + dt.timedelta(hours=1)


def _reader(
    email: str,
    status: str = SubscriberStatus.ACTIVE,
    categories: list[str] | None = None,
    **fields: object,
) -> Subscriber:
    row = Subscriber(
        email=email,
        status=status,
        language="fr",
        categories=categories or ["politics"],
        confirmed_at=NOON - dt.timedelta(days=3),
        **fields,
    )
    db.session.add(row)
    db.session.flush()
    return row


def _setup() -> tuple[Edition, Edition]:
    first = Edition(day=DAY, status="sent", snapshot={}, sent_at=SENT_AT)
    second = Edition(
        day=DAY + dt.timedelta(days=1),
        status="sent",
        snapshot={},
        sent_at=SENT_AT + dt.timedelta(days=1),
    )
    db.session.add_all([first, second])
    db.session.flush()
    stays = _reader("stays@example.org", categories=["politics", "sport"])
    leaves = _reader(
        "leaves@example.org",
        status=SubscriberStatus.UNSUBSCRIBED,
        unsubscribed_at=SENT_AT + dt.timedelta(hours=3),
    )
    late = _reader(
        "late@example.org",
        status=SubscriberStatus.UNSUBSCRIBED,
        unsubscribed_at=SENT_AT + dt.timedelta(days=2),
    )
    bounce = _reader("bounce@example.org", status=SubscriberStatus.BOUNCED)
    slow = _reader("slow@example.org", categories=["sport", "health"])
    rows = [
        (first, stays, DeliveryState.SENT, None, None),
        (first, leaves, DeliveryState.SENT, None, None),
        (first, late, DeliveryState.SENT, None, None),
        (
            first,
            bounce,
            DeliveryState.BOUNCED,
            "rejected by the receiving server",
            "550 5.1.1 <bounce@example.org>: no such user",
        ),
        (first, slow, DeliveryState.FAILED, "temporary failure", "451 try later"),
        (second, stays, DeliveryState.SENT, None, None),
        (second, late, DeliveryState.SENT, None, None),
    ]
    for edition, reader, state, error, reply in rows:
        db.session.add(
            Delivery(
                kind="digest",
                edition_id=edition.id,
                subscriber_id=reader.id,
                state=state,
                last_error=error,
                last_reply=reply,
                sent_at=edition.sent_at if state == DeliveryState.SENT else None,
            )
        )
    db.session.commit()
    return first, second


def test_per_edition_numbers_count_outcomes_reasons_and_departures(app: Flask) -> None:
    first, second = _setup()
    by_day = {n.edition.day: n for n in numbers.edition_numbers(db.session)}
    one, two = by_day[first.day], by_day[second.day]
    assert (one.recipients, one.delivered, one.failed, one.bounced) == (5, 3, 1, 1)
    # "leaves" left before the next edition; "late" left after it, so counts for the second.
    assert one.unsubscribed_after == 1
    assert two.unsubscribed_after == 1
    reasons = dict(one.reasons)
    assert reasons["temporary failure — 451 try later"] == 1
    assert any("550 5.1.1" in reason for reason in reasons)


def test_audience_statuses_and_category_popularity(app: Flask) -> None:
    _setup()
    assert dict(numbers.status_counts(db.session)) == {
        "pending": 0,
        "active": 2,
        "paused": 0,
        "unsubscribed": 2,
        "bounced": 1,
    }
    popularity = dict(numbers.category_popularity(db.session))
    assert popularity == {"politics": 1, "economy": 0, "sport": 2, "health": 1, "other": 0}
    audience = dict(numbers.audience_over_time(db.session, DAY + dt.timedelta(days=2), days=4))
    assert audience[DAY - dt.timedelta(days=1)] == 4
    assert audience[DAY] == 3
    assert audience[DAY + dt.timedelta(days=2)] == 2


def test_numbers_page_draws_charts_inline_without_scripts(app: Flask) -> None:
    client = logged_in_client(app)
    _setup()
    html = client.get("/admin/numbers").get_data(as_text=True)
    assert html.count("<svg") == 4
    assert "<script" not in html.split("<main", 1)[1]
    assert "451 try later" in html
    assert 'href="/admin/editions/2024-04-29"' in html
    assert ">Numbers</a>" in html


def test_charts_escape_their_labels_and_survive_empty_data() -> None:
    svg = bar_chart("<b>", [("<script>", 3), ("b", 0)])
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert "<svg" in line_chart("empty", []) and "<svg" in stacked_columns("none", [], ())
    assert 'width="0.0"' in bar_chart("zeros", [("a", 0)])
