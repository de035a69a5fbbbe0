"""digest: a self-hosted daily news digest (ingest, understand, compose, render, mail)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(RuntimeError):
    """The configuration cannot work; the message says what to set."""


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the application: layered config, extensions, blueprints, CLI. No I/O."""
    from config import CONFIGS

    app = Flask(
        __name__,
        instance_path=(config or {}).get("INSTANCE_PATH")
        or os.environ.get("DIGEST_INSTANCE_PATH")
        or str(PROJECT_ROOT / "instance"),
        template_folder=str(PROJECT_ROOT / "templates"),
        static_folder=str(PROJECT_ROOT / "static"),
    )
    env_name = (config or {}).get("ENV_NAME") or os.environ.get("DIGEST_ENV", "development")
    if env_name not in CONFIGS:
        raise ConfigError(
            f"DIGEST_ENV={env_name!r} is not one of {', '.join(CONFIGS)}; "
            "set DIGEST_ENV to one of them."
        )
    app.config.from_object(CONFIGS[env_name])
    app.config.from_pyfile("config.py", silent=True)
    app.config.from_prefixed_env("DIGEST")
    if config:
        app.config.update(config)
    _finish_config(app)

    from digest.extensions import babel, csrf, db, limiter, login, migrate

    db.init_app(app)
    from digest.database import tune_engines

    tune_engines(app)
    # Batch mode lets Alembic alter SQLite tables (it copies them) as well as PostgreSQL ones.
    migrate.init_app(app, db, directory=str(PROJECT_ROOT / "migrations"), render_as_batch=True)
    csrf.init_app(app)
    limiter.init_app(app)
    login.init_app(app)
    babel.init_app(app, locale_selector=_select_locale)

    from digest import models  # noqa: F401  (registers the tables on db.metadata)
    from digest.web import admin, headers, public, sessions

    headers.init_app(app)
    sessions.init_app(app)

    app.register_blueprint(public.bp)
    app.register_blueprint(admin.bp, url_prefix="/admin")
    from digest.web import archive

    app.register_blueprint(archive.bp)

    from digest import observability, settings

    settings.init_app(app)
    from digest.web import health

    observability.init_app(app)
    app.register_blueprint(health.bp)
    if app.config.get("PROXY_COUNT"):
        from werkzeug.middleware.proxy_fix import ProxyFix

        count = app.config["PROXY_COUNT"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=count, x_proto=count, x_host=count)  # type: ignore[method-assign]

    from digest.cli import register_commands

    register_commands(app)
    return app


def _finish_config(app: Flask) -> None:
    """Fill the defaults that depend on the instance folder and refuse unusable values."""
    cfg = app.config
    instance = Path(app.instance_path)
    if not cfg.get("SECRET_KEY"):
        raise ConfigError(
            "SECRET_KEY is not set. Generate one with\n"
            "  python -c 'import secrets; print(secrets.token_hex(32))'\n"
            "and export it as DIGEST_SECRET_KEY (or put SECRET_KEY = '...' in "
            f"{instance / 'config.py'})."
        )
    url = cfg.get("DATABASE_URL") or f"sqlite:///{instance / 'digest.db'}"
    # psycopg 3 is the driver we ship; plain postgresql:// URLs would ask for psycopg2.
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    cfg["DATABASE_URL"] = url
    cfg["SQLALCHEMY_DATABASE_URI"] = url
    # No pool_pre_ping: a pooled PostgreSQL connection the server closed (a restart) is
    # found without a round trip per request (digest.database.tune_engines).
    cfg["MAIL_URL"] = cfg.get("MAIL_URL") or f"file://{instance / 'outbox'}"
    cfg["SEED_DIR"] = cfg.get("SEED_DIR") or str(PROJECT_ROOT / "seeds")
    cfg["RATELIMIT_STORAGE_URI"] = cfg.get("RATELIMIT_STORAGE_URL") or "memory://"
    cfg["BABEL_DEFAULT_LOCALE"] = cfg.get("DEFAULT_LANGUAGE", "fr")
    # Two gettext domains so the web pages ("messages") and the email ("email") keep
    # separate catalogues in one folder.
    translations = str(PROJECT_ROOT / "digest" / "translations")
    cfg["BABEL_TRANSLATION_DIRECTORIES"] = f"{translations};{translations}"
    cfg["BABEL_DOMAIN"] = "messages;email"
    cfg["PUBLIC_URL"] = str(cfg.get("PUBLIC_URL", "")).rstrip("/")

    from digest.calendar import newsroom_zone, parse_send_at

    # Refused here, at start, rather than at 07:00 tomorrow when the scheduler first needs them.
    newsroom_zone(cfg["TIMEZONE"])
    parse_send_at(cfg["SEND_AT"])
    from config import validate

    problems = validate(cfg)
    if problems:
        raise ConfigError(
            "the configuration has invalid values:\n  "
            + "\n  ".join(problems)
            + "\nFix them in the environment or in instance/config.py and start again."
        )


def _select_locale() -> str:
    """The reader's language: ?lang=, the lang cookie, the subscriber's own, Accept-Language."""
    from flask import current_app, g, has_request_context, request

    supported = list(current_app.config["LANGUAGES"])
    default = current_app.config["DEFAULT_LANGUAGE"]
    if not has_request_context():
        # Commands and jobs: mail code picks the language explicitly with force_locale.
        return default
    for candidate in (
        request.args.get("lang"),
        request.cookies.get("lang"),
        g.get("subscriber_language"),
    ):
        if candidate is not None and candidate in supported:
            return candidate
    return request.accept_languages.best_match(supported) or default
