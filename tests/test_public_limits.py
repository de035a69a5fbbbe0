"""Rate limits on sign-up and "new link": per IP and per address, in memory and in Redis."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select

from digest.extensions import db, limiter
from digest.models import Subscriber, SubscriberStatus
from digest.tokens import make_token
from tests.conftest import make_test_app

REDIS_URL = os.environ.get("DIGEST_TEST_REDIS_URL", "redis://127.0.0.1:6379/5")


def _redis_reachable(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@pytest.fixture(params=["memory", "redis"])
def limited_app(
    request: pytest.FixtureRequest, database_url: str, tmp_path: Path
) -> Iterator[Flask]:
    """An app with rate limits on: 3 sign-ups per IP per minute, 2 per address per hour."""
    if request.param == "redis":
        if not _redis_reachable(REDIS_URL):
            pytest.skip(
                f"Redis run: no Redis at {REDIS_URL} (set DIGEST_TEST_REDIS_URL; CI has one)"
            )
        storage = REDIS_URL
    else:
        storage = "memory://"
    instance = tmp_path / "instance"
    instance.mkdir()
    app = make_test_app(
        database_url,
        instance,
        RATELIMIT_ENABLED=True,
        RATELIMIT_STORAGE_URL=storage,
        SIGNUP_RATE_LIMIT_PER_IP="3 per minute",
        SIGNUP_RATE_LIMIT_PER_EMAIL="2 per hour",
    )
    with app.app_context():
        # Counters from earlier tests or runs (Redis keeps them) must not leak into this one;
        # the limiter is one object, so a per-app key prefix would not separate them.
        limiter.reset()
        db.drop_all()
        db.create_all()
        yield app
        db.session.remove()
        db.drop_all()
        db.engine.dispose()


def _post(app: Flask, path: str, email: str, ip: str):  # type: ignore[no-untyped-def]
    data = {"email": email, "categories": ["sport"], "language": "fr"}
    return app.test_client().post(path, data=data, environ_base={"REMOTE_ADDR": ip})


def test_one_ip_gets_a_polite_429_after_its_quota(limited_app: Flask) -> None:
    codes = [
        _post(limited_app, "/", f"r{i}@example.org", "198.51.100.1").status_code for i in range(4)
    ]
    assert codes == [303, 303, 303, 429]
    refused = _post(limited_app, "/", "r9@example.org", "198.51.100.1")
    assert refused.status_code == 429
    page = refused.get_data(as_text=True)
    assert "Trop de tentatives" in page and "Traceback" not in page
    stored = db.session.scalars(select(Subscriber.email)).all()
    assert sorted(stored) == ["r0@example.org", "r1@example.org", "r2@example.org"]
    # Another address from another IP is not affected.
    assert _post(limited_app, "/", "other@example.org", "198.51.100.2").status_code == 303
    # Reading pages is never limited.
    assert (
        limited_app.test_client().get("/", environ_base={"REMOTE_ADDR": "198.51.100.1"}).status_code
        == 200
    )


def test_one_address_is_limited_whatever_the_ip(limited_app: Flask) -> None:
    codes = [
        _post(limited_app, "/", variant, f"203.0.113.{i}").status_code
        for i, variant in enumerate(["ana@example.org", "ANA@Example.org", " ana@EXAMPLE.ORG "])
    ]
    assert codes == [303, 303, 429]


def test_new_link_is_limited_too(limited_app: Flask) -> None:
    codes = [
        _post(limited_app, "/new-link", "ana@example.org", f"203.0.113.{i}").status_code
        for i in range(3)
    ]
    assert codes == [303, 303, 429]


def test_changing_address_is_limited_per_new_address(limited_app: Flask) -> None:
    reader = Subscriber(email="ana@example.org", status=SubscriberStatus.ACTIVE)
    db.session.add(reader)
    db.session.commit()
    path = f"/manage/{make_token(reader, 'manage')}/email"

    def change_to(address: str, ip: str) -> int:
        data = {"new_email": address}
        client = limited_app.test_client()
        return client.post(path, data=data, environ_base={"REMOTE_ADDR": ip}).status_code

    codes = [change_to("new@example.org", f"203.0.113.{i}") for i in range(3)]
    assert codes == [303, 303, 429]
    # Another address is not held back by this one's quota.
    assert change_to("other@example.org", "203.0.113.9") == 303
