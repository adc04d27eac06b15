"""The browser side: /api/v2/authenticate, the simulated MVPD login page, the redirect."""

from __future__ import annotations

import re

import httpx

from simulator.fixtures import DEMO_SOFTWARE_STATEMENT
from worker.adobe_pass import AdobePass


def _session(adobe: AdobePass, device, **params):
    return adobe.sessions.create("REF30", device=device, **params)


def test_login_page_flow_ends_at_the_redirect_url(adobe: AdobePass, sim: httpx.Client, device):
    session = _session(adobe, device, mvpd="Cablevision", domain_name="example.com",
                       redirect_url="https://example.com/done?x=1")
    first = sim.get(session.url)
    assert first.status_code == 302
    page = sim.get(first.headers["location"])
    assert page.status_code == 200 and "Sign in to Optimum" in page.text
    code = re.search(r'name="code" value="([^"]+)"', page.text).group(1)
    wrong = sim.post("/_sim/mvpd/Cablevision/login",
                     data={"code": code, "username": "user1", "password": "nope"})
    assert wrong.status_code == 401 and "Wrong username or password" in wrong.text
    done = sim.post("/_sim/mvpd/Cablevision/login",
                    data={"code": code, "username": "user1", "password": "pass1"})
    assert done.status_code == 302 and done.headers["location"] == "https://example.com/done?x=1"
    assert adobe.profiles.for_code("REF30", session.code, device=device).get("Cablevision")
    # The code is used up: the user agent endpoint now says so.
    again = sim.get(session.url)
    assert again.status_code == 400 and "text/html" in again.headers["content-type"]


def test_authenticate_refuses_unknown_and_incomplete_sessions(adobe, sim: httpx.Client, device):
    assert sim.get("/api/v2/authenticate/REF30/NOSUCH1").status_code == 400
    incomplete = _session(adobe, device, domain_name="example.com",
                          redirect_url="https://example.com/done")
    answer = sim.get(f"/api/v2/authenticate/REF30/{incomplete.code}")
    assert answer.status_code == 400 and "mvpd" in answer.text


def test_sim_login_needs_a_pending_session_with_mvpd(adobe, sim: httpx.Client, device):
    incomplete = _session(adobe, device)
    assert sim.post("/_sim/login", json={"code": incomplete.code}).status_code == 400
    assert sim.post("/_sim/login", json={"code": "NOSUCH1"}).status_code == 400


def test_openapi_lists_every_endpoint(sim: httpx.Client):
    paths = sim.get("/openapi.json").json()["paths"]
    expected = {
        ("post", "/o/client/register"), ("post", "/o/client/token"),
        ("get", "/api/v2/{serviceProvider}/configuration"),
        ("post", "/api/v2/{serviceProvider}/sessions"),
        ("post", "/api/v2/{serviceProvider}/sessions/{code}"),
        ("get", "/api/v2/{serviceProvider}/sessions/{code}"),
        ("get", "/api/v2/authenticate/{serviceProvider}/{code}"),
        ("get", "/api/v2/{serviceProvider}/profiles"),
        ("get", "/api/v2/{serviceProvider}/profiles/{mvpd}"),
        ("get", "/api/v2/{serviceProvider}/profiles/code/{code}"),
        ("post", "/api/v2/{serviceProvider}/decisions/preauthorize/{mvpd}"),
        ("post", "/api/v2/{serviceProvider}/decisions/authorize/{mvpd}"),
        ("get", "/api/v2/{serviceProvider}/logout/{mvpd}"),
        ("post", "/_sim/login"),
    }
    listed = {(method, path) for path, ops in paths.items() for method in ops}
    assert expected <= listed
    assert sim.get("/docs").status_code == 200


def test_demo_statement_is_accepted_by_default(pass_url: str, device):
    with AdobePass(pass_url, software_statement=DEMO_SOFTWARE_STATEMENT) as client:
        assert client.configuration.retrieve("REF30", device=device).requestor.id == "REF30"
