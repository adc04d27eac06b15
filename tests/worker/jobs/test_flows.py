"""Every event type end to end: real worker, Redis, SQLite and PostgreSQL, the simulator over
sockets."""

from __future__ import annotations

import json
import tempfile
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

import models.db
from models import AuthSession, Decision, Job, Logout, Profile, utcnow
from passflow.crypto import cipher_from_settings
from tests.support import make_event, new_device, set_faults, wait_for, wait_for_status
from worker import dispatch
from worker.views import job_view

SP = "REF30"


def submit(type_: str, device, **fields) -> str:
    event = make_event(f"evt-{uuid.uuid4()}", type_, device, **fields)
    job_id, created = dispatch.submit(event, default_service_provider=SP)
    assert created
    return job_id


def view(job_id: str) -> dict:
    with models.db.session_scope() as session:
        return job_view(session, session.get(Job, job_id), cipher_from_settings())


def count(model, **where) -> int:
    with models.db.session_scope() as session:
        query = select(func.count()).select_from(model)
        for key, value in where.items():
            query = query.where(getattr(model, key) == value)
        return session.scalar(query)


def authenticate(sim: httpx.Client, device, mvpd: str = "Cablevision") -> str:
    job_id = submit("authentication.requested", device, mvpd=mvpd)
    wait_for_status(job_id, "waiting_for_user")
    code = view(job_id)["result"]["code"]
    sim.post("/_sim/login", json={"code": code}).raise_for_status()
    assert wait_for_status(job_id) == "succeeded"
    return job_id


def test_authentication_with_mvpd_succeeds_after_login(jobs_env: httpx.Client):
    device = new_device()
    job_id = submit("authentication.requested", device, mvpd="Cablevision",
                    redirect_url="https://example.com/done", domain_name="example.com")
    wait_for_status(job_id, "waiting_for_user")
    waiting = view(job_id)
    assert waiting["result"]["url"].endswith(f"/api/v2/authenticate/{SP}/"
                                             + waiting["result"]["code"])
    # A few polls happen while the user has not logged in yet.
    wait_for(lambda: count(AuthSession, job_id=job_id) and _polls(job_id) >= 2)
    jobs_env.post("/_sim/login", json={"code": waiting["result"]["code"]}).raise_for_status()
    assert wait_for_status(job_id) == "succeeded"
    done = view(job_id)
    assert done["result"]["profile"]["mvpd"] == "Cablevision"
    assert done["result"]["profile"]["attributes"]["userID"]["value"] == "cv-0001"
    # The MVPD is known: no configuration is fetched (checklist, Configuration Retrieval).
    assert [s["step"] for s in done["steps"]] == [
        "profiles.check", "sessions.create", "profiles.poll"]
    assert all(s["status"] == "succeeded" for s in done["steps"])
    assert count(Profile, job_id=job_id) == 1


def test_polling_mechanism_starting_primary_screen_never_polls_before_the_landing(
        jobs_env: httpx.Client):
    """Primary screen: nothing is asked by code before the browser reaches redirectUrl, not
    even a last look before notAfter; a user who never lands ends as `expired` at notAfter."""
    jobs_env.put("/_sim/ttl", json={"session_s": 3}).raise_for_status()
    job_id = submit("authentication.requested", new_device(), mvpd="Cablevision",
                    screen="primary", redirect_url="https://example.com/done",
                    domain_name="example.com")
    assert wait_for_status(job_id, "expired", timeout=30) == "expired"
    assert jobs_env.get("/_sim/requests", params={"endpoint": "profiles.code"}).json() == []
    assert "never reached the landing page" in view(job_id)["error"]["message"]


def _polls(job_id: str) -> int:
    with models.db.session_scope() as session:
        return session.scalars(select(AuthSession.polls).where(
            AuthSession.job_id == job_id)).one()


