"""Operations, given only a device id or an event id: every attempt, its outcome and reason,
from the API and the CLI; a failed job retried (a new job, linked, audited); unknown filters
refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import httpx
import pytest

from tests.support import device_json, new_device, wait_for_status


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "USER": "ops-test"})


def _post(api: httpx.Client, type_: str, device, **fields) -> tuple[str, str]:
    event_id = f"evt-{uuid.uuid4()}"
    body = {"event_id": event_id, "type": type_, "device": device_json(device), **fields}
    return event_id, api.post("/v1/events", json=body).json()["job_id"]


def _log_in(api: httpx.Client, sim: httpx.Client, device) -> None:
    _, auth = _post(api, "authentication.requested", device, mvpd="Cablevision")
    wait_for_status(auth, "waiting_for_user")
    sim.post("/_sim/login", json={"code": api.get(f"/v1/jobs/{auth}").json()["result"]["code"]})
    assert wait_for_status(auth) == "succeeded"


def test_a_failed_play_is_found_explained_and_retried(api: httpx.Client,
                                                       jobs_env: httpx.Client, fault_report):
    device = new_device()
    event_id, failed = _post(api, "authorization.requested", device, mvpd="Cablevision",
                             resource="REF30")
    assert wait_for_status(failed) == "failed"  # nobody logged in on this device yet

    # From the device id: the failed attempt in the history, with its code, action and reason.
    entries = api.get("/v1/history", params={"device_id": device.id}).json()["entries"]
    [attempt] = [e for e in entries if e["kind"] == "job"]
    assert attempt["job_id"] == failed and attempt["outcome"] == "failed"
    assert attempt["error_code"] and attempt["error_action"] and attempt["reason"]
    assert api.get("/v1/history", params={"device_id": device.id, "outcome": "failed"}
                   ).json()["entries"] == [attempt]
    # From the event id: its job.
    [listed] = api.get("/v1/jobs", params={"event_id": event_id}).json()["jobs"]
    assert listed["job_id"] == failed and listed["error_code"] == attempt["error_code"]
    assert api.get("/v1/jobs", params={"status": "failed", "device_id": device.id}
                   ).json()["jobs"] == [listed]

    # The user logs in; the operator retries the failed play.
    _log_in(api, jobs_env, device)
    retried = api.post(f"/v1/jobs/{failed}/retry")
    assert retried.status_code == 201, retried.text
    retry = retried.json()
    assert retry["retry_of"] == failed and retry["requested_by"] == "api:PASSFLOW_API_TOKEN"
    assert retry.get("redacted") is None  # an admin is told everything
    assert retry["event_id"] == event_id
    assert wait_for_status(retry["job_id"]) == "succeeded"
    assert api.post(f"/v1/jobs/{failed}/retry").status_code == 409  # retried already
    assert api.get(f"/v1/jobs/{failed}").json()["retried_by"] == [retry["job_id"]]
    assert api.post(f"/v1/jobs/{retry['job_id']}/retry").status_code == 409  # succeeded
    both = api.get("/v1/jobs", params={"event_id": event_id}).json()["jobs"]
    assert [j["job_id"] for j in both] == [retry["job_id"], failed]
    # The same event id sent again still answers with its first job.
    again = api.post("/v1/events", json={"event_id": event_id, "type": "authorization.requested",
                                         "device": device_json(device), "mvpd": "Cablevision",
                                         "resource": "REF30"})
    assert again.status_code == 200 and again.json()["job_id"] == failed
    fault_report("a play failed (no login yet); the operator has only the device id and the "
                 "event id", "the attempt is in the history with its code, action and reason; "
                 "the event's jobs listed; a retry after login succeeded, linked and audited")


# One backend is enough: the commands, as deployed.
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.slow
def test_the_cli_finds_and_retries_as_the_api_does(api: httpx.Client, jobs_env: httpx.Client,
                                                   fault_report):
    device = new_device()
    event_id, failed = _post(api, "authorization.requested", device, mvpd="Cablevision",
                             resource="REF30")
    assert wait_for_status(failed) == "failed"
    history = _cli("history", "--device", device.id)
    assert history.returncode == 0 and failed in history.stdout and "failed" in history.stdout
    listed = _cli("jobs", "list", "--event", event_id, "--json")
    assert [j["job_id"] for j in json.loads(listed.stdout)["jobs"]] == [failed]
    shown = json.loads(_cli("jobs", "show", failed).stdout)
    assert shown["status"] == "failed" and shown["error"]["code"]
    # The 8 characters `passflow demo` prints are enough.
    assert json.loads(_cli("jobs", "show", failed[:8]).stdout)["job_id"] == failed
    retried = _cli("jobs", "retry", failed, "--as", "ops-test")
    assert retried.returncode == 0, retried.stderr
    again = _cli("jobs", "retry", failed)
    assert again.returncode == 1 and len(again.stderr.strip().splitlines()) == 1
    both = json.loads(_cli("jobs", "list", "--event", event_id, "--json").stdout)["jobs"]
    assert len(both) == 2 and both[0]["retry_of"] == failed
    shown_retry = json.loads(_cli("jobs", "show", both[0]["job_id"]).stdout)
    from models.audit import cli_actor

    # The OS account running the command (not $USER, which anyone sets), and who --as names.
    assert shown_retry["requested_by"] == cli_actor("ops-test")
    assert shown_retry["requested_by"].endswith(" as ops-test")
    wait_for_status(both[0]["job_id"])
    fault_report("`passflow history --device`, `jobs list --event`, `jobs show`, `jobs retry`",
                 "the CLI finds the failed attempt and retries it once, like the API")


@pytest.mark.parametrize("path,params", [
    ("/v1/history", {"device_id": "d", "outcom": "Deny"}),
    ("/v1/history", {"device_id": "d", "outcome": "Denied"}),
    ("/v1/jobs", {"stauts": "failed"}),
    ("/v1/jobs", {"status": "broken"}),
])
def test_unknown_filters_are_a_422(api: httpx.Client, path, params, fault_report):
    answer = api.get(path, params=params)
    assert answer.status_code == 422, answer.text
    fault_report(f"GET {path} with a misspelt filter or value",
                 "422 naming it (it used to return everything)")


def test_a_waiting_job_says_what_it_waits_for(api: httpx.Client, jobs_env: httpx.Client):
    _, job_id = _post(api, "authentication.requested", new_device())
    wait_for_status(job_id, "waiting_for_user")
    view = api.get(f"/v1/jobs/{job_id}").json()
    code = view["result"]["code"]
    assert f"pick a provider and log in with code {code}" in view["waiting_for"]
    api.delete(f"/v1/jobs/{job_id}")
    assert api.get(f"/v1/jobs/{job_id}").json()["waiting_for"] is None


def test_probes_need_no_token_and_say_little(api_server, fault_report):
    live = httpx.get(api_server.url + "/livez")
    ready = httpx.get(api_server.url + "/readyz")
    assert live.status_code == 200 and live.json() == {"status": "ok"}
    assert ready.status_code in (200, 503)
    assert set(ready.json()) == {"status", "failing", "fleet"}
    assert httpx.get(api_server.url + "/healthz").status_code == 401
    fault_report("a load balancer probes without a token",
                 "/livez and /readyz answer (only the names of failing checks); /healthz 401")


@pytest.mark.parametrize("method,path,token,status", [
    ("GET", "/v1/jobs/no-such-job", True, 404),
    ("GET", "/v1/jobs", False, 401),
    ("GET", "/v1/history?since=yesterday", True, 422),
    ("DELETE", "/v1/jobs/no-such-job", True, 404),
    ("POST", "/v1/jobs/no-such-job/retry", True, 404),
    ("GET", "/no/such/route", True, 404),
    ("PUT", "/v1/events", True, 405),
])
def test_every_error_is_a_problem_document(api: httpx.Client, api_server, method, path, token,
                                           status):
    client = api if token else httpx.Client(base_url=api_server.url)
    answer = client.request(method, path)
    assert answer.status_code == status
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["status"] == status and problem["title"] and problem["detail"]
    assert answer.headers["x-request-id"]
