"""The operations console over HTTP (the browser tests drive it in Chromium): its session
cookie, who may look and who may act, CSRF, search, the CSV export, and GET /v1/stats/...
One backend: nothing here depends on the database's dialect (tests/models/test_stats.py runs
the figures on both)."""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import Iterator

import httpx
import pytest

from api.auth import create_token, revoke_token
from models.db import session_scope
from passflow.serving import BackgroundServer
from tests.factories import AuthSessionFactory, DecisionFactory, JobFactory, ProfileFactory
from tests.support import TOKEN, new_device, wait_for, wait_for_status

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def console(api_server: BackgroundServer, jobs_env: httpx.Client) -> Iterator[httpx.Client]:
    """A browser-like client of the console: cookies kept, redirects not followed."""
    with httpx.Client(base_url=api_server.url, timeout=10) as client:
        yield client


def named_token(scope: str) -> tuple[str, str]:
    name = f"console-{scope}-{uuid.uuid4()}"
    with session_scope() as session:
        return name, create_token(session, name=name, scope=scope)


def token_of(scope: str) -> str:
    return named_token(scope)[1]


def sign_in(client: httpx.Client, token: str) -> httpx.Response:
    return client.post("/console/sign-in", data={"token": token})


def sign_in_new(client: httpx.Client, token: str) -> httpx.Response:
    """With a token made a moment ago: the API knows it within a second."""
    answers: list[httpx.Response] = []
    wait_for(lambda: answers.append(sign_in(client, token)) or answers[-1].status_code != 401,
             timeout=5, interval=0.5)
    return answers[-1]


def csrf_of(page: httpx.Response) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


def test_sign_in_keeps_a_strict_http_only_cookie_and_sign_out_ends_it(console: httpx.Client):
    form = console.get("/console")
    assert form.status_code == 200 and 'for="token">API token<' in form.text
    assert "default-src 'none'" in form.headers["content-security-policy"]
    answer = sign_in(console, TOKEN)
    assert answer.status_code == 303 and answer.headers["location"] == "/console/overview"
    cookie = answer.headers["set-cookie"]
    for attribute in ("HttpOnly", "SameSite=strict", "Path=/console", "Max-Age=28800"):
        assert attribute.lower() in cookie.lower(), cookie
    assert TOKEN not in cookie  # the session names the token's hash, held server side
    overview = console.get("/console/overview")
    assert overview.status_code == 200 and "Sign out" in overview.text
    assert 'for="search">Search<' in overview.text
    stolen = console.cookies.get("passflow_console")
    assert console.post("/console/sign-out").status_code == 403  # no CSRF token
    assert console.post("/console/sign-out", data={"csrf": csrf_of(overview)}).status_code == 303
    # The same cookie replayed after sign-out: the session is gone on the server.
    replay = httpx.get(f"{str(console.base_url).rstrip('/')}/console/overview",
                       cookies={"passflow_console": stolen}, follow_redirects=False)
    assert replay.status_code == 303 and replay.headers["location"] == "/console"
    forged = httpx.get(f"{str(console.base_url).rstrip('/')}/console/overview",
                       cookies={"passflow_console": stolen[:-4] + "AAAA"})
    assert forged.status_code == 303


def test_who_may_sign_in_and_a_revoked_token_ends_its_sessions(console: httpx.Client):
    assert sign_in(console, "pf_not-a-token").status_code == 401
    refused = sign_in_new(console, token_of("ingest"))
    assert refused.status_code == 403 and "needs read" in refused.text
    assert "set-cookie" not in refused.headers
    name, token = named_token("read")
    assert sign_in_new(console, token).status_code == 303
    assert console.get("/console/overview").status_code == 200
    with session_scope() as session:
        assert revoke_token(session, name=name)
    # Tokens are re-read every 5 s: the session ends within that.
    wait_for(lambda: console.get("/console/overview").status_code == 303, timeout=10)


