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
