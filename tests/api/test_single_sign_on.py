"""Single sign-on through the public HTTP API against the simulator: platform identity (Amazon's
Adobe-Subject-Token, Roku's connect token), service token, and single logout. The simulator
counts, per call, each single sign-on header it received, and refuses one on a call whose pages
do not list it."""

from __future__ import annotations

import base64
import json
import uuid

import httpx
import pytest
from sqlalchemy import select

import models.db
from models import Event
from tests.support import device_json, new_device, wait_for, wait_for_status


def _jws(user: str) -> str:
    """A platform's identity token for `user`: a JWS (its signature is the platform's; the
    simulator reads the user from `sub`, as Adobe tells two users apart)."""
    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256'})}.{part({'sub': user, 'iss': 'platform'})}.c2lnbmF0dXJl"


def _send(api: httpx.Client, type_: str, device, sso: dict | None, **fields) -> str:
    body = {"event_id": f"evt-{uuid.uuid4()}", "type": type_,
            "device": {**device_json(device), **({"sso": sso} if sso else {})}, **fields}
    answer = api.post("/v1/events", json=body)
    assert answer.status_code == 202, answer.text
    return answer.json()["job_id"]


def _sign_in(api: httpx.Client, sim: httpx.Client, device, sso: dict) -> dict:
    job_id = _send(api, "authentication.requested", device, sso, mvpd="Cablevision")
    status = wait_for_status(job_id, "waiting_for_user", "succeeded")
    if status == "waiting_for_user":
        code = api.get(f"/v1/jobs/{job_id}").json()["result"]["code"]
        sim.post("/_sim/login", json={"code": code}).raise_for_status()
        assert wait_for_status(job_id) == "succeeded"
    return api.get(f"/v1/jobs/{job_id}").json()


@pytest.mark.parametrize(("key", "header", "profile_type"), [
    ("subject_token", "adobe-subject-token", "platformSSO"),
    ("roku_connect_token", "x-roku-reserved-roku-connect-token", "platformSSO"),
    ("service_token", "ad-service-token", "serviceTokenSSO"),
])
def test_a_second_app_of_the_same_user_signs_in_with_no_login(
        api: httpx.Client, jobs_env: httpx.Client, key: str, header: str, profile_type: str):
    """The first app logs in (a regular profile); a second app (another device id) of the same
    user signs in with no login and plays, its profile of Adobe's single sign-on type shown in
    the job, the history and the metrics; another user's token shares nothing. The token went on
    every call whose page lists it, on none other, and is stored sealed."""
    user, other = {key: _jws("user-a")}, {key: _jws("user-b")}
    first = _sign_in(api, jobs_env, new_device(), user)
    assert first["result"]["profile"]["type"] == "regular"
    logins = jobs_env.get("/_sim/stats").json()["logins"]

    second = new_device()
    signed = _sign_in(api, jobs_env, second, user)
    assert signed["result"]["profile"]["type"] == profile_type
    assert jobs_env.get("/_sim/stats").json()["logins"] == logins  # no login
    play = _send(api, "authorization.requested", second, user, mvpd="Cablevision",
                 resource="REF30")
    assert wait_for_status(play) == "succeeded"
    assert api.get(f"/v1/jobs/{play}").json()["result"]["decisions"][0]["decision"] == "Permit"
    history = api.get("/v1/history", params={"device_id": second.id}).json()["entries"]
    assert [e["profile_type"] for e in history if e["kind"] == "profile"] == [profile_type]
    assert f'passflow_profiles_total{{mvpd="Cablevision",type="{profile_type}"}}' in \
        api.get("/metrics").text.replace(f'type="{profile_type}",mvpd="Cablevision"',
                                         f'mvpd="Cablevision",type="{profile_type}"')

    stranger = _send(api, "authentication.requested", new_device(), other, mvpd="Cablevision")
    assert wait_for_status(stranger, "waiting_for_user") == "waiting_for_user"

    stats = jobs_env.get("/_sim/stats").json()
    for call in ("sessions.create", "profiles.mvpd", "decisions.authorize"):
        assert stats.get(f"{call} {header}", 0) >= 1, (call, stats)
    _none_refused(jobs_env)  # the strict simulator refuses a header on an unlisted call
    with models.db.session_scope() as session:
        payload = session.scalars(select(Event.payload).where(
            Event.event_id == signed["event_id"])).one()
    assert "sso" not in payload["device"] and payload["device"]["sso_enc"]
    assert user[key] not in json.dumps(payload)


