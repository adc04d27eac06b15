"""Delivery guarantees: duplicate messages, lost messages, cancellation, the shared throttle."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import httpx
import pytest
import redis
from sqlalchemy import func, select

import models.db
from models import FINAL_STATUSES, AuthSession, Decision, Job, JobStep, Registration, utcnow
from passflow.crypto import cipher_from_settings
from tests.factories import DeviceFactory, JobFactory
from tests.support import new_device, wait_for, wait_for_status
from tests.worker.jobs.test_flows import authenticate, submit, view
from worker import dispatch, engine, jobs, policy
from worker.runtime import runtime
from worker.throttle import DeviceThrottle

SP = "REF30"


def _accepted_not_sent(type_: str, device, **fields) -> str:
    """An accepted event whose message never reached the broker."""
    row = DeviceFactory(id=device.id, last_ip=device.ip, last_port=device.port,
                        last_info=dict(device.info))
    return JobFactory(type=type_, device=row, fields=fields).id


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[str], dict[str, str]]]:
    """Every run of the engine: the job ids its message named, and what it did."""
    seen: list[tuple[list[str], dict[str, str]]] = []
    original = engine.run

    def recording(step_name: str, job_ids: list[str], *, owner: str) -> dict[str, str]:
        results = original(step_name, job_ids, owner=owner)
        seen.append((list(job_ids), results))
        return results

    monkeypatch.setattr(engine, "run", recording)
    return seen


def test_a_step_delivered_twice_runs_once(jobs_env: httpx.Client, runs):
    device = new_device()
    authenticate(jobs_env, device)
    before = jobs_env.get("/_sim/stats").json().get("decisions.authorize 200", 0)
    job_id = _accepted_not_sent("authorization.requested", device, mvpd="Cablevision",
                                resource="REF30")
    dispatch.send_step("decisions.authorize", [job_id])
    dispatch.send_step("decisions.authorize", [job_id])
    assert wait_for_status(job_id) == "succeeded"
    # Both messages arrived (the sweeper may have sent a third); only one claimed the job.
    wait_for(lambda: sum(job_id in named for named, _ in runs) >= 2)
    assert sum(job_id in results for _, results in runs) == 1
    with models.db.session_scope() as session:
        attempts = session.scalar(select(JobStep.attempts).where(JobStep.job_id == job_id))
        decisions = session.scalar(select(func.count()).select_from(Decision).where(
            Decision.job_id == job_id))
    assert (attempts, decisions) == (1, 1)
    after = jobs_env.get("/_sim/stats").json()["decisions.authorize 200"]
    assert after - before == 1


def test_the_sweeper_sends_what_was_never_dispatched(jobs_env: httpx.Client):
    """No message was ever sent for this job: only the periodic sweeper can run it."""
    job_id = _accepted_not_sent("profiles.requested", new_device())
    assert wait_for_status(job_id, timeout=10) == "succeeded"


def test_a_lost_message_is_sent_again_once_overdue(jobs_env: httpx.Client):
    started = time.monotonic()
    now = utcnow()
    # "Sent", but the message never arrives.
    job_id = JobFactory(type="profiles.requested", next_run_at=now, dispatched_at=now).id
    grace = timedelta(seconds=1)
    with models.db.session_scope() as session:
        assert job_id not in {j for j, _, _ in jobs.due_jobs(session, grace=grace,
                                                               horizon=grace, limit=100)}
    # The periodic sweeper sends it again once it is overdue by the grace period (1 s).
    assert wait_for_status(job_id, timeout=10) == "succeeded"
    assert time.monotonic() - started >= 1.0


def test_cancelling_a_poll_is_a_row_update(jobs_env: httpx.Client):
    job_id = submit("authentication.requested", new_device(), mvpd="Cablevision")
    other = submit("authentication.requested", new_device(), mvpd="Cablevision")
    wait_for_status(job_id, "waiting_for_user")
    with models.db.session_scope() as session:
        assert jobs.cancel(session, [job_id]) == [job_id]
    polls = _polls(job_id)
    # The other session is polled three more times meanwhile: this one not once.
    wait_for_status(other, "waiting_for_user")
    others = _polls(other)
    wait_for(lambda: _polls(other) >= others + 3)
    assert _polls(job_id) == polls
    assert view(job_id)["status"] == "cancelled"
    with models.db.session_scope() as session:
        assert session.scalar(select(AuthSession.status).where(
            AuthSession.job_id == job_id)) == "cancelled"
        assert jobs.cancel(session, [job_id]) == []  # already final


def _polls(job_id: str) -> int:
    with models.db.session_scope() as session:
        return session.scalar(select(AuthSession.polls).where(AuthSession.job_id == job_id))


def test_credentials_and_tokens_are_stored_encrypted(jobs_env: httpx.Client):
    job_id = submit("profiles.requested", new_device())
    wait_for_status(job_id)
    cipher = cipher_from_settings()
    with models.db.session_scope() as session:
        row = session.scalars(select(Registration).where(
            Registration.key == runtime().adobe_for("REF30").registration_key)).one()
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
    started = time.monotonic()
    wait_for(lambda: throttle.wait_for("203.0.113.9") == 0.0, timeout=3, interval=0.05)
    assert time.monotonic() - started >= 0.85  # a token a second


def test_a_busy_device_is_served_in_order_of_arrival(redis_client: redis.Redis,
                                                    monkeypatch: pytest.MonkeyPatch):
    """Callers that find the budget spent queue up: each is told its own turn, a later caller
    never overtakes an earlier one, and one that does not come back is dropped."""
    monkeypatch.setattr(policy, "THROTTLE_GRACE_S", 0.5)
    throttle = DeviceThrottle(redis_client, rate_per_s=10.0, burst=1,
                              prefix=f"test:{uuid.uuid4()}:")
    key = "198.18.0.1"
    assert throttle.wait_for(key, "first") == 0.0  # the burst
    turns = {m: throttle.wait_for(key, m) for m in ("a", "b", "c")}
    assert 0 < turns["a"] < turns["b"] < turns["c"]
    assert turns["c"] - turns["a"] == pytest.approx(0.2, abs=0.02)  # one place = 1/rate
    assert throttle.wait_for("198.18.0.2", "other") == 0.0  # another device waits for nobody
    wait_for(lambda: throttle.wait_for(key, "a") == 0.0, timeout=3, interval=0.02)
    assert throttle.wait_for(key, "c") > 0  # "b" is still before "c"
    # "b" never comes back for its turn: once past it (and the grace), "c" is served.
    wait_for(lambda: throttle.wait_for(key, "c") == 0.0, timeout=3, interval=0.05)


def test_job_rows_are_final_or_due(jobs_env: httpx.Client):
    """Every job of every kind is either final or names a step that is due: nothing is stuck
    unnamed, and nothing final still names a step."""
    device = new_device()
    authenticate(jobs_env, device)
    job_ids = [
        submit("profiles.requested", device),
        submit("authentication.requested", new_device(), mvpd="Cablevision"),
        submit("preauthorization.requested", device, mvpd="Cablevision",
               resources=["REF30", "CNN"]),
        submit("authorization.requested", device, mvpd="Cablevision", resource="REF30"),
        submit("temppass.requested", new_device(), mvpd="TempPass_TEST40", resource="REF30"),
    ]
    for job_id in job_ids:
        wait_for_status(job_id, "succeeded", "failed", "waiting_for_user")
    final = [s.value for s in FINAL_STATUSES]
    with models.db.session_scope() as session:
        rows = session.execute(select(Job.status, Job.current_step, Job.next_run_at).where(
            Job.id.in_(job_ids))).all()
    assert len(rows) == len(job_ids)
    for status, step, due in rows:
        assert (status in final) == (step is None), (status, step)
        assert status in final or due is not None


def test_devices_sent_without_an_address_share_one_bucket(redis_client: redis.Redis):
    """With PASSFLOW_DEVICES_SHARE_ADDRESS Adobe sees passflow's own address for all of them:
    they are throttled together here too, as Adobe will."""
    shared = DeviceThrottle(redis_client, burst=2, prefix=f"test:{uuid.uuid4()}:",
                            shared_key="passflow-egress")
    waits = [shared("profiles.list", {"AP-Device-Identifier": f"fingerprint d{i}"})
             for i in range(3)]
    assert waits[:2] == [0.0, 0.0] and waits[2] > 0
    assert shared("profiles.list", {"X-Forwarded-For": "192.0.2.77"}) == 0.0  # its own bucket