def test_authentication_without_mvpd_polls_by_code(jobs_env: httpx.Client):
    device = new_device()
    job_id = submit("authentication.requested", device)
    wait_for_status(job_id, "waiting_for_user")
    code = view(job_id)["result"]["code"]
    # The second screen picks the provider and resumes the session.
    with models.db.session_scope() as session:
        assert session.scalars(select(AuthSession.mvpd).where(
            AuthSession.job_id == job_id)).one() is None
    from simulator.fixtures import DEMO_SOFTWARE_STATEMENT
    from worker.adobe_pass import AdobePass

    with AdobePass(str(jobs_env.base_url), software_statement=DEMO_SOFTWARE_STATEMENT) as ap:
        resumed = ap.sessions.resume(SP, code, device=new_device(), mvpd="Spectrum")
    assert resumed.action_name == "authenticate"
    jobs_env.post("/_sim/login", json={"code": code}).raise_for_status()
    assert wait_for_status(job_id) == "succeeded"
    assert view(job_id)["result"]["profile"]["mvpd"] == "Spectrum"


def test_authentication_expires_at_not_after(jobs_env: httpx.Client):
    device = new_device()
    job_id = submit("authentication.requested", device, mvpd="Cablevision")
    wait_for_status(job_id, "waiting_for_user")
    jobs_env.post("/_sim/clock", json={"seconds": 1801}).raise_for_status()
    assert wait_for_status(job_id) == "expired"
    with models.db.session_scope() as session:
        auth = session.scalars(select(AuthSession).where(AuthSession.job_id == job_id)).one()
        assert auth.status == "expired" and auth.stop_reason == "invalid_authentication_session"
    assert view(job_id)["error"]["code"] == "authentication_session_expired"


def test_polling_mechanism_stopping_a_newer_code_supersedes_the_older(jobs_env: httpx.Client):
    device = new_device()
    first = submit("authentication.requested", device, mvpd="Cablevision")
    wait_for_status(first, "waiting_for_user")
    second = submit("authentication.requested", device, mvpd="Cablevision")
    wait_for_status(second, "waiting_for_user")
    assert wait_for_status(first) == "cancelled"
    with models.db.session_scope() as session:
        older = session.scalars(select(AuthSession).where(AuthSession.job_id == first)).one()
        assert older.status == "superseded" and second in older.stop_reason
    assert view(first)["error"]["code"] == "superseded"
    jobs_env.post("/_sim/login", json={"code": view(second)["result"]["code"]})
    assert wait_for_status(second) == "succeeded"


def test_already_authenticated_device_needs_no_new_session(jobs_env: httpx.Client):
    device = new_device()
    authenticate(jobs_env, device)
    again = submit("authentication.requested", device, mvpd="Cablevision")
    assert wait_for_status(again) == "succeeded"
    result = view(again)
    assert result["result"]["profile"]["mvpd"] == "Cablevision"
    assert [s["step"] for s in result["steps"]] == ["profiles.check"]


def test_profiles_requested_lists_profiles(jobs_env: httpx.Client):
    device = new_device()
    authenticate(jobs_env, device)
    job_id = submit("profiles.requested", device)
    assert wait_for_status(job_id) == "succeeded"
    assert [p["mvpd"] for p in view(job_id)["result"]["profiles"]] == ["Cablevision"]


def test_preauthorization_decisions_retrieval_in_batches_permit_and_deny(jobs_env: httpx.Client):
    device = new_device()
    authenticate(jobs_env, device)
    resources = ["REF30", "CNN", "HBO", "r4", "r5", "r6", "r7"]
    job_id = submit("preauthorization.requested", device, mvpd="Cablevision",
                    resources=resources)
    assert wait_for_status(job_id) == "succeeded"
    decisions = {d["resource"]: d for d in view(job_id)["result"]["decisions"]}
    assert set(decisions) == set(resources)
    assert decisions["HBO"]["decision"] == "Deny"
    assert decisions["HBO"]["error"]["code"] == "preauthorization_denied_by_mvpd"
    assert all(decisions[r]["decision"] == "Permit" for r in resources if r != "HBO")
    stats = jobs_env.get("/_sim/stats").json()
    assert stats["decisions.preauthorize 200"] == 2  # 7 resources in batches of 5