def test_single_logout_ends_the_single_sign_on_profile_for_every_app(
        api: httpx.Client, jobs_env: httpx.Client):
    """A logout carrying the platform identity is a single logout: recorded so in the job and
    the history; afterwards the app must sign in again (Adobe's single sign-on profile is gone,
    and passflow does not reuse what it kept)."""
    user = {"subject_token": _jws("user-logout")}
    _sign_in(api, jobs_env, new_device(), user)
    second = new_device()
    assert _sign_in(api, jobs_env, second, user)["result"]["profile"]["type"] == "platformSSO"

    logout = _send(api, "logout.requested", second, user, mvpd="Cablevision")
    assert wait_for_status(logout) == "succeeded"
    [record] = api.get(f"/v1/jobs/{logout}").json()["result"]["logouts"]
    assert record["single_logout"] == "platformSSO" and record["actionName"] == "logout"
    entries = api.get("/v1/history", params={"device_id": second.id}).json()["entries"]
    assert entries[0]["kind"] == "logout" and entries[0]["single_logout"] == "platformSSO"
    assert jobs_env.get("/_sim/stats").json().get("logout adobe-subject-token", 0) == 1

    again = _sign_in_waits(api, second, user)
    assert again == "waiting_for_user"  # the single sign-on profile is gone at Adobe


def test_single_logout_ends_the_identitys_profiles_in_passflows_store_for_every_app(
        api: httpx.Client, jobs_env: httpx.Client):
    """Apps B and C of one user hold single sign-on profiles (A logged in); B logs out, a single
    logout. C is not told "authenticated" from passflow's store afterwards: its profiles and
    authentication requests ask Adobe, which has no profile for it any more."""
    user = {"subject_token": _jws("user-three-apps")}
    _sign_in(api, jobs_env, new_device(), user)
    b, c = new_device(), new_device()
    for app in (b, c):
        assert _sign_in(api, jobs_env, app, user)["result"]["profile"]["type"] == "platformSSO"
    assert wait_for_status(_send(api, "logout.requested", b, user, mvpd="Cablevision")) \
        == "succeeded"

    asked = len(jobs_env.get("/_sim/requests", params={"endpoint": "profiles.list"}).json())
    profiles = _send(api, "profiles.requested", c, user)
    assert wait_for_status(profiles) == "succeeded"
    assert api.get(f"/v1/jobs/{profiles}").json()["result"]["profiles"] == []
    assert len(jobs_env.get("/_sim/requests", params={"endpoint": "profiles.list"}).json()) \
        == asked + 1  # asked Adobe, not the store
    assert _sign_in_waits(api, c, user) == "waiting_for_user"  # a code: no profile anywhere


def _none_refused(sim: httpx.Client) -> None:
    refused = [r for r in sim.get("/_sim/requests").json() if r["refused"]]
    assert refused == [], refused


def _sign_in_waits(api: httpx.Client, device, sso: dict) -> str:
    job_id = _send(api, "authentication.requested", device, sso, mvpd="Cablevision")
    return wait_for_status(job_id, "waiting_for_user", "succeeded")


@pytest.mark.parametrize(("sso", "says"), [
    ({"subject_token": "two words"}, "printable ASCII"),
    ({"service_token": ""}, "at least 1"),
    ({"unknown_token": "x"}, "extra"),
    ({"partner_framework_status": {"frameworkPermissionInfo": {"accessStatus": "maybe"},
                                   "frameworkProviderInfo": {"id": "Spectrum"}}},
     "accessStatus"),
    ({"partner_framework_status": {"frameworkPermissionInfo": {"accessStatus": "granted"},
                                   "frameworkProviderInfo": {"id": "Spectrum",
                                                             "expirationDate": 1735689600000}}},
     "expirationDate"),
])
def test_single_sign_on_fields_adobe_would_refuse_are_a_422(api: httpx.Client, sso: dict,
                                                              says: str):
    body = {"event_id": f"evt-{uuid.uuid4()}", "type": "authentication.requested",
            "device": {**device_json(new_device()), "sso": sso}}
    answer = api.post("/v1/events", json=body)
    assert answer.status_code == 422 and says in answer.text, answer.text
    assert "two words" not in answer.text  # a token is never echoed


def _partner_status(access: str = "granted", mvpd: str = "Cablevision") -> dict:
    from models import utcnow

    expires = int(utcnow().timestamp() * 1000) + 3_600_000
    return {"frameworkPermissionInfo": {"accessStatus": access},
            "frameworkProviderInfo": {"id": mvpd, "expirationDate": str(expires)}}