def test_a_read_token_sees_no_code_and_cannot_act(console: httpx.Client, api: httpx.Client):
    device = new_device()

    def send(type_: str, **fields: str) -> str:
        return api.post("/v1/events", json={
            "event_id": f"evt-{uuid.uuid4()}", "type": type_, "mvpd": "Cablevision",
            "device": {"id": device.id, "ip": device.ip, "info": dict(device.info)},
            **fields}).json()["job_id"]

    job_id = send("authorization.requested", resource="REF30")
    assert wait_for_status(job_id) == "failed"  # nobody signed in on this device
    auth = send("authentication.requested")
    wait_for_status(auth, "waiting_for_user")
    code = api.get(f"/v1/jobs/{auth}").json()["result"]["code"]

    assert sign_in_new(console, token_of("read")).status_code == 303
    timeline = console.get(f"/console/devices/{device.id}")
    assert "Authentication session" in timeline.text and code not in timeline.text
    job = console.get(f"/console/jobs/{job_id}")
    assert "failed" in job.text and ">Retry<" not in job.text
    assert device.ip not in job.text
    refused = console.post(f"/console/jobs/{job_id}/retry", data={"csrf": csrf_of(job)})
    assert refused.status_code == 403 and "admin" in refused.text
    assert api.get("/v1/jobs", params={"event_id": api.get(f"/v1/jobs/{job_id}").json()[
        "event_id"]}).json()["jobs"][0]["job_id"] == job_id  # no new job

    with httpx.Client(base_url=console.base_url, timeout=10) as personal:
        sign_in_new(personal, token_of("personal"))
        assert code in personal.get(f"/console/devices/{device.id}").text
    api.delete(f"/v1/jobs/{auth}")


def test_an_action_needs_the_csrf_token_and_the_same_origin(console: httpx.Client,
                                                             api: httpx.Client):
    job = JobFactory(status="failed", current_step=None, error={"code": "x", "action": "none",
                                                                 "message": "made up"})
    sign_in(console, TOKEN)
    page = console.get(f"/console/jobs/{job.id}")
    assert ">Retry<" in page.text
    assert console.post(f"/console/jobs/{job.id}/retry", data={"csrf": "guess"}).status_code \
        == 403
    other = console.post(f"/console/jobs/{job.id}/retry", data={"csrf": csrf_of(page)},
                         headers={"Origin": "http://evil.example"})
    assert other.status_code == 403
    done = console.post(f"/console/jobs/{job.id}/retry", data={"csrf": csrf_of(page)})
    assert done.status_code == 303
    new_id = done.headers["location"].split("/")[-1].split("?")[0]
    view = api.get(f"/v1/jobs/{job.id}").json()
    [action] = view["actions"]
    assert action["action"] == "job.retry" and action["actor"] == "console:PASSFLOW_API_TOKEN"
    assert action["detail"]["new_job"] == new_id
    assert api.get(f"/v1/jobs/{new_id}").json()["retry_of"] == job.id
    wait_for_status(new_id)


def test_search_goes_to_the_job_the_event_the_code_or_the_device(console: httpx.Client):
    job = JobFactory(status="succeeded", current_step=None)
    DecisionFactory(job=job, decision="Deny", error_code="authorization_denied_by_mvpd",
                    error_action="none")
    sign_in(console, TOKEN)

    def goes(query: str) -> str:
        answer = console.get("/console/search", params={"q": query})
        return answer.headers.get("location", str(answer.status_code))

    assert goes(job.id) == f"/console/jobs/{job.id}"
    assert goes(job.id[:8].upper()) == f"/console/jobs/{job.id}"  # as the console shows it
    assert goes(job.event.event_id) == f"/console/jobs/{job.id}"
    assert goes(job.device_id) == f"/console/devices/{job.device_id}"
    assert goes("no-such-thing") == "404"
    waiting = AuthSessionFactory(code="KXQ4R7P")
    assert goes("kxq-4r7p") == f"/console/jobs/{waiting.job_id}"  # a code as people type it
    timeline = console.get(f"/console/devices/{job.device_id}").text
    assert "Deny" in timeline and "authorization_denied_by_mvpd" in timeline
    assert "no remedy defined" in timeline  # the action, in words
    assert "The TV provider said no for this subscriber" in timeline  # its class, for an agent


