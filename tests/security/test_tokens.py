"""API tokens: several, stored hashed, scoped, revocable; `passflow token create/revoke`."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import httpx
import pytest
from sqlalchemy import select

import models.db
from api.auth import create_token, token_hash
from models import ApiToken
from tests.factories import AuthSessionFactory, DecisionFactory, ProfileFactory
from tests.support import device_json, new_device, wait_for


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True,
                          text=True, timeout=60)


def _event() -> dict:
    device = new_device()
    return {"event_id": f"evt-{uuid.uuid4()}", "type": "profiles.requested",
            "device": device_json(device)}


def test_tokens_are_stored_hashed_and_scoped(api: httpx.Client, database_url: str,
                                             fault_report):
    created = _cli("token", "create", "--name", f"ingest-{uuid.uuid4()}", "--scope", "ingest")
    assert created.returncode == 0, created.stderr
    ingest = created.stdout.strip()
    assert ingest.startswith("pf_") and "shown only now" in created.stderr
    with models.db.session_scope() as session:
        stored = session.scalars(select(ApiToken.token_hash)).all()
        read = create_token(session, name=f"read-{uuid.uuid4()}", scope="read")
    assert token_hash(ingest) in stored and ingest not in stored  # only the hash is kept
    base = str(api.base_url)
    as_ingest = {"Authorization": f"Bearer {ingest}"}
    # The API re-reads tokens every 5 s: until then the new token is unknown (401). An empty
    # event is a 422 once the token is known, and stores nothing.
    wait_for(lambda: httpx.post(base + "/v1/events", json={}, headers=as_ingest).status_code
             == 422, timeout=10, interval=0.25)
    as_read = {"Authorization": f"Bearer {read}"}
    posted = httpx.post(base + "/v1/events", json=_event(), headers=as_ingest)
    assert posted.status_code == 202
    job_id = posted.json()["job_id"]
    assert httpx.get(f"{base}/v1/jobs/{job_id}", headers=as_ingest).status_code == 403
    assert httpx.get(f"{base}/v1/jobs/{job_id}", headers=as_read).status_code == 200
    assert httpx.post(base + "/v1/events", json=_event(), headers=as_read).status_code == 403
    assert httpx.delete(f"{base}/v1/jobs/{job_id}", headers=as_read).status_code == 403
    fault_report("an ingest token reads jobs; a read token sends events or cancels",
                 "403 each time; tokens stored as SHA-256 only")


# One backend is enough: a cache, not the dialect.
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.slow
def test_a_revoked_token_stops_working(api: httpx.Client, database_url: str, fault_report):
    name = f"temp-{uuid.uuid4()}"
    token = _cli("token", "create", "--name", name, "--scope", "read").stdout.strip()
    headers = {"Authorization": f"Bearer {token}"}
    url = str(api.base_url) + "/v1/history"
    wait_for(lambda: httpx.get(url, headers=headers).status_code == 200, timeout=10,
             interval=0.25)
    revoked = _cli("token", "revoke", "--name", name)
    assert revoked.returncode == 0 and "revoked" in revoked.stderr
    assert _cli("token", "revoke", "--name", name).returncode == 1
    started = time.monotonic()
    wait_for(lambda: httpx.get(url, headers=headers).status_code == 401, timeout=10,
             interval=0.25)
    assert time.monotonic() - started < 6.5
    fault_report("a revoked API token", "401 within 5 s of `passflow token revoke`")


def test_the_api_refuses_to_start_without_a_token(database_url: str):
    import os

    env = {k: v for k, v in os.environ.items() if k != "PASSFLOW_API_TOKEN"}
    with models.db.session_scope() as session:
        active = session.scalars(select(ApiToken).where(ApiToken.revoked_at.is_(None))).all()
        for token in active:  # no stored token either
            token.revoked_at = models.utcnow()
    done = subprocess.run([sys.executable, "-m", "cli", "api", "--port", "1"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2 and "PASSFLOW_API_TOKEN" in done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # redaction: no dialect's
def test_scopes_keep_personal_data_to_tokens_granted_it(api: httpx.Client, factories_bound,
                                                       fault_report):
    """A scraper's token reads metrics and health only; a `read` token reads jobs without the
    media token or the profile attributes; only `personal` (or admin) reads those."""
    play = DecisionFactory(media_token="media-token-of-a-test").job_id
    login = ProfileFactory(attributes={"zip": {"value": "10001"}}).job_id
    with models.db.session_scope() as session:
        tokens = {scope: create_token(session, name=f"{scope}-{uuid.uuid4()}", scope=scope)
                  for scope in ("metrics", "read", "personal")}
    base = str(api.base_url)

    def get(path: str, scope: str) -> httpx.Response:
        return httpx.get(base + path, headers={"Authorization": f"Bearer {tokens[scope]}"})

    wait_for(lambda: get("/metrics", "metrics").status_code == 200, timeout=10, interval=0.25)
    assert get("/healthz", "metrics").status_code in (200, 503)  # the probe sees health
    for path in (f"/v1/jobs/{play}", "/v1/history?device_id=x"):
        assert get(path, "metrics").status_code == 403

    seen = {scope: (get(f"/v1/jobs/{play}", scope).json(),
                    get(f"/v1/jobs/{login}", scope).json()) for scope in ("read", "personal")}
    (decision_read, profile_read), (decision_full, profile_full) = seen["read"], seen["personal"]
    assert "media_token" not in decision_read["result"]["decisions"][0]
    assert "attributes" not in profile_read["result"]["profile"]
    assert "personal" in decision_read["redacted"] and "personal" in profile_read["redacted"]
    assert "media-token-of-a-test" not in str(seen["read"])
    assert decision_full["result"]["decisions"][0]["media_token"] == "media-token-of-a-test"
    assert profile_full["result"]["profile"]["attributes"] == {"zip": {"value": "10001"}}
    assert decision_full["redacted"] is None
    fault_report("a metrics token reads jobs; a read token reads a job with a Permit",
                 "403; the job without its media token or profile attributes (`redacted` says "
                 "why); a personal token sees them")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # redaction: no dialect's
def test_live_activation_codes_are_personal_data(api: httpx.Client, factories_bound,
                                                  fault_report):
    """A code waiting on a TV signs in whoever types it first: a `read` token sees neither
    the code nor its URL, in the job or in the history; a personal token does."""
    auth = AuthSessionFactory(code="LIVE123")
    with models.db.session_scope() as session:
        tokens = {scope: create_token(session, name=f"{scope}-{uuid.uuid4()}", scope=scope)
                  for scope in ("read", "personal")}
    base = str(api.base_url)

    def seen(scope: str) -> str:
        headers = {"Authorization": f"Bearer {tokens[scope]}"}
        job = httpx.get(f"{base}/v1/jobs/{auth.job_id}", headers=headers)
        story = httpx.get(f"{base}/v1/history", params={"device_id": auth.device_id},
                          headers=headers)
        assert job.status_code == story.status_code == 200
        return job.text + story.text

    wait_for(lambda: httpx.get(f"{base}/v1/jobs/{auth.job_id}", headers={
        "Authorization": f"Bearer {tokens['personal']}"}).status_code == 200,
        timeout=10, interval=0.25)  # new tokens reach the API within seconds
    assert "LIVE123" not in seen("read")
    assert "LIVE123" in seen("personal")
    fault_report("a read token reads a job and a history with a live activation code",
                 "no code and no URL; a personal token sees them")


def test_a_token_limited_to_one_brand_can_neither_read_nor_write_another(api: httpx.Client):
    """An ingest token of REF30 is refused CNN's events (403) and sends REF30's; a read token
    of REF30 lists, opens and reads the history of REF30's jobs only (CNN's: not found, not
    listed), gets no pool-wide figure, and in the console sees REF30's jobs only."""
    from tests.factories import JobFactory

    with models.db.session_scope() as session:
        ingest = create_token(session, name=f"ref30-in-{uuid.uuid4()}", scope="ingest",
                              service_providers=["REF30"])
        read = create_token(session, name=f"ref30-rd-{uuid.uuid4()}", scope="read",
                            service_providers=["REF30"])
    ours, theirs = JobFactory(service_provider="REF30"), JobFactory(service_provider="CNN")
    base, as_ingest = str(api.base_url), {"Authorization": f"Bearer {ingest}"}
    as_read = {"Authorization": f"Bearer {read}"}
    wait_for(lambda: httpx.get(base + "/v1/jobs", headers=as_read).status_code == 200,
             timeout=10, interval=0.25)
    cnn = httpx.post(base + "/v1/events", json={**_event(), "service_provider": "CNN"},
                     headers=as_ingest)
    assert cnn.status_code == 403 and "CNN" in cnn.text
    assert httpx.post(base + "/v1/events", json={**_event(), "service_provider": "REF30"},
                      headers=as_ingest).status_code == 202
    listed = httpx.get(base + "/v1/jobs", params={"limit": 500}, headers=as_read).json()["jobs"]
    assert {j["service_provider"] for j in listed} == {"REF30"}
    assert ours.id in {j["job_id"] for j in listed}
    assert httpx.get(f"{base}/v1/jobs/{theirs.id}", headers=as_read).status_code == 404
    assert httpx.get(f"{base}/v1/jobs/{ours.id}", headers=as_read).status_code == 200
    for device in (ours.device_id, theirs.device_id):
        entries = httpx.get(base + "/v1/history", params={"device_id": device},
                            headers=as_read).json()["entries"]
        assert {e["service_provider"] for e in entries} <= {"REF30"}
    assert httpx.get(base + "/v1/stats/decisions", headers=as_read).status_code == 403
    with httpx.Client(base_url=base, follow_redirects=False) as console:
        assert console.post("/console/sign-in", data={"token": read}).status_code == 303
        assert "limited to REF30" in console.get("/console/overview").text
        assert console.get(f"/console/jobs/{theirs.id}").status_code == 404
        assert console.get(f"/console/jobs/{ours.id}").status_code == 200
        listed_page = console.get("/console/jobs").text
        assert ours.id[:8] in listed_page and theirs.id[:8] not in listed_page
        assert console.get("/console/overview/panels").status_code == 403
    # Unlimited, the same reads see both brands.
    every = api.get("/v1/jobs", params={"limit": 500}).json()["jobs"]
    assert {"REF30", "CNN"} <= {j["service_provider"] for j in every}


def test_reserved_names_and_two_scopes_are_refused(database_url: str):
    reserved = _cli("token", "create", "--name", "PASSFLOW_API_TOKEN", "--scope", "read")
    assert reserved.returncode == 2 and "reserved" in reserved.stderr
    two = _cli("token", "create", "--name", f"t-{uuid.uuid4()}", "--scope", "admin",
               "--scope", "personal")
    assert two.returncode == 2 and "one --scope a token" in two.stderr
