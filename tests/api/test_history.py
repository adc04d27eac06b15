"""GET /v1/history and `passflow history`: filters, newest first, cursor paging."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from tests.support import new_device, send_event, wait_for_status


def _walk_a_device(api: httpx.Client, sim: httpx.Client):
    device = new_device()
    auth = send_event(api, "authentication.requested", device, mvpd="Cablevision")
    wait_for_status(auth, "waiting_for_user")
    code = api.get(f"/v1/jobs/{auth}").json()["result"]["code"]
    sim.post("/_sim/login", json={"code": code}).raise_for_status()
    wait_for_status(auth)
    for resource in ("REF30", "HBO"):
        wait_for_status(send_event(api, "authorization.requested", device, mvpd="Cablevision",
                              resource=resource))
    wait_for_status(send_event(api, "logout.requested", device, mvpd="Cablevision"))
    return device


def test_history_of_a_device_newest_first(api: httpx.Client, jobs_env: httpx.Client):
    device = _walk_a_device(api, jobs_env)
    _walk_a_device(api, jobs_env)  # another device's records must not show
    page = api.get("/v1/history", params={"device_id": device.id}).json()
    kinds = [(e["kind"], e["outcome"], e["resource"]) for e in page["entries"]]
    assert kinds == [
        ("logout", "logout", None),
        ("decision", "Deny", "HBO"),
        ("decision", "Permit", "REF30"),
        ("profile", "authenticated", None),
        ("session", "authenticated", None),
    ]
    assert page["next_cursor"] is None
    entry = page["entries"][1]
    assert entry["device_id"] == device.id and entry["mvpd"] == "Cablevision"
    assert entry["error_code"] == "authorization_denied_by_mvpd" and entry["job_id"]
    assert entry["at"].endswith("Z")


def test_history_filters_and_pages(api: httpx.Client, jobs_env: httpx.Client):
    device = _walk_a_device(api, jobs_env)
    by_resource = api.get("/v1/history", params={"device_id": device.id,
                                                 "resource": "HBO"}).json()["entries"]
    assert [(e["kind"], e["resource"]) for e in by_resource] == [("decision", "HBO")]
    seen, cursor = [], None
    while True:
        params = {"device_id": device.id, "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = api.get("/v1/history", params=params).json()
        seen += page["entries"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    full = api.get("/v1/history", params={"device_id": device.id}).json()["entries"]
    assert seen == full and len(full) == 5
    later = api.get("/v1/history", params={"device_id": device.id,
                                           "since": full[0]["at"]}).json()["entries"]
    assert later == [full[0]]
    none = api.get("/v1/history", params={"device_id": device.id,
                                          "until": full[-1]["at"]}).json()["entries"]
    assert none == []


def test_history_rejects_bad_parameters(api: httpx.Client):
    assert api.get("/v1/history", params={"cursor": "garbage!"}).status_code == 422
    assert api.get("/v1/history", params={"limit": 0}).status_code == 422
    assert api.get("/v1/history", params={"since": "yesterday"}).status_code == 422
    assert api.get("/v1/history", params={"since": "2026-01-01T00:00:00"}).status_code == 422
    # A filter given twice is a 422, not one of the two dropped silently.
    for path, name, values in (("/v1/jobs", "status", ["failed", "succeeded"]),
                               ("/v1/history", "mvpd", ["Cablevision", "Spectrum"])):
        twice = api.get(path, params=[(name, v) for v in values])
        assert twice.status_code == 422, twice.text
        assert twice.json()["errors"][0]["type"] == "repeated_parameter"


@pytest.mark.slow
def test_history_command_prints_a_table_and_json(api: httpx.Client, jobs_env: httpx.Client,
                                                 database_url: str):
    device = _walk_a_device(api, jobs_env)
    table = subprocess.run([sys.executable, "-m", "cli", "history", "--device",
                            device.id], capture_output=True, text=True, timeout=60, check=True)
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["AT", "KIND", "MVPD", "RESOURCE", "OUTCOME", "REASON", "JOB_ID"]
    # Without --device (the alert rules' runbook command): every device, each named.
    denies = subprocess.run([sys.executable, "-m", "cli", "history", "--mvpd", "Cablevision",
                             "--outcome", "Deny"], capture_output=True, text=True, timeout=60,
                            check=True)
    assert denies.stdout.splitlines()[0].split()[:2] == ["AT", "DEVICE_ID"]
    assert device.id in denies.stdout and "Permit" not in denies.stdout
    assert len(lines) == 6 and "HBO" in table.stdout
    [deny] = [line for line in lines if "Deny" in line]
    assert "action" in deny  # the Deny's reason: its error code and action
    raw = subprocess.run([sys.executable, "-m", "cli", "history", "--device",
                          device.id, "--json"], capture_output=True, text=True, timeout=60,
                         check=True)
    import json

    entries = json.loads(raw.stdout)["entries"]
    assert [e["kind"] for e in entries] == ["logout", "decision", "decision", "profile",
                                            "session"]


def test_a_value_the_database_refuses_is_the_requests_fault_not_an_outage(api: httpx.Client):
    """A NUL in a filter is a 422 naming the problem, never "the database is unavailable"."""
    answer = api.get("/v1/history", params={"device_id": "a\x00b"})
    assert answer.status_code == 422


def test_a_failed_play_is_in_the_history_of_its_resource(api: httpx.Client,
                                                        jobs_env: httpx.Client):
    """`--resource` (and ?resource=) finds the plays that failed too, with their reason: the
    question at kick-off is "why can't this subscriber watch REF30?"."""
    device = new_device()
    play = send_event(api, "authorization.requested", device, mvpd="Cablevision", resource="REF30")
    assert wait_for_status(play) == "failed"  # no profile: authenticated_profile_missing
    entries = api.get("/v1/history", params={"device_id": device.id,
                                             "resource": "REF30"}).json()["entries"]
    assert [(e["kind"], e["resource"], e["error_code"]) for e in entries] == [
        ("job", "REF30", "authenticated_profile_missing")]
    assert api.get("/v1/history", params={"device_id": device.id,
                                          "resource": "HBO"}).json()["entries"] == []
