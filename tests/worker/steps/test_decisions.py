"""decisions.preauthorize and decisions.authorize (cookbook steps 5 and 6), and TempPass."""

from __future__ import annotations

from sqlalchemy import select

from models import Decision, JobStatus
from models.db import session_scope
from passflow.crypto import cipher_from_settings
from tests.factories import JobFactory
from tests.worker.steps.conftest import ON_SQLITE, through
from worker.steps import decisions, temppass

pytestmark = ON_SQLITE


def _decided(job_id: str) -> dict[str, Decision]:
    with session_scope() as session:
        return {d.resource: d for d in session.scalars(select(Decision).where(
            Decision.job_id == job_id))}


def test_preauthorize_records_a_decision_per_resource(logged_in):
    job = JobFactory(type="preauthorization.requested", device=logged_in,
                     fields={"mvpd": "Cablevision", "resources": ["REF30", "CNN", "HBO"]})
    assert through(decisions.PREAUTHORIZE, job.id).status == JobStatus.SUCCEEDED
    decided = _decided(job.id)
    assert {r: d.decision for r, d in decided.items()} == {
        "REF30": "Permit", "CNN": "Permit", "HBO": "Deny"}
    assert decided["HBO"].error_code == "preauthorization_denied_by_mvpd"
    # Preauthorization carries no media token: it is never used for playback.
    assert all(d.media_token_enc is None for d in decided.values())


def test_authorize_records_the_permit_and_its_media_token_encrypted(logged_in):
    job = JobFactory(device=logged_in)  # authorization.requested of REF30 on Cablevision
    assert through(decisions.AUTHORIZE, job.id).status == JobStatus.SUCCEEDED
    permit = _decided(job.id)["REF30"]
    assert permit.decision == "Permit" and permit.media_token_enc
    token = cipher_from_settings().decrypt(permit.media_token_enc)
    assert token and token not in permit.media_token_enc  # sealed, never stored plain


def test_authorize_records_a_deny_with_its_enhanced_error(logged_in):
    job = JobFactory(device=logged_in, fields={"mvpd": "Cablevision", "resource": "HBO"})
    assert through(decisions.AUTHORIZE, job.id).status == JobStatus.SUCCEEDED
    deny = _decided(job.id)["HBO"]
    assert (deny.decision, deny.error_code) == ("Deny", "authorization_denied_by_mvpd")


def test_temppass_authorizes_without_a_login(step_env):
    job = JobFactory(type="temppass.requested")
    assert through(temppass.AUTHORIZE, job.id).status == JobStatus.SUCCEEDED
    permit = _decided(job.id)["REF30"]
    assert (permit.decision, permit.source) == ("Permit", "temppass")


def test_preauthorization_decisions_caching_permits_are_reused_denies_asked_again(logged_in,
                                                                                step_env):
    """Checklist, Preauthorization Decisions Caching: recent Permits are reused (no call);
    a Deny is asked again; a play never uses them (decisions.authorize always asks)."""
    fields = {"mvpd": "Cablevision", "resources": ["REF30", "CNN", "HBO"]}
    first = JobFactory(type="preauthorization.requested", device=logged_in, fields=fields)
    through(decisions.PREAUTHORIZE, first.id)
    asked = step_env.get("/_sim/stats").json()["decisions.preauthorize 200"]
    again = JobFactory(type="preauthorization.requested", device=logged_in, fields=fields)
    assert through(decisions.PREAUTHORIZE, again.id).status == JobStatus.SUCCEEDED
    decided = _decided(again.id)
    assert {r: (d.decision, d.source) for r, d in decided.items() if r != "HBO"} == {
        "REF30": ("Permit", "passflow-cache"), "CNN": ("Permit", "passflow-cache")}
    assert decided["HBO"].decision == "Deny" and decided["HBO"].source != "passflow-cache"
    assert step_env.get("/_sim/stats").json()["decisions.preauthorize 200"] == asked + 1
    play = JobFactory(device=logged_in)  # authorization of REF30
    through(decisions.AUTHORIZE, play.id)
    assert step_env.get("/_sim/stats").json()["decisions.authorize 200"] == 1
