"""Seeing a running digest: structured logs, request ids, Prometheus metrics, heartbeats.

Counts that matter across processes and machines (deliveries by state, queue depth, SMTP
replies, sign-ups, source errors) are read from the database when /metrics is scraped, so
every web process answers the same whatever worker or machine did the work. Only what a
web process alone knows (request latency) is kept in process, aggregated over gunicorn's
workers when ``PROMETHEUS_MULTIPROC_DIR`` is set (deploy/gunicorn.conf.py sets it).
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
import os
import re
import secrets
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from flask import Flask, Response, current_app, g, has_request_context, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite

from digest.extensions import DbSession
from digest.models import (
    Article,
    Delivery,
    DeliveryState,
    Edition,
    Heartbeat,
    Source,
    Subscriber,
)

# The scheduler beats every minute; readiness tolerates a few missed beats before failing.
SCHEDULER_HEARTBEAT = "scheduler"
# Send rate is averaged over this window: long enough to smooth SMTP bursts.
SEND_RATE_WINDOW = dt.timedelta(minutes=5)
REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_ENVIRON = "HTTP_X_REQUEST_ID"
_QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
# A caller's request id is reused only when it is short and plain, so it can't forge log lines.
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_log_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "digest_log_context", default=None
)
# Marks the handler configure_logging installs, so a second app in one process replaces it.
_HANDLER_FLAG = "_digest_handler"

REQUEST_LATENCY = Histogram(
    "digest_http_request_duration_seconds",
    "Time to answer a web request, by route pattern and status code.",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

log = logging.getLogger(__name__)


def as_utc(moment: dt.datetime) -> dt.datetime:
    """``moment`` as an aware UTC datetime (SQLite hands back naive values it stored as UTC)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


# --- heartbeats ----------------------------------------------------------------------


def beat(session: DbSession, name: str, now: dt.datetime) -> None:
    """Record that the process called ``name`` is alive at ``now``, and commit.

    A heartbeat is its own unit of work, so this commits. It is one upsert on the unique
    name: two schedulers started by mistake both beat without a duplicate-key error.
    """
    if now.tzinfo is None:
        raise ValueError("beat() needs an aware datetime (UTC)")
    moment = as_utc(now)
    dialect = session.get_bind().dialect.name
    if dialect in ("postgresql", "sqlite"):
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = insert(Heartbeat).values(name=name, beat_at=moment)
        statement = statement.on_conflict_do_update(
            index_elements=[Heartbeat.name], set_={"beat_at": moment}
        )
        session.execute(statement)
    else:
        # Other backends: read-then-write is good enough for a single scheduler.
        row = session.scalar(select(Heartbeat).where(Heartbeat.name == name))
        if row is None:
            session.add(Heartbeat(name=name, beat_at=moment))
        else:
            row.beat_at = moment
    session.commit()


def last_beat(session: DbSession, name: str) -> dt.datetime | None:
    """When ``name`` last beat (aware UTC), or None if it never did."""
    moment = session.scalar(select(Heartbeat.beat_at).where(Heartbeat.name == name))
    return as_utc(moment) if moment is not None else None


# --- logging -------------------------------------------------------------------------


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add ``fields`` (e.g. ``edition_id=3``) to every log line written inside the block."""
    merged = {**(_log_context.get() or {}), **fields}
    token = _log_context.set(merged)
    try:
        yield
    finally:
        _log_context.reset(token)


def current_request_id() -> str | None:
    """The id of the request being answered, or None outside a request."""
    if has_request_context():
        return g.get("request_id")
    return None


class QuietAlembic(logging.Filter):
    """Drops Alembic's per-connection chatter ("Context impl ...") that every /readyz causes."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep everything but Alembic's two connection-setup lines."""
        return not (
            record.name == "alembic.runtime.migration"
            and str(record.msg).startswith(("Context impl", "Will assume"))
        )


class ContextFilter(logging.Filter):
    """Stamps each record with the request id and the fields bound by ``log_context``."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Add ``request_id`` and bound fields unless the call passed them in ``extra``."""
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id()
        for key, value in (_log_context.get() or {}).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


# Attributes every LogRecord has; anything else on a record came from `extra` or the filter.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None))) | {
    "message",
    "asctime",
    "request_id",
}


def _extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {
        key: value
        for key, value in vars(record).items()
        if key not in _STANDARD_ATTRS and not key.startswith("_")
    }


