"""The Adobe Pass client against the simulator, over real sockets: every endpoint, happy and
error paths."""

from __future__ import annotations

import time
from dataclasses import replace

import httpx
import pytest

from passflow.serving import BackgroundServer
from simulator import SimConfig, create_app
from simulator.fixtures import DEMO_SOFTWARE_STATEMENT, make_software_statement
from tests.support import new_device, set_faults
from worker.adobe_pass import (
    AdobePass,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    Device,
    InternalServerError,
    MalformedResponseError,
    PermissionDeniedError,
    RateLimitError,
    RegistrationError,
    RegistrationRequired,
)

SP = "REF30"
REDIRECT = "https://example.com/done"


def login(adobe: AdobePass, sim: httpx.Client, device: Device, mvpd: str = "Cablevision") -> str:
    session = adobe.sessions.create(SP, device=device, mvpd=mvpd, domain_name="example.com",
                                    redirect_url=REDIRECT)
    sim.post("/_sim/login", json={"code": session.code}).raise_for_status()
    return session.code


# Registration ----------------------------------------------------------------------------------

def test_registers_once_and_reuses_the_token(adobe: AdobePass, sim: httpx.Client, device):
    for _ in range(3):
        adobe.profiles.list(SP, device=device)
    stats = sim.get("/_sim/stats").json()
    assert stats["registrations"] == 1
    assert stats["tokens_issued"] == 1


def test_dcr_register_and_token_return_typed_models(adobe: AdobePass):
    creds = adobe.dcr.register(software_statement=DEMO_SOFTWARE_STATEMENT,
                               redirect_uri="app://com.example")
    assert creds.client_id and creds.client_secret
    assert creds.grant_types == ["client_credentials"]
    token = adobe.dcr.token(client_id=creds.client_id, client_secret=creds.client_secret)
    assert token.token_type == "bearer" and token.expires_in == 86400 and token.access_token


def test_unapproved_software_statement_is_refused_and_said(pass_url: str, sim, device):
    """A statement Adobe refuses is a registration problem (what /healthz, the metric and the
    brand list show), and no further call tries to register with it."""
    with AdobePass(pass_url, software_statement=make_software_statement("other-app")) as client:
        with pytest.raises(RegistrationRequired) as caught:
            client.profiles.list(SP, device=device)
        assert "unapproved_software_statement" in caught.value.problem
        assert isinstance(caught.value.__cause__, RegistrationError)
        asked = sim.get("/_sim/stats").json().get("dcr.register 400", 0)
        with pytest.raises(RegistrationRequired):
            client.profiles.list(SP, device=device)
        assert sim.get("/_sim/stats").json().get("dcr.register 400", 0) == asked


def test_forged_software_statement_is_invalid(pass_url: str, device):
    forged = make_software_statement("passflow-demo", key=b"not-the-key")
    with (AdobePass(pass_url, software_statement=forged) as client,
          pytest.raises(RegistrationRequired) as caught):
        client.profiles.list(SP, device=device)
    assert "invalid_software_statement" in caught.value.problem


def test_bad_client_secret_is_invalid_client(adobe: AdobePass):
    creds = adobe.dcr.register(software_statement=DEMO_SOFTWARE_STATEMENT)
    with pytest.raises(RegistrationError) as caught:
        adobe.dcr.token(client_id=creds.client_id, client_secret="wrong")
    assert caught.value.oauth_error == "invalid_client"


def test_send_authorization_header_a_401_refreshes_the_token_once_then_retries(
        adobe: AdobePass, sim: httpx.Client, device):
    adobe.profiles.list(SP, device=device)
    sim.post("/_sim/revoke-tokens").raise_for_status()
    assert adobe.profiles.list(SP, device=device).profiles == {}
    stats = sim.get("/_sim/stats").json()
    assert stats["profiles.list 401"] == 1
    assert stats["tokens_issued"] == 2
    assert stats["registrations"] == 1  # the credentials were still good


