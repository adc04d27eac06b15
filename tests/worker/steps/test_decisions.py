"""decisions.preauthorize and decisions.authorize (cookbook steps 5 and 6), and TempPass."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from models import Decision, Job, JobStatus, Profile, utcnow
from models.db import session_scope
from passflow.crypto import cipher_from_settings
from passflow.settings import get_settings
from tests.factories import DecisionFactory, DeviceFactory, JobFactory, ProfileFactory
from tests.worker.steps.conftest import ON_SQLITE, through
from worker import engine
from worker.runtime import runtime
from worker.steps import StepName, decisions, profiles, temppass
from worker.steps.base import StepContext

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
    """Checklist, Preauthorization Decisions Caching: recent Permits are reused (no call)
    while the device's stored profile holds; a Deny is asked again; a play never uses them
    (decisions.authorize always asks)."""
    ProfileFactory(job__device=logged_in)  # passflow's record of the device's login
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


def test_preauthorization_decisions_caching_only_inside_the_decisions_own_window(logged_in,
                                                                               step_env):
    """A stored Permit is reused only inside its own notBefore-notAfter (never for a fixed
    time past it), never when degradation gave it (only Adobe knows when a rule ends), and
    never from a copy passflow served itself (that would restart the clock for ever)."""
    ProfileFactory(job__device=logged_in)
    now = utcnow()
    for resource, extra in (("NBC", {"not_after": now + timedelta(minutes=5)}),
                            ("CNN", {"not_after": now - timedelta(seconds=1)}),
                            ("ESPN", {"not_before": now + timedelta(minutes=1)}),
                            ("REF30", {"source": "degradation"}),
                            ("ABC", {"source": "passflow-cache"})):
        DecisionFactory(job__device=logged_in, kind="preauthorize", resource=resource, **extra)
    job = JobFactory(type="preauthorization.requested", device=logged_in, fields={
        "mvpd": "Cablevision", "resources": ["NBC", "CNN", "ESPN", "REF30", "ABC"]})
    assert through(decisions.PREAUTHORIZE, job.id).status == JobStatus.SUCCEEDED
    sources = {r: d.source for r, d in _decided(job.id).items()}
    assert sources["NBC"] == "passflow-cache"
    assert all(sources[r] == "mvpd" for r in ("CNN", "ESPN", "REF30", "ABC")), sources


def test_a_decisions_own_window_is_stored_apart_from_its_media_tokens(logged_in):
    """Adobe's samples give a decision valid longer than its media token: both are kept."""
    job = JobFactory(device=logged_in)
    through(decisions.AUTHORIZE, job.id)
    permit = _decided(job.id)["REF30"]
    assert permit.not_after is not None and permit.token_not_after is not None
    assert permit.not_after > permit.token_not_after  # 3600 s against 600 s (fixtures)


def test_a_play_refused_for_a_missing_profile_forgets_what_passflow_kept(step_env):
    """Adobe Pass answers a play authenticated_profile_missing while passflow holds a profile
    and Permits for the device: both are forgotten (the server-to-server cookbook: invalidate
    when told), the job says so, and the next authentication and preauthorization ask Adobe."""
    device = DeviceFactory()
    ProfileFactory(job__device=device)  # Adobe Pass has no profile for it
    DecisionFactory(job__device=device, kind="preauthorize", resource="CNN")
    play = JobFactory(device=device, current_step=StepName.DECISIONS_AUTHORIZE)
    engine.run(StepName.DECISIONS_AUTHORIZE, [play.id], owner="test")
    with session_scope() as session:
        error = session.get_one(Job, play.id).error
    assert error["code"] == "authenticated_profile_missing"
    assert error["profiles_forgotten"] == 1 and "sign in again" in error["message"]

    login = JobFactory(type="authentication.requested", device=device)
    outcome = through(profiles.CHECK, login.id)
    assert outcome.next_step == StepName.SESSIONS_CREATE  # not "already authenticated"
    before = step_env.get("/_sim/stats").json().get("decisions.preauthorize 403", 0)
    catalogue = JobFactory(type="preauthorization.requested", device=device,
                           fields={"mvpd": "Cablevision", "resources": ["CNN"]})
    engine.run(StepName.DECISIONS_PREAUTHORIZE, [catalogue.id], owner="test")
    assert "passflow-cache" not in {d.source for d in _decided(catalogue.id).values()}
    assert step_env.get("/_sim/stats").json().get("decisions.preauthorize 403", 0) == before + 1


def test_permits_are_not_reused_after_a_logout(step_env, logged_in):
    ProfileFactory(job__device=logged_in)
    DecisionFactory(job__device=logged_in, kind="preauthorize", resource="CNN")
    with session_scope() as session:  # as logout.initiate ends them
        for row in session.scalars(select(Profile).where(Profile.device_id == logged_in.id)):
            row.logged_out_at = utcnow()
    ProfileFactory(job__device=logged_in)  # signed in again since
    job = JobFactory(type="preauthorization.requested", device=logged_in,
                     fields={"mvpd": "Cablevision", "resources": ["CNN"]})
    through(decisions.PREAUTHORIZE, job.id)
    assert _decided(job.id)["CNN"].source != "passflow-cache"


