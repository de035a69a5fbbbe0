"""Default configuration for digest.

Layering (later wins): a class here, then ``instance/config.py``, then ``DIGEST_*``
environment variables, then the mapping a test passes to ``create_app``.
"""

from __future__ import annotations


class Config:
    """Embedded single-process defaults: SQLite and mail files under ``instance/``."""

    ENV_NAME = "development"
    # None means "instance/digest.db"; create_app fills it in once the instance path is known.
    DATABASE_URL: str | None = None
    # None means "file://<instance>/outbox".
    MAIL_URL: str | None = None
    MAIL_FROM = "Le Digest <digest@localhost>"
    MAIL_DOMAIN = "localhost"
    SECRET_KEY: str | None = "dev-only-not-secret"
    PUBLIC_URL = "http://127.0.0.1:5000"
    TIMEZONE = "Africa/Casablanca"
    SEND_AT = "07:00"
    DEFAULT_LANGUAGE = "fr"
    LANGUAGES = ("fr", "en", "es")
    # Section order in the digest; editors may reorder.
    CATEGORY_ORDER = ("politics", "economy", "sport", "health", "other")
    # Where `digest ingest` reads when no source is configured (relative to the project root).
    SEED_DIR: str | None = None
    CONFIRM_MAX_AGE_DAYS = 7
    POSTAL_ADDRESS = "Le Digest, Casablanca, Maroc"
    RATELIMIT_STORAGE_URL = "memory://"
    WTF_CSRF_ENABLED = True
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"


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


class ProductionConfig(Config):
    """Refuses to start without a real SECRET_KEY (see create_app)."""

    ENV_NAME = "production"
    SECRET_KEY = None
    SESSION_COOKIE_SECURE = True
    REMEMBER_COOKIE_SECURE = True


CONFIGS: dict[str, type[Config]] = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}
