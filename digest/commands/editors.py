"""`digest` commands for the editors area."""

from __future__ import annotations

import datetime as dt
import sys

import click
from flask.cli import with_appcontext

from digest import accounts, audit
from digest.extensions import db


@click.command("create-editor")
@click.argument("email")
@click.option(
    "--role",
    type=click.Choice(["admin", "editor"]),
    default="admin",
    show_default=True,
    help="admin also manages editors; editor reviews and sends editions.",
)
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of standard input instead of asking.",
)
@with_appcontext
def create_editor_command(email: str, role: str, password_stdin: bool) -> None:
    """Create an editor who can log in at /admin with EMAIL and a password."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt(
            "Password", hide_input=True, confirmation_prompt="Repeat the password"
        )
    now = dt.datetime.now(dt.UTC)
    try:
        editor = accounts.create_editor(db.session, email, password, role, now)
    except accounts.AccountError as error:
        db.session.rollback()
        raise click.ClickException(str(error)) from error
    audit.record(
        db.session, "editor.create", now, actor="cli", target=editor.email, detail={"role": role}
    )
    db.session.commit()
    click.echo(f"Editor {editor.email} created ({editor.role}); log in at /admin/login.")


COMMANDS: list[click.Command] = [create_editor_command]
