"""configuration.retrieve (the provider list, before the session)."""

from __future__ import annotations

import httpx

from models import Device, JobStatus
from models.db import session_scope
from tests.factories import JobFactory
from tests.worker.steps.conftest import ON_SQLITE, through
from worker.steps import StepName, configuration

pytestmark = ON_SQLITE


def test_a_known_mvpd_goes_on_to_the_session(step_env: httpx.Client):
    job = JobFactory(type="authentication.requested",
                     current_step=StepName.CONFIGURATION_RETRIEVE)
    outcome = through(configuration.RETRIEVE, job.id)
    assert (outcome.status, outcome.next_step) == (JobStatus.RUNNING, StepName.SESSIONS_CREATE)
    with session_scope() as session:
        assert session.get_one(Device, job.device.id).last_mvpd == "Cablevision"


def test_an_mvpd_not_integrated_fails_with_adobes_code(step_env: httpx.Client):
    job = JobFactory(type="authentication.requested", fields={"mvpd": "NoSuchMvpd"},
                     current_step=StepName.CONFIGURATION_RETRIEVE)
    outcome = through(configuration.RETRIEVE, job.id)
    assert outcome.status == JobStatus.FAILED
    assert outcome.error["code"] == "invalid_parameter_mvpd"
