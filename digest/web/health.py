"""Probes for load balancers and orchestrators: /healthz (alive) and /readyz (can serve)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cache

from alembic.config import Config as AlembicConfig
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Blueprint, Response, current_app, jsonify
from sqlalchemy import text
from sqlalchemy.engine import Connection

from digest.extensions import limiter

bp = Blueprint("health", __name__)


@dataclass
class Check:
    """One readiness check: its name, whether it passed, and what was seen."""

    name: str
    ok: bool
    detail: str


@cache
def migration_heads(directory: str) -> frozenset[str]:
    """The newest revision(s) shipped in ``directory`` (read once per process)."""
    config = AlembicConfig()
    config.set_main_option("script_location", directory)
    return frozenset(ScriptDirectory.from_config(config).get_heads())


def check_migrations(connection: Connection, directory: str) -> Check:
    """Whether the database is at the newest shipped migration."""
    current = set(MigrationContext.configure(connection).get_current_heads())
    expected = set(migration_heads(directory))
    if current == expected:
        return Check("migrations", True, f"at {', '.join(sorted(current))}")
    found = ", ".join(sorted(current)) or "no migration applied"
    return Check(
        "migrations",
        False,
        f"database is at {found}, code expects {', '.join(sorted(expected))}: run `digest init`",
    )


def check_heartbeat(beat_at: dt.datetime | None, now: dt.datetime, max_age: float) -> Check:
    """Whether the scheduler beat within ``max_age`` seconds of ``now``."""
    if beat_at is None:
        return Check("scheduler", False, "no heartbeat yet: is `digest scheduler` running?")
    age = (now - beat_at).total_seconds()
    if age > max_age:
        return Check("scheduler", False, f"last heartbeat {age:.0f}s ago (limit {max_age:.0f}s)")
    return Check("scheduler", True, f"last heartbeat {max(age, 0):.0f}s ago")


def readiness(now: dt.datetime) -> list[Check]:
    """Run every readiness check against the app's database at ``now``."""
    from digest.extensions import db
    from digest.observability import SCHEDULER_HEARTBEAT, last_beat

    try:
        with db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            migrations = check_migrations(connection, current_app.extensions["migrate"].directory)
    except Exception as error:
        # The reason goes into the answer; a probe must never turn into a 500.
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        return [
            Check("database", False, f"unreachable: {reason}"),
            Check("migrations", False, "not checked: no database"),
            Check("scheduler", False, "not checked: no database"),
        ]
    checks = [Check("database", True, "reachable"), migrations]
    if not migrations.ok:
        checks.append(Check("scheduler", False, "not checked: schema out of date"))
        return checks
    try:
        beat_at = last_beat(db.session, SCHEDULER_HEARTBEAT)
    except Exception as error:
        db.session.rollback()
        checks.append(Check("scheduler", False, f"heartbeat unreadable: {error}"))
        return checks
    checks.append(
        check_heartbeat(beat_at, now, float(current_app.config["HEARTBEAT_MAX_AGE_SECONDS"]))
    )
    return checks


@bp.get("/healthz")
@limiter.exempt
def healthz() -> Response:
    """The process is up and answering; touches nothing else."""
    return jsonify(status="ok")


@bp.get("/readyz")
@limiter.exempt
def readyz() -> tuple[Response, int]:
    """200 when the database, its schema and the scheduler are all fine, else 503 and why."""
    checks = readiness(dt.datetime.now(dt.UTC))
    ready = all(check.ok for check in checks)
    body = jsonify(
        status="ready" if ready else "not ready",
        checks={check.name: {"ok": check.ok, "detail": check.detail} for check in checks},
    )
    body.headers["Cache-Control"] = "no-store"
    return body, 200 if ready else 503
