"""Default configuration for digest.

Layering (later wins): a class here, then ``instance/config.py``, then ``DIGEST_*``
environment variables, then the mapping a test passes to ``create_app``.

The comment right above each setting is its documentation: ``python -m digest.configdoc``
copies it into the README's configuration reference, so keep it to what an operator needs.
Environment values are read as JSON when they parse (``DIGEST_CONFIRM_MAX_AGE_DAYS=3``,
``DIGEST_LANGUAGES='["fr", "en"]'``, ``DIGEST_METRICS_ENABLED=false``), else as text.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Mapping
from email.utils import parseaddr
from typing import Any
from urllib.parse import urlsplit


class Config:
    """Embedded single-process defaults: SQLite and mail files under ``instance/``."""

    # Which settings class to start from: development, testing or production (set it as
    # DIGEST_ENV). Production has no default secret key and marks cookies Secure.
    ENV_NAME = "development"
    # Database URL: sqlite:///path/to/file.db or postgresql://user:password@host:5432/name.
    # Unset means instance/digest.db. Run several processes or machines only on PostgreSQL.
    DATABASE_URL: str | None = None
    # Where mail goes: file:///dir (one .eml per message), smtp://user:pass@host:587?tls=starttls
    # (or tls=ssl), memory:// (tests). Unset means file://instance/outbox.
    MAIL_URL: str | None = None
    # Sender of every mail, "Name <address>". Its domain is the one SPF, DKIM and DMARC cover.
    MAIL_FROM = "Le Digest <digest@localhost>"
    # Where readers' replies go ("Reply-To"), e.g. a newsroom mailbox; unset: to MAIL_FROM.
    # Admins may change it, and MAIL_FROM's name and local part, on /admin/settings.
    MAIL_REPLY_TO: str | None = None
    # Domain used on the right of generated Message-IDs; normally the From domain.
    MAIL_DOMAIN = "localhost"
    # Address offered as a mailto: in List-Unsubscribe besides the https link; unset: https only.
    UNSUBSCRIBE_MAILTO: str | None = None
    # Signs links in mails and session cookies. Required in production: at least 32 random
    # characters, e.g. from `python -c 'import secrets; print(secrets.token_hex(32))'`.
    SECRET_KEY: str | None = "dev-only-not-secret"
    # The site's address as readers reach it, used for every link in mails (https in production).
    PUBLIC_URL = "http://127.0.0.1:5000"
    # The newsroom's time zone (IANA name): it decides what "today" is and when SEND_AT falls.
    TIMEZONE = "Africa/Casablanca"
    # Local time of day (HH:MM, 24-hour) when the scheduler ingests, builds and sends.
    SEND_AT = "07:00"
    # Approval mode: the scheduled edition waits at SEND_AT for an editor's approval (on its
    # /admin page) until APPROVAL_DEADLINE (local HH:MM); then APPROVAL_FALLBACK decides:
    # "send" sends it anyway, "hold" keeps it back until an editor sends it. These three, the
    # sender, Reply-To, postal address and flag threshold are defaults: admins may override
    # them at run time on /admin/settings (stored in the database, read by every process).
    APPROVAL_REQUIRED = False
    APPROVAL_DEADLINE = "09:00"
    APPROVAL_FALLBACK = "hold"
    # How often (seconds) `digest serve` sends what is queued: confirmation mails, retries.
    DELIVERY_POLL_SECONDS = 5
    # Language of pages and mails when a reader has not chosen one; one of LANGUAGES.
    DEFAULT_LANGUAGE = "fr"
    # Languages readers can choose for pages and their digest.
    LANGUAGES = ("fr", "en", "es")
    # The desk flags a headline whose category confidence (0 to 1) is below this.
    CATEGORY_FLAG_BELOW = 0.5
    # Section order in the digest; editors may reorder.
    CATEGORY_ORDER = ("politics", "economy", "sport", "health", "other")
    # Where `digest ingest` reads when no source is configured (relative to the project root).
    SEED_DIR: str | None = None
    # Seconds one source fetch may take in all (a server sending a byte at a time included).
    INGEST_TIMEOUT = 10
    # Largest source accepted, in bytes (files and HTTP responses); bigger ones fail alone.
    INGEST_MAX_BYTES = 10 * 1024 * 1024
    # Redirects followed before a source fails.
    INGEST_MAX_REDIRECTS = 5
    # User-Agent sent with every fetch (None: "digest/<version> (...; +PUBLIC_URL)").
    INGEST_USER_AGENT: str | None = None
    # Days a confirmation link stays valid, counted from when its mail is sent.
    CONFIRM_MAX_AGE_DAYS = 7
    # Delivery: rows claimed per batch by a sender.
    MAIL_BATCH_SIZE = 200
    # First retry delay (seconds) after a 4xx; doubles per attempt, with jitter.
    MAIL_RETRY_SECONDS = 300
    # Attempts before a temporarily failing message is given up (marked bounced).
    MAIL_MAX_ATTEMPTS = 8
    # Hard bounces (5xx) after which a subscriber is suppressed (status "bounced").
    MAIL_BOUNCE_LIMIT = 2
    # Consecutive send errors after which sending pauses until an editor resumes it.
    MAIL_PAUSE_AFTER = 25
    # Messages per second per sender; 0 means no limit.
    MAIL_RATE = 0.0
    # Messages per sliding hour across all senders; 0 means no limit.
    MAIL_HOURLY_LIMIT = 0
    # "bounces@example.org" turns on VERP: the envelope sender becomes bounces+d<id>@example.org.
    MAIL_RETURN_PATH: str | None = None
    # DKIM signing when both are set: the selector and the path to a PEM private key.
    DKIM_SELECTOR: str | None = None
    DKIM_KEY_FILE: str | None = None
    # Signing domain (d=); unset means the domain of MAIL_FROM, which DMARC alignment wants.
    DKIM_DOMAIN: str | None = None
    # Sign-up and "new link" posts allowed per client IP (Flask-Limiter syntax).
    SIGNUP_RATE_LIMIT_PER_IP = "30 per hour;10 per minute"
    # Sign-up and "new link" posts allowed per typed email address.
    SIGNUP_RATE_LIMIT_PER_EMAIL = "5 per hour"
    # Mails a stranger can trigger to one address in 24 hours, whatever the limits above say.
    CONFIRM_MAILS_PER_DAY = 3
    # Email domains refused at sign-up (subdomains included), e.g. "mailinator.com,spam.example".
    BLOCKED_EMAIL_DOMAINS: tuple[str, ...] = ()
    # DNS lookups on sign-up slow the form and fail offline; production may turn them on.
    EMAIL_CHECK_DELIVERABILITY = False
    # Name servers that check asks, e.g. "10.0.0.2" or "127.0.0.1:5353" (a list or a
    # comma-separated string); unset means the system's own (/etc/resolv.conf).
    EMAIL_DNS_SERVERS: tuple[str, ...] = ()
    # Seconds that check may wait for DNS; an address whose domain does not answer in time
    # is accepted (a slow resolver must not turn readers away).
    EMAIL_DNS_TIMEOUT = 5.0
    # Store a keyed hash of the sign-up IP in the consent record instead of the address.
    CONSENT_HASH_IP = False
    # The sender's postal address, printed in every digest's footer as bulk-mail law requires.
    POSTAL_ADDRESS = "Le Digest, Casablanca, Maroc"
    # Where rate-limit counters live: memory:// (one process) or redis://host:6379/0, which
    # every web process shares (use it with gunicorn).
    RATELIMIT_STORAGE_URL = "memory://"
    # Checks a token on every form post; leave it on outside tests.
    WTF_CSRF_ENABLED = True
    # Keeps the session cookie away from page scripts.
    SESSION_COOKIE_HTTPONLY = True
    # Stops the session cookie riding along on cross-site posts.
    SESSION_COOKIE_SAMESITE = "Lax"
    # Log lines: "text" (readable, for a terminal) or "json" (one object per line, for a
    # log collector). Both carry the request id and, in jobs, the edition id.
    LOG_FORMAT = "text"
    # Least important log level written: DEBUG, INFO, WARNING, ERROR or CRITICAL.
    LOG_LEVEL = "INFO"
    # Serve Prometheus metrics at /metrics.
    METRICS_ENABLED = True
    # When set, /metrics answers only requests with "Authorization: Bearer <token>".
    METRICS_TOKEN: str | None = None
    # /readyz fails when the scheduler's last heartbeat is older than this many seconds
    # (it beats every minute).
    HEARTBEAT_MAX_AGE_SECONDS = 180
    # Where `digest backup` writes SQLite copies; unset means instance/backups.
    BACKUP_DIR: str | None = None
    # Reverse proxies in front of the web processes (1 behind nginx): their X-Forwarded-For
    # and X-Forwarded-Proto are trusted, so rate limits see each reader's own address.
    PROXY_COUNT = 0


class DevelopmentConfig(Config):
    """What `make run` uses."""


class TestingConfig(Config):
    """Tests pass their own database and the memory transport on top of this."""

    ENV_NAME = "testing"
    TESTING = True
    MAIL_URL = "memory://"
    RATELIMIT_ENABLED = False
    # Form tests post without a token; the CSRF tests turn it back on.
    WTF_CSRF_ENABLED = False
    # Cheap argon2 for editors' passwords: tests log in often; production keeps the defaults.
    ARGON2_TIME_COST = 1
    ARGON2_MEMORY_KIB = 1024
    ARGON2_PARALLELISM = 1


class ProductionConfig(Config):
    """Refuses to start without a real SECRET_KEY (see create_app)."""

    ENV_NAME = "production"
    SECRET_KEY = None
    # Send the session cookie over https only.
    SESSION_COOKIE_SECURE = True
    # Send the editors' remember-me cookie over https only.
    REMEMBER_COOKIE_SECURE = True


CONFIGS: dict[str, type[Config]] = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


_LANGUAGES_SUPPORTED = ("fr", "en", "es")
_DATABASE_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg", "postgres")
_MAIL_SCHEMES = ("file", "smtp", "smtps", "memory")
_RATELIMIT_SCHEMES = ("memory", "redis", "rediss", "redis+unix")


def split_host_port(text: str, default_port: int) -> tuple[str, int]:
    """ "10.0.0.2", "10.0.0.2:5353", "::1" or "[::1]:5353" as (IP address, port).

    Raises ValueError when the address is not an IP address or the port not a port.
    """
    host, port = text.strip(), str(default_port)
    if host.startswith("["):
        host, _, rest = host[1:].partition("]")
        port = rest.removeprefix(":") or port
    elif host.count(":") == 1:
        host, _, port = host.partition(":")
    number = int(port)
    if not 0 < number < 65536:
        raise ValueError(f"port {number} is out of range")
    return str(ipaddress.ip_address(host)), number


def validate(settings: Mapping[str, Any]) -> list[str]:
    """Every problem with ``settings`` as one line naming the variable and what it expects."""
    problems: list[str] = []

    def bad(name: str, expected: str) -> None:
        problems.append(f"DIGEST_{name}={settings.get(name)!r}: {expected}")

    def scheme_of(value: object) -> str:
        return urlsplit(value).scheme.lower() if isinstance(value, str) else ""

    if scheme_of(settings.get("DATABASE_URL")) not in _DATABASE_SCHEMES:
        bad("DATABASE_URL", "expected sqlite:///path.db or postgresql://user@host/name")
    if scheme_of(settings.get("MAIL_URL")) not in _MAIL_SCHEMES:
        bad("MAIL_URL", "expected file:///dir, smtp://host:port or memory://")
    address = parseaddr(str(settings.get("MAIL_FROM") or ""))[1]
    if address.count("@") != 1 or not all(address.split("@")):
        bad("MAIL_FROM", 'expected an address such as "Le Digest <digest@example.org>"')
    reply_to = settings.get("MAIL_REPLY_TO")
    if reply_to is not None and (
        not isinstance(reply_to, str) or parseaddr(reply_to)[1].count("@") != 1
    ):
        bad("MAIL_REPLY_TO", "expected an address such as news@example.org, or unset")
    flag_below = settings.get("CATEGORY_FLAG_BELOW", 0.5)
    if (
        isinstance(flag_below, bool)
        or not isinstance(flag_below, int | float)
        or not 0 <= flag_below <= 1
    ):
        bad("CATEGORY_FLAG_BELOW", "expected a number from 0 to 1")
    public = settings.get("PUBLIC_URL")
    if scheme_of(public) not in ("http", "https") or not urlsplit(str(public)).hostname:
        bad("PUBLIC_URL", "expected the site's address, e.g. https://digest.example.org")
    languages = settings.get("LANGUAGES")
    if (
        not isinstance(languages, list | tuple)
        or not languages
        or any(language not in _LANGUAGES_SUPPORTED for language in languages)
    ):
        bad("LANGUAGES", f"expected a JSON list drawn from {list(_LANGUAGES_SUPPORTED)}")
    elif settings.get("DEFAULT_LANGUAGE") not in languages:
        bad("DEFAULT_LANGUAGE", f"expected one of LANGUAGES {list(languages)}")
    order = settings.get("CATEGORY_ORDER")
    if (
        not isinstance(order, list | tuple)
        or not order
        or not all(isinstance(name, str) and name for name in order)
        or len(set(order)) != len(order)
    ):
        bad("CATEGORY_ORDER", 'expected a JSON list of distinct names, e.g. ["politics", "other"]')
    proxies = settings.get("PROXY_COUNT", 0)
    if isinstance(proxies, bool) or not isinstance(proxies, int) or not 0 <= proxies <= 5:
        bad("PROXY_COUNT", "expected how many proxies stand in front, 0 to 5")
    for name in ("CONFIRM_MAX_AGE_DAYS", "HEARTBEAT_MAX_AGE_SECONDS"):
        value = settings.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            bad(name, "expected a positive number")
    if scheme_of(settings.get("RATELIMIT_STORAGE_URL")) not in _RATELIMIT_SCHEMES:
        bad("RATELIMIT_STORAGE_URL", "expected memory:// or redis://host:6379/0")
    if settings.get("APPROVAL_FALLBACK", "hold") not in ("send", "hold"):
        bad("APPROVAL_FALLBACK", 'expected "send" or "hold"')
    deadline = str(settings.get("APPROVAL_DEADLINE", "09:00"))
    if not re.match(r"^([01]?\d|2[0-3]):[0-5]\d$", deadline):
        bad("APPROVAL_DEADLINE", "expected a local time of day as HH:MM, e.g. 09:00")
    if settings.get("LOG_FORMAT") not in ("text", "json"):
        bad("LOG_FORMAT", 'expected "text" or "json"')
    level = settings.get("LOG_LEVEL")
    if not isinstance(level, str) or not isinstance(logging.getLevelName(level.upper()), int):
        bad("LOG_LEVEL", "expected DEBUG, INFO, WARNING, ERROR or CRITICAL")
    if not isinstance(settings.get("METRICS_ENABLED"), bool):
        bad("METRICS_ENABLED", "expected true or false")
    token = settings.get("METRICS_TOKEN")
    if token is not None and (not isinstance(token, str) or len(token) < 16):
        bad("METRICS_TOKEN", "expected at least 16 characters, or unset")
    servers = settings.get("EMAIL_DNS_SERVERS") or ()
    try:
        for server in re.split(r"[;|,\s]+", servers) if isinstance(servers, str) else servers:
            if str(server).strip():
                split_host_port(str(server), 53)
    except (TypeError, ValueError):
        bad("EMAIL_DNS_SERVERS", 'expected IP addresses, e.g. "10.0.0.2,127.0.0.1:5353"')
    timeout = settings.get("EMAIL_DNS_TIMEOUT", 5.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        bad("EMAIL_DNS_TIMEOUT", "expected a positive number of seconds")
    if not str(settings.get("POSTAL_ADDRESS") or "").strip():
        bad("POSTAL_ADDRESS", "expected the sender's postal address (required in bulk mail)")
    return problems
