"""Several brands (service providers) in one deployment, one added while the workers run:
each with its own software statement, registration and token, which the simulator checks (a
token of one brand is refused on the other's paths)."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid

import httpx
import pytest
from sqlalchemy import select

import models.db
from models import Registration
from simulator.fixtures import make_software_statement
from tests.support import device_json, new_device, wait_for, wait_for_status


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True,
                          timeout=60)


def _event(type_: str, device, **fields) -> dict:
    return {"event_id": f"evt-{uuid.uuid4()}", "type": type_, "device": device_json(device),
            **fields}


def _signed_in_and_played(api: httpx.Client, sim: httpx.Client, brand: str) -> list[str]:
    device = new_device()
    job_id = api.post("/v1/events", json=_event("authentication.requested", device,
                                                 service_provider=brand,
                                                 mvpd="Cablevision")).json()["job_id"]
    assert wait_for_status(job_id, "waiting_for_user") == "waiting_for_user"
    code = api.get(f"/v1/jobs/{job_id}").json()["result"]["code"]
    sim.post("/_sim/login", json={"code": code}).raise_for_status()
    assert wait_for_status(job_id) == "succeeded"
    play = api.post("/v1/events", json=_event("authorization.requested", device,
                                              service_provider=brand, mvpd="Cablevision",
                                              resource="REF30")).json()["job_id"]
    assert wait_for_status(play) == "succeeded", api.get(f"/v1/jobs/{play}").json()["error"]
    assert api.get(f"/v1/jobs/{play}").json()["result"]["decisions"][0]["decision"] == "Permit"
    return [job_id, play]


# One backend is enough: the tokens, not the dialect.
@pytest.mark.slow  # subprocesses (make test-fast leaves it out)
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_two_brands_side_by_side_one_added_while_the_workers_run(api: httpx.Client,
                                                                  jobs_env: httpx.Client,
                                                                  tmp_path):
    # The TVE Dashboard: each brand's application statement covers its own brand only.
    jobs_env.put("/_sim/software", json={"software_id": "passflow-demo",
                                         "service_providers": ["REF30"]}).raise_for_status()
    jobs_env.put("/_sim/software", json={"software_id": "brand-two",
                                         "service_providers": ["CNN"]}).raise_for_status()
    first = api.post("/v1/events", json=_event("profiles.requested", new_device(),
                                               service_provider="CNN"))
    assert first.status_code == 422 and "service_provider" in first.text  # not served yet
    statement = tmp_path / "brand-two.jwt"
    statement.write_text(make_software_statement("brand-two"))
    try:
        added = _cli("service-providers", "add", "CNN", "--software-statement-file",
                     str(statement))
        assert added.returncode == 0, added.stderr
        listed = _cli("service-providers", "list").stdout
        assert re.search(r"CNN\s+active\s+.*not yet registered", listed), listed

        jobs = {brand: _signed_in_and_played(api, jobs_env, brand) for brand in ("REF30", "CNN")}
        with models.db.session_scope() as session:
            clients = set(session.scalars(select(Registration.client_id).where(
                Registration.client_id.is_not(None))))
        assert len(clients) >= 2  # two registrations: one per statement
        assert re.search(r"CNN\s+active\s+.*registered", _cli("service-providers", "list").stdout)

        cnn_jobs = api.get("/v1/jobs", params={"service_provider": "CNN"}).json()["jobs"]
        assert {j["job_id"] for j in cnn_jobs} == set(jobs["CNN"])
        assert all(j["service_provider"] == "CNN" for j in cnn_jobs)
        entries = api.get("/v1/history", params={"service_provider": "CNN"}).json()["entries"]
        assert entries and {e["service_provider"] for e in entries} == {"CNN"}
        assert re.search(r'passflow_decisions_total\{[^}]*service_provider="CNN"[^}]*\} [1-9]',
                         wait_for(lambda: (body := api.get("/metrics").text)
                                  and 'service_provider="CNN"' in body and body))

        retired = _cli("service-providers", "retire", "CNN")
        assert retired.returncode == 0, retired.stderr
        wait_for(lambda: api.post("/v1/events", json=_event(
            "profiles.requested", new_device(), service_provider="CNN")).status_code == 422,
            timeout=10)
    finally:
        _cli("service-providers", "retire", "CNN")


def test_an_event_for_a_brand_the_deployment_does_not_serve_is_a_422(api: httpx.Client):
    answer = api.post("/v1/events", json=_event("profiles.requested", new_device(),
                                                service_provider="NOT-SERVED"))
    assert answer.status_code == 422
    [problem] = answer.json()
    assert problem["field"] == "service_provider" and "service-providers" in problem["message"]


@pytest.mark.slow  # subprocesses (make test-fast leaves it out)
def test_service_providers_add_refuses_what_is_not_a_statement(tmp_path):
    bad = tmp_path / "statement.txt"
    bad.write_text("not a statement")
    done = _cli("service-providers", "add", "CNN", "--software-statement-file", str(bad))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "software statement" in done.stderr
    missing = _cli("service-providers", "add", "CNN", "--software-statement-file",
                   str(tmp_path / "none.jwt"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr


@pytest.mark.slow  # subprocesses
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_brand_adobe_refuses_is_visible_where_operators_look(api: httpx.Client,
                                                               jobs_env: httpx.Client, tmp_path):
    """A brand whose statement Adobe does not approve: its job fails with the reason, and
    /healthz, passflow_registration_problem and `service-providers list` say so (they said
    "ok", 0 and "not yet registered"); the other brand still plays."""
    statement = tmp_path / "not-approved.jwt"
    statement.write_text(make_software_statement("never-approved"))
    added = _cli("service-providers", "add", "CNN", "--software-statement-file", str(statement))
    assert added.returncode == 0, added.stderr
    try:
        from worker.runtime import STATEMENTS_FRESH_S

        def refused() -> str | None:
            # A worker reads a brand's statement again within STATEMENTS_FRESH_S: until
            # then it may still use the one an earlier test's CNN had.
            job = api.post("/v1/events", json=_event("profiles.requested", new_device(),
                                                      service_provider="CNN")).json()["job_id"]
            return job if wait_for_status(job) == "failed" else None

        job = wait_for(refused, timeout=STATEMENTS_FRESH_S + 30, interval=0.5)
        error = api.get(f"/v1/jobs/{job}").json()["error"]
        assert error["code"] == "application_registration_required"
        assert "unapproved_software_statement" in error["message"]
        health = api.get("/healthz")
        assert health.status_code == 503
        assert "unapproved_software_statement" in health.json()["registration"]
        assert "passflow_registration_problem 1.0" in api.get("/metrics").text
        listed = _cli("service-providers", "list").stdout
        assert re.search(r"CNN\s+active\s+.*problem: unapproved_software_statement", listed)
        ok = api.post("/v1/events", json=_event("profiles.requested", new_device())).json()
        assert wait_for_status(ok["job_id"]) == "succeeded"  # REF30 plays on
    finally:
        _cli("service-providers", "retire", "CNN")
    # A retired brand serves nothing: its refused statement no longer fails the health check.
    assert api.get("/healthz").json()["registration"] == "ok"
