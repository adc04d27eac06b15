"""sessions.create (cookbook step 3)."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from models import AuthSession, Job, JobStatus, JobStep, SessionStatus, StepStatus
from models.db import session_scope
from passflow.crypto import cipher_from_settings
from passflow.settings import get_settings
from tests.factories import DeviceFactory, JobFactory
from tests.support import activation_codes
from tests.worker.steps.conftest import ON_SQLITE, through
from worker import engine
from worker.runtime import runtime
from worker.steps import StepName, sessions

pytestmark = ON_SQLITE


def _session(job_id: str) -> AuthSession:
    with session_scope() as session:
        return session.scalars(select(AuthSession).where(AuthSession.job_id == job_id)).one()


def test_create_gives_a_code_and_a_url_and_waits_for_the_user(step_env: httpx.Client):
    job = JobFactory(type="authentication.requested", current_step=StepName.SESSIONS_CREATE)
    outcome = through(sessions.CREATE, job.id)
    assert (outcome.status, outcome.next_step) == (JobStatus.WAITING_FOR_USER,
                                                   StepName.PROFILES_POLL)
    auth = _session(job.id)
    assert auth.status == SessionStatus.PENDING and "code" not in outcome.result
    code, url = auth.code(cipher_from_settings()), auth.url(cipher_from_settings())
    assert url.endswith(f"/api/v2/authenticate/REF30/{code}")
    assert auth.mvpd == "Cablevision" and auth.not_after > auth.created_at


def test_a_new_code_supersedes_the_devices_older_one(step_env: httpx.Client):
    device = DeviceFactory()
    older = JobFactory(type="authentication.requested", device=device,
                       current_step=StepName.SESSIONS_CREATE)
    through(sessions.CREATE, older.id)
    with session_scope() as session:
        session.get_one(Job, older.id).status = JobStatus.WAITING_FOR_USER
    newer = JobFactory(type="authentication.requested", device=device,
                       current_step=StepName.SESSIONS_CREATE)
    through(sessions.CREATE, newer.id)
    assert _session(older.id).status == SessionStatus.SUPERSEDED
    assert _session(newer.id).status == SessionStatus.PENDING
    with session_scope() as session:
        job = session.get_one(Job, older.id)
        assert (job.status, job.current_step) == (JobStatus.CANCELLED, None)
        assert job.error["code"] == "superseded" and newer.id in job.error["message"]


def test_two_codes_for_one_device_in_one_run_leave_one_waiting(step_env: httpx.Client):
    """Two authentication events for one device whose sessions are created in the same run
    (one transaction): the one applied later supersedes the other, as across runs."""
    device = DeviceFactory()
    both = [JobFactory(type="authentication.requested", device=device,
                       current_step=StepName.SESSIONS_CREATE).id for _ in range(2)]
    results = engine.run(StepName.SESSIONS_CREATE, both, owner="test-run")
    assert sorted(results.values()) == ["cancelled", "waiting_for_user"], results
    with session_scope() as session:
        jobs = {job_id: session.get_one(Job, job_id) for job_id in both}
        statuses = sorted(job.status for job in jobs.values())
        assert statuses == [JobStatus.CANCELLED, JobStatus.WAITING_FOR_USER]
        [newer] = [j for j in both if jobs[j].status == JobStatus.WAITING_FOR_USER]
        [older] = [j for j in both if j != newer]
        assert jobs[older].error["code"] == "superseded" and newer in jobs[older].error["message"]
        # Its step made a session before it was superseded: the step says it ended.
        step = session.scalars(select(JobStep).where(JobStep.job_id == older)).one()
        assert (step.step, step.status) == (StepName.SESSIONS_CREATE, StepStatus.SUCCEEDED)
        assert step.finished_at is not None
    assert _session(older).status == SessionStatus.SUPERSEDED
    assert _session(newer).status == SessionStatus.PENDING


def _configuration_calls(sim: httpx.Client) -> int:
    return sum(n for name, n in sim.get("/_sim/stats").json().items()
               if name.startswith("configuration "))


def _domain_sent(code: str) -> str:
    from tests.support import new_device

    info = runtime().adobe_for("REF30").sessions.retrieve("REF30", code, device=new_device())
    return info.existing_parameters["domainName"]


def test_a_login_naming_its_mvpd_makes_no_configuration_call(step_env: httpx.Client,
                                                             monkeypatch):
    """Checklist, Configuration Retrieval: "only when requiring to prompt the user to select
    their MVPD". With PASSFLOW_DOMAIN_NAME set, nothing learned yet, no configuration call."""
    rt = runtime()
    rt.redis.delete(rt._domain_key("REF30"))
    monkeypatch.setattr(get_settings(), "domain_name", "tv.example.org")
    job = JobFactory(type="authentication.requested", fields={"mvpd": "Cablevision"},
                     current_step=StepName.SESSIONS_CREATE)
    outcome = through(sessions.CREATE, job.id)
    assert outcome.status == JobStatus.WAITING_FOR_USER
    assert _configuration_calls(step_env) == 0
    assert _domain_sent(activation_codes(job.id)[0]) == "tv.example.org"


def test_without_the_setting_the_domain_is_learned_once_and_kept(step_env: httpx.Client,
                                                                 monkeypatch):
    rt = runtime()
    rt.redis.delete(rt._domain_key("REF30"))
    rt.redis.delete(*rt.redis.keys("passflow:configuration:*") or ["none"])
    monkeypatch.setattr(get_settings(), "domain_name", None)
    codes = []
    for _ in range(3):
        job = JobFactory(type="authentication.requested", fields={"mvpd": "Cablevision"},
                         current_step=StepName.SESSIONS_CREATE)
        through(sessions.CREATE, job.id)
    codes.extend(activation_codes(job.id))
    assert _configuration_calls(step_env) == 1  # the first login, never again
    # The configuration's cache expires; the learned domain does not.
    rt.redis.delete(*rt.redis.keys("passflow:configuration:*"))
    job = JobFactory(type="authentication.requested", fields={"mvpd": "Cablevision"},
                     current_step=StepName.SESSIONS_CREATE)
    through(sessions.CREATE, job.id)
    codes.extend(activation_codes(job.id))
    assert _configuration_calls(step_env) == 1
    assert {_domain_sent(code) for code in codes} == {"adobe.com"}
