"""Heartbeats, structured logs, request ids and metrics: what an operator sees."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from digest.extensions import db
from digest.models import Delivery, Edition, Heartbeat, Source, Subscriber
from digest.observability import (
    beat,
    collect_status,
    configure_logging,
    last_beat,
    log_context,
)
from tests.conftest import make_test_app

MORNING = dt.datetime(2026, 3, 2, 7, 0, tzinfo=dt.UTC)


def test_a_beat_is_remembered_and_later_beats_move_it_forward(app: Flask) -> None:
    assert last_beat(db.session, "scheduler") is None
    beat(db.session, "scheduler", MORNING)
    beat(db.session, "scheduler", MORNING + dt.timedelta(minutes=1))
    db.session.expire_all()
    assert last_beat(db.session, "scheduler") == MORNING + dt.timedelta(minutes=1)
    assert db.session.scalar(select(func.count()).select_from(Heartbeat)) == 1


def test_beats_are_kept_per_process_name_and_stored_in_utc(app: Flask) -> None:
    casablanca = dt.timezone(dt.timedelta(hours=1))
    beat(db.session, "scheduler", MORNING)
    beat(db.session, "worker-a", dt.datetime(2026, 3, 2, 9, 30, tzinfo=casablanca))
    assert last_beat(db.session, "worker-a") == dt.datetime(2026, 3, 2, 8, 30, tzinfo=dt.UTC)
    assert last_beat(db.session, "scheduler") == MORNING


def test_a_beat_without_a_timezone_is_refused(app: Flask) -> None:
    with pytest.raises(ValueError, match="aware"):
        beat(db.session, "scheduler", dt.datetime(2026, 3, 2, 7, 0))
    assert last_beat(db.session, "scheduler") is None


# --- request ids and logs ------------------------------------------------------------


@pytest.fixture
def log_stream(app: Flask) -> Iterator[io.StringIO]:
    """Everything logged while the test runs, formatted as the app is configured."""
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = configure_logging(app, stream)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def test_every_response_carries_a_fresh_request_id(client: FlaskClient) -> None:
    first = client.get("/healthz").headers["X-Request-ID"]
    second = client.get("/healthz").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", first)
    assert first != second


def test_a_proxy_request_id_is_kept(client: FlaskClient) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": "lb-7f3a.42"})
    assert response.headers["X-Request-ID"] == "lb-7f3a.42"


@pytest.mark.parametrize(
    "hostile",
    ["a" * 65, "abc def", "x\u00e9", "<script>", "id\\u000aINFO forged line", ""],
)
def test_a_hostile_request_id_is_replaced(client: FlaskClient, hostile: str) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": hostile})
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])


def test_json_logs_name_the_request(
    app: Flask, client: FlaskClient, log_stream: io.StringIO
) -> None:
    app.config["LOG_FORMAT"] = "json"
    configure_logging(app, log_stream)
    response = client.get("/nowhere?q=1", headers={"X-Request-ID": "req-123"})
    lines = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    access = [line for line in lines if line["message"].startswith("GET /nowhere 404 ")]
    assert len(access) == 1
    assert access[0]["request_id"] == "req-123" == response.headers["X-Request-ID"]
    assert access[0]["level"] == "INFO"
    assert access[0]["time"].endswith("Z")


def test_probes_and_scrapes_stay_out_of_the_info_log(
    client: FlaskClient, log_stream: io.StringIO
) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        client.get(path)
    client.get("/nowhere")
    assert log_stream.getvalue().count(" GET ") == 1
    assert "GET /nowhere 404" in log_stream.getvalue()


def test_json_logs_keep_edition_ids_and_tracebacks_on_one_line(
    app: Flask, log_stream: io.StringIO
) -> None:
    app.config["LOG_FORMAT"] = "json"
    configure_logging(app, log_stream)
    logger = logging.getLogger("digest.jobs")
    with log_context(edition_id=41):
        try:
            raise RuntimeError("smtp went away\nsecond line")
        except RuntimeError:
            logger.exception("sending edition failed")
    logger.info("outside")
    lines = log_stream.getvalue().splitlines()
    assert len(lines) == 2
    failed, outside = (json.loads(line) for line in lines)
    assert failed["edition_id"] == 41
    assert failed["request_id"] is None
    assert "RuntimeError: smtp went away" in failed["exception"]
    assert "edition_id" not in outside


def test_text_logs_are_readable_lines_with_their_context(
    app: Flask, log_stream: io.StringIO
) -> None:
    with log_context(edition_id=7):
        logging.getLogger("digest.mail").warning("queue is %d deep", 12, extra={"worker": "w1"})
    line = log_stream.getvalue().strip()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z WARNING digest\.mail "
        r"\[edition_id=7 worker=w1\] queue is 12 deep",
        line,
    ), line


def test_log_level_setting_hides_chatter(app: Flask, log_stream: io.StringIO) -> None:
    app.config["LOG_LEVEL"] = "warning"
    configure_logging(app, log_stream)
    logging.getLogger("digest.ingest").info("fetched 3 feeds")
    logging.getLogger("digest.ingest").error("feed down")
    assert "fetched" not in log_stream.getvalue()
    assert "feed down" in log_stream.getvalue()


# --- metrics -------------------------------------------------------------------------


def _metric(text: str, metric: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == metric and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


def _newsroom(now: dt.datetime) -> Edition:
    """An edition half sent: replies 250 and 550, one queued, a failing source, a beat."""
    edition = Edition(day=now.date(), status="sending")
    db.session.add(edition)
    people = [
        Subscriber(email=f"reader{i}@example.org", status="active", confirmed_at=now)
        for i in range(4)
    ]
    people.append(Subscriber(email="pending@example.org", status="pending"))
    db.session.add_all(people)
    db.session.add_all(
        [
            Delivery(
                edition=edition,
                subscriber=people[0],
                state="sent",
                last_reply="250 2.0.0 Ok: queued",
                sent_at=now - dt.timedelta(minutes=1),
            ),
            Delivery(
                edition=edition,
                subscriber=people[1],
                state="sent",
                last_reply="250 ok",
                sent_at=now - dt.timedelta(hours=2),
            ),
            Delivery(
                edition=edition,
                subscriber=people[2],
                state="failed",
                attempts=3,
                last_reply="550 5.1.1 no such user",
                last_error="550 5.1.1 no such user",
            ),
            Delivery(edition=edition, subscriber=people[3], state="queued"),
            Delivery(kind="confirm", subscriber=people[4], state="queued", last_reply="garbage"),
        ]
    )
    db.session.add_all(
        [
            Source(kind="feed", location="https://a.example/rss", name="A", status="ok"),
            Source(
                kind="feed",
                location="https://b.example/rss",
                name="B",
                status="error",
                last_error="HTTP 503",
            ),
        ]
    )
    db.session.commit()
    beat(db.session, "scheduler", now - dt.timedelta(seconds=20))
    return edition


def test_status_report_counts_what_an_operator_asks_about(app: Flask) -> None:
    edition = _newsroom(MORNING)
    report = collect_status(db.session, MORNING)
    assert report.deliveries == {
        ("digest", "sent"): 2,
        ("digest", "failed"): 1,
        ("digest", "queued"): 1,
        ("confirm", "queued"): 1,
    }
    assert report.queue_depth == 2
    assert report.replies_by_code == {"250": 2, "550": 1, "none": 1}
    # One message in the last five minutes: 0.2 per minute.
    assert report.sent_in_window == 1
    assert report.send_rate_per_minute == pytest.approx(0.2)
    assert report.signups == 5
    assert report.confirmations == 4
    assert report.subscribers_by_status == {"active": 4, "pending": 1}
    assert report.recent_editions[0].id == edition.id
    assert report.recent_editions[0].deliveries == {"sent": 2, "failed": 1, "queued": 1}
    assert [s.name for s in report.sources if s.status == "error"] == ["B"]
    assert report.heartbeat_age("scheduler") == dt.timedelta(seconds=20)
    assert [f.last_error for f in report.recent_failures] == ["550 5.1.1 no such user"]


def test_retries_waiting_for_later_are_queued_but_not_due(app: Flask) -> None:
    edition = _newsroom(MORNING)
    later = db.session.scalar(select(Delivery).where(Delivery.state == "queued"))
    assert later is not None
    later.next_attempt_at = MORNING + dt.timedelta(minutes=10)
    db.session.commit()
    report = collect_status(db.session, MORNING)
    assert report.queue_depth == 2
    assert report.due_now == 1
    assert edition.id is not None


def test_metrics_endpoint_speaks_prometheus(app: Flask, client: FlaskClient) -> None:
    _newsroom(dt.datetime.now(dt.UTC))
    client.get("/healthz")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=")
    text = response.get_data(as_text=True)
    assert _metric(text, "digest_deliveries", kind="digest", state="sent") == 2
    assert _metric(text, "digest_deliveries", kind="confirm", state="queued") == 1
    assert _metric(text, "digest_delivery_queue_depth") == 2
    assert _metric(text, "digest_smtp_replies", code="550") == 1
    assert _metric(text, "digest_deliveries_sent_total") == 2
    assert _metric(text, "digest_send_rate_per_minute") == pytest.approx(0.2)
    assert _metric(text, "digest_signups_total") == 5
    assert _metric(text, "digest_confirmations_total") == 4
    assert _metric(text, "digest_ingest_source_error", source="B", kind="feed") == 1
    assert _metric(text, "digest_ingest_source_error", source="A", kind="feed") == 0
    assert _metric(text, "digest_editions", status="sending") == 1
    age = _metric(text, "digest_heartbeat_age_seconds", name="scheduler")
    assert age is not None and age >= 20
    healthz_count = _metric(
        text, "digest_http_request_duration_seconds_count", route="/healthz", status="200"
    )
    assert healthz_count is not None and healthz_count >= 1


def test_latency_is_labelled_by_route_not_by_path(app: Flask, client: FlaskClient) -> None:
    for path in ("/no/such/page/1", "/no/such/page/2"):
        assert client.get(path).status_code == 404
    text = client.get("/metrics").get_data(as_text=True)
    assert "/no/such/page" not in text
    assert _metric(text, "digest_http_request_duration_seconds_count", route="unmatched")


def test_metrics_token_keeps_strangers_out(app: Flask, client: FlaskClient) -> None:
    app.config["METRICS_TOKEN"] = "s3cret-metrics-token"
    assert client.get("/metrics").status_code == 401
    wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    right = client.get("/metrics", headers={"Authorization": "Bearer s3cret-metrics-token"})
    assert right.status_code == 200
    assert b"digest_deliveries" in right.data


def test_metrics_can_be_switched_off(database_url: str, tmp_path: Path) -> None:
    app = make_test_app(database_url, tmp_path, METRICS_ENABLED=False)
    assert app.test_client().get("/metrics").status_code == 404
