"""partner.wait: a partner request whose response never comes expires, saying what to send."""

from __future__ import annotations

from models import Job, JobStatus
from models.db import session_scope
from tests.factories import JobFactory
from tests.worker.steps.conftest import ON_SQLITE, through
from worker.steps import partner
from worker.views import waiting_for

pytestmark = ON_SQLITE


def test_a_partner_request_with_no_response_expires_saying_what_was_missing(step_env):
    job = JobFactory(type="partner_authentication.requested", current_step="partner.wait",
                     status=JobStatus.WAITING_FOR_USER.value,
                     result={"partner_request": {"type": "saml", "request": "x"}})
    with session_scope() as session:
        said = waiting_for(session.get_one(Job, job.id), [])
    assert "partner_authentication.responded" in said
    outcome = through(partner.WAIT, job.id)
    assert outcome.status == JobStatus.EXPIRED
    assert outcome.error["code"] == "partner_response_missing"
    assert "partner_authentication.responded" in outcome.error["message"]