def test_send_authorization_header_a_401_is_not_resent_with_a_token_issued_before_it(
        pass_url: str, sim: httpx.Client, device):
    """Another worker stored its own token before Adobe revoked them all: after the 401 that
    token is no better than the refused one, so the resend gets a new token and succeeds."""
    from worker.adobe_pass.credentials import InMemoryCredentialStore, StoredToken

    class AnotherWorkersToken(InMemoryCredentialStore):
        """After the refused token is discarded, what the database holds: the other one."""
        other: StoredToken | None = None

        def discard_token(self, key: str, value: str) -> None:
            super().discard_token(key, value)
            if self.other is not None:
                self.save_token(key, self.other)
                self.other = None

    store = AnotherWorkersToken()
    with AdobePass(pass_url, software_statement=DEMO_SOFTWARE_STATEMENT,
                   credentials=store) as adobe:
        adobe.profiles.list(SP, device=device)
        client = adobe.stored_client()
        issued = adobe.dcr.token(client_id=client.client_id, client_secret=client.client_secret)
        store.other = StoredToken(issued.access_token, expires_at=time.time() + 3600,
                                  lifetime_s=86400)  # issued before the 401, fresh by expiry
        sim.post("/_sim/revoke-tokens").raise_for_status()
        assert adobe.profiles.list(SP, device=device).profiles == {}
    stats = sim.get("/_sim/stats").json()
    assert stats["profiles.list 401"] == 1 and stats["profiles.list 200"] == 2


def test_client_credentials_caching_revoked_credentials_stop_work_until_a_deliberate_registration(
        adobe: AdobePass, sim: httpx.Client, device):
    """Checklist, Client Credentials Caching: new credentials invalidate every user's profile
    (DCR FAQ 9), so a revoked client is never replaced silently."""
    adobe.profiles.list(SP, device=device)
    sim.post("/_sim/forget-clients").raise_for_status()
    adobe.invalidate_token(adobe.access_token())
    for _ in range(2):
        with pytest.raises(RegistrationRequired) as caught:
            adobe.profiles.list(SP, device=device)
        assert caught.value.action == "application-registration"
        assert "passflow register" in str(caught.value)
    stats = sim.get("/_sim/stats").json()
    assert stats["dcr.token 400"] == 1  # asked once; then it stops asking
    assert stats["registrations"] == 1
    adobe.register()  # the operator's deliberate choice
    adobe.profiles.list(SP, device=device)
    assert sim.get("/_sim/stats").json()["registrations"] == 2


def test_registered_application_scoping_a_registration_without_the_v2_scope_is_refused(
        device):
    config = SimConfig.load()
    config.granted_scopes = ["api:client:v1"]
    with BackgroundServer(create_app(config)) as server, \
            AdobePass(server.url, software_statement=DEMO_SOFTWARE_STATEMENT) as client, \
            pytest.raises(RegistrationRequired) as caught:
        client.profiles.list(SP, device=device)
    assert "api:client:v2" in str(caught.value)


def test_access_tokens_caching_one_token_per_lifetime_whatever_the_lifetime(device):
    """Checklist, Access Tokens Caching: "refresh the access tokens only when they expire". A
    token that lives 40 s is renewed in its last tenth, not on every call."""
    config = SimConfig.load()
    config.ttl.access_token_s = 40
    now = [time.time()]
    with BackgroundServer(create_app(config)) as server, \
            httpx.Client(base_url=server.url) as control, \
            AdobePass(server.url, software_statement=DEMO_SOFTWARE_STATEMENT,
                      clock=lambda: now[0]) as client:
        for second in range(0, 120, 3):  # a call every 3 s for two minutes
            now[0] += 3
            control.post("/_sim/clock", json={"seconds": 3}).raise_for_status()
            client.profiles.list(SP, device=replace(device, ip=f"192.0.2.{second // 3 + 1}"))
        stats = control.get("/_sim/stats").json()
    # Each token served its first 36 s (renewed in the last tenth of its life): tokens at 3, 39,
    # 75 and 111 s of the 120; a 60 s margin would have asked on every one of the 40 calls.
    assert stats["tokens_issued"] == 4
    assert "profiles.list 401" not in stats


