"""configuration.retrieve (the provider list, before the session)."""

from __future__ import annotations

import httpx

from models import JobStatus
from tests.factories import JobFactory
from tests.worker.steps.conftest import ON_SQLITE, through
from worker.steps import StepName, configuration

pytestmark = ON_SQLITE


def test_configuration_retrieval_lists_the_providers_to_pick_from(step_env: httpx.Client):
    """Checklist, Configuration Retrieval: only when the user must pick a provider (no MVPD):
    the job's result lists them (id, display name, logo), TempPass left out."""
    job = JobFactory(type="authentication.requested", fields={},
                     current_step=StepName.CONFIGURATION_RETRIEVE)
    outcome = through(configuration.RETRIEVE, job.id)
    assert (outcome.status, outcome.next_step) == (JobStatus.RUNNING, StepName.SESSIONS_CREATE)
    providers = {m["id"]: m for m in outcome.result["mvpds"]}
    assert providers["Cablevision"]["displayName"] and providers["Cablevision"]["logoUrl"]
    assert "TempPass_TEST40" not in providers


def test_an_mvpd_not_integrated_fails_with_adobes_code(step_env: httpx.Client):
    job = JobFactory(type="authentication.requested", fields={"mvpd": "NoSuchMvpd"},
                     current_step=StepName.CONFIGURATION_RETRIEVE)
    outcome = through(configuration.RETRIEVE, job.id)
    assert outcome.status == JobStatus.FAILED
    assert outcome.error["code"] == "invalid_parameter_mvpd"
