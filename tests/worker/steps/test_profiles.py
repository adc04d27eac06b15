"""profiles.retrieve, profiles.check, profiles.poll, profiles.fetch (cookbook steps 2 and 4)."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy import func, select

from models import AuthSession, Device, JobStatus, Profile, SessionStatus, utcnow
from models.db import session_scope
from passflow.settings import get_settings
from tests.factories import AuthSessionFactory, DeviceFactory, JobFactory, ProfileFactory
from tests.support import activation_codes
from tests.worker.steps.conftest import ON_SQLITE, through
from worker.steps import StepName, profiles, sessions

pytestmark = ON_SQLITE


def _profiles(job_id: str) -> list[str]:
    with session_scope() as session:
        return list(session.scalars(select(Profile.mvpd).where(Profile.job_id == job_id)))


def test_retrieve_saves_every_profile_of_the_device(logged_in):
    job = JobFactory(type="profiles.requested", device=logged_in)
    assert through(profiles.RETRIEVE, job.id).status == JobStatus.SUCCEEDED
    assert _profiles(job.id) == ["Cablevision"]


def test_retrieve_for_a_device_without_profiles_saves_none(step_env: httpx.Client):
    job = JobFactory(type="profiles.requested")
    assert through(profiles.RETRIEVE, job.id).status == JobStatus.SUCCEEDED
    assert _profiles(job.id) == []


def test_check_ends_an_authentication_that_is_not_needed(logged_in):
    job = JobFactory(type="authentication.requested", device=logged_in)
    outcome = through(profiles.CHECK, job.id)
    assert (outcome.status, outcome.next_step) == (JobStatus.SUCCEEDED, None)
    assert outcome.result == {"already_authenticated": True}
    assert _profiles(job.id) == ["Cablevision"]


def test_check_without_a_profile_goes_straight_to_the_session_for_a_known_mvpd(
        step_env: httpx.Client):
    job = JobFactory(type="authentication.requested")  # Cablevision
    outcome = through(profiles.CHECK, job.id)
    assert (outcome.status, outcome.next_step) == (JobStatus.RUNNING, StepName.SESSIONS_CREATE)


def test_check_without_an_mvpd_goes_to_the_configuration_to_pick_one(step_env: httpx.Client):
    job = JobFactory(type="authentication.requested", fields={})
    outcome = through(profiles.CHECK, job.id)
    assert outcome.next_step == StepName.CONFIGURATION_RETRIEVE


def test_profiles_caching_a_stored_profile_is_reused_without_a_call(step_env: httpx.Client):
    """Checklist, Profiles Caching: a valid stored profile answers, no request; a logout
    ends its reuse."""
    device = DeviceFactory()
    stored = ProfileFactory(job__device=device)
    job = JobFactory(type="authentication.requested", device=device)
    before = step_env.get("/_sim/stats").json().get("requests", 0)
    outcome = through(profiles.CHECK, job.id)
    assert outcome.status == JobStatus.SUCCEEDED and outcome.result["profile_reused"]
    assert step_env.get("/_sim/stats").json().get("requests", 0) == before
    assert _profiles(job.id) == ["Cablevision"]
    with session_scope() as session:  # as logout.initiate ends them
        for row in session.scalars(select(Profile).where(Profile.device_id == device.id)):
            row.logged_out_at = utcnow()
    assert stored.id
    again = JobFactory(type="authentication.requested", device=device)
    assert through(profiles.CHECK, again.id).next_step == StepName.SESSIONS_CREATE


def test_a_returning_user_is_asked_for_its_mvpds_profile_only(logged_in):
    """The device's last MVPD is remembered: GET /profiles/{mvpd}, not every profile."""
    with session_scope() as session:
        session.get_one(Device, logged_in.id).last_mvpd = "Cablevision"
    job = JobFactory(type="authentication.requested", device=logged_in, fields={})
    assert through(profiles.CHECK, job.id).status == JobStatus.SUCCEEDED
    stats = httpx.get(f"{get_settings().pass_base_url}/_sim/stats").json()
    assert stats.get("profiles.mvpd 200") == 1 and "profiles.list 200" not in stats