def test_a_token_for_another_service_provider_is_a_configuration_fault_not_an_expiry(device):
    config = SimConfig.load()
    config.software_service_providers = {"passflow-demo": ["REF30"]}
    with BackgroundServer(create_app(config)) as server, \
            httpx.Client(base_url=server.url) as control, \
            AdobePass(server.url, software_statement=DEMO_SOFTWARE_STATEMENT) as client:
        client.profiles.list(SP, device=device)
        other = next(sp.id for sp in config.service_providers if sp.id != SP)
        with pytest.raises(AuthenticationError) as caught:
            client.profiles.list(other, device=device)
        stats = control.get("/_sim/stats").json()
    assert caught.value.code == "invalid_access_token_service_provider"
    assert stats["tokens_issued"] == 1  # no refresh: a new token would not help


def test_expired_token_is_renewed_before_use(pass_url: str, sim: httpx.Client, device):
    with AdobePass(pass_url, software_statement=DEMO_SOFTWARE_STATEMENT) as client:
        client.profiles.list(SP, device=device)
        # The cached token is past its expiry margin: the next call fetches a new one first.
        sim.post("/_sim/clock", json={"seconds": 86400}).raise_for_status()
        token = client._credentials.load_token(client.registration_key)
        client._credentials.save_token(client.registration_key,
                                       type(token)(token.value, time.time() + 30))
        client.profiles.list(SP, device=device)
    stats = sim.get("/_sim/stats").json()
    assert stats["tokens_issued"] == 2
    assert "profiles.list 401" not in stats


# Configuration and sessions --------------------------------------------------------------------

def test_configuration_lists_mvpds_with_names_and_logos(adobe: AdobePass, device):
    config = adobe.configuration.retrieve(SP, device=device)
    assert config.requestor.id == SP
    cablevision = config.mvpd("Cablevision")
    assert cablevision is not None and cablevision.display_name == "Optimum"
    assert cablevision.logo_url.startswith("http")
    assert config.mvpd("TempPass_TEST40").is_temp_pass


def test_unknown_service_provider_is_a_bad_request(adobe: AdobePass, device):
    with pytest.raises(BadRequestError) as caught:
        adobe.configuration.retrieve("NOPE", device=device)
    assert caught.value.code == "invalid_parameter_service_provider"
    assert caught.value.action == "none" and not caught.value.retryable


def test_session_with_every_parameter_asks_to_authenticate(adobe: AdobePass, device):
    session = adobe.sessions.create(SP, device=device, mvpd="Cablevision",
                                    domain_name="example.com", redirect_url=REDIRECT)
    assert (session.action_name, session.action_type) == ("authenticate", "interactive")
    assert session.url == f"/api/v2/authenticate/{SP}/{session.code}"
    assert session.not_after - session.not_before == 1800 * 1000


def test_session_without_mvpd_is_resumed_with_the_choice(adobe: AdobePass, device):
    created = adobe.sessions.create(SP, device=device, domain_name="example.com",
                                    redirect_url=REDIRECT)
    assert created.action_name == "resume" and created.missing_parameters == ["mvpd"]
    info = adobe.sessions.retrieve(SP, created.code, device=device)
    assert info.missing_parameters == ["mvpd"] and info.mvpd is None
    assert info.existing_parameters["redirectUrl"] == REDIRECT
    resumed = adobe.sessions.resume(SP, created.code, device=device, mvpd="Spectrum")
    assert resumed.action_name == "authenticate" and resumed.code == created.code
    assert adobe.sessions.retrieve(SP, created.code, device=device).mvpd == "Spectrum"


def test_resume_still_missing_a_parameter_answers_retry(adobe: AdobePass, device):
    created = adobe.sessions.create(SP, device=device)
    assert set(created.missing_parameters) == {"mvpd", "domainName", "redirectUrl"}
    resumed = adobe.sessions.resume(SP, created.code, device=device, mvpd="Cablevision")
    assert resumed.action_name == "retry"
    assert set(resumed.missing_parameters) == {"domainName", "redirectUrl"}


def test_session_when_already_authenticated_goes_straight_to_authorize(adobe, sim, device):
    login(adobe, sim, device)
    again = adobe.sessions.create(SP, device=device, mvpd="Cablevision",
                                  domain_name="example.com", redirect_url=REDIRECT)
    assert (again.action_name, again.reason_type) == ("authorize", "authenticated")
    assert again.code is None


