"""models.db: rows added for insertion at commit (a run's decisions, in one statement)."""

from __future__ import annotations

import select as io_select

import psycopg
from sqlalchemy import QueuePool, func, select, text

from models import Decision
from models.db import add_row, make_engine, session_scope
from tests.factories import JobFactory
from tests.support import PG_ADMIN, PG_URL, wait_for


def _row(job, resource: str = "REF30") -> dict:
    return {"job_id": job.id, "device_id": job.device_id, "service_provider": "REF30",
            "mvpd": "Cablevision", "kind": "authorize", "resource": resource,
            "decision": "Permit", "source": "mvpd"}


def _count(job) -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(Decision)
                              .where(Decision.job_id == job.id))


def test_rows_are_inserted_when_the_transaction_commits(factories_bound: None):
    job = JobFactory()
    with session_scope() as session:
        add_row(session, Decision, **_row(job))
        add_row(session, Decision, **_row(job, "CNN"))
        assert _count(job) == 0  # not before the commit
    assert _count(job) == 2
    with session_scope() as session:
        stored = session.scalars(select(Decision).where(Decision.job_id == job.id)).all()
    assert all(d.created_at is not None for d in stored)  # the model's defaults apply


def test_a_rolled_back_transaction_forgets_its_rows(factories_bound: None):
    job = JobFactory()
    with session_scope() as session:
        add_row(session, Decision, **_row(job))
        session.rollback()  # the session goes on, with another transaction
    assert _count(job) == 0



def test_a_pooled_connection_the_server_closed_is_replaced_at_checkout():
    """A restarted or terminating PostgreSQL closes the pool's idle connections: the next
    transaction gets a working connection, not an error (checked at checkout, with no ping)."""
    engine = make_engine(PG_URL, poolclass=QueuePool, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as conn:
            first = conn.scalar(text("SELECT pg_backend_pid()"))
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            assert admin.execute("SELECT pg_terminate_backend(%s)", [first]).fetchone()[0]
            wait_for(lambda: not admin.execute(
                "SELECT 1 FROM pg_stat_activity WHERE pid = %s", [first]).fetchone())
        with engine.connect() as conn:
            assert conn.scalar(text("SELECT pg_backend_pid()")) != first
    finally:
        engine.dispose()


def test_a_pooled_connection_with_a_message_waiting_is_kept():
    """Something to read on an idle connection is not always a goodbye (here a notification):
    a ping tells, and the connection is kept."""
    engine = make_engine(PG_URL, poolclass=QueuePool, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as conn:
            first = conn.scalar(text("SELECT pg_backend_pid()"))
            conn.exec_driver_sql("LISTEN passflow_test_channel")
            conn.commit()
            raw = conn.connection.dbapi_connection
        # (A notification goes to the listeners of the same database.)
        with psycopg.connect(PG_URL.replace("+psycopg", ""), autocommit=True) as other:
            other.execute("NOTIFY passflow_test_channel")
        poller = io_select.poll()
        poller.register(raw.fileno(), io_select.POLLIN)
        wait_for(lambda: poller.poll(0))
        with engine.connect() as conn:
            assert conn.scalar(text("SELECT pg_backend_pid()")) == first
    finally:
        engine.dispose()
