"""A step's lease (worker.jobs): the claim counts the run in the step row, and a run settles
its jobs only while it still holds their leases. On both databases: PostgreSQL runs each of
these transitions as one statement, SQLite as two."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from models import Job, JobStatus, JobStep, utcnow
from models.db import session_scope
from tests.factories import JobFactory
from worker import jobs

pytestmark = pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)

STEP = "decisions.authorize"
LEASE = timedelta(seconds=30)


def _claim(job_id: str, owner: str) -> dict[str, jobs.Claim]:
    with session_scope() as session:
        return jobs.claim_many(session, [job_id], STEP, owner, lease=LEASE)


def _expire_lease(job_id: str) -> None:
    """The worker holding it stalled past its lease (paused, or its call too slow)."""
    with session_scope() as session:
        session.execute(update(Job).where(Job.id == job_id).values(
            lease_until=utcnow() - timedelta(seconds=1)))


def _step_row(job_id: str) -> tuple[str, int, object]:
    with session_scope() as session:
        row = session.scalars(select(JobStep).where(JobStep.job_id == job_id)).one()
        return row.status, row.attempts, row.finished_at


def _settle(job_id: str, owner: str) -> None:
    with session_scope() as session:
        job = session.get_one(Job, job_id)
        jobs.settle(session, STEP, owner, [(job, jobs.Outcome(JobStatus.SUCCEEDED))])


def test_a_claimed_job_is_held_once_and_each_run_is_counted(factories_bound):
    job = JobFactory()
    first = _claim(job.id, "worker-a")
    assert (first[job.id].device_id, first[job.id].attempts) == (job.device.id, 1)
    assert _claim(job.id, "worker-b") == {}  # held: a second message finds nothing
    _expire_lease(job.id)
    again = _claim(job.id, "worker-b")
    assert again[job.id].attempts == 2 and _step_row(job.id)[:2] == ("running", 2)


def test_a_run_that_lost_its_lease_settles_nothing(factories_bound):
    job = JobFactory()
    _claim(job.id, "worker-a")
    _expire_lease(job.id)
    _claim(job.id, "worker-b")  # took it over
    with pytest.raises(jobs.LeaseLost):
        _settle(job.id, "worker-a")
    with session_scope() as session:
        row = session.get_one(Job, job.id)
        assert (row.status, row.lease_owner, row.finished_at) == ("running", "worker-b", None)
    assert _step_row(job.id) == ("running", 2, None)
    _settle(job.id, "worker-b")  # the run holding the lease ends it
    with session_scope() as session:
        row = session.get_one(Job, job.id)
        assert (row.status, row.lease_owner, row.current_step) == ("succeeded", None, None)
    status, attempts, finished_at = _step_row(job.id)
    assert (status, attempts) == ("succeeded", 2) and finished_at is not None
