"""`digest send`, `digest worker`, `digest bounces`: the edges of the delivery ledger."""

from __future__ import annotations

import datetime as dt
import signal
import time
from pathlib import Path
from types import FrameType
from zoneinfo import ZoneInfo

import click
from flask import current_app
from flask.cli import with_appcontext

from digest.extensions import db
from digest.mail.transports import Transport


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _today() -> dt.date:
    return _now().astimezone(ZoneInfo(current_app.config["TIMEZONE"])).date()


def _transport() -> Transport:
    from digest.mail.transports import app_transport

    try:
        # The app itself, not the proxy: current_app is typed as Flask, the proxy's own
        # method is not in the stubs.
        return app_transport(current_app._get_current_object())  # type: ignore[attr-defined]
    except ValueError as error:
        raise click.ClickException(f"MAIL_URL: {error}") from error


class _StopFlag:
    """Set by SIGTERM/SIGINT so a worker finishes the message in hand, then stops."""

    def __init__(self) -> None:
        self.stopped = False

    def __call__(self) -> bool:
        return self.stopped

    def install(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            self.stopped = True

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


@click.command("send")
@click.option(
    "--date",
    "day",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Edition day (YYYY-MM-DD); default: today in TIMEZONE.",
)
@click.option("--limit", type=click.IntRange(min=1), help="Send at most this many messages.")
@with_appcontext
def send_command(day: dt.datetime | None, limit: int | None) -> None:
    """Build the day's edition if needed, queue it for subscribers, and deliver.

    Safe to run again (or after a crash): nobody receives the same edition twice.
    """
    from digest.mail.delivery import SenderBusy, send_edition
    from digest.mail.signing import SigningError

    when = day.date() if day else _today()
    now = _now()
    transport = _transport()
    bar_state: dict[str, object] = {}

    def on_start(total: int) -> None:
        bar = click.progressbar(length=total, label=f"Sending {when.isoformat()}")
        bar_state["bar"] = bar
        bar.__enter__()

    def on_progress(count: int) -> None:
        bar = bar_state.get("bar")
        if bar is not None:
            bar.update(count)  # type: ignore[attr-defined]

    try:
        result = send_edition(
            db.session, transport, when, now, limit=limit, on_start=on_start, progress=on_progress
        )
    except (SenderBusy, SigningError) as error:
        raise click.ClickException(str(error)) from error
    except LookupError as error:
        raise click.ClickException(str(error)) from error
    finally:
        bar = bar_state.get("bar")
        if bar is not None:
            bar.__exit__(None, None, None)  # type: ignore[attr-defined]
        transport.close()
    report = result.report
    click.echo(
        f"Edition {when.isoformat()}: {result.queued} newly queued; "
        f"{report.sent} sent, {report.retried} to retry, {report.bounced} bounced, "
        f"{report.cancelled} cancelled; {result.remaining} still waiting."
    )
    if report.recovered:
        click.echo(f"Recovered {report.recovered} messages left by an interrupted sender.")
    if report.paused:
        click.echo(f"Sending is paused: {report.paused}", err=True)
        raise SystemExit(1)


@click.command("worker")
@click.option("--once", is_flag=True, help="Deliver what is due now, then exit.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="Seconds to wait when nothing is due.",
)
@with_appcontext
def worker_command(once: bool, interval: float) -> None:
    """Deliver queued mail continuously (any number of workers on PostgreSQL, one on SQLite)."""
    from digest.mail.delivery import SenderBusy, deliver_pending
    from digest.mail.signing import SigningError

    stop = _StopFlag()
    stop.install()
    transport = _transport()
    try:
        while not stop():
            try:
                report = deliver_pending(db.session, transport, _now(), should_stop=stop)
            except (SenderBusy, SigningError) as error:
                raise click.ClickException(str(error)) from error
            if report.handled or report.recovered:
                click.echo(
                    f"{_now():%H:%M:%S} sent {report.sent}, retry {report.retried}, "
                    f"bounced {report.bounced}, cancelled {report.cancelled}"
                    + (f", recovered {report.recovered}" if report.recovered else "")
                )
            if report.paused:
                click.echo(f"Sending is paused: {report.paused}", err=True)
            if once:
                break
            if not report.handled:
                # Sleep in short steps so SIGTERM is honoured promptly.
                deadline = time.monotonic() + interval
                while not stop() and time.monotonic() < deadline:
                    time.sleep(min(0.2, interval))
            db.session.remove()
    finally:
        transport.close()


@click.command("bounces")
@click.argument("source", type=click.Path(path_type=Path))
@with_appcontext
def bounces_command(source: Path) -> None:
    """Apply bounce reports from SOURCE: one message file, an mbox, a Maildir or a folder.

    Permanent failures mark the delivery bounced and, after MAIL_BOUNCE_LIMIT of them,
    suppress the subscriber; delays are noted. Reading the same reports again changes nothing.
    """
    from digest.mail.bounces import BounceSourceError, process_bounces

    try:
        report = process_bounces(
            db.session, source, _now(), int(current_app.config.get("MAIL_BOUNCE_LIMIT", 2))
        )
    except BounceSourceError as error:
        raise click.ClickException(str(error)) from error
    except OSError as error:
        raise click.ClickException(f"cannot read {source}: {error.strerror or error}") from error
    click.echo(
        f"{report.messages} messages: {report.hard} permanent failures "
        f"({report.suppressed} subscribers suppressed), {report.soft} delays, "
        f"{report.already_known} already known, {report.not_bounces} not bounces, "
        f"{report.unreadable} unreadable."
    )
    if report.unmatched:
        click.echo(f"No delivery found for: {', '.join(sorted(set(report.unmatched)))}", err=True)


COMMANDS: list[click.Command] = [send_command, worker_command, bounces_command]
