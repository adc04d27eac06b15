"""Registration never silent (checklist, Client Credentials Caching; DCR FAQ 9): when Adobe Pass
refuses passflow's client credentials, work that needs Adobe stops with a clear error and
/healthz fails, until an operator registers again on purpose with `passflow register`."""

from __future__ import annotations

import subprocess
import sys
import uuid

import httpx
import pytest

import models.db
from models import Profile
from tests.factories import ProfileFactory
from tests.support import new_device, wait_for_status


def _profiles_job(api: httpx.Client) -> str:
    d = new_device()
    body = {"event_id": f"evt-{uuid.uuid4()}", "type": "profiles.requested",
            "device": {"id": d.id, "ip": d.ip, "info": dict(d.info)}}
    return api.post("/v1/events", json=body).json()["job_id"]


def _register(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli", "register", *args], capture_output=True,
                          text=True, timeout=60)


@pytest.mark.slow
def test_a_revoked_client_stops_work_until_passflow_register(api: httpx.Client,
                                                            jobs_env: httpx.Client,
                                                            factories_bound):
    kept = ProfileFactory()  # a device's stored profile, from the old credentials
    assert wait_for_status(_profiles_job(api)) == "succeeded"
    registrations = jobs_env.get("/_sim/stats").json().get("registrations", 0)
    jobs_env.post("/_sim/forget-clients").raise_for_status()  # Adobe revokes the client

    job_id = _profiles_job(api)
    assert wait_for_status(job_id) == "failed"
    error = api.get(f"/v1/jobs/{job_id}").json()["error"]
    assert (error["code"], error["action"]) == ("application_registration_required",
                                                 "application-registration")
    assert "passflow register" in error["message"]
    health = api.get("/healthz")
    assert health.status_code == 503 and "invalid_client" in health.json()["registration"]
    assert jobs_env.get("/_sim/stats").json().get("registrations", 0) == registrations  # not silent

    asked = _register()
    assert asked.returncode == 1 and "will have to log in again" in asked.stdout
    assert jobs_env.get("/_sim/stats").json().get("registrations", 0) == registrations

    done = _register("--yes")
    assert done.returncode == 0, done.stderr
    assert jobs_env.get("/_sim/stats").json().get("registrations", 0) == registrations + 1
    assert api.get("/healthz").json()["registration"] == "ok"
    assert wait_for_status(_profiles_job(api)) == "succeeded"
    with models.db.session_scope() as session:  # not reused: Adobe forgot it with the client
        assert session.get(Profile, kept.id).logged_out_at is not None


def test_enhanced_error_code_handling_support_application_registration_is_not_an_expired_token(
        api: httpx.Client, jobs_env: httpx.Client, capsys):
    """Adobe refuses the application itself (disabled in the TVE Dashboard): its tokens are
    issued, every REST call answers 401 `invalid_access_token_client_application`, action
    `application-registration`. One refresh shows a new token does not help; then the
    registration is marked broken where operators look (/healthz, the metric, the brand list),
    the play fails with that reason, and later plays fail at once: no token request, no call."""
    from cli.main import main

    assert wait_for_status(_profiles_job(api)) == "succeeded"  # registered, a token in hand
    jobs_env.put("/_sim/software/disabled",
                 json={"software_id": "passflow-demo"}).raise_for_status()
    try:
        _refused_then_quiet(api, jobs_env, capsys, main)
    finally:  # as an operator would after Adobe enabled the application again
        jobs_env.put("/_sim/software/disabled", json={"software_id": "passflow-demo",
                                                      "disabled": False})
        assert main(["register", "--yes"]) == 0
    assert api.get("/healthz").json()["registration"] == "ok"  # nothing left behind


def _refused_then_quiet(api: httpx.Client, jobs_env: httpx.Client, capsys, main) -> None:
    job_id = _profiles_job(api)
    assert wait_for_status(job_id) == "failed"
    error = api.get(f"/v1/jobs/{job_id}").json()["error"]
    assert (error["code"], error["action"]) == ("application_registration_required",
                                                 "application-registration")
    assert "invalid_access_token_client_application" in error["message"]
    health = api.get("/healthz")
    assert health.status_code == 503
    assert "invalid_access_token_client_application" in health.json()["registration"]
    assert "passflow_registration_problem 1.0" in api.get("/metrics").text
    assert main(["service-providers", "list"]) == 0
    assert "problem: Adobe Pass answered invalid_access_token_client_application" in \
        capsys.readouterr().out

    before = jobs_env.get("/_sim/stats").json()
    later = [_profiles_job(api) for _ in range(3)]
    assert [wait_for_status(j) for j in later] == ["failed"] * 3
    after = jobs_env.get("/_sim/stats").json()
    assert after["tokens_issued"] == before["tokens_issued"]  # no token request per play
    assert after.get("profiles.list 401") == before.get("profiles.list 401")  # nor a call