def test_authorization_decisions_retrieval_every_play_asks_adobe_permit_and_deny(
        jobs_env: httpx.Client):
    device = new_device()
    authenticate(jobs_env, device)
    permit = submit("authorization.requested", device, mvpd="Cablevision", resource="REF30")
    deny = submit("authorization.requested", device, mvpd="Cablevision", resource="HBO")
    assert wait_for_status(permit) == "succeeded" and wait_for_status(deny) == "succeeded"
    [granted] = view(permit)["result"]["decisions"]
    assert granted["decision"] == "Permit" and granted["media_token"]
    [denied] = view(deny)["result"]["decisions"]
    assert denied["decision"] == "Deny" and "media_token" not in denied
    assert denied["error"]["code"] == "authorization_denied_by_mvpd"
    # Stored encrypted: the database never holds the media token in clear.
    with models.db.session_scope() as session:
        stored = session.scalars(select(Decision).where(Decision.job_id == permit)).one()
        assert stored.media_token_enc and granted["media_token"] not in stored.media_token_enc


def test_authorization_decisions_retrieval_media_tokens_verified_with_the_certificate(
        jobs_env: httpx.Client, monkeypatch):
    """PASSFLOW_MEDIA_TOKEN_CERTIFICATE (a path here): a media token signed by Adobe Pass (the
    simulator's certificate, fetched as a programmer gets Adobe's) is handed on; with another
    certificate, the same play fails media_token_invalid saying the signature does not verify,
    and no media token is stored."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    from passflow.settings import get_settings

    adobe = jobs_env.get("/_sim/media-token-certificate")
    adobe.raise_for_status()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not Adobe")])
    other = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
             .public_key(key.public_key()).serial_number(1)
             .not_valid_before(utcnow() - timedelta(days=1))
             .not_valid_after(utcnow() + timedelta(days=1)).sign(key, hashes.SHA256()))
    device = new_device()
    authenticate(jobs_env, device)
    outcomes = {}
    for label, pem in (("adobe", adobe.text),
                       ("other", other.public_bytes(serialization.Encoding.PEM).decode())):
        path = Path(tempfile.mkdtemp()) / f"{label}.pem"
        path.write_text(pem)
        monkeypatch.setenv("PASSFLOW_MEDIA_TOKEN_CERTIFICATE", str(path))
        get_settings.cache_clear()
        try:
            play = submit("authorization.requested", device, mvpd="Cablevision",
                          resource="REF30")
            outcomes[label] = (wait_for_status(play), view(play))
        finally:
            monkeypatch.undo()
            get_settings.cache_clear()
    status, verified = outcomes["adobe"]
    assert status == "succeeded" and verified["result"]["decisions"][0]["media_token"]
    status, refused = outcomes["other"]
    assert status == "failed" and refused["error"]["code"] == "media_token_invalid"
    assert "signature does not verify" in refused["error"]["message"]
    assert count(Decision, job_id=refused["job_id"]) == 0


def test_enhanced_error_code_handling_support_the_job_fails_with_code_and_action(
        jobs_env: httpx.Client):
    job_id = submit("authorization.requested", new_device(), mvpd="Cablevision",
                    resource="REF30")
    assert wait_for_status(job_id) == "failed"
    error = view(job_id)["error"]
    assert (error["code"], error["action"], error["status"]) == (
        "authenticated_profile_missing", "authentication", 403)


@pytest.mark.slow
def test_authorization_decisions_retrieval_retry_retry_denials_asked_again_at_most_twice(
        jobs_env: httpx.Client):
    device = new_device()
    authenticate(jobs_env, device)
    set_faults(jobs_env, retry_deny_rate=1.0)
    job_id = submit("authorization.requested", device, mvpd="Cablevision", resource="REF30")
    assert wait_for_status(job_id, timeout=30) == "succeeded"
    [decision] = view(job_id)["result"]["decisions"]
    assert decision["decision"] == "Deny" and decision["error"]["action"] == "retry"
    assert jobs_env.get("/_sim/stats").json()["decisions.authorize 200"] == 3  # 1 + 2 retries


def test_authorization_decisions_retrieval_retry_a_401_resend_is_in_the_same_budget(
        jobs_env: httpx.Client):
    """A 401's token refresh and resend is one of the play's 3 requests: after it, a `retry`
    Deny is asked again once, not twice (401, resend, one re-ask; never 4)."""
    # Whatever token this process remembers, the play's session is made with one of the
    # registration as stored now (a refused token is renewed from it).
    jobs_env.post("/_sim/revoke-tokens").raise_for_status()
    device = new_device()
    authenticate(jobs_env, device)
    jobs_env.post("/_sim/revoke-tokens").raise_for_status()
    set_faults(jobs_env, retry_deny_rate=1.0)
    before = jobs_env.get("/_sim/stats").json()
    job_id = submit("authorization.requested", device, mvpd="Cablevision", resource="REF30")
    assert wait_for_status(job_id, timeout=30) == "succeeded"
    after = jobs_env.get("/_sim/stats").json()
    made = {key: after.get(key, 0) - before.get(key, 0)
            for key in ("decisions.authorize 401", "decisions.authorize 200")}
    assert made == {"decisions.authorize 401": 1, "decisions.authorize 200": 2}, made
    [decision] = view(job_id)["result"]["decisions"]
    assert decision["decision"] == "Deny" and decision["error"]["action"] == "retry"


def test_logout_support_records_each_removed_profile_with_its_action(jobs_env: httpx.Client):
    device = new_device()
    authenticate(jobs_env, device)
    job_id = submit("logout.requested", device, mvpd="Cablevision",
                    redirect_url="https://example.com/bye")
    assert wait_for_status(job_id) == "succeeded"
    [logout] = view(job_id)["result"]["logouts"]
    assert (logout["mvpd"], logout["actionName"], logout["actionType"]) == (
        "Cablevision", "logout", "interactive")
    assert "example.com%2Fbye" in logout["url"]
    assert count(Logout, job_id=job_id) == 1


@pytest.mark.parametrize("mvpd,identity", [("TempPass_TEST40", None),
                                           ("flexibleTempPass", {"email": "a@example.com"})])
def test_temppass_basic_and_promotional(jobs_env: httpx.Client, mvpd, identity):
    device = new_device()
    fields = {"mvpd": mvpd, "resource": "REF30"}
    if identity:
        fields["temppass_identity"] = identity
    job_id = submit("temppass.requested", device, **fields)
    assert wait_for_status(job_id) == "succeeded"
    [decision] = view(job_id)["result"]["decisions"]
    assert decision["decision"] == "Permit" and decision["source"] == "temppass"
    assert decision["media_token"]
    with models.db.session_scope() as session:  # the identity is personal data: sealed at rest
        stored = session.get(Job, job_id).event.payload
    assert "a@example.com" not in json.dumps(stored)
    assert ("temppass_identity_enc" in stored) == bool(identity)


def test_same_event_id_answers_with_the_first_job(jobs_env: httpx.Client):
    device = new_device()
    event = make_event(f"evt-{uuid.uuid4()}", "profiles.requested", device)
    first, created = dispatch.submit(event, default_service_provider=SP)
    again, created_again = dispatch.submit(event, default_service_provider=SP)
    assert (again, created, created_again) == (first, True, False)
    assert wait_for_status(first) == "succeeded"


def test_degraded_access_is_followed(jobs_env: httpx.Client):
    """Degradation (premium feature): with AuthNAll an authentication needs no login and its
    profile is Adobe's "degraded" one; a play is permitted by the rule; with AuthZNone every
    play is denied with the rule's code."""
    jobs_env.put("/_sim/degradation", json={"mvpd": "Cablevision", "rule": "authn_all"})
    device = new_device()
    job_id = submit("authentication.requested", device, mvpd="Cablevision")
    assert wait_for_status(job_id) == "succeeded"
    done = view(job_id)
    assert done["result"]["profile"]["type"] == "degraded"
    assert done["result"]["profile"]["issuer"] == "Adobe"
    play = submit("authorization.requested", new_device(), mvpd="Cablevision", resource="REF30")
    assert wait_for_status(play) == "succeeded"
    [decision] = view(play)["result"]["decisions"]
    assert (decision["decision"], decision["source"]) == ("Permit", "degradation")
    assert decision["media_token"]

    jobs_env.put("/_sim/degradation", json={"mvpd": "Cablevision", "rule": "authz_none"})
    authenticate(jobs_env, logged := new_device())
    denied = submit("authorization.requested", logged, mvpd="Cablevision", resource="REF30")
    assert wait_for_status(denied) == "succeeded"
    [decision] = view(denied)["result"]["decisions"]
    assert decision["decision"] == "Deny"
    assert decision["error"]["code"] == "authorization_denied_by_degradation_rule"