def test_the_timeline_exports_as_csv_without_formulas(console: httpx.Client):
    decision = DecisionFactory(decision="Deny", resource="=HYPERLINK(\"http://x\")",
                               error_code="authorization_denied_by_mvpd", error_action="none")
    sign_in(console, TOKEN)
    answer = console.get(f"/console/devices/{decision.device_id}/export.csv")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    [row] = list(csv.DictReader(io.StringIO(answer.text)))
    assert row["outcome"] == "Deny" and row["job_id"] == decision.job_id
    assert row["resource"].startswith("'=")
    assert row["action_in_words"].startswith("no remedy")


def test_stats_answer_json_for_a_read_token_and_check_the_window(api: httpx.Client,
                                                                 api_server: BackgroundServer):
    DecisionFactory(decision="Permit")
    # A figure is kept a few seconds (api.stats.CACHE_S): an earlier ask's may answer first.
    figures = wait_for(lambda: (f := api.get("/v1/stats/decisions").json())["totals"][
        "Permit"] >= 1 and f, timeout=15)
    assert figures["bucket_s"] == 60
    assert len(figures["series"]) == 60
    for name in ("denies", "authentication", "throttling", "steps", "webhooks", "backlog",
                 "sweeper"):
        assert api.get(f"/v1/stats/{name}").status_code == 200, name
    bad = api.get("/v1/stats/decisions", params={"since": "2026-01-02T00:00:00Z",
                                                 "until": "2026-01-01T00:00:00Z"})
    assert bad.status_code == 422 and "before" in bad.text
    assert httpx.get(f"{api_server.url}/v1/stats/decisions").status_code == 401


def test_profile_attributes_show_only_to_a_personal_token(console: httpx.Client):
    profile = ProfileFactory(attributes={"userID": {"value": "subscriber-7781"}})
    assert sign_in_new(console, token_of("read")).status_code == 303
    page = console.get(f"/console/devices/{profile.device_id}").text
    assert "Attributes hidden" in page and "subscriber-7781" not in page
    with httpx.Client(base_url=console.base_url, timeout=10) as personal:
        sign_in_new(personal, token_of("personal"))
        assert "subscriber-7781" in personal.get(f"/console/devices/{profile.device_id}").text


def test_a_device_id_with_a_slash_opens_and_exports(console: httpx.Client, factories_bound):
    """Device ids are the platform's own: one with a `/` is accepted at intake, so its page
    and its export open too."""
    from urllib.parse import quote

    from tests.factories import DeviceFactory

    device = DeviceFactory(id=f"box/{uuid.uuid4().hex[:8]}")
    DecisionFactory(job=JobFactory(device=device, status="succeeded", current_step=None))
    sign_in(console, TOKEN)
    page = console.get(f"/console/devices/{quote(device.id, safe='')}")
    assert page.status_code == 200 and device.id in page.text
    export = console.get(f"/console/devices/{quote(device.id, safe='')}/export.csv")
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    assert "Permit" in export.text


def test_the_sign_in_limit_holds_when_tries_race(console: httpx.Client, api_server,
                                                 redis_client):
    """40 wrong tokens at once from one address: no more than the limit are checked (each try
    is taken atomically before the check), the rest are 429; a right token then still costs
    no try once the minute has passed."""
    from concurrent.futures import ThreadPoolExecutor

    from api.console import SIGN_IN_TRIES_PER_MINUTE

    for key in redis_client.scan_iter("passflow:console:sign-in:*"):
        redis_client.delete(key)

    def wrong(n: int) -> int:
        return httpx.post(f"{api_server.url}/console/sign-in",
                          data={"token": f"pf_wrong_{n}"}).status_code

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(wrong, range(40)))
    assert answers.count(401) <= SIGN_IN_TRIES_PER_MINUTE, answers
    assert answers.count(429) >= 40 - SIGN_IN_TRIES_PER_MINUTE
    for key in redis_client.scan_iter("passflow:console:sign-in:*"):
        redis_client.delete(key)
    assert sign_in(console, TOKEN).status_code == 303
    [key] = list(redis_client.scan_iter("passflow:console:sign-in:*"))
    assert int(redis_client.get(key)) == 0