def _session_for_poll(step_env: httpx.Client) -> str:
    """An authentication job whose session Adobe Pass created (sessions.create ran)."""
    job = JobFactory(type="authentication.requested", current_step=StepName.SESSIONS_CREATE)
    assert through(sessions.CREATE, job.id).next_step == StepName.PROFILES_POLL
    return job.id


def test_poll_waits_until_the_user_logs_in(step_env: httpx.Client):
    job_id = _session_for_poll(step_env)
    waiting = through(profiles.POLL, job_id)
    assert (waiting.status, waiting.next_step) == (JobStatus.WAITING_FOR_USER,
                                                   StepName.PROFILES_POLL)
    [code] = activation_codes(job_id)
    step_env.post("/_sim/login", json={"code": code}).raise_for_status()
    assert through(profiles.POLL, job_id).status == JobStatus.SUCCEEDED
    assert _profiles(job_id) == ["Cablevision"]
    with session_scope() as session:
        auth = session.scalars(select(AuthSession).where(AuthSession.job_id == job_id)).one()
        assert (auth.status, auth.polls) == (SessionStatus.AUTHENTICATED, 2)


def test_poll_past_not_after_expires_without_a_call(step_env: httpx.Client):
    auth = AuthSessionFactory(not_after=utcnow() - timedelta(seconds=1))
    before = step_env.get("/_sim/stats").json().get("requests", 0)
    outcome = through(profiles.POLL, auth.job_id)
    assert outcome.status == JobStatus.EXPIRED
    assert outcome.error["code"] == "authentication_session_expired"
    assert step_env.get("/_sim/stats").json().get("requests", 0) == before


def test_poll_of_a_superseded_session_stops(step_env: httpx.Client):
    auth = AuthSessionFactory(status=SessionStatus.SUPERSEDED)
    assert through(profiles.POLL, auth.job_id).status == JobStatus.CANCELLED


def test_poll_of_a_code_adobe_does_not_know_expires(step_env: httpx.Client):
    auth = AuthSessionFactory(code="NOSUCH1")
    outcome = through(profiles.POLL, auth.job_id)
    assert outcome.status == JobStatus.EXPIRED


def test_fetch_saves_the_profile_after_an_authorize_answer(logged_in):
    job = JobFactory(type="authentication.requested", device=logged_in,
                     current_step=StepName.PROFILES_FETCH, state={"mvpd": "Cablevision"})
    assert through(profiles.FETCH, job.id).status == JobStatus.SUCCEEDED
    assert _profiles(job.id) == ["Cablevision"]


def test_fetch_without_a_profile_fails_clearly(step_env: httpx.Client):
    job = JobFactory(type="authentication.requested", device=DeviceFactory(),
                     current_step=StepName.PROFILES_FETCH, state={"mvpd": "Cablevision"})
    outcome = through(profiles.FETCH, job.id)
    assert outcome.status == JobStatus.FAILED
    assert outcome.error["code"] == "authenticated_profile_missing"
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Profile).where(
            Profile.job_id == job.id)) == 0


def test_a_device_accepted_without_device_info_is_never_sent_and_the_job_says_why(step_env):
    """An event accepted before intake refused such devices: no call goes out without
    X-Device-Info; the job fails with a reason to act on, no retry."""
    from models import Job
    from worker import engine

    job = JobFactory(type="profiles.requested", device=DeviceFactory(last_info={}),
                     current_step=StepName.PROFILES_RETRIEVE)
    before = len(step_env.get("/_sim/requests").json())
    engine.run(StepName.PROFILES_RETRIEVE, [job.id], owner="test")
    with session_scope() as session:
        done = session.get_one(Job, job.id)
        assert done.status == JobStatus.FAILED
        assert done.error["code"] == "device_info_missing"
        assert "device.info" in done.error["message"]
    assert len(step_env.get("/_sim/requests").json()) == before