class TextFormatter(logging.Formatter):
    """``2026-03-02T07:00:00.123Z INFO digest.jobs [req=… edition_id=3] message``."""

    def format(self, record: logging.LogRecord) -> str:
        """One readable line (plus the traceback, if any)."""
        stamp = dt.datetime.fromtimestamp(record.created, dt.UTC)
        tags = []
        request_id = getattr(record, "request_id", None)
        if request_id:
            tags.append(f"req={request_id}")
        tags.extend(f"{key}={value}" for key, value in sorted(_extra_fields(record).items()))
        line = (
            f"{stamp.strftime('%Y-%m-%dT%H:%M:%S.')}{stamp.microsecond // 1000:03d}Z "
            f"{record.levelname} {record.name}"
            + (f" [{' '.join(tags)}]" if tags else "")
            + f" {record.getMessage()}"
        )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a single-line JSON object; values that aren't JSON become text."""
        stamp = dt.datetime.fromtimestamp(record.created, dt.UTC)
        entry: dict[str, Any] = {
            "time": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        entry.update(_extra_fields(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(app: Flask, stream: IO[str] | None = None) -> logging.Handler:
    """Send every logger's records to ``stream`` (stderr) in the configured format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        JsonFormatter() if app.config.get("LOG_FORMAT") == "json" else TextFormatter()
    )
    handler.addFilter(ContextFilter())
    handler.addFilter(QuietAlembic())
    setattr(handler, _HANDLER_FLAG, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_FLAG, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    level = str(app.config.get("LOG_LEVEL", "INFO")).upper()
    root.setLevel(level)
    # APScheduler logs every run of the minute heartbeat at INFO; keep it for DEBUG only.
    logging.getLogger("apscheduler").setLevel(level if level == "DEBUG" else "WARNING")
    # The development server's access lines repeat ours, without the request id.
    logging.getLogger("werkzeug").setLevel("WARNING")
    # Flask's app.logger would write a second, unformatted copy of each line.
    app.logger.handlers.clear()
    app.logger.propagate = True
    return handler


# --- request ids and latency ---------------------------------------------------------


def _start_request() -> None:
    # From the WSGI environ itself: Headers.get raises and catches a KeyError when the caller
    # sent no id, which is nearly always.
    incoming = request.environ.get(_REQUEST_ID_ENVIRON, "")
    # 32 random hex digits, as uuid4().hex gave, without building a UUID object for them.
    g.request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else secrets.token_hex(16)
    g.request_started = time.perf_counter()


# The latency series seen so far, by (method, route pattern, status): labels() checks and
# converts its arguments on every call; a series, once made, is the same object each time.
_latency_series: dict[tuple[str, str, int], Any] = {}


def _finish_request(response: Response) -> Response:
    response.headers[REQUEST_ID_HEADER] = g.get("request_id", "")
    started = g.get("request_started")
    if started is not None:
        elapsed = time.perf_counter() - started
        # The route pattern, not the path: /confirm/<token> is one series, not one per token.
        rule = request.url_rule
        route = rule.rule if rule else "unmatched"
        method, status = request.method, response.status_code
        key = (method, route, status)
        series = _latency_series.get(key)
        if series is None:
            series = _latency_series[key] = REQUEST_LATENCY.labels(method, route, str(status))
        series.observe(elapsed)
        # Probes and scrapes arrive every few seconds; they'd drown the requests of people.
        level = logging.DEBUG if route in _QUIET_ROUTES else logging.INFO
        if log.isEnabledFor(level):
            log.log(level, "%s %s %s %.1fms", method, request.path, status, elapsed * 1000)
    return response


# --- the state of the newsroom, read from the database ---------------------------------


@dataclass
class EditionLine:
    """One recent edition and how its deliveries stand."""

    id: int
    day: dt.date
    status: str
    sent_at: dt.datetime | None
    updated_at: dt.datetime | None = None
    deliveries: dict[str, int] = field(default_factory=dict)


@dataclass
class SourceLine:
    """One source and how its last fetch went."""

    name: str
    kind: str
    enabled: bool
    status: str | None
    last_fetched_at: dt.datetime | None
    last_error: str | None


@dataclass
class FailedDelivery:
    """A delivery that gave up, with the reason the server gave."""

    id: int
    kind: str
    edition_id: int | None
    attempts: int
    last_error: str | None


@dataclass
class StatusReport:
    """What `digest status` prints and /metrics exposes, as of ``now``."""

    now: dt.datetime
    deliveries: dict[tuple[str, str], int]
    replies_by_code: dict[str, int]
    queue_depth: int
    due_now: int
    sent_in_window: int
    last_sent_at: dt.datetime | None
    editions_by_status: dict[str, int]
    recent_editions: list[EditionLine]
    subscribers_by_status: dict[str, int]
    signups: int
    confirmations: int
    articles: int
    sources: list[SourceLine]
    heartbeats: dict[str, dt.datetime]
    recent_failures: list[FailedDelivery]

    @property
    def send_rate_per_minute(self) -> float:
        """Messages sent per minute over the last SEND_RATE_WINDOW."""
        return self.sent_in_window / (SEND_RATE_WINDOW.total_seconds() / 60)

    def deliveries_in(self, state: str) -> int:
        """Deliveries of every kind currently in ``state``."""
        return sum(n for (_, s), n in self.deliveries.items() if s == state)

    def heartbeat_age(self, name: str) -> dt.timedelta | None:
        """How long ago ``name`` last beat, or None if it never did."""
        moment = self.heartbeats.get(name)
        return self.now - moment if moment else None


def _reply_code(prefix: str | None) -> str:
    return prefix if prefix and prefix.isdigit() and len(prefix) == 3 else "none"


def collect_status(session: DbSession, now: dt.datetime, recent: int = 5) -> StatusReport:
    """Read the state of editions, the queue, subscribers, sources and heartbeats at ``now``."""
    deliveries = {
        (kind, state): count
        for kind, state, count in session.execute(
            select(Delivery.kind, Delivery.state, func.count()).group_by(
                Delivery.kind, Delivery.state
            )
        )
    }
    replies: dict[str, int] = {}
    code_prefix = func.substr(func.trim(Delivery.last_reply), 1, 3)
    for prefix, count in session.execute(
        select(code_prefix, func.count())
        .where(Delivery.last_reply.is_not(None))
        .group_by(code_prefix)
    ):
        code = _reply_code(prefix)
        replies[code] = replies.get(code, 0) + count
    queued = Delivery.state == DeliveryState.QUEUED
    due = queued & (Delivery.next_attempt_at.is_(None) | (Delivery.next_attempt_at <= now))
    sent = Delivery.state == DeliveryState.SENT
    last_sent = session.scalar(select(func.max(Delivery.sent_at)).where(sent))

    edition_rows = session.scalars(select(Edition).order_by(Edition.day.desc()).limit(recent)).all()
    recent_editions = [
        EditionLine(
            edition.id,
            edition.day,
            edition.status,
            as_utc(edition.sent_at) if edition.sent_at else None,
            as_utc(edition.updated_at) if edition.updated_at else None,
        )
        for edition in edition_rows
    ]
    by_id = {line.id: line for line in recent_editions}
    if by_id:
        for edition_id, state, count in session.execute(
            select(Delivery.edition_id, Delivery.state, func.count())
            .where(Delivery.edition_id.in_(by_id))
            .group_by(Delivery.edition_id, Delivery.state)
        ):
            if edition_id is not None:
                by_id[edition_id].deliveries[state] = count

    failures = session.scalars(
        select(Delivery)
        .where(Delivery.state.in_([DeliveryState.FAILED, DeliveryState.BOUNCED]))
        .order_by(Delivery.id.desc())
        .limit(recent)
    ).all()
    return StatusReport(
        now=now,
        deliveries=deliveries,
        replies_by_code=replies,
        queue_depth=session.scalar(select(func.count()).where(queued)) or 0,
        due_now=session.scalar(select(func.count()).where(due)) or 0,
        sent_in_window=session.scalar(
            select(func.count()).where(sent, Delivery.sent_at > now - SEND_RATE_WINDOW)
        )
        or 0,
        last_sent_at=as_utc(last_sent) if last_sent else None,
        editions_by_status=dict(
            session.execute(select(Edition.status, func.count()).group_by(Edition.status)).all()
        ),
        recent_editions=recent_editions,
        subscribers_by_status=dict(
            session.execute(
                select(Subscriber.status, func.count()).group_by(Subscriber.status)
            ).all()
        ),
        signups=session.scalar(select(func.count()).select_from(Subscriber)) or 0,
        confirmations=session.scalar(
            select(func.count()).where(Subscriber.confirmed_at.is_not(None))
        )
        or 0,
        articles=session.scalar(select(func.count()).select_from(Article)) or 0,
        sources=[
            SourceLine(
                source.name or source.location,
                source.kind,
                source.enabled,
                source.status,
                as_utc(source.last_fetched_at) if source.last_fetched_at else None,
                source.last_error,
            )
            for source in session.scalars(select(Source).order_by(Source.id))
        ],
        heartbeats={
            name: as_utc(moment)
            for name, moment in session.execute(select(Heartbeat.name, Heartbeat.beat_at))
        },
        recent_failures=[
            FailedDelivery(row.id, row.kind, row.edition_id, row.attempts, row.last_error)
            for row in failures
        ],
    )


# --- Prometheus ----------------------------------------------------------------------


class StatusCollector(Collector):
    """Prometheus families built from one ``StatusReport``."""

    def __init__(self, report: StatusReport) -> None:
        self.report = report

    def collect(self) -> Iterator[Any]:
        """Yield the database-backed metric families."""
        report = self.report
        deliveries = GaugeMetricFamily(
            "digest_deliveries", "Deliveries by kind and state.", labels=["kind", "state"]
        )
        for (kind, state), count in sorted(report.deliveries.items()):
            deliveries.add_metric([kind, state], count)
        yield deliveries

        replies = GaugeMetricFamily(
            "digest_smtp_replies",
            "Deliveries by the code of the last SMTP reply they got.",
            labels=["code"],
        )
        for code, count in sorted(report.replies_by_code.items()):
            replies.add_metric([code], count)
        yield replies

        yield GaugeMetricFamily(
            "digest_delivery_queue_depth",
            "Deliveries waiting to be sent.",
            value=report.queue_depth,
        )
        yield GaugeMetricFamily(
            "digest_delivery_due", "Queued deliveries whose time has come.", value=report.due_now
        )
        yield CounterMetricFamily(
            "digest_deliveries_sent",
            "Deliveries sent, ever (rate() of it is the send rate).",
            value=report.deliveries_in(DeliveryState.SENT),
        )
        yield GaugeMetricFamily(
            "digest_send_rate_per_minute",
            "Messages sent per minute over the last five minutes.",
            value=report.send_rate_per_minute,
        )

        editions = GaugeMetricFamily("digest_editions", "Editions by status.", labels=["status"])
        for status, count in sorted(report.editions_by_status.items()):
            editions.add_metric([status], count)
        yield editions

        subscribers = GaugeMetricFamily(
            "digest_subscribers", "Subscribers by status.", labels=["status"]
        )
        for status, count in sorted(report.subscribers_by_status.items()):
            subscribers.add_metric([status], count)
        yield subscribers
        yield CounterMetricFamily("digest_signups", "Sign-ups, ever.", value=report.signups)
        yield CounterMetricFamily(
            "digest_confirmations", "Confirmed sign-ups, ever.", value=report.confirmations
        )
        yield GaugeMetricFamily("digest_articles", "Articles stored.", value=report.articles)

        errors = GaugeMetricFamily(
            "digest_ingest_source_error",
            "1 when the source's last fetch failed, else 0.",
            labels=["source", "kind"],
        )
        for source in report.sources:
            errors.add_metric([source.name, source.kind], 1 if source.status == "error" else 0)
        yield errors

        ages = GaugeMetricFamily(
            "digest_heartbeat_age_seconds",
            "Seconds since a long-running process last beat.",
            labels=["name"],
        )
        for name in sorted(report.heartbeats):
            age = report.heartbeat_age(name)
            ages.add_metric([name], age.total_seconds() if age else 0.0)
        yield ages


def render_metrics(session: DbSession, now: dt.datetime) -> bytes:
    """The Prometheus text exposition: database state plus this process's (or gunicorn's)."""
    database = CollectorRegistry(auto_describe=False)
    database.register(StatusCollector(collect_status(session, now)))
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        processes = CollectorRegistry()
        MultiProcessCollector(processes)
    else:
        processes = REGISTRY
    return generate_latest(database) + generate_latest(processes)


def metrics_view() -> Response:
    """Edge: /metrics for Prometheus, behind a bearer token when METRICS_TOKEN is set."""
    from digest.extensions import db

    token = current_app.config.get("METRICS_TOKEN")
    if token and request.headers.get("Authorization", "") != f"Bearer {token}":
        return Response(
            "metrics need the bearer token\n",
            401,
            {"WWW-Authenticate": "Bearer", "Content-Type": "text/plain"},
        )
    body = render_metrics(db.session, dt.datetime.now(dt.UTC))
    return Response(body, 200, {"Content-Type": CONTENT_TYPE_LATEST})


def init_app(app: Flask) -> None:
    """Request ids and latency on every request, /metrics, and logging outside tests."""
    from digest.extensions import limiter

    app.before_request(_start_request)
    app.after_request(_finish_request)
    if app.config.get("METRICS_ENABLED", True):
        app.add_url_rule("/metrics", "metrics", limiter.exempt(metrics_view))
    # Tests capture logs with pytest's own handlers; a stderr handler there is only noise.
    if not app.testing:
        configure_logging(app)
