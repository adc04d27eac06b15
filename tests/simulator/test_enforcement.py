"""What the simulator enforces, as Adobe does: tokens, headers, content types, throttling."""

from __future__ import annotations

import httpx
import pytest

from simulator.fixtures import DEMO_SOFTWARE_STATEMENT
from worker.adobe_pass.headers import device_identifier, device_info

INFO = device_info({"primaryHardwareType": "TV", "model": "X", "version": "1", "osName": "webOS",
                    "osVersion": "23", "connectionType": "WiFi"})


@pytest.fixture
def token(sim: httpx.Client) -> str:
    creds = sim.post("/o/client/register", json={"software_statement": DEMO_SOFTWARE_STATEMENT},
                     headers={"X-Device-Info": INFO})
    assert creds.status_code == 201
    body = creds.json()
    issued = sim.post("/o/client/token", headers={"X-Device-Info": INFO},
                      data={"client_id": body["client_id"], "client_secret": body["client_secret"],
                            "grant_type": "client_credentials"})
    assert issued.status_code == 201
    return issued.json()["access_token"]


def _headers(token: str | None, **extra: str) -> dict[str, str]:
    headers = {"AP-Device-Identifier": device_identifier("tv-1"), "X-Device-Info": INFO,
               "X-Forwarded-For": "192.0.2.10"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    headers.update(extra)
    return {k: v for k, v in headers.items() if v}


def test_dcr_register_needs_json(sim: httpx.Client):
    answer = sim.post("/o/client/register", data={"software_statement": DEMO_SOFTWARE_STATEMENT},
                      headers={"X-Device-Info": INFO})
    assert (answer.status_code, answer.json()) == (400, {"error": "invalid_request"})


def test_dcr_register_needs_device_info(sim: httpx.Client):
    answer = sim.post("/o/client/register", json={"software_statement": DEMO_SOFTWARE_STATEMENT})
    assert answer.json() == {"error": "invalid_request"}


def test_dcr_token_grant_type_and_repeated_parameters(sim: httpx.Client):
    creds = sim.post("/o/client/register", json={"software_statement": DEMO_SOFTWARE_STATEMENT},
                     headers={"X-Device-Info": INFO}).json()
    form = {"client_id": creds["client_id"], "client_secret": creds["client_secret"]}
    wrong = sim.post("/o/client/token", headers={"X-Device-Info": INFO},
                     data={**form, "grant_type": "password"})
    assert wrong.json() == {"error": "unsupported_grant_type"}
    repeated = sim.post("/o/client/token", headers={"X-Device-Info": INFO},
                        content=b"grant_type=client_credentials&grant_type=client_credentials&"
                                + f"client_id={form['client_id']}&client_secret=x".encode(),
                        )
    assert repeated.status_code == 400
    as_json = sim.post("/o/client/token", headers={"X-Device-Info": INFO},
                       json={**form, "grant_type": "client_credentials"})
    assert as_json.json() == {"error": "invalid_request"}


@pytest.mark.parametrize("auth", [None, "Bearer nope", "Basic abc"])
def test_rest_api_needs_a_valid_bearer_token(sim: httpx.Client, auth):
    headers = _headers(None)
    if auth:
        headers["Authorization"] = auth
    answer = sim.get("/api/v2/REF30/profiles", headers=headers)
    assert answer.status_code == 401
    assert answer.json()["action"] == "application-registration"


@pytest.mark.parametrize("value", [None, "ba23d141", "fingerprint", "uuid YmEy", "fingerprint !!"])
def test_device_identifier_is_required_and_checked(sim: httpx.Client, token: str, value):
    headers = _headers(token)
    headers.pop("AP-Device-Identifier")
    if value:
        headers["AP-Device-Identifier"] = value
    answer = sim.get("/api/v2/REF30/profiles", headers=headers)
    assert answer.status_code == 400
    assert answer.json()["code"] == "invalid_header_device_identifier"


def test_follow_apis_references_device_headers_required_on_every_rest_call(
        sim: httpx.Client, token: str):
    """Checklist items 17-18: every REST API v2 request, the configuration and the look-ups by
    code included (their own pages mark the device headers optional or list none)."""
    session = sim.post("/api/v2/REF30/sessions", headers=_headers(token),
                       data={"mvpd": "Cablevision", "domainName": "adobe.com",
                             "redirectUrl": "https://adobe.com"}).json()
    calls = [("GET", "/api/v2/REF30/configuration"), ("GET", "/api/v2/REF30/profiles"),
             ("GET", f"/api/v2/REF30/sessions/{session['code']}"),
             ("GET", f"/api/v2/REF30/profiles/code/{session['code']}"),
             ("POST", f"/api/v2/REF30/sessions/{session['code']}")]
    addresses = (f"198.51.100.{n}" for n in range(1, 200))  # each its own throttle bucket
    for header, code in (("X-Device-Info", "invalid_header_device_info"),
                         ("AP-Device-Identifier", "invalid_header_device_identifier")):
        for method, url in calls:
            headers = _headers(token, **{"X-Forwarded-For": next(addresses)})
            headers.pop(header)
            answer = sim.request(method, url, headers=headers, data={"mvpd": "Cablevision"}
                                 if method == "POST" else None)
            assert (answer.status_code, answer.json()["code"]) == (400, code), (url, header)
    for method, url in calls:
        assert sim.request(method, url, headers=_headers(
            token, **{"X-Forwarded-For": next(addresses)}), data={"mvpd": "Cablevision"}
                           if method == "POST" else None).status_code == 200, url


def test_a_browser_may_omit_device_info_and_nothing_else_may(sim: httpx.Client, token: str):
    """The X-Device-Info page, Browsers: its User-Agent stands for it."""
    headers = _headers(token)
    headers.pop("X-Device-Info")
    assert sim.get("/api/v2/REF30/configuration", headers={
        **headers, "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0"}).status_code \
        == 200
    assert sim.get("/api/v2/REF30/configuration", headers={
        **headers, "User-Agent": "Roku/DVP-12.0"}).json()["code"] == "invalid_header_device_info"


@pytest.mark.parametrize(("change", "named"), [
    ({"connectionType": None}, "connectionType is missing"),
    ({"version": None}, "version is missing"),
    ({"osName": "Roku"}, "osName='Roku' is not one of the allowed values"),
])
def test_device_info_keys_as_the_page_marks_them(sim: httpx.Client, token: str, change, named):
    """Required keys as the directives table marks them (its own example lacks connectionType:
    the strict reading requires it all the same), osName from the page's list only (its Roku
    recipe's "Roku" is not on it)."""
    info = {"primaryHardwareType": "SetTopBox", "model": "X", "version": "1",
            "osName": "Roku OS", "osVersion": "12.5", "connectionType": "WiFi", **change}
    headers = _headers(token, **{"X-Device-Info": device_info(
        {k: v for k, v in info.items() if v is not None})})
    answer = sim.get("/api/v2/REF30/profiles", headers=headers)
    assert answer.status_code == 400 and named in answer.json()["details"]


def test_follow_apis_references_sso_headers_refused_where_no_page_lists_them(
        sim: httpx.Client, token: str):
    session = sim.post("/api/v2/REF30/sessions", headers=_headers(token),
                       data={"mvpd": "Cablevision", "domainName": "adobe.com",
                             "redirectUrl": "https://adobe.com"}).json()
    for header in ("Adobe-Subject-Token", "AD-Service-Token", "AP-Partner-Framework-Status"):
        answer = sim.get(f"/api/v2/REF30/profiles/code/{session['code']}",
                         headers=_headers(token, **{header: "x"}))
        assert answer.status_code == 400 and header in answer.json()["details"], header
        assert sim.get("/_sim/requests").json()[-1]["refused"] == "invalid_request"
    # Listed on the profiles of all MVPDs: taken.
    assert sim.get("/api/v2/REF30/profiles", headers=_headers(
        token, **{"AD-Service-Token": "svc-1"})).status_code == 200


def test_the_lenient_reading_is_a_named_switch_off_by_default():
    from simulator import SimConfig

    assert SimConfig.load().lenient_headers is False
    assert SimConfig().lenient_headers is False


def test_sessions_need_a_form_body(sim: httpx.Client, token: str):
    answer = sim.post("/api/v2/REF30/sessions", headers=_headers(token),
                      json={"mvpd": "Cablevision"})
    assert answer.status_code == 400


def test_decisions_need_a_json_body_with_resources(sim: httpx.Client, token: str):
    url = "/api/v2/REF30/decisions/authorize/Cablevision"
    as_form = sim.post(url, headers=_headers(token), data={"resources": "REF30"})
    assert as_form.json()["code"] == "invalid_parameter_resources"
    empty = sim.post(url, headers=_headers(token), json={"resources": []})
    assert empty.json()["code"] == "invalid_parameter_resources"


def test_logout_needs_a_redirect_url(sim: httpx.Client, token: str):
    answer = sim.get("/api/v2/REF30/logout/Cablevision", headers=_headers(token))
    assert answer.json()["code"] == "invalid_parameter_redirect_url"


def test_wrong_method_is_405(sim: httpx.Client, token: str):
    assert sim.delete("/api/v2/REF30/profiles", headers=_headers(token)).status_code == 405


def test_429_is_html_and_keyed_on_the_forwarded_ip(sim: httpx.Client, token: str):
    statuses = [sim.get("/api/v2/REF30/profiles", headers=_headers(token)).status_code
                for _ in range(12)]
    assert statuses[:11] == [200] * 11 and statuses[11] == 429
    throttled = sim.get("/api/v2/REF30/profiles", headers=_headers(token))
    assert throttled.status_code == 429 and "text/html" in throttled.headers["content-type"]
    other = sim.get("/api/v2/REF30/profiles",
                    headers=_headers(token, **{"X-Forwarded-For": "192.0.2.11, 10.0.0.1"}))
    assert other.status_code == 200


def test_enhanced_error_has_the_documented_fields(sim: httpx.Client, token: str):
    body = sim.get("/api/v2/NOPE/profiles", headers=_headers(token)).json()
    assert set(body) >= {"action", "status", "code", "message", "helpUrl", "trace"}
    assert (body["status"], body["code"]) == (400, "invalid_parameter_service_provider")
