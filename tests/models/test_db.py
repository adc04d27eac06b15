"""models.db: rows added for insertion at commit (a run's decisions, in one statement)."""

from __future__ import annotations

from sqlalchemy import func, select

from models import Decision
from models.db import add_row, session_scope
from tests.factories import JobFactory


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