def test_partner_single_sign_on_request_then_response_makes_an_apple_profile(
        api: httpx.Client, jobs_env: httpx.Client):
    """Apple: the request job hands the device Adobe's partner request and waits; the
    framework's response, sent as a second event, makes the appleSSO profile and ends both
    jobs with it; the device then plays. The partner status went on the partner, profile and
    decision calls only."""
    device, sso = new_device(), {"partner_framework_status": _partner_status()}
    requested = _send(api, "partner_authentication.requested", device, sso, partner="Apple")
    assert wait_for_status(requested, "waiting_for_user") == "waiting_for_user"
    waiting = api.get(f"/v1/jobs/{requested}").json()
    partner_request = waiting["result"]["partner_request"]
    assert partner_request["type"] == "saml" and partner_request["attributesNames"]
    assert "partner_authentication.responded" in waiting["waiting_for"]

    framework = jobs_env.post("/_sim/partner/respond",
                              json={"request": partner_request["request"]})
    responded = _send(api, "partner_authentication.responded", device, sso, partner="Apple",
                      partner_response=framework.json()["SAMLResponse"])
    assert wait_for_status(responded) == "succeeded"
    assert api.get(f"/v1/jobs/{responded}").json()["result"]["profile"]["type"] == "appleSSO"
    assert wait_for_status(requested) == "succeeded"
    done = api.get(f"/v1/jobs/{requested}").json()["result"]
    assert done["profile"]["type"] == "appleSSO" and done["profile_job"] == responded
    assert "partner_request" not in done

    play = _send(api, "authorization.requested", device, sso, mvpd="Cablevision",
                 resource="REF30")
    assert wait_for_status(play) == "succeeded"
    stats = jobs_env.get("/_sim/stats").json()
    for call in ("partner.sessions", "partner.profiles", "decisions.authorize"):
        assert stats.get(f"{call} ap-partner-framework-status", 0) >= 1, (call, stats)
    _none_refused(jobs_env)
    with models.db.session_scope() as session:
        payload = session.scalars(select(Event.payload).where(
            Event.event_id == api.get(f"/v1/jobs/{responded}").json()["event_id"])).one()
    assert "partner_response" not in payload and payload["partner_response_enc"]

    # The logout page: an appleSSO profile's logout asks the user to log out of the partner
    # (system) level too; the backend gets it as the action to show.
    logout = _send(api, "logout.requested", device, sso, mvpd="Cablevision")
    assert wait_for_status(logout) == "succeeded"
    [record] = api.get(f"/v1/jobs/{logout}").json()["result"]["logouts"]
    assert (record["actionName"], record["actionType"]) == ("partner_logout",
                                                            "partner_interactive")


def test_a_partner_status_not_granted_falls_back_to_a_code(api: httpx.Client,
                                                           jobs_env: httpx.Client):
    """Adobe's fallback (pfs_fallback): the job goes on as an authentication with a code."""
    device = new_device()
    job_id = _send(api, "partner_authentication.requested", device,
                   {"partner_framework_status": _partner_status("denied")}, partner="Apple",
                   redirect_url="https://example.com/done", domain_name="example.com")
    assert wait_for_status(job_id, "waiting_for_user") == "waiting_for_user"
    result = api.get(f"/v1/jobs/{job_id}").json()["result"]
    assert result["fallback"] == "pfs_fallback" and result["code"] and result["url"]
    jobs_env.post("/_sim/login", json={"code": result["code"]}).raise_for_status()
    assert wait_for_status(job_id) == "succeeded"
    assert api.get(f"/v1/jobs/{job_id}").json()["result"]["profile"]["type"] == "regular"


def test_a_partner_fallback_missing_the_mvpd_is_resumed_by_the_job(api: httpx.Client,
                                                                   jobs_env: httpx.Client):
    """The framework names a provider Adobe does not know: Adobe falls back with `resume` and
    `missingParameters: [mvpd]`. The job resumes the session itself with the event's MVPD (not
    only the activation page could), then waits for the login as usual."""
    device = new_device()
    job_id = _send(api, "partner_authentication.requested", device,
                   {"partner_framework_status": _partner_status(mvpd="UnknownCo")},
                   partner="Apple", mvpd="Cablevision",
                   redirect_url="https://example.com/done", domain_name="example.com")
    assert wait_for_status(job_id, "waiting_for_user") == "waiting_for_user"
    wait_for(lambda: jobs_env.get("/_sim/requests",
                                  params={"endpoint": "sessions.resume"}).json())
    job = api.get(f"/v1/jobs/{job_id}").json()
    assert job["result"]["fallback"] == "pfs_fallback" and job["result"]["code"]
    assert [s["step"] for s in job["steps"]][:2] == ["partner.request", "sessions.resume"]
    jobs_env.post("/_sim/login", json={"code": job["result"]["code"]}).raise_for_status()
    assert wait_for_status(job_id) == "succeeded"
    assert api.get(f"/v1/jobs/{job_id}").json()["result"]["profile"]["mvpd"] == "Cablevision"


def test_a_partner_request_without_its_status_is_a_422(api: httpx.Client):
    body = {"event_id": f"evt-{uuid.uuid4()}", "type": "partner_authentication.requested",
            "partner": "Apple", "device": device_json(new_device())}
    answer = api.post("/v1/events", json=body)
    assert answer.status_code == 422 and "device.sso.partner_framework_status" in answer.text
