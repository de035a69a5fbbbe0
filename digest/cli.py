"""The ``digest`` command: Flask's FlaskGroup over the app factory, one module per area."""

from __future__ import annotations

import sys
from typing import Any

import click
from flask import Flask
from flask.cli import FlaskGroup


def register_commands(app: Flask) -> None:
    """Attach every area's commands to ``app.cli`` (FlaskGroup lists them under ``digest``)."""
    from digest.commands import (
        editions,
        editors,
        ingest,
        mail,
        operate,
        ops,
        subscribers,
        understand,
    )

    for module in (ops, ingest, understand, editions, mail, subscribers, editors, operate):
        for command in module.COMMANDS:
            app.cli.add_command(command)


def _create_app() -> Flask:
    from digest import create_app

    return create_app()


class DigestGroup(FlaskGroup):
    """FlaskGroup without Flask's own --app/--env-file/--debug options: digest knows its app."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.params = [p for p in self.params if p.name not in {"app", "env_file", "debug"}]


@click.group(
    cls=DigestGroup,
    create_app=_create_app,
    add_default_commands=False,
    add_version_option=False,
    load_dotenv=False,
    set_debug_flag=False,
)
def cli() -> None:
    """digest: gather the day's news, sort it, and email it to subscribers.

    Configuration comes from config.py, then instance/config.py, then DIGEST_*
    environment variables (DIGEST_DATABASE_URL, DIGEST_MAIL_URL, DIGEST_SECRET_KEY, ...).
    """


def main() -> None:
    """Console-script entry point; configuration and database errors print what to do."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from digest import ConfigError

    try:
        cli.main(prog_name="digest")
    except ConfigError as error:
        click.echo(f"Error: {error}", err=True)
        sys.exit(2)
    except (OperationalError, ProgrammingError) as error:
        # Unreachable server, missing SQLite folder, or tables not created yet.
        reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
        click.echo(
            f"Error: the database is not usable ({reason}).\n"
            "Check DIGEST_DATABASE_URL, then run `digest init` to create or upgrade the schema.",
            err=True,
        )
        sys.exit(1)
