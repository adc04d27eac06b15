"""Job state transitions from outside a step (worker.jobs), on records built by factories."""

from __future__ import annotations

import pytest

from models import Device, Job
from models.db import session_scope
from passflow.crypto import cipher_from_settings
from tests.factories import AuthSessionFactory, JobFactory
from worker import jobs
from worker.steps import FIRST_STEP

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def test_tv_provider_selection_caching_the_pick_is_kept_with_its_name_and_logo(
        factories_bound):
    """Checklist, TV Provider Selection Caching: the user's MVPD selection is stored with its
    id, display name and logo (the device's), and its job and session keep it."""
    job = JobFactory(type="authentication.requested", fields={}, mvpd=None,
                     current_step="profiles.poll", status="waiting_for_user")
    AuthSessionFactory(job=job, mvpd=None, code="TYPED42")
    with session_scope() as session:  # the code as the user typed it
        jobs.provider_picked(session, cipher_from_settings(), service_provider="REF30",
                             code="typed-42 ",
                             mvpd="Spectrum", display_name="Spectrum",
                             logo_url="https://example.com/spectrum.png")
    with session_scope() as session:
        device = session.get_one(Device, job.device.id)
        assert (device.last_mvpd, device.last_mvpd_name, device.last_mvpd_logo_url) == (
            "Spectrum", "Spectrum", "https://example.com/spectrum.png")
        assert session.get_one(Job, job.id).mvpd == "Spectrum"


def test_cancel_ends_the_job_and_its_pending_session(factories_bound):
    auth = AuthSessionFactory()
    with session_scope() as session:
        assert jobs.cancel(session, [auth.job_id], code="cancelled") == [auth.job_id]
        assert jobs.cancel(session, [auth.job_id]) == []  # already final
    with session_scope() as session:
        job = session.get_one(Job, auth.job_id)
        assert (job.status, job.current_step, job.error["code"]) == ("cancelled", None,
                                                                     "cancelled")


def test_two_operators_retrying_one_failed_job_at_once_make_one_retry(factories_bound):
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    from sqlalchemy import select

    failed = JobFactory(status="failed", current_step=None, next_run_at=None)
    barrier = Barrier(2)

    def retry(who: str) -> str:
        barrier.wait()
        try:
            with session_scope() as session:
                return jobs.retry(session, failed.id, first_steps=FIRST_STEP,
                                  requested_by=who).id
        except jobs.NotRetryable as exc:
            return f"refused: {exc}"

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(retry, ["ops-a", "ops-b"]))
    assert sum(not a.startswith("refused") for a in answers) == 1, answers
    with session_scope() as session:
        assert len(session.scalars(select(Job).where(Job.retry_of == failed.id)).all()) == 1


def test_the_state_machine_refuses_what_its_table_does_not_allow(database_url):
    from models import JobStatus
    from worker.jobs import MOVES, IllegalMove, Outcome, check_move

    check_move("queued", Outcome(JobStatus.RUNNING, next_step="decisions.authorize"))
    check_move("waiting_for_user", Outcome(JobStatus.SUCCEEDED))
    for current, outcome in (
            ("succeeded", Outcome(JobStatus.RUNNING, next_step="decisions.authorize")),
            ("cancelled", Outcome(JobStatus.SUCCEEDED)),
            ("running", Outcome(JobStatus.QUEUED, next_step="profiles.check")),
            ("running", Outcome(JobStatus.SUCCEEDED, next_step="profiles.check")),
            ("running", Outcome(JobStatus.WAITING_FOR_USER)),
            ("running", Outcome(JobStatus.FAILED))):
        with pytest.raises(IllegalMove):
            check_move(current, outcome)
    assert all(MOVES[final] == frozenset() for final in
               ("succeeded", "failed", "expired", "cancelled"))


def test_a_step_deciding_an_illegal_move_fails_its_job_alone(factories_bound, monkeypatch):
    """A bug in a step (an outcome the table refuses) ends that job `internal_error`, saying
    so; the other job of the run is settled as its step decided."""
    import dataclasses

    from models import JobStatus
    from worker import engine
    from worker.jobs import Outcome
    from worker.steps import STEPS

    good, bad = JobFactory(), JobFactory()

    def apply(ctx, answer):
        if ctx.job.id == bad.id:
            return Outcome(JobStatus.SUCCEEDED, next_step="decisions.authorize")
        return Outcome(JobStatus.SUCCEEDED)

    step = STEPS[good.current_step]
    monkeypatch.setitem(STEPS, step.name, dataclasses.replace(
        step, plan=lambda ctx: None, apply=apply))
    said = engine.run(step.name, [good.id, bad.id], owner="test")
    assert said == {good.id: "succeeded", bad.id: "failed"}
    with session_scope() as session:
        failed = session.get_one(Job, bad.id)
        assert failed.error["code"] == "internal_error"
        assert "IllegalMove" in failed.error["message"]
        assert session.get_one(Job, good.id).status == "succeeded"


def test_a_job_cancelled_during_its_call_is_reported_as_the_database_holds_it(
        factories_bound, monkeypatch):
    """An operator cancels a play while its call is in flight: the run's answer is dropped,
    the job stays cancelled, and the engine reports `cancelled`, not what the step decided."""
    import dataclasses

    from models import JobStatus
    from worker import engine
    from worker.jobs import Outcome
    from worker.steps import STEPS

    job = JobFactory()

    def call_meanwhile_cancelled():
        with session_scope() as session:
            jobs.cancel(session, [job.id], message="cancelled by api:on-call")
        return "answer"

    step = STEPS[job.current_step]
    monkeypatch.setitem(STEPS, step.name, dataclasses.replace(
        step, plan=lambda ctx: call_meanwhile_cancelled,
        apply=lambda ctx, answer: Outcome(JobStatus.SUCCEEDED)))
    assert engine.run(step.name, [job.id], owner="test") == {job.id: "cancelled"}
    with session_scope() as session:
        assert session.get_one(Job, job.id).status == "cancelled"
