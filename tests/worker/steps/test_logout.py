"""logout.initiate (cookbook step 7) and registration upkeep (step 1)."""

from __future__ import annotations

from sqlalchemy import select

from models import Device, JobStatus, Logout, Registration
from models.db import session_scope
from tests.factories import JobFactory
from tests.worker.steps.conftest import ON_SQLITE, through
from worker.runtime import runtime
from worker.steps import logout
from worker.steps.dcr import keep_token_fresh

pytestmark = ON_SQLITE


def test_logout_records_each_removed_profile_and_forgets_the_mvpd(logged_in):
    with session_scope() as session:
        session.get_one(Device, logged_in.id).last_mvpd = "Cablevision"
    job = JobFactory(type="logout.requested", device=logged_in)
    assert through(logout.INITIATE, job.id).status == JobStatus.SUCCEEDED
    with session_scope() as session:
        rows = session.scalars(select(Logout).where(Logout.job_id == job.id)).all()
        assert [(r.mvpd, r.action_name) for r in rows] == [("Cablevision", "logout")]
        assert session.get_one(Device, logged_in.id).last_mvpd is None


def test_registration_keeps_one_token_for_the_pool(step_env):
    keep_token_fresh(runtime())
    with session_scope() as session:
        row = session.scalars(select(Registration).where(
            Registration.key == runtime().adobe_for("REF30").registration_key)).one()
        assert row.client_id and row.access_token_enc and row.token_expires_at