def test_authorization_decisions_retrieval_a_media_token_that_fails_is_not_handed_on(
        step_env):
    """A Permit whose media token is expired, not yet valid, or for another requestor or MVPD
    is reported with its reason (media_token_invalid), never passed on silently."""
    import time

    from worker.adobe_pass.types import Decisions

    now_ms = int(time.time() * 1000)
    cases = {
        "expired": {"notBefore": now_ms - 600_000, "notAfter": now_ms - 1000},
        "not yet valid": {"notBefore": now_ms + 3_600_000, "notAfter": now_ms + 4_000_000},
        "another requestor": {"notBefore": now_ms, "notAfter": now_ms + 400_000,
                              "serviceProvider": "OTHER"},
    }
    for case, fields in cases.items():
        token = {"notBefore": fields["notBefore"], "notAfter": fields["notAfter"],
                 "serializedToken": "c2lnbmVk"}
        answer = Decisions.model_validate({"decisions": [{
            "resource": "REF30", "serviceProvider": fields.get("serviceProvider", "REF30"),
            "mvpd": "Cablevision", "authorized": True, "token": token}]})
        # (already final: not a due job for a worker of a later test to run)
        play = JobFactory(status=JobStatus.FAILED.value, current_step=None)
        with session_scope() as session:
            ctx = StepContext(session, session.get_one(Job, play.id), get_settings(), runtime())
            outcome = decisions.authorize_apply(ctx, answer)
        assert outcome.status == JobStatus.FAILED, case
        assert outcome.error["code"] == "media_token_invalid", case
        assert _decided(play.id) == {}, case  # no Permit stored to hand on


def test_authorization_decisions_retrieval_a_token_signed_for_something_else_is_refused(
        database_url: str):
    """With the verification certificate, the signed fields count, not the answer's: a token
    signed for another resource or requestor, altered after signing, or not Adobe's layout is
    refused with its reason."""
    import base64

    from passflow.media_tokens import verify
    from simulator import signing

    cert = signing.certificate_pem()
    token = signing.sign("<authToken><requestorID>REF30</requestorID><resourceID>&lt;rss&gt;"
                         "</resourceID><mvpdId>Cablevision</mvpdId></authToken>")
    signed = verify(token, cert)
    assert (signed.requestor, signed.resource, signed.mvpd) == ("REF30", "<rss>", "Cablevision")
    altered = base64.b64encode(base64.b64decode(token).replace(b"REF30", b"REF31")).decode()
    for bad, reason in ((altered, "does not verify"), ("c2lnbmVk", "no signature"),
                        ("not base64!", "not Base64"), ("A" * 20_000, "too long")):
        try:
            verify(bad, cert)
        except ValueError as exc:
            assert reason in str(exc), (reason, exc)
        else:
            raise AssertionError(f"{reason}: accepted")
    from worker.adobe_pass.types import Decisions

    now_ms = int(utcnow().timestamp() * 1000)
    [decision] = Decisions.model_validate({"decisions": [{
        "resource": "CNN", "serviceProvider": "REF30", "mvpd": "Cablevision",
        "authorized": True, "token": {"notBefore": now_ms, "notAfter": now_ms + 400_000,
                                      "serializedToken": token}}]}).decisions
    problem = decisions.media_token_problem(decision, service_provider="REF30",
                                            mvpd="Cablevision", resource="CNN", certificate=cert)
    assert problem == "its media token was signed for resource <rss>"


def test_a_play_that_sat_in_a_queue_is_not_failed_for_the_devices_budget(logged_in):
    """A play accepted 11 minutes ago that no worker took (a queue outage) meets a busy device
    budget on its first run: it waits its turn (the deadline counts from the step's first run),
    it does not fail `rate_limited ... waited 660 s`, which would blame Adobe's throttle."""
    from datetime import timedelta

    from worker.runtime import runtime as rt

    job = JobFactory(device=logged_in, created_at=utcnow() - timedelta(minutes=11),
                     current_step=StepName.DECISIONS_AUTHORIZE)
    rt().throttle.answered_429("decisions.authorize", {"X-Forwarded-For": logged_in.last_ip},
                               retry_after=5)
    engine.run(StepName.DECISIONS_AUTHORIZE, [job.id], owner="test")
    with session_scope() as session:
        waiting = session.get_one(Job, job.id)
        assert waiting.status != JobStatus.FAILED.value, waiting.error
        assert waiting.next_run_at > utcnow()  # released until the device's turn


def test_a_play_no_worker_took_says_so_in_its_story_and_its_failure(logged_in):
    """Plays due 11 minutes ago that no worker took (nobody consumed `decisions`): the one
    decided says it was taken late and why, the one that fails names the outage in its
    reason, next to Adobe's own answer, rather than leaving a support agent to blame Adobe."""
    from worker.views import job_view

    due = utcnow() - timedelta(minutes=11)
    played = JobFactory(device=logged_in, next_run_at=due,
                        current_step=StepName.DECISIONS_AUTHORIZE)
    stranger = JobFactory(next_run_at=due, current_step=StepName.DECISIONS_AUTHORIZE)
    on_time = JobFactory(device=logged_in, current_step=StepName.DECISIONS_AUTHORIZE)
    for job in (played, stranger, on_time):
        engine.run(StepName.DECISIONS_AUTHORIZE, [job.id], owner="test")
    with session_scope() as session:
        views = {job.id: job_view(session, session.get_one(Job, job.id), None)
                 for job in (played, stranger, on_time)}
    decided, failed = views[played.id], views[stranger.id]
    assert decided["status"] == JobStatus.SUCCEEDED.value, decided["error"]
    [late] = decided["delays"]
    assert (late["step"], late["queue"]) == ("decisions.authorize", "decisions")
    assert "no worker took decisions.authorize for 11 min" in late["reason"]
    assert failed["status"] == JobStatus.FAILED.value
    assert failed["error"]["code"] != "rate_limited"
    assert "no worker took decisions.authorize for 11 min" in failed["error"]["message"]
    # The step's last error in words, as the job's error says it (not a JSON string).
    assert failed["steps"][-1]["last_error"].startswith(
        "authenticated_profile_missing (HTTP 403), action authentication: ")
    assert views[on_time.id]["delays"] == []
