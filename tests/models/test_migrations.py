"""Alembic: the models and the migrations agree, and they round-trip on both databases."""

from __future__ import annotations

import pytest
from alembic.util.exc import CommandError
from sqlalchemy import create_engine, inspect

from passflow.database import check, downgrade, upgrade
from tests.support import fresh_postgres


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'migrate.db'}"
    return fresh_postgres("passflow_migrations_test")


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade_and_check(empty_database: str):
    upgrade(empty_database)
    assert {"jobs", "events", "auth_sessions", "profiles", "decisions", "logouts",
            "registrations", "devices", "job_steps"} <= _tables(empty_database)
    check(empty_database)  # raises when autogenerate would find a difference
    downgrade(empty_database)
    assert _tables(empty_database) == set()
    upgrade(empty_database)
    check(empty_database)


def test_check_fails_on_an_unmigrated_database(tmp_path):
    with pytest.raises(CommandError):
        check(f"sqlite:///{tmp_path / 'empty.db'}")
