"""Commands that run the application: schema, the embedded server, the scheduler."""

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


@click.command("serve")
@click.option(
    "--host", default="127.0.0.1", show_default=True, envvar="HOST", help="Address to listen on."
)
@click.option(
    "--port",
    default=5000,
    show_default=True,
    type=click.IntRange(1, 65535),
    envvar="PORT",
    help="Port to listen on.",
)
@with_appcontext
def serve_command(host: str, port: int) -> None:
    """Serve the site, run the daily schedule and deliver mail, all in one process.

    The embedded default for one machine: `make run` starts it. In production run
    gunicorn, `digest worker` and `digest scheduler` instead.
    """
    from werkzeug.serving import run_simple

    from digest.scheduler import build_scheduler

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    scheduler = build_scheduler(app, blocking=False, deliver=True)
    scheduler.start()
    site = f"http://{host}:{port}"
    click.echo(
        f"digest is running.\n"
        f"  site:    {site}/\n"
        f"  admin:   {site}/admin/  (create an editor: digest create-editor EMAIL)\n"
        f"  outbox:  {app.config['MAIL_URL']}\n"
        f"  daily:   ingest, build and send at {app.config['SEND_AT']} {app.config['TIMEZONE']}\n"
        "Press Ctrl+C to stop."
    )
    try:
        # run_simple, not app.run: Flask ignores app.run() inside its own CLI.
        run_simple(host, port, app, threaded=True, use_reloader=False)
    except OSError as error:
        raise click.ClickException(
            f"cannot listen on {host}:{port} ({error.strerror}); pick another with --port or PORT=."
        ) from error
    finally:
        scheduler.shutdown(wait=False)


@click.command("scheduler")
@with_appcontext
def scheduler_command() -> None:
    """Run the daily schedule alone (ingest, build, queue and send at SEND_AT in TIMEZONE).

    Production runs exactly one of these beside the web processes and `digest worker`;
    a second one started by mistake sends nobody anything twice.
    """
    from digest.scheduler import build_scheduler

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    scheduler = build_scheduler(app, blocking=True, deliver=False)
    click.echo(
        f"scheduler: daily run at {app.config['SEND_AT']} {app.config['TIMEZONE']}; Ctrl+C stops."
    )
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        click.echo("scheduler stopped.")


COMMANDS: list[click.Command] = [init_command, serve_command, scheduler_command]
