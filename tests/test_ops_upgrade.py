"""Upgrades: a database made by the first migration, full of data, reaches head losing nothing."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory
from flask import Flask

from digest.extensions import db
from tests.conftest import PROJECT_ROOT, make_test_app

MIGRATIONS = PROJECT_ROOT / "migrations"
WHEN = dt.datetime(2026, 3, 2, 7, 0, tzinfo=dt.UTC)


def _script() -> ScriptDirectory:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config)


def _first_revision() -> str:
    bases = _script().get_bases()
    assert len(bases) == 1, f"migrations should start from one revision, not {bases}"
    return bases[0]


def _wipe() -> None:
    db.session.remove()
    reflected = sa.MetaData()
    reflected.reflect(db.engine)
    reflected.drop_all(db.engine)


@pytest.fixture
def empty_app(database_url: str, tmp_path: Path) -> Iterator[Flask]:
    """An app on a database with no tables at all."""
    app = make_test_app(database_url, tmp_path)
    with app.app_context():
        _wipe()
        yield app
        _wipe()
        db.engine.dispose()


def _sample(table: sa.Table, column: sa.Column[Any]) -> Any:
    """A value for ``column`` that a careless migration would mangle (accents, zones, JSON)."""
    if column.foreign_keys:
        return 1  # every table's first row has id 1, inserted parents first
    kind = column.type
    if isinstance(kind, sa.Boolean):
        return True
    if isinstance(kind, sa.Integer):
        return 1 if column.primary_key else 42
    if isinstance(kind, sa.Float | sa.Numeric):
        return 0.75
    if isinstance(kind, sa.DateTime):
        return WHEN
    if isinstance(kind, sa.Date):
        return WHEN.date()
    if isinstance(kind, sa.JSON):
        return {"kept": ["Rabat", "été"], "n": 3}
    if isinstance(kind, sa.String | sa.Text):
        text = f"{table.name}.{column.name} é"
        return text[: kind.length] if kind.length else text
    raise AssertionError(f"no sample value for {table.name}.{column.name} ({kind!r})")


def _snapshot(connection: sa.Connection) -> dict[str, list[dict[str, Any]]]:
    reflected = sa.MetaData()
    reflected.reflect(connection)
    rows = {}
    for table in reflected.sorted_tables:
        if table.name == "alembic_version":
            continue
        result = connection.execute(sa.select(table))
        rows[table.name] = [dict(row._mapping) for row in result]
    return rows


def _normal(value: Any) -> Any:
    # SQLite returns stored datetimes without their zone (they are UTC); compare like with like.
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def test_upgrading_from_the_first_migration_keeps_every_row(empty_app: Flask) -> None:
    runner = empty_app.test_cli_runner()
    first = _first_revision()
    result = runner.invoke(args=["db", "upgrade", first])
    assert result.exit_code == 0, result.output

    with db.engine.begin() as connection:
        reflected = sa.MetaData()
        reflected.reflect(connection)
        for table in reflected.sorted_tables:
            if table.name == "alembic_version":
                continue
            connection.execute(
                table.insert().values(
                    {column.name: _sample(table, column) for column in table.columns}
                )
            )
    with db.engine.connect() as connection:
        before = _snapshot(connection)
    assert before and all(len(rows) == 1 for rows in before.values())

    result = runner.invoke(args=["init"])
    assert result.exit_code == 0, result.output
    with db.engine.connect() as connection:
        head = connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
        after = _snapshot(connection)
    assert head == _script().get_current_head()

    for name, rows in before.items():
        assert name in after, f"upgrade dropped table {name}"
        assert len(after[name]) == len(rows), f"upgrade lost rows of {name}"
        for old, new in zip(rows, after[name], strict=True):
            for column, value in old.items():
                assert column in new, f"upgrade dropped {name}.{column}"
                assert _normal(new[column]) == _normal(value), f"{name}.{column} changed"


def test_the_upgraded_database_works_with_todays_models(empty_app: Flask) -> None:
    runner = empty_app.test_cli_runner()
    assert runner.invoke(args=["db", "upgrade", _first_revision()]).exit_code == 0
    assert runner.invoke(args=["init"]).exit_code == 0
    from digest.models import Subscriber

    db.session.add(Subscriber(email="after-upgrade@example.org"))
    db.session.commit()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Subscriber)) == 1
