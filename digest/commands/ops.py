"""Commands that run the application: schema, server, scheduler."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext


@click.command("init")
@with_appcontext
def init_command() -> None:
    """Create the database schema, or upgrade it to the newest migration."""
    from digest.database import upgrade_schema

    upgrade_schema()
    click.echo(f"Database ready: {current_app.config['DATABASE_URL']}")


COMMANDS: list[click.Command] = [init_command]
