"""Commands for the person running digest: status, backup, doctor."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy.exc import SQLAlchemyError

from digest.observability import SCHEDULER_HEARTBEAT, StatusReport


def _when(moment: dt.datetime | None, now: dt.datetime) -> str:
    if moment is None:
        return "never"
    seconds = int((now - moment).total_seconds())
    if seconds < 0:
        return moment.strftime("%Y-%m-%d %H:%M UTC")
    if seconds < 120:
        ago = f"{seconds}s ago"
    elif seconds < 7200:
        ago = f"{seconds // 60} min ago"
    elif seconds < 172800:
        ago = f"{seconds // 3600} h ago"
    else:
        ago = f"{seconds // 86400} days ago"
    return f"{moment.strftime('%Y-%m-%d %H:%M UTC')} ({ago})"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted(counts.items())) or "none"


def format_status(report: StatusReport) -> str:
    """The status report as the terminal summary `digest status` prints."""
    now = report.now
    lines = [f"digest status at {now.strftime('%Y-%m-%d %H:%M')} UTC", "", "Editions"]
    if not report.recent_editions:
        lines.append("  none yet (`digest build` makes today's)")
    for edition in report.recent_editions:
        lines.append(
            f"  {edition.day.isoformat()}  #{edition.id:<5} {edition.status:<9} "
            f"deliveries: {_counts(edition.deliveries)}"
        )
    states = {state: 0 for state in ("queued", "sending", "sent", "failed", "bounced")}
    for (_, state), count in report.deliveries.items():
        states[state] = states.get(state, 0) + count
    replies = ", ".join(
        f"{code} x{count}" for code, count in sorted(report.replies_by_code.items())
    )
    lines += [
        "",
        "Queue",
        f"  {report.queue_depth} queued ({report.due_now} due now); {_counts(states)}",
        f"  send rate {report.send_rate_per_minute:.1f}/min over the last 5 minutes; "
        f"last sent {_when(report.last_sent_at, now)}",
        f"  SMTP replies: {replies or 'none yet'}",
        "",
        "Subscribers",
        f"  {_counts(report.subscribers_by_status)}; "
        f"sign-ups {report.signups}, confirmed {report.confirmations}",
        "",
        "Last runs",
    ]
    scheduler = report.heartbeats.get(SCHEDULER_HEARTBEAT)
    lines.append(f"  scheduler heartbeat: {_when(scheduler, now)}")
    built = [e.updated_at for e in report.recent_editions if e.updated_at]
    sent = [e.sent_at for e in report.recent_editions if e.sent_at]
    lines.append(
        f"  edition last built: {_when(max(built) if built else None, now)}; "
        f"last finished sending: {_when(max(sent) if sent else None, now)}"
    )
    for name, moment in sorted(report.heartbeats.items()):
        if name != SCHEDULER_HEARTBEAT:
            lines.append(f"  {name} heartbeat: {_when(moment, now)}")
    fetched = [s.last_fetched_at for s in report.sources if s.last_fetched_at]
    failing = [s for s in report.sources if s.status == "error"]
    lines.append(
        f"  ingest: {len(report.sources)} sources, {len(failing)} failing, "
        f"last fetch {_when(max(fetched) if fetched else None, now)}; "
        f"{report.articles} articles stored"
    )
    errors = [f"  source {s.name}: {(s.last_error or 'error').splitlines()[0]}" for s in failing]
    errors += [
        f"  delivery #{f.id} ({f.kind}"
        + (f", edition #{f.edition_id}" if f.edition_id else "")
        + f", {f.attempts} attempts): {(f.last_error or 'no reason recorded').splitlines()[0]}"
        for f in report.recent_failures
    ]
    lines += ["", "Errors", *(errors or ["  none"])]
    return "\n".join(lines)


def _report_as_json(report: StatusReport) -> str:
    data: dict[str, Any] = asdict(report)
    data["deliveries"] = [
        {"kind": kind, "state": state, "count": count}
        for (kind, state), count in sorted(report.deliveries.items())
    ]
    data["send_rate_per_minute"] = report.send_rate_per_minute
    return json.dumps(data, default=str, indent=2, ensure_ascii=False)


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@with_appcontext
def status_command(as_json: bool) -> None:
    """Summarize editions, the delivery queue, subscribers, last runs and errors."""
    from digest.extensions import db
    from digest.observability import collect_status

    try:
        report = collect_status(db.session, dt.datetime.now(dt.UTC))
    except SQLAlchemyError as error:
        raise click.ClickException(
            f"cannot read the database ({str(error).splitlines()[0]}); "
            "is it running, and has `digest init` been run?"
        ) from error
    click.echo(_report_as_json(report) if as_json else format_status(report))


@click.command("backup")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the copy (default: BACKUP_DIR/digest-<time>.db).",
)
@with_appcontext
def backup_command(output: Path | None) -> None:
    """Copy the SQLite database while it runs; for PostgreSQL, print the pg_dump commands."""
    from digest.backup import (
        BackupError,
        backup_sqlite,
        default_backup_path,
        page_count,
        postgres_commands,
        sqlite_path,
    )

    url = current_app.config["DATABASE_URL"]
    now = dt.datetime.now(dt.UTC)
    try:
        if url.startswith("postgres"):
            target = str(output or f"digest-{now.strftime('%Y%m%dT%H%M%SZ')}.dump")
            commands = postgres_commands(url, target)
            click.echo(
                "PostgreSQL is backed up with its own tools. Run, where pg_dump can reach "
                "the server\n(the password comes from PGPASSWORD or ~/.pgpass):\n\n"
                f"  {commands.dump}\n\nTo restore into an empty database, then bring the "
                f"schema up to date:\n\n  {commands.restore}\n  digest init"
            )
            return
        source = sqlite_path(url)
        configured = current_app.config.get("BACKUP_DIR")
        directory = Path(configured) if configured else Path(current_app.instance_path) / "backups"
        target_path = output or default_backup_path(directory, now)
        with click.progressbar(length=page_count(source), label="Copying pages") as bar:

            def progress(done: int, total: int) -> None:
                bar.update(done - bar.pos)

            result = backup_sqlite(source, target_path, progress)
    except BackupError as error:
        raise click.ClickException(str(error)) from error
    rows = ", ".join(f"{name} {count}" for name, count in result.tables.items())
    click.echo(f"Backed up {source} to {result.path} ({result.size} bytes).")
    click.echo(f"Rows: {rows}")
    click.echo(f"Restore: stop digest, then copy {result.path} over {source}.")


_MARKS = {"ok": "  ok  ", "warning": "  WARN", "error": "  FAIL"}


@click.command("doctor")
@click.option(
    "--skip-database", is_flag=True, help="Check only the configuration, not the database."
)
@click.pass_context
@with_appcontext
def doctor_command(ctx: click.Context, skip_database: bool) -> None:
    """Check the configuration for production and mail delivery; print what to fix."""
    from digest.doctor import ERROR, WARNING, check_configuration, check_runtime

    findings = check_configuration(current_app.config)
    if not skip_database:
        findings += check_runtime(dt.datetime.now(dt.UTC))
    width = max(len(f.topic) for f in findings)
    for finding in findings:
        click.echo(f"{_MARKS[finding.level]}  {finding.topic:<{width}}  {finding.message}")
        if finding.fix and finding.level != "ok":
            click.echo(f"        {'':<{width}}  fix: {finding.fix}")
    errors = sum(f.level == ERROR for f in findings)
    warnings = sum(f.level == WARNING for f in findings)
    env = current_app.config.get("ENV_NAME")
    click.echo(f"\n{errors} to fix, {warnings} to consider ({env} settings).")
    if errors:
        ctx.exit(1)


COMMANDS: list[click.Command] = [status_command, backup_command, doctor_command]
