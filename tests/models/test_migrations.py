"""Alembic: the models and the migrations agree, and they round-trip on both databases."""

from __future__ import annotations

import subprocess
import sys

import pytest
from alembic.util.exc import CommandError
from sqlalchemy import create_engine, inspect, text

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


def test_a_rolling_upgrade_keeps_the_previous_release_running(empty_database: str):
    """`db upgrade` records which code runs on the new schema: the previous release too when
    the migration only adds (expand), so its pods keep running and may restart mid-rollout;
    a release two behind, or one whose next migration contracts, is refused with the fix."""
    from alembic.script import ScriptDirectory

    from passflow.database import alembic_config, head, runs_on

    scripts = ScriptDirectory.from_config(alembic_config())

    def before(revision: str) -> str:
        return str(scripts.get_revision(revision).down_revision)

    expanding = "b4d6f8a0c2e3"  # 0.4.0's: only adds
    assert scripts.get_revision(expanding).module.EXPAND_ONLY
    upgrade(empty_database, expanding)
    engine = create_engine(empty_database)
    try:
        with engine.connect() as connection:
            assert runs_on(connection, code_head=expanding) is None
            assert runs_on(connection, code_head=before(expanding)) is None  # it still runs
            refused = runs_on(connection, code_head=before(before(expanding)))
        assert refused is not None and "passflow db upgrade" in refused
        upgrade(empty_database)
        sealing = head()  # 0.5.0's seals activation codes: the release before cannot poll them
        assert not getattr(scripts.get_revision(sealing).module, "EXPAND_ONLY", False)
        with engine.connect() as connection:
            assert runs_on(connection) is None
            assert "passflow db upgrade" in runs_on(connection, code_head=before(sealing))
        downgrade(empty_database, before(sealing))
        with engine.connect() as connection:  # the new code on the old schema: refused
            assert "passflow db upgrade" in runs_on(connection)
    finally:
        engine.dispose()


def _db(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli", "db", *args], capture_output=True,
                          text=True, timeout=120)


@pytest.mark.slow  # subprocesses (make test-fast leaves it out)
def test_a_downgrade_that_would_delete_rows_is_refused_with_their_count(tmp_path):
    """`passflow db downgrade` counts what the way down deletes: refused, saying how many and
    changing nothing, unless --lose-data; every db fault is one line."""
    url = f"sqlite:///{tmp_path / 'down.db'}"
    assert _db("upgrade", "--url", url).returncode == 0
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            for brand in ("CNN", "NBC"):
                connection.execute(text(
                    "INSERT INTO service_providers (id, software_statement_enc, status, "
                    "added_at) VALUES (:id, 'sealed', 'active', '2026-12-04 10:00:00')"),
                    {"id": brand})
    finally:
        engine.dispose()
    refused = _db("downgrade", "c4a1d9e2f7b3", "--yes", "--url", url)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "2 added service providers" in refused.stderr and "--lose-data" in refused.stderr
    from passflow.database import head

    assert f"database: {head()}" in _db("current", "--url", url).stdout  # nothing changed
    done = _db("downgrade", "c4a1d9e2f7b3", "--yes", "--lose-data", "--url", url)
    assert done.returncode == 0 and "deleted 2 added service providers" in done.stdout
    assert "database: c4a1d9e2f7b3" in _db("current", "--url", url).stdout
    assert "c4a1d9e2f7b3 (current)" in _db("history", "--url", url).stdout
    for args in (("downgrade", "no-such-revision", "--yes"), ("check",)):
        fault = _db(*args, "--url", url)
        assert fault.returncode == 2 and len(fault.stderr.strip().splitlines()) == 1, fault
        assert "Traceback" not in fault.stderr