def test_unknown_code_is_invalid_parameter_code(adobe: AdobePass, device):
    with pytest.raises(BadRequestError) as caught:
        adobe.sessions.retrieve(SP, "NOSUCH1", device=device)
    assert caught.value.code == "invalid_parameter_code"
    with pytest.raises(BadRequestError):
        adobe.profiles.for_code(SP, "NOSUCH1", device=device)


def test_expired_code_is_an_invalid_session(adobe: AdobePass, sim: httpx.Client, device):
    session = adobe.sessions.create(SP, device=device, mvpd="Cablevision",
                                    domain_name="example.com", redirect_url=REDIRECT)
    sim.post("/_sim/clock", json={"seconds": 1801}).raise_for_status()
    with pytest.raises(BadRequestError) as caught:
        adobe.profiles.for_code(SP, session.code, device=device)
    assert caught.value.code == "invalid_authentication_session"
    with pytest.raises(BadRequestError):
        adobe.sessions.resume(SP, session.code, device=device, mvpd="Dish")


def test_bad_redirect_url_and_unknown_mvpd_are_refused(adobe: AdobePass, device):
    with pytest.raises(BadRequestError) as caught:
        adobe.sessions.create(SP, device=device, mvpd="Cablevision", redirect_url="not a url")
    assert caught.value.code == "invalid_parameter_redirect_url"
    with pytest.raises(BadRequestError) as caught:
        adobe.sessions.create(SP, device=device, mvpd="NoSuchMvpd")
    assert caught.value.code == "invalid_parameter_mvpd"


def test_invalid_device_info_is_refused(adobe: AdobePass):
    bad = Device(id="tv-bad", ip="198.51.100.250", info={"osName": "Plan9"})
    with pytest.raises(BadRequestError) as caught:
        adobe.profiles.list(SP, device=bad)
    assert caught.value.code == "invalid_header_device_info"


# Profiles --------------------------------------------------------------------------------------

def test_profiles_empty_then_present_after_login(adobe: AdobePass, sim: httpx.Client, device):
    assert len(adobe.profiles.list(SP, device=device)) == 0
    code = login(adobe, sim, device)
    by_code = adobe.profiles.for_code(SP, code, device=device)
    profile = by_code.get("Cablevision")
    assert profile.type == "regular" and profile.issuer == "Cablevision"
    assert profile.attributes["userID"].value == "cv-0001"
    assert adobe.profiles.for_mvpd(SP, "Cablevision", device=device).get("Cablevision")
    assert [p.mvpd for p in adobe.profiles.list(SP, device=device)] == ["Cablevision"]
    # Profiles belong to the device that logged in.
    assert len(adobe.profiles.list(SP, device=new_device())) == 0


# Decisions -------------------------------------------------------------------------------------

def test_preauthorize_permits_and_denies_with_enhanced_errors(adobe, sim, device):
    login(adobe, sim, device)
    result = adobe.decisions.preauthorize(SP, "Cablevision", resources=["REF30", "HBO"],
                                          device=device)
    by_resource = {d.resource: d for d in result.decisions}
    assert by_resource["REF30"].decision == "Permit"
    deny = by_resource["HBO"]
    assert deny.decision == "Deny"
    assert deny.error.code == "preauthorization_denied_by_mvpd" and deny.error.action == "none"
    assert "HBO" in deny.error.details


def test_authorize_permit_carries_a_media_token(adobe, sim, device):
    login(adobe, sim, device)
    decision = adobe.decisions.authorize(SP, "Cablevision", resources=["REF30"],
                                         device=device).decisions[0]
    assert decision.decision == "Permit" and decision.source == "mvpd"
    assert decision.token.serialized_token
    assert decision.token.not_after > decision.token.not_before


def test_authorize_deny_carries_the_mvpd_code(adobe, sim, device):
    login(adobe, sim, device, mvpd="Dish")
    decision = adobe.decisions.authorize(SP, "Dish", resources=["CNN"],
                                         device=device).decisions[0]
    assert decision.decision == "Deny" and decision.token is None
    assert decision.error.code == "authorization_denied_by_parental_controls"


def test_decisions_without_profile_need_authentication(adobe: AdobePass, device):
    with pytest.raises(PermissionDeniedError) as caught:
        adobe.decisions.authorize(SP, "Cablevision", resources=["REF30"], device=device)
    assert caught.value.code == "authenticated_profile_missing"
    assert caught.value.action == "authentication" and not caught.value.retryable


