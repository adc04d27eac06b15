"""What each call must carry, and the Adobe pages that say so: the simulator's oracle.

Where Adobe's pages differ, every page's requirement holds (the union rule): the call's API page
(its request table), the checklist's every-request items (16-18: Authorization,
AP-Device-Identifier, X-Device-Info on every REST API v2 request), and the flow pages' "All the
_required_ headers, like ..." for the call they refer to. Pages are named relative to the Adobe
Pass documentation's root (shared/reference/adobe-pass/). tests/simulator/test_rules.py reads
the pages and fails when this table and they drift apart, either way.

Strict is the only reading: `SimConfig.lenient_headers` names the single switch that loosens it
(the device headers only where the call's own API page marks them required), for showing what
the strict reading changes; no conformance test turns it on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

_V2 = "rest-apis/rest-api-v2/"
CHECKLIST = _V2 + "rest-api-v2-checklist.md"
DEVICE_INFO_PAGE = _V2 + "appendix/headers/rest-api-v2-appendix-headers-x-device-info.md"
_SESSIONS = _V2 + "apis/sessions-apis/rest-api-v2-sessions-apis-"
_PROFILES = _V2 + "apis/profiles-apis/rest-api-v2-profiles-apis-"
_DECISIONS = _V2 + "apis/decisions-apis/rest-api-v2-decisions-apis-"
_PARTNER = _V2 + "apis/partner-single-sign-on-apis/rest-api-v2-partner-single-sign-on-apis-"
_FLOWS = _V2 + "flows/"
_BASIC = _FLOWS + "basic-access-flows/rest-api-v2-basic-"
_SSO = _FLOWS + "single-sign-on-access-flows/rest-api-v2-single-sign-on-"
_DEGRADED = _FLOWS + "degraded-access-flows/rest-api-v2-access-degraded-flows.md"
_TEMPPASS = _FLOWS + "temporary-access-flows/rest-api-v2-access-temporary-flows.md"
_DCR = "rest-apis/rest-api-dcr/apis/dynamic-client-registration-apis-"

# The single sign-on and feature headers: on a call whose pages do not list one it is refused
# (an improper invocation, enhanced-error-codes.md's action "none"), not silently ignored.
FEATURE_HEADERS = ("Adobe-Subject-Token", "X-Roku-Reserved-Roku-Connect-Token",
                   "AD-Service-Token", "AP-Partner-Framework-Status", "AP-TempPass-Identity")
_PLATFORM = ("Adobe-Subject-Token", "X-Roku-Reserved-Roku-Connect-Token", "AD-Service-Token")


@dataclass(frozen=True)
class Endpoint:
    """One call: its route's name here, its page, and what the pages require of it."""

    method: str
    path: str
    page: str
    # header -> the pages that require it on this call
    required: Mapping[str, tuple[str, ...]]
    # the feature headers its API page lists (optional or not)
    listed: tuple[str, ...] = ()
    content_type: str | None = None
    query: tuple[str, ...] = ()  # required query parameters
    body: tuple[str, ...] = ()  # required body parameters
    # the page answers the parameters still missing (`missingParameters`): they may come later
    body_may_follow: bool = False

    @property
    def rest_api_v2(self) -> bool:
        return self.path.startswith("/api/v2/")


FORM = "application/x-www-form-urlencoded"
JSON = "application/json"

