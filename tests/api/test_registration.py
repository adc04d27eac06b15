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