def test_expired_profile_is_reported(adobe, sim, device):
    login(adobe, sim, device)
    sim.post("/_sim/clock", json={"seconds": 31 * 86400}).raise_for_status()
    with pytest.raises(PermissionDeniedError) as caught:
        adobe.decisions.authorize(SP, "Cablevision", resources=["REF30"], device=device)
    assert caught.value.code == "authenticated_profile_expired"


def test_too_many_resources_is_a_configuration_error(adobe, sim, device):
    login(adobe, sim, device)
    with pytest.raises(PermissionDeniedError) as caught:
        adobe.decisions.preauthorize(SP, "Cablevision", resources=[f"r{i}" for i in range(6)],
                                     device=device)
    assert caught.value.code == "too_many_resources"
    assert caught.value.action == "configuration"


def test_retry_action_deny_is_marked_for_retry(adobe, sim, device):
    login(adobe, sim, device)
    set_faults(sim, retry_deny_rate=1.0)
    decision = adobe.decisions.authorize(SP, "Cablevision", resources=["REF30"],
                                         device=device).decisions[0]
    assert decision.decision == "Deny"
    assert (decision.error.code, decision.error.action) == ("network_received_error", "retry")


# Logout ----------------------------------------------------------------------------------------

def test_logout_with_endpoint_is_interactive(adobe, sim, device):
    login(adobe, sim, device)
    action = adobe.logout.initiate(SP, "Cablevision", redirect_url="https://example.com/bye",
                                   device=device).logouts["Cablevision"]
    assert (action.action_name, action.action_type) == ("logout", "interactive")
    assert "redirect_url=https%3A%2F%2Fexample.com%2Fbye" in action.url
    assert len(adobe.profiles.list(SP, device=device)) == 0


def test_logout_without_endpoint_is_complete_and_without_profile_invalid(adobe, sim, device):
    login(adobe, sim, device, mvpd="Dish")
    first = adobe.logout.initiate(SP, "Dish", redirect_url=REDIRECT, device=device)
    assert (first.logouts["Dish"].action_name, first.logouts["Dish"].url) == ("complete", None)
    second = adobe.logout.initiate(SP, "Dish", redirect_url=REDIRECT, device=device)
    assert second.logouts["Dish"].action_name == "invalid"


# TempPass --------------------------------------------------------------------------------------

def test_basic_temppass_permits_until_its_ttl(adobe, sim, device):
    decision = adobe.decisions.authorize(SP, "TempPass_TEST40", resources=["REF30"],
                                         device=device).decisions[0]
    assert decision.decision == "Permit" and decision.source == "temppass"
    profile = adobe.profiles.for_mvpd(SP, "TempPass_TEST40", device=device).get(
        "TempPass_TEST40")
    assert profile.type == "temporary" and profile.issuer == "Adobe"
    sim.post("/_sim/clock", json={"seconds": 181}).raise_for_status()
    expired = adobe.decisions.authorize(SP, "TempPass_TEST40", resources=["REF30"],
                                        device=device).decisions[0]
    assert expired.error.code == "temporary_access_duration_limit_exceeded"
    with pytest.raises(PermissionDeniedError):
        adobe.profiles.for_mvpd(SP, "TempPass_TEST40", device=device)


def test_promotional_temppass_needs_identity_and_counts_resources(adobe, device):
    no_identity = adobe.decisions.authorize(SP, "flexibleTempPass", resources=["REF30"],
                                            device=device).decisions[0]
    assert no_identity.error.code == "invalid_header_identity_for_temporary_access"
    who = {"email": "viewer@example.com"}
    for resource in ("REF30", "CNN"):
        ok = adobe.decisions.authorize(SP, "flexibleTempPass", resources=[resource],
                                       device=device, temppass_identity=who).decisions[0]
        assert ok.decision == "Permit"
    third = adobe.decisions.authorize(SP, "flexibleTempPass", resources=["HBO"], device=device,
                                      temppass_identity=who).decisions[0]
    assert third.error.code == "temporary_access_resources_limit_exceeded"


# Transport, throttling and faults --------------------------------------------------------------