def test_degraded_answers_are_never_served_from_passflows_store(jobs_env: httpx.Client):
    """Degradation lasts "for the period the degradation is applied", and only Adobe knows when
    that ends: once the rule is lifted, the degraded profile and the degradation's Permits
    passflow stored are not answered again; Adobe is asked, and has no profile for the user."""
    jobs_env.put("/_sim/degradation", json={"mvpd": "Cablevision", "rule": "authn_all"})
    device = new_device()
    assert wait_for_status(submit("authentication.requested", device, mvpd="Cablevision")) \
        == "succeeded"
    catalogue = submit("preauthorization.requested", device, mvpd="Cablevision",
                       resources=["REF30"])
    assert wait_for_status(catalogue) == "succeeded"
    assert view(catalogue)["result"]["decisions"][0]["source"] == "degradation"
    jobs_env.put("/_sim/degradation", json={"mvpd": "Cablevision", "rule": None})

    login = submit("authentication.requested", device, mvpd="Cablevision")
    assert wait_for_status(login, "waiting_for_user", "succeeded") == "waiting_for_user"
    again = submit("preauthorization.requested", device, mvpd="Cablevision",
                   resources=["REF30"])
    wait_for_status(again, "succeeded", "failed")
    assert "passflow-cache" not in {d["source"] for d in view(again)["result"]["decisions"]
                                    or []}
    assert view(again)["error"] is None or view(again)["error"]["code"] == \
        "authenticated_profile_missing"