ENDPOINTS: dict[str, Endpoint] = {
    "dcr.register": Endpoint(
        "POST", "/o/client/register", _DCR + "retrieve-client-credentials.md",
        {"Content-Type": (_DCR + "retrieve-client-credentials.md",),
         "X-Device-Info": (_DCR + "retrieve-client-credentials.md",)},
        content_type=JSON, body=("software_statement",)),
    "dcr.token": Endpoint(
        "POST", "/o/client/token", _DCR + "retrieve-access-token.md",
        {"Content-Type": (_DCR + "retrieve-access-token.md",),
         "X-Device-Info": (_DCR + "retrieve-access-token.md",)},
        content_type=FORM, body=("client_id", "client_secret", "grant_type")),
    "configuration": Endpoint(
        "GET", "/api/v2/{serviceProvider}/configuration",
        _V2 + "apis/configuration-apis/"
        "rest-api-v2-configuration-apis-retrieve-configuration-for-specific-service-provider.md",
        {"Authorization": (CHECKLIST, _V2 + "apis/configuration-apis/rest-api-v2-configuration-"
                           "apis-retrieve-configuration-for-specific-service-provider.md"),
         # The page marks both optional; the checklist, every request.
         "AP-Device-Identifier": (CHECKLIST,),
         "X-Device-Info": (CHECKLIST,)}),
    "sessions.create": Endpoint(
        "POST", "/api/v2/{serviceProvider}/sessions",
        _SESSIONS + "create-authentication-session.md",
        {"Authorization": (CHECKLIST, _SESSIONS + "create-authentication-session.md",
                           _BASIC + "authentication-primary-application-flow.md",
                           _BASIC + "authentication-secondary-application-flow.md",
                           _DEGRADED, _SSO + "platform-identity-flows.md",
                           _SSO + "service-token-flows.md"),
         "AP-Device-Identifier": (CHECKLIST, _SESSIONS + "create-authentication-session.md",
                                  _BASIC + "authentication-primary-application-flow.md",
                                  _BASIC + "authentication-secondary-application-flow.md",
                                  _DEGRADED, _SSO + "platform-identity-flows.md",
                                  _SSO + "service-token-flows.md"),
         "X-Device-Info": (CHECKLIST, _SESSIONS + "create-authentication-session.md"),
         "Content-Type": (_SESSIONS + "create-authentication-session.md",)},
        listed=_PLATFORM, content_type=FORM,
        body=("mvpd", "domainName", "redirectUrl"), body_may_follow=True),
    "sessions.resume": Endpoint(
        "POST", "/api/v2/{serviceProvider}/sessions/{code}",
        _SESSIONS + "resume-authentication-session.md",
        {"Authorization": (CHECKLIST, _SESSIONS + "resume-authentication-session.md",
                           _BASIC + "authentication-secondary-application-flow.md"),
         # Its page lists neither device header; the checklist and the secondary flow do.
         "AP-Device-Identifier": (CHECKLIST, _BASIC + "authentication-secondary-application-"
                                  "flow.md"),
         "X-Device-Info": (CHECKLIST,),
         "Content-Type": (_SESSIONS + "resume-authentication-session.md",)},
        content_type=FORM, body=("mvpd", "domainName", "redirectUrl"), body_may_follow=True),
    "sessions.retrieve": Endpoint(
        "GET", "/api/v2/{serviceProvider}/sessions/{code}",
        _SESSIONS + "retrieve-authentication-session-information-using-code.md",
        {"Authorization": (CHECKLIST, _SESSIONS + "retrieve-authentication-session-information-"
                           "using-code.md", _BASIC + "authentication-secondary-application-"
                           "flow.md"),
         "AP-Device-Identifier": (CHECKLIST,),
         "X-Device-Info": (CHECKLIST,)},
        body_may_follow=True),
    "profiles.list": Endpoint(
        "GET", "/api/v2/{serviceProvider}/profiles", _PROFILES + "retrieve-profiles.md",
        {"Authorization": (CHECKLIST, _PROFILES + "retrieve-profiles.md",
                           _BASIC + "profiles-primary-application-flow.md",
                           _SSO + "platform-identity-flows.md", _SSO + "service-token-flows.md"),
         "AP-Device-Identifier": (CHECKLIST, _PROFILES + "retrieve-profiles.md",
                                  _BASIC + "profiles-primary-application-flow.md",
                                  _SSO + "platform-identity-flows.md",
                                  _SSO + "service-token-flows.md"),
         "X-Device-Info": (CHECKLIST, _PROFILES + "retrieve-profiles.md")},
        listed=(*_PLATFORM, "AP-Partner-Framework-Status")),
    "profiles.code": Endpoint(
        "GET", "/api/v2/{serviceProvider}/profiles/code/{code}",
        _PROFILES + "retrieve-profile-for-specific-code.md",
        {"Authorization": (CHECKLIST, _PROFILES + "retrieve-profile-for-specific-code.md",
                           _BASIC + "authentication-primary-application-flow.md",
                           _BASIC + "authentication-secondary-application-flow.md",
                           _BASIC + "profiles-primary-application-flow.md",
                           _BASIC + "profiles-secondary-application-flow.md",
                           _SSO + "platform-identity-flows.md", _SSO + "service-token-flows.md"),
         # Its page lists neither device header; the checklist and both basic authentication
         # flows require AP-Device-Identifier, the checklist X-Device-Info.
         "AP-Device-Identifier": (CHECKLIST,
                                  _BASIC + "authentication-primary-application-flow.md",
                                  _BASIC + "authentication-secondary-application-flow.md",
                                  _SSO + "platform-identity-flows.md",
                                  _SSO + "service-token-flows.md"),
         "X-Device-Info": (CHECKLIST,)},
        listed=("AP-TempPass-Identity",)),
    "profiles.mvpd": Endpoint(
        "GET", "/api/v2/{serviceProvider}/profiles/{mvpd}",
        _PROFILES + "retrieve-profile-for-specific-mvpd.md",
        {"Authorization": (CHECKLIST, _PROFILES + "retrieve-profile-for-specific-mvpd.md",
                           _BASIC + "profiles-primary-application-flow.md", _DEGRADED,
                           _TEMPPASS),
         "AP-Device-Identifier": (CHECKLIST, _PROFILES + "retrieve-profile-for-specific-mvpd.md",
                                  _BASIC + "profiles-primary-application-flow.md", _DEGRADED,
                                  _TEMPPASS),
         "X-Device-Info": (CHECKLIST, _PROFILES + "retrieve-profile-for-specific-mvpd.md")},
        listed=(*_PLATFORM, "AP-Partner-Framework-Status", "AP-TempPass-Identity")),
    "decisions.preauthorize": Endpoint(
        "POST", "/api/v2/{serviceProvider}/decisions/preauthorize/{mvpd}",
        _DECISIONS + "retrieve-preauthorization-decisions-using-specific-mvpd.md",
        {"Authorization": (CHECKLIST, _DECISIONS + "retrieve-preauthorization-decisions-using-"
                           "specific-mvpd.md", _BASIC + "preauthorization-primary-application-"
                           "flow.md", _DEGRADED),
         "AP-Device-Identifier": (CHECKLIST, _DECISIONS + "retrieve-preauthorization-decisions-"
                                  "using-specific-mvpd.md", _BASIC + "preauthorization-primary-"
                                  "application-flow.md", _DEGRADED),
         "X-Device-Info": (CHECKLIST, _DECISIONS + "retrieve-preauthorization-decisions-using-"
                           "specific-mvpd.md"),
         "Content-Type": (_DECISIONS + "retrieve-preauthorization-decisions-using-specific-"
                          "mvpd.md",)},
        listed=(*_PLATFORM, "AP-Partner-Framework-Status"), content_type=JSON,
        body=("resources",)),
    "decisions.authorize": Endpoint(
        "POST", "/api/v2/{serviceProvider}/decisions/authorize/{mvpd}",
        _DECISIONS + "retrieve-authorization-decisions-using-specific-mvpd.md",
        {"Authorization": (CHECKLIST, _DECISIONS + "retrieve-authorization-decisions-using-"
                           "specific-mvpd.md", _BASIC + "authorization-primary-application-"
                           "flow.md", _DEGRADED, _TEMPPASS, _SSO + "platform-identity-flows.md",
                           _SSO + "service-token-flows.md"),
         "AP-Device-Identifier": (CHECKLIST, _DECISIONS + "retrieve-authorization-decisions-"
                                  "using-specific-mvpd.md", _BASIC + "authorization-primary-"
                                  "application-flow.md", _DEGRADED, _TEMPPASS,
                                  _SSO + "platform-identity-flows.md",
                                  _SSO + "service-token-flows.md"),
         "X-Device-Info": (CHECKLIST, _DECISIONS + "retrieve-authorization-decisions-using-"
                           "specific-mvpd.md"),
         "Content-Type": (_DECISIONS + "retrieve-authorization-decisions-using-specific-"
                          "mvpd.md",)},
        listed=(*_PLATFORM, "AP-Partner-Framework-Status", "AP-TempPass-Identity"),
        content_type=JSON, body=("resources",)),
    "partner.sessions": Endpoint(
        "POST", "/api/v2/{serviceProvider}/sessions/sso/{partner}",
        _PARTNER + "retrieve-partner-authentication-request.md",
        {"Authorization": (CHECKLIST, _PARTNER + "retrieve-partner-authentication-request.md"),
         "AP-Device-Identifier": (CHECKLIST,
                                  _PARTNER + "retrieve-partner-authentication-request.md"),
         "X-Device-Info": (CHECKLIST, _PARTNER + "retrieve-partner-authentication-request.md"),
         "Content-Type": (_PARTNER + "retrieve-partner-authentication-request.md",)},
        listed=("AP-Partner-Framework-Status",), content_type=FORM,
        body=("domainName", "redirectUrl"), body_may_follow=True),
    "partner.profiles": Endpoint(
        "POST", "/api/v2/{serviceProvider}/profiles/sso/{partner}",
        _PARTNER + "retrieve-profile-using-partner-authentication-response.md",
        {"Authorization": (CHECKLIST, _PARTNER + "retrieve-profile-using-partner-"
                           "authentication-response.md", _SSO + "partner-flows.md"),
         "AP-Device-Identifier": (CHECKLIST, _PARTNER + "retrieve-profile-using-partner-"
                                  "authentication-response.md", _SSO + "partner-flows.md"),
         "X-Device-Info": (CHECKLIST, _PARTNER + "retrieve-profile-using-partner-"
                           "authentication-response.md", _SSO + "partner-flows.md"),
         "Content-Type": (_PARTNER + "retrieve-profile-using-partner-authentication-"
                          "response.md", _SSO + "partner-flows.md"),
         # Its page marks it optional; the partner flow page, required.
         "AP-Partner-Framework-Status": (_SSO + "partner-flows.md",)},
        listed=("AP-Partner-Framework-Status",), content_type=FORM, body=("SAMLResponse",)),
    "logout": Endpoint(
        "GET", "/api/v2/{serviceProvider}/logout/{mvpd}",
        _V2 + "apis/logout-apis/rest-api-v2-logout-apis-initiate-logout-for-specific-mvpd.md",
        {"Authorization": (CHECKLIST, _V2 + "apis/logout-apis/rest-api-v2-logout-apis-initiate-"
                           "logout-for-specific-mvpd.md", _BASIC + "logout-primary-application-"
                           "flow.md", _SSO + "logout-flow.md"),
         "AP-Device-Identifier": (CHECKLIST, _V2 + "apis/logout-apis/rest-api-v2-logout-apis-"
                                  "initiate-logout-for-specific-mvpd.md",
                                  _BASIC + "logout-primary-application-flow.md",
                                  _SSO + "logout-flow.md"),
         "X-Device-Info": (CHECKLIST, _V2 + "apis/logout-apis/rest-api-v2-logout-apis-"
                           "initiate-logout-for-specific-mvpd.md")},
        listed=_PLATFORM, query=("redirectUrl",)),
    # Performed in a user agent: a browser's navigation, with none of an application's headers
    # (its page lists User-Agent only). No REST API v2 request of the application's.
    "authenticate": Endpoint(
        "GET", "/api/v2/authenticate/{serviceProvider}/{code}",
        _SESSIONS + "perform-authentication-in-user-agent.md", {}),
}

# The exception one page makes to another: "For client applications running in a browser, the
# X-Device-Info header can be omitted" (DEVICE_INFO_PAGE, Browsers).
BROWSER_MAY_OMIT = ("X-Device-Info",)


def is_browser(user_agent: str | None) -> bool:
    """A web browser's User-Agent, which the X-Device-Info page lets stand for that header:
    every current browser's begins `Mozilla/5.0 (<platform>`."""
    return bool(user_agent) and user_agent.startswith("Mozilla/5.0 (")
