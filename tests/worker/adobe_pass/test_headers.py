"""Header encoding, checked against the samples of rest-api-v2/appendix/headers/."""

import base64
import json

import pytest

from simulator.headers import parse_device_identifier, parse_device_info
from worker.adobe_pass.headers import (
    Device,
    device_headers,
    device_identifier,
    device_info,
    temppass_identity,
)

TV = {"primaryHardwareType": "SetTopBox", "model": "TV 5th Gen", "version": "5.0",
      "osName": "tvOS", "osVersion": "17.1", "connectionType": "LAN"}
BROWSER_AGENT = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                 "Chrome/126.0 Safari/537.36")


def _decode(value: str) -> object:
    return json.loads(base64.b64decode(value))


def test_stable_device_identifier_the_same_id_is_the_same_fingerprint():
    # appendix: ba23d141-... -> "fingerprint YmEyM2QxNDEtZDcxNS01NjFjLTk0ZjQtZTllNGM5NjZiMWVi"
    value = device_identifier("ba23d141-d715-561c-94f4-e9e4c966b1eb")
    assert value == "fingerprint YmEyM2QxNDEtZDcxNS01NjFjLTk0ZjQtZTllNGM5NjZiMWVi"
    assert parse_device_identifier(value) == "ba23d141-d715-561c-94f4-e9e4c966b1eb"


def test_device_info_encodes_the_reference_example():
    documented = {"primaryHardwareType": "MobilePhone", "model": "SM-S901U", "vendor": "samsung",
                  "version": "r0q", "manufacturer": "samsung", "osName": "Android",
                  "osVersion": "14"}
    sample = ("ewogICJwcmltYXJ5SGFyZHdhcmVUeXBlIiA6ICJNb2JpbGVQaG9uZSIsCiAgIm1vZGVsIjoiU00tUzkwMVUi"
              "LAogICJ2ZW5kb3IiOiJzYW1zdW5nIiwKICAidmVyc2lvbiI6InIwcSIsCiAgIm1hbnVmYWN0dXJlciI6InN"
              "hbXN1bmciLAogICJvc05hbWUiOiJBbmRyb2lkIiwKICAib3NWZXJzaW9uIjoiMTQiCn0=")
    assert _decode(sample) == documented
    assert _decode(device_info(documented)) == documented
    # The simulator reads both the documented value and ours the same way.
    assert parse_device_info(sample) == (documented, [])
    assert parse_device_info(device_info(documented)) == (documented, [])


def test_device_info_carries_the_device_connection_unless_given():
    encoded = device_info({"model": "TV"}, ip="203.0.113.7", port=54321)
    assert _decode(encoded) == {"model": "TV", "connectionIp": "203.0.113.7",
                                "connectionPort": 54321}
    explicit = device_info({"connectionIp": "192.0.2.1"}, ip="203.0.113.7")
    assert _decode(explicit) == {"connectionIp": "192.0.2.1"}


def test_device_info_keeps_unicode_values():
    encoded = device_info({"model": "Télé 📺"})
    assert _decode(encoded) == {"model": "Télé 📺"}


def test_temppass_identity_matches_the_reference_samples():
    # appendix sample and the Profiles page sample both decode to the identity JSON.
    assert _decode(temppass_identity({"email": "example@domain.com"})) == _decode(
        "eyJlbWFpbCI6ICJleGFtcGxlQGRvbWFpbi5jb20ifQ==")
    assert temppass_identity({"email": "foo@bar.com"}) == "eyJlbWFpbCI6ImZvb0BiYXIuY29tIn0="


def test_single_sign_on_headers_only_on_the_calls_whose_pages_list_them():
    """Adobe-Subject-Token, X-Roku-Reserved-Roku-Connect-Token and AD-Service-Token go with
    `sso` (sessions create, profiles, decisions, logout), AP-Partner-Framework-Status with
    `partner` (profiles, decisions), Base64 of the status JSON; neither by default."""
    status = {"frameworkPermissionInfo": {"accessStatus": "granted"},
              "frameworkProviderInfo": {"id": "Spectrum", "expirationDate": "1735689600000"}}
    device = Device(id="tv-1", ip="203.0.113.7", info=TV, sso={
        "subject_token": "jws.amazon.1", "roku_connect_token": "roku-1",
        "service_token": "svc-1", "partner_framework_status": status})
    assert not {"Adobe-Subject-Token", "AD-Service-Token",
                "AP-Partner-Framework-Status"} & set(device_headers(device))
    both = device_headers(device, sso=True, partner=True)
    assert (both["Adobe-Subject-Token"], both["X-Roku-Reserved-Roku-Connect-Token"],
            both["AD-Service-Token"]) == ("jws.amazon.1", "roku-1", "svc-1")
    assert _decode(both["AP-Partner-Framework-Status"]) == status
    assert "AP-Partner-Framework-Status" not in device_headers(device, sso=True)