def test_encrypted_attributes_are_opened_with_the_configured_key_else_kept_sealed(
        jobs_env: httpx.Client, monkeypatch):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from passflow.settings import get_settings

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    jobs_env.put("/_sim/metadata-key", json={"public_key": public.decode()})

    sealed = authenticate(jobs_env, new_device())
    zip_code = view(sealed)["result"]["profile"]["attributes"]["zip"]
    assert zip_code["state"] == "enc" and zip_code["value"] != "10001"  # kept sealed

    # Protected with a passphrase, as Adobe's openssl recipe makes it.
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"metadata-passphrase")).decode()
    monkeypatch.setenv("PASSFLOW_METADATA_PRIVATE_KEY", private)
    monkeypatch.setenv("PASSFLOW_METADATA_KEY_PASSPHRASE", "metadata-passphrase")
    get_settings.cache_clear()
    try:
        opened = authenticate(jobs_env, new_device())
        zip_code = view(opened)["result"]["profile"]["attributes"]["zip"]
        assert zip_code == {"value": "10001", "state": "decrypted"}
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


@pytest.mark.slow
def test_preauthorization_decisions_retrieval_retry_only_the_retry_items_bounded(
        jobs_env: httpx.Client):
    """Enhanced-error-codes.md: "include in the repeated request only those items marked with
    retry", 2-3 times at most; then the Deny stands."""
    device = new_device()
    authenticate(jobs_env, device)
    set_faults(jobs_env, retry_deny_rate=1.0)
    job_id = submit("preauthorization.requested", device, mvpd="Cablevision",
                    resources=["REF30", "CNN"])
    assert wait_for_status(job_id, timeout=30) == "succeeded"
    decisions = view(job_id)["result"]["decisions"]
    assert {d["resource"] for d in decisions} == {"REF30", "CNN"}
    assert all(d["error"]["action"] == "retry" for d in decisions)
    assert jobs_env.get("/_sim/stats").json()["decisions.preauthorize 200"] == 3  # 1 + 2
