"""Delivery guarantees: duplicate messages, lost messages, cancellation, the shared throttle."""

from __future__ import annotations

import time
import uuid

import httpx
import redis
from sqlalchemy import func, select

import models.db
from models import AuthSession, Decision, Job, JobStep, Registration
from passflow.crypto import cipher_from_settings
from tests.support import make_event, new_device, wait_for_status
from tests.worker.jobs.test_flows import authenticate, submit, view
from worker import jobs
from worker.runner import dispatch
from worker.throttle import DeviceThrottle

SP = "REF30"


def _accept_without_dispatch(type_: str, device, **fields) -> str:
    """An accepted event whose message never reached the broker."""
    with models.db.session_scope() as session:
        job = jobs.accept_event(session, make_event(f"evt-{uuid.uuid4()}", type_, device,
                                                    **fields), default_service_provider=SP)
        return job.id


def test_a_step_delivered_twice_runs_once(jobs_env: httpx.Client):
    device = new_device()
    authenticate(jobs_env, device)
    before = jobs_env.get("/_sim/stats").json().get("decisions.authorize 200", 0)
    job_id = _accept_without_dispatch("authorization.requested", device, mvpd="Cablevision",
                                      resource="REF30")
    dispatch(job_id, "decisions.authorize")
    dispatch(job_id, "decisions.authorize")
    assert wait_for_status(job_id) == "succeeded"
    time.sleep(0.5)  # give the duplicate time to arrive and find nothing to do
    with models.db.session_scope() as session:
        attempts = session.scalar(select(JobStep.attempts).where(JobStep.job_id == job_id))
        decisions = session.scalar(select(func.count()).select_from(Decision).where(
            Decision.job_id == job_id))
    assert (attempts, decisions) == (1, 1)
    after = jobs_env.get("/_sim/stats").json()["decisions.authorize 200"]
    assert after - before == 1


def test_the_sweeper_sends_what_was_never_dispatched(jobs_env: httpx.Client):
    """No message was ever sent for this job: only the periodic sweeper can run it."""
    job_id = _accept_without_dispatch("profiles.requested", new_device())
    assert wait_for_status(job_id, timeout=10) == "succeeded"


def test_a_lost_message_is_sent_again_once_overdue(jobs_env: httpx.Client):
    from datetime import timedelta

    started = time.monotonic()
    with models.db.session_scope() as session:
        job = jobs.accept_event(session, make_event(f"evt-{uuid.uuid4()}", "profiles.requested",
                                                    new_device()), default_service_provider=SP)
        job.dispatched_at = job.next_run_at  # "sent", but the message never arrives
        job_id = job.id
    grace = timedelta(seconds=1)
    with models.db.session_scope() as session:
        assert job_id not in {j for j, _, _ in jobs.due_jobs(session, grace=grace,
                                                               horizon=grace)}
    # The periodic sweeper sends it again once it is overdue by the grace period (1 s).
    assert wait_for_status(job_id, timeout=10) == "succeeded"
    assert time.monotonic() - started >= 1.0


def test_cancelling_a_poll_is_a_row_update(jobs_env: httpx.Client):
    device = new_device()
    job_id = submit("authentication.requested", device, mvpd="Cablevision")
    wait_for_status(job_id, "waiting_for_user")
    with models.db.session_scope() as session:
        assert jobs.cancel(session, job_id)
    polls = _polls(job_id)
    time.sleep(1.0)  # several poll intervals
    assert _polls(job_id) == polls
    assert view(job_id)["status"] == "cancelled"
    with models.db.session_scope() as session:
        assert session.scalar(select(AuthSession.status).where(
            AuthSession.job_id == job_id)) == "cancelled"
        assert not jobs.cancel(session, job_id)  # already final


def _polls(job_id: str) -> int:
    with models.db.session_scope() as session:
        return session.scalar(select(AuthSession.polls).where(AuthSession.job_id == job_id))


def test_credentials_and_tokens_are_stored_encrypted(jobs_env: httpx.Client):
    job_id = submit("profiles.requested", new_device())
    wait_for_status(job_id)
    cipher = cipher_from_settings()
    with models.db.session_scope() as session:
        row = session.scalars(select(Registration)).one()
        secret = cipher.decrypt(row.client_secret_enc)
        token = cipher.decrypt(row.access_token_enc)
    assert secret and secret not in row.client_secret_enc
    assert token and token not in row.access_token_enc
    assert row.token_expires_at is not None


def test_device_throttle_allows_a_burst_then_one_per_second(redis_client: redis.Redis):
    throttle = DeviceThrottle(redis_client, prefix=f"test:{uuid.uuid4()}:")
    waits = [throttle.wait_for("203.0.113.9") for _ in range(11)]
    assert waits[:10] == [0.0] * 10
    assert 0.9 < waits[10] <= 1.0
    assert throttle.wait_for("203.0.113.10") == 0.0  # another device, its own bucket
    time.sleep(1.05)
    assert throttle.wait_for("203.0.113.9") == 0.0


def test_job_rows_are_final_or_due(jobs_env: httpx.Client):
    """Every job is either final or names a step that is due: nothing is stuck unnamed."""
    with models.db.session_scope() as session:
        stuck = session.scalar(select(func.count()).select_from(Job).where(
            Job.current_step.is_(None),
            Job.status.not_in(["succeeded", "failed", "expired", "cancelled"])))
    assert stuck == 0
