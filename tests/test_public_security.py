"""Security headers on every response, production cookies, the optional DNS check of addresses."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dnslib import MX, QTYPE, RCODE, RR, TXT, A, DNSRecord
from dnslib.server import DNSLogger, DNSServer
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from digest import create_app, tokens
from digest.extensions import db
from digest.models import Subscriber, SubscriberStatus
from tests.conftest import make_test_app
from tests.public_helpers import deliver


def _directives(policy: str) -> dict[str, str]:
    parts = (part.strip().split(None, 1) for part in policy.split(";") if part.strip())
    return {part[0]: (part[1] if len(part) > 1 else "") for part in parts}


def _assert_hardened(response: Any, where: str) -> None:
    headers = response.headers
    policy = _directives(headers.get("Content-Security-Policy", ""))
    assert policy, f"{where}: no Content-Security-Policy"
    script_sources = policy.get("script-src", policy.get("default-src", ""))
    assert script_sources and "unsafe-inline" not in script_sources, where
    assert policy.get("object-src") == "'none'", where
    assert "frame-ancestors" in policy, where
    assert headers.get("X-Frame-Options") in ("DENY", "SAMEORIGIN"), where
    assert headers.get("X-Content-Type-Options") == "nosniff", where
    assert headers.get("Referrer-Policy") in ("no-referrer", "same-origin"), where


def test_every_kind_of_response_carries_the_security_headers(app: Flask) -> None:
    @app.get("/broken-on-purpose")
    def broken() -> str:
        raise RuntimeError("a bug in a view")

    # Answer the way production does: a 500 page, not the exception raised into the test.
    app.config["PROPAGATE_EXCEPTIONS"] = False
    app.logger.disabled = True
    client = app.test_client()
    reader = Subscriber(email="reader@example.org", status=SubscriberStatus.ACTIVE)
    db.session.add(reader)
    db.session.commit()
    one_click = f"/unsubscribe/{tokens.make_token(reader, 'unsubscribe')}"

    seen = {
        "home page": client.get("/"),
        "sign-up error": client.post("/", data={"email": "nope"}),
        "sign-up redirect": client.post(
            "/", data={"email": "new@example.org", "categories": ["sport"], "language": "fr"}
        ),
        "unknown page (404)": client.get("/no/such/page"),
        "unknown edition (404)": client.get("/archive/1999-01-01"),
        "archive": client.get("/archive"),
        "feed": client.get("/archive.atom"),
        "wrong method (405)": client.get("/manage/x/pause"),
        "damaged link (400)": client.get("/manage/not-a-token"),
        "one-click unsubscribe": client.post(one_click, data={"List-Unsubscribe": "One-Click"}),
        "stylesheet": client.get("/static/site.css"),
        "liveness probe": client.get("/healthz"),
        "metrics": client.get("/metrics"),
        "editors' login": client.get("/admin/login"),
        "desk without login": client.get("/admin/"),
        "server error (500)": client.get("/broken-on-purpose"),
    }
    statuses = {name: response.status_code for name, response in seen.items()}
    assert statuses["unknown page (404)"] == 404
    assert statuses["unknown edition (404)"] == 404
    assert statuses["wrong method (405)"] == 405
    assert statuses["server error (500)"] == 500
    assert statuses["sign-up redirect"] == 303
    assert statuses["one-click unsubscribe"] == 200
    for name, response in seen.items():
        _assert_hardened(response, f"{name} ({response.status_code})")
        response.close()
    # Subscriber pages keep the strictest policy: no framing at all, no referrer.
    assert seen["unknown page (404)"].headers["X-Frame-Options"] == "DENY"
    assert seen["archive"].headers["Referrer-Policy"] == "no-referrer"


# ---------------------------------------------------------------------- production cookies


@pytest.fixture
def production_app(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Flask]:
    """An app started the way production starts it: DIGEST_ENV=production, a real secret."""
    monkeypatch.setenv("DIGEST_ENV", "production")
    monkeypatch.setenv("DIGEST_SECRET_KEY", "a-production-secret-of-enough-length-0123456789")
    root = logging.getLogger()
    handlers_before = list(root.handlers)
    level_before = root.level
    app = create_app(
        {"INSTANCE_PATH": str(tmp_path), "DATABASE_URL": database_url, "MAIL_URL": "memory://"}
    )
    with app.app_context():
        db.drop_all()
        db.create_all()
        yield app
        db.session.remove()
        db.drop_all()
        db.engine.dispose()
    # A production app writes its log lines to stderr; give the next tests pytest's handlers.
    for handler in [h for h in root.handlers if h not in handlers_before]:
        root.removeHandler(handler)
    root.setLevel(level_before)


def _set_cookies(response: Any) -> dict[str, str]:
    return {header.split("=", 1)[0]: header for header in response.headers.getlist("Set-Cookie")}


def test_production_cookies_are_secure_http_only_and_same_site(production_app: Flask) -> None:
    assert production_app.config["ENV_NAME"] == "production"
    client = production_app.test_client()
    # The sign-up form's CSRF token lives in the session, so the home page sets the cookie;
    # ?lang= also remembers the reader's language in a cookie of its own.
    response = client.get("/?lang=en", base_url="https://digest.example.org")
    assert response.status_code == 200
    cookies = _set_cookies(response)
    assert {"session", "lang"} <= cookies.keys(), cookies
    for name in ("session", "lang"):
        attributes = [part.strip().lower() for part in cookies[name].split(";")[1:]]
        assert "secure" in attributes, cookies[name]
        assert "httponly" in attributes, cookies[name]
        assert "samesite=lax" in attributes, cookies[name]


# ------------------------------------------------------------- DNS check of email addresses


class LoopbackZone:
    """A tiny authoritative answer set, served by dnslib on 127.0.0.1 for one test."""

    def __init__(self, records: dict[str, list[RR]]) -> None:
        self.records = records
        self.questions: list[str] = []
        self._lock = threading.Lock()

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        """Answer from ``records``; a name it does not hold does not exist."""
        name = str(request.q.qname).rstrip(".").lower()
        with self._lock:
            self.questions.append(f"{name} {QTYPE[request.q.qtype]}")
        reply = request.reply()
        held = [rr for key, rrs in self.records.items() if key == name for rr in rrs]
        if not held:
            reply.header.rcode = RCODE.NXDOMAIN
        for rr in held:
            if rr.rtype == request.q.qtype:
                reply.add_answer(rr)
        return reply


@pytest.fixture
def dns_zone() -> Iterator[tuple[LoopbackZone, int]]:
    """A DNS server on a free loopback UDP port that knows two mail domains and one bare one."""
    zone = LoopbackZone(
        {
            "lettres.example.net": [
                RR("lettres.example.net", QTYPE.MX, rdata=MX("mx.lettres.example.net"), ttl=60)
            ],
            # No MX, but an address: mail goes there (RFC 5321 section 5.1 fallback). It must
            # be a public one (email-validator refuses private and documentation ranges);
            # nothing ever connects to it.
            "courrier.example.net": [
                RR("courrier.example.net", QTYPE.A, rdata=A("1.2.3.4"), ttl=60)
            ],
            # The name exists, but has neither an MX nor an address to send to.
            "sans-courrier.example.net": [
                RR("sans-courrier.example.net", QTYPE.TXT, rdata=TXT("site under construction"))
            ],
        }
    )
    server = DNSServer(zone, address="127.0.0.1", port=0, logger=DNSLogger(logf=lambda _: None))
    server.start_thread()
    try:
        yield zone, int(server.server.server_address[1])
    finally:
        server.stop()
        server.server.server_close()


def _checked_client(app: Flask, port: int, **overrides: Any) -> FlaskClient:
    app.config.update({"EMAIL_DNS_SERVERS": [f"127.0.0.1:{port}"], "EMAIL_DNS_TIMEOUT": 3})
    app.config.update(overrides)
    return app.test_client()


def _sign_up(client: FlaskClient, email: str) -> Any:
    return client.post("/", data={"email": email, "categories": ["sport"], "language": "fr"})


def _stored() -> list[str]:
    db.session.expire_all()
    return sorted(db.session.scalars(select(Subscriber.email)))


def test_deliverability_check_refuses_a_domain_without_mail_beside_the_field(
    app: Flask, dns_zone: tuple[LoopbackZone, int]
) -> None:
    zone, port = dns_zone
    client = _checked_client(app, port, EMAIL_CHECK_DELIVERABILITY=True)
    for domain in ("nulle-part.example.net", "sans-courrier.example.net"):
        response = _sign_up(client, f"reader@{domain}")
        assert response.status_code == 422, domain
        page = response.get_data(as_text=True)
        error = re.search(r'<ul class="field-errors" id="email-error">\s*<li>([^<]+)</li>', page)
        assert error, page
        assert error.group(1) == (
            "Aucun courrier ne peut être livré à ce domaine : vérifiez la partie après le @."
        )
    english = client.post(
        "/?lang=en",
        data={"email": "reader@nulle-part.example.net", "categories": ["sport"], "language": "en"},
    )
    assert "No mail can be delivered to this domain" in english.get_data(as_text=True)
    # The check really asked our server (MX first, then the address fallback).
    assert "nulle-part.example.net MX" in zone.questions
    assert "sans-courrier.example.net A" in zone.questions
    assert _stored() == []
    assert deliver(app) == []


def test_deliverability_check_accepts_domains_with_an_mx_or_an_address(
    app: Flask, dns_zone: tuple[LoopbackZone, int]
) -> None:
    zone, port = dns_zone
    client = _checked_client(app, port, EMAIL_CHECK_DELIVERABILITY=True)
    assert _sign_up(client, "ana@lettres.example.net").status_code == 303
    assert _sign_up(client, "bo@courrier.example.net").status_code == 303
    assert _stored() == ["ana@lettres.example.net", "bo@courrier.example.net"]
    assert "lettres.example.net MX" in zone.questions


def test_deliverability_check_is_off_by_default_and_asks_no_one(
    database_url: str, tmp_path: Path, dns_zone: tuple[LoopbackZone, int]
) -> None:
    zone, port = dns_zone
    instance = tmp_path / "instance"
    instance.mkdir()
    # Only the servers are configured: the check itself is left at its default.
    app = make_test_app(database_url, instance, EMAIL_DNS_SERVERS=f"127.0.0.1:{port}")
    assert app.config["EMAIL_CHECK_DELIVERABILITY"] is False
    with app.app_context():
        db.drop_all()
        db.create_all()
        try:
            assert _sign_up(app.test_client(), "reader@nulle-part.example.net").status_code == 303
            assert _stored() == ["reader@nulle-part.example.net"]
        finally:
            db.session.remove()
            db.drop_all()
            db.engine.dispose()
    assert zone.questions == []


@pytest.mark.no_db
@pytest.mark.parametrize("servers", ["resolver.example.net", "10.0.0.2:99999", "10.0.0.2:dns"])
def test_unusable_dns_servers_are_refused_at_start(tmp_path: Path, servers: str) -> None:
    from digest import ConfigError

    with pytest.raises(ConfigError, match="DIGEST_EMAIL_DNS_SERVERS"):
        make_test_app(f"sqlite:///{tmp_path / 'x.db'}", tmp_path, EMAIL_DNS_SERVERS=servers)


def _csrf_token(client: FlaskClient) -> str:
    found = re.search(
        r'name="csrf_token"[^>]*value="([^"]+)"', client.get("/").get_data(as_text=True)
    )
    assert found, "the sign-up form carries a CSRF token"
    return found[1]


def test_a_rotated_secret_key_keeps_sessions_signed_with_a_listed_fallback(app: Flask) -> None:
    # A new SECRET_KEY must take effect, and a listed fallback must still open old cookies.
    app.config["WTF_CSRF_ENABLED"] = True
    # The CSRF token is signed apart from the session; pin its key so only the session rotates.
    app.config["WTF_CSRF_SECRET_KEY"] = "csrf-key"
    client = app.test_client()
    form = {"categories": ["sport"], "language": "fr"}
    token = _csrf_token(client)
    assert client.post("/", data={**form, "email": "before@example.org"}).status_code == 400
    accepted = client.post("/", data={**form, "email": "before@example.org", "csrf_token": token})
    assert accepted.status_code == 303

    # The old key becomes a fallback: the reader's session (and its CSRF secret) still opens.
    token = _csrf_token(client)
    app.config["SECRET_KEY_FALLBACKS"] = [app.config["SECRET_KEY"]]
    app.config["SECRET_KEY"] = "rotated-secret"
    rotated = client.post("/", data={**form, "email": "rotated@example.org", "csrf_token": token})
    assert rotated.status_code == 303

    # Dropped altogether: the old cookie no longer opens, so the form asks to start again.
    token = _csrf_token(client)
    app.config["SECRET_KEY_FALLBACKS"] = []
    app.config["SECRET_KEY"] = "another-secret"
    refused = client.post("/", data={**form, "email": "gone@example.org", "csrf_token": token})
    assert refused.status_code == 400
    with app.app_context():
        stored = set(db.session.scalars(select(Subscriber.email)))
    assert stored == {"before@example.org", "rotated@example.org"}