def test_send_ap_device_identifier_header_every_call_names_the_device_and_its_ip():
    device = Device(id="tv-1", ip="203.0.113.7", port=1234, info=TV,
                    visitor_id="ECID-1")
    headers = device_headers(device)
    assert headers["AP-Device-Identifier"] == device_identifier("tv-1")
    assert headers["X-Forwarded-For"] == "203.0.113.7"
    assert headers["AP-Visitor-Identifier"] == "ECID-1"
    assert _decode(headers["X-Device-Info"])["connectionIp"] == "203.0.113.7"


def test_a_device_without_ip_sends_no_forwarded_header():
    assert "X-Forwarded-For" not in device_headers(Device(id="tv-2", info=TV))


def test_a_browser_may_go_without_device_info_and_nothing_else_may():
    """The X-Device-Info page lets a browser omit it ("Browsers"); for any other device no
    call is built without it (intake refuses such a device, this is the last guard)."""
    browser = device_headers(Device(id="phone", user_agent=BROWSER_AGENT))
    assert "X-Device-Info" not in browser and browser["User-Agent"] == BROWSER_AGENT
    assert browser["AP-Device-Identifier"] == device_identifier("phone")
    with pytest.raises(ValueError, match="without X-Device-Info"):
        device_headers(Device(id="tv-3", user_agent="Roku/DVP-12.0"))


def test_restricted_device_info_values_are_reported():
    info, problems = parse_device_info(device_info({"osName": "Plan9"}))
    assert info == {"osName": "Plan9"}
    assert problems == ["osName='Plan9' is not one of the allowed values"]
    assert parse_device_info("not base64 json!")[0] is None


def test_send_ap_device_identifier_header_on_every_call_the_look_ups_by_code_included():
    """The union rule: the checklist (items 17, 18) sends AP-Device-Identifier and
    X-Device-Info on every REST API V2 request, and both basic authentication flows list
    AP-Device-Identifier for the profile-by-code call, though the API pages of the look-ups by
    code list neither: they go on every call. The single sign-on headers stay off the calls
    whose pages do not list them."""
    import respx
    from httpx import Response

    from worker.adobe_pass import AdobePass

    device = Device(id="tv-1", ip="203.0.113.5", port=50000, info=TV, user_agent="TV/1.0",
                    sso={"subject_token": "jws.amazon.1"})
    with respx.mock(base_url="https://pass.test", assert_all_called=False) as mock:
        mock.post("/o/client/register").mock(return_value=Response(
            201, json={"client_id": "c", "client_secret": "s", "scopes": ["api:client:v2"]}))
        mock.post("/o/client/token").mock(return_value=Response(
            200, json={"access_token": "t", "expires_in": 3600, "token_type": "bearer"}))
        session = mock.get("/api/v2/REF30/sessions/CODE1").mock(return_value=Response(
            200, json={"existingParameters": {}}))
        resume = mock.post("/api/v2/REF30/sessions/CODE1").mock(return_value=Response(
            200, json={"actionName": "authenticate", "actionType": "interactive"}))
        code = mock.get("/api/v2/REF30/profiles/code/CODE1").mock(return_value=Response(
            200, json={"profiles": {}}))
        mvpd = mock.get("/api/v2/REF30/profiles/Cablevision").mock(return_value=Response(
            200, json={"profiles": {}}))
        with AdobePass("https://pass.test", software_statement="stmt", max_retries=0) as adobe:
            adobe.sessions.retrieve("REF30", "CODE1", device=device)
            adobe.sessions.resume("REF30", "CODE1", device=device, mvpd="Cablevision")
            adobe.profiles.for_code("REF30", "CODE1", device=device)
            adobe.profiles.for_mvpd("REF30", "Cablevision", device=device)
    for route in (session, resume, code, mvpd):
        sent = route.calls.last.request.headers
        assert sent["AP-Device-Identifier"] == device_identifier("tv-1")
        assert _decode(sent["X-Device-Info"])["model"] == TV["model"]
        assert sent["X-Forwarded-For"] == "203.0.113.5" and sent["User-Agent"] == "TV/1.0"
    for route in (session, resume, code):
        assert "Adobe-Subject-Token" not in route.calls.last.request.headers
    assert mvpd.calls.last.request.headers["Adobe-Subject-Token"] == "jws.amazon.1"


def test_a_restricted_key_holding_a_list_or_a_number_is_reported_not_a_crash():
    """A list is unhashable and 1 == True: neither may slip past the table (a list in
    browserVendor was a 500 from POST /v1/events and from the simulator)."""
    from passflow.device_info import problems

    assert problems({"browserVendor": ["Apple"], "connectionSecure": 1}) == [
        *[p for p in problems({}) if "missing" in p],
        "browserVendor=['Apple'] is not one of: " + ", ".join(sorted(
            v for v in device_info_table("browserVendor"))),
        "connectionSecure=1 is not one of: false, true"]
    info, found = parse_device_info(device_info({"browserVendor": {"a": 1}}))
    assert info == {"browserVendor": {"a": 1}}
    assert found == ["browserVendor={'a': 1} is not one of the allowed values"]


def device_info_table(key: str) -> list[str]:
    from passflow.device_info import RESTRICTED

    return [v for v in RESTRICTED[key] if isinstance(v, str)]