def test_429_waits_at_least_a_second_then_succeeds(pass_url: str, sim: httpx.Client):
    device = new_device()
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    with AdobePass(pass_url, software_statement=DEMO_SOFTWARE_STATEMENT, sleep=sleep) as client:
        # 1 + burst 10 calls pass at once, the 12th is throttled.
        for _ in range(12):
            client.profiles.list(SP, device=device)
    assert sim.get("/_sim/stats").json()["throttled"] >= 1
    assert waits and min(waits) >= 1.0


def test_429_is_raised_with_retry_after_when_retries_are_off(pass_url: str, sim: httpx.Client):
    device = new_device()
    with (AdobePass(pass_url, software_statement=DEMO_SOFTWARE_STATEMENT, max_retries=0) as client,
          pytest.raises(RateLimitError) as caught):
        for _ in range(12):
            client.profiles.list(SP, device=device)
    assert caught.value.retry_after >= 1.0 and caught.value.retryable


@pytest.mark.parametrize("knobs,retried", [
    ({"error_code": "internal_server_error", "error_status": 500}, False),  # action none
    ({"error_code": "internal_server_error", "error_status": 503, "error_action": "retry"},
     True),
    ({"error_code": "", "error_status": 502}, True),  # a gateway: no enhanced error
])
def test_http_error_handling_support_only_a_retry_action_or_a_bare_gateway_5xx_is_retried(
        pass_url: str, sim: httpx.Client, device, knobs, retried):
    """Enhanced-error-codes.md: only a limited number of codes warrant a retry; the action
    says which. The client's own retries (a standalone client's; the workers' client makes
    none: the engine holds the one budget) follow it."""
    sleeps: list[float] = []
    with AdobePass(pass_url, software_statement=DEMO_SOFTWARE_STATEMENT,
                   sleep=sleeps.append) as client:
        client.profiles.list(SP, device=device)
        set_faults(sim, error_rate=1.0, **knobs)
        with pytest.raises(InternalServerError) as caught:
            client.profiles.list(SP, device=device)
    assert caught.value.status_code == knobs["error_status"]
    assert caught.value.retryable is retried
    assert len(sleeps) == (2 if retried else 0)  # max_retries


def test_timeout_becomes_a_timeout_error(pass_url: str, sim: httpx.Client, device):
    with AdobePass(pass_url, software_statement=DEMO_SOFTWARE_STATEMENT, timeout=0.3,
                   max_retries=0) as client:
        client.profiles.list(SP, device=device)
        set_faults(sim, timeout_rate=1.0, timeout_s=1.0)
        with pytest.raises(APITimeoutError) as caught:
            client.profiles.list(SP, device=device)
    assert caught.value.retryable


def test_malformed_body_is_a_clear_error(adobe: AdobePass, sim: httpx.Client, device):
    adobe.profiles.list(SP, device=device)
    set_faults(sim, malformed_rate=1.0)
    with pytest.raises(MalformedResponseError) as caught:
        adobe.profiles.list(SP, device=device)
    assert "profiles.list" in str(caught.value) and not caught.value.retryable


def test_a_second_401_after_refresh_marks_the_registration_broken(adobe: AdobePass,
                                                                  sim: httpx.Client, device):
    """`application-registration` on a token just fetched is no expiry: the registration is
    marked broken (a new one is an operator's act) and no later call sends a request."""
    import respx

    adobe.profiles.list(SP, device=device)
    tokens = sim.get("/_sim/stats").json()["tokens_issued"]
    with respx.mock(base_url=adobe.base_url, assert_all_called=False) as mock:
        mock.post("/o/client/token").pass_through()
        route = mock.get(f"/api/v2/{SP}/profiles").respond(
            401, json={"status": 401, "code": "invalid_access_token_client_application",
                       "action": "application-registration"})
        with pytest.raises(RegistrationRequired) as caught:
            adobe.profiles.list(SP, device=device)
        assert route.call_count == 2  # the original call, then one retry after a refresh
        assert caught.value.action == "application-registration"
        with pytest.raises(RegistrationRequired):
            adobe.profiles.list(SP, device=device)
        assert route.call_count == 2
    assert sim.get("/_sim/stats").json()["tokens_issued"] == tokens + 1  # the one refresh
