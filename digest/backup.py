"""Backups: SQLite copied live with its online backup API; PostgreSQL through pg_dump."""

from __future__ import annotations

import datetime as dt
import os
import shlex
import sqlite3
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

# Pages copied per step: small enough that writers are blocked only briefly between steps.
PAGES_PER_STEP = 256


class BackupError(RuntimeError):
    """The backup cannot be made; the message says why and what to do."""


@dataclass
class BackupResult:
    """A finished SQLite backup: where it is and what it holds."""

    path: Path
    size: int
    tables: dict[str, int]


@dataclass
class PostgresCommands:
    """Shell commands that dump and restore a PostgreSQL database."""

    dump: str
    restore: str


def sqlite_path(url: str) -> Path:
    """The file behind a ``sqlite:///`` URL; in-memory databases cannot be backed up."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite"):
        raise BackupError(f"not a SQLite URL: {parsed.drivername}")
    if not parsed.database or parsed.database == ":memory:":
        raise BackupError("an in-memory SQLite database has nothing to back up")
    return Path(parsed.database)


def default_backup_path(directory: Path, now: dt.datetime) -> Path:
    """``<directory>/digest-20260302T070000Z.db`` for a backup taken at ``now``."""
    return directory / f"digest-{now.astimezone(dt.UTC).strftime('%Y%m%dT%H%M%SZ')}.db"


def page_count(source: Path) -> int:
    """How many pages the SQLite file ``source`` holds (0 when it cannot be read)."""
    try:
        with closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as reader:
            return int(reader.execute("PRAGMA page_count").fetchone()[0])
    except sqlite3.Error:
        return 0


def backup_sqlite(
    source: Path,
    target: Path,
    progress: Callable[[int, int], None] | None = None,
) -> BackupResult:
    """Copy the live SQLite database ``source`` to ``target``, consistent and checked.

    Uses SQLite's online backup API, so the copy is a consistent snapshot even while the
    app writes. The copy is written beside ``target`` and renamed only once it passes an
    integrity check, so ``target`` never names a half-written file. ``progress`` is called
    with (pages copied, total pages) after each step.
    """
    if not source.is_file():
        raise BackupError(f"no database at {source}: nothing to back up")
    if target.exists():
        raise BackupError(f"{target} already exists; choose another --output")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)

    def report(status: int, remaining: int, total: int) -> None:
        if progress is not None:
            progress(total - remaining, total)

    try:
        # Read-only: a backup must never create or change the database it copies.
        with (
            closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as reader,
            closing(sqlite3.connect(partial)) as writer,
        ):
            reader.backup(writer, pages=PAGES_PER_STEP, progress=report)
            verdict = writer.execute("PRAGMA integrity_check").fetchone()[0]
            if verdict != "ok":
                raise BackupError(f"the copy failed SQLite's integrity check: {verdict}")
            tables = _table_counts(writer)
    except sqlite3.Error as error:
        partial.unlink(missing_ok=True)
        raise BackupError(f"SQLite could not copy {source}: {error}") from error
    except BackupError:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, target)
    return BackupResult(target, target.stat().st_size, tables)


def _table_counts(connection: sqlite3.Connection) -> dict[str, int]:
    names = [
        row[0]
        for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite_%' ORDER BY name"
        )
    ]
    counts = {}
    for name in names:
        # Names come from our own copy's catalogue; doubling quotes keeps odd ones safe anyway.
        quoted = '"' + name.replace('"', '""') + '"'
        counts[name] = connection.execute(f"SELECT count(*) FROM {quoted}").fetchone()[0]
    return counts


def postgres_commands(url: str, target: str) -> PostgresCommands:
    """pg_dump/pg_restore command lines for ``url``; the password stays out of them."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("postgres"):
        raise BackupError(f"not a PostgreSQL URL: {parsed.drivername}")
    if not parsed.database:
        raise BackupError("the PostgreSQL URL names no database")
    connection: list[str] = []
    if parsed.host:
        connection += ["--host", parsed.host]
    if parsed.port:
        connection += ["--port", str(parsed.port)]
    if parsed.username:
        connection += ["--username", parsed.username]
    dump = [
        "pg_dump",
        *connection,
        "--format=custom",
        "--no-owner",
        "--file",
        target,
        parsed.database,
    ]
    restore = [
        "pg_restore",
        *connection,
        "--clean",
        "--if-exists",
        "--no-owner",
        "--dbname",
        parsed.database,
        target,
    ]
    return PostgresCommands(shlex.join(dump), shlex.join(restore))
