"""Request helpers shared by the simulator's routers: bodies, headers, bearer tokens."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi import Request

from simulator.config import ServiceProvider
from simulator.errors import DcrError, PassError
from simulator.headers import missing_device_info_keys, parse_device_identifier, parse_device_info
from simulator.rules import ENDPOINTS, FEATURE_HEADERS, Endpoint, is_browser
from simulator.state import CURRENT_CLIENT, AccessToken, SimState

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


def sim(request: Request) -> SimState:
    return request.app.state.sim


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def form_fields(request: Request) -> dict[str, list[str]] | None:
    """The form body as lists of values, or None when the body is not a form."""
    if media_type(request) != FORM:
        return None
    return parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)


async def json_body(request: Request) -> Any:
    """The JSON body, or None when it is not JSON."""
    if media_type(request) != JSON:
        return None
    try:
        return json.loads(await request.body())
    except ValueError:
        return None


def bearer(request: Request) -> AccessToken:
    """Every REST API V2 call carries `Authorization: Bearer <access_token>` (appendix)."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    token = sim(request).valid_token(value.strip()) if scheme.lower() == "bearer" else None
    if token is None:
        raise PassError("invalid_access_token_client_application")
    request.state.token = token
    CURRENT_CLIENT.set(token.client_id)
    return token


def service_provider(request: Request, sp_id: str) -> ServiceProvider:
    state = sim(request)
    sp = state.config.service_provider(sp_id)
    if sp is None:
        raise PassError("invalid_parameter_service_provider")
    token: AccessToken | None = getattr(request.state, "token", None)
    if token is not None and not state.token_covers(token, sp_id):
        # The token's application is registered for other service providers.
        raise PassError("invalid_access_token_service_provider")
    return sp


def device_id(request: Request, *, required: bool) -> str | None:
    raw = request.headers.get("ap-device-identifier")
    if raw is None and not required:
        return None
    parsed = parse_device_identifier(raw)
    if parsed is None:
        raise PassError("invalid_header_device_identifier")
    return parsed


def device_info(request: Request, *, required: bool) -> dict[str, Any]:
    """X-Device-Info decoded: its keys the page marks required present (unless the lenient
    switch is on: then those of Adobe's own sample), its restricted values from its tables."""
    raw = request.headers.get("x-device-info")
    if raw is None:
        if required:
            raise PassError("invalid_header_device_info", details="X-Device-Info is missing")
        return {}
    info, problems = parse_device_info(raw)
    if info is not None:
        problems += [f"{k} is missing" for k in missing_device_info_keys(
            info, lenient=sim(request).config.lenient_headers)]
    if info is None or problems:
        raise PassError("invalid_header_device_info", details="; ".join(problems))
    return info


# The error each call's body answers when it is not of the page's content type: that of its
# first required parameter Adobe has a code for.
_PARAMETER_CODES = {"resources": "invalid_parameter_resources", "mvpd": "invalid_parameter_mvpd",
                    "SAMLResponse": "invalid_parameter_saml_response",
                    "redirectUrl": "invalid_parameter_redirect_url"}


def _refuse(rule: Endpoint, code: str, details: str) -> None:
    if rule.rest_api_v2:
        raise PassError(code, details=details)
    raise DcrError("invalid_request")  # the DCR pages answer OAuth errors


def page_rules(request: Request) -> None:
    """The rules' check (`_check_rules`); a refusal is noted for the request log."""
    try:
        _check_rules(request)
    except (PassError, DcrError) as exc:
        request.state.refused_by_rules = getattr(exc, "code", None) or getattr(exc, "error", "")
        raise


def _check_rules(request: Request) -> None:
    """What the pages require of this call (simulator.rules), checked before its handler runs:
    the Authorization bearer token, AP-Device-Identifier and X-Device-Info (a browser's
    User-Agent may stand for the latter, its page says), the content type, the required query
    parameters; and a single sign-on or feature header on a call whose page does not list it
    is refused. The device's id and info are kept on `request.state` for the handler."""
    route = request.scope.get("route")
    rule = ENDPOINTS.get(getattr(route, "name", ""))
    if rule is None:
        return
    required = rule.required
    if sim(request).config.lenient_headers:
        required = {h: pages for h, pages in required.items() if rule.page in pages}
    if "Authorization" in required:
        bearer(request)
    if rule.rest_api_v2:
        request.state.device_id = device_id(
            request, required="AP-Device-Identifier" in required)
        may_omit = is_browser(request.headers.get("user-agent"))
        request.state.device_info = device_info(
            request, required="X-Device-Info" in required and not may_omit)
    elif "X-Device-Info" in required:
        raw = request.headers.get("x-device-info")
        if raw is None or parse_device_info(raw)[0] is None:
            raise DcrError("invalid_request")
    if "AP-Partner-Framework-Status" in required and \
            "ap-partner-framework-status" not in request.headers:
        raise PassError("invalid_header_pfs_permission_access_not_present")
    for header in FEATURE_HEADERS:
        if header not in rule.listed and header.lower() in request.headers:
            raise PassError("invalid_request", details=(
                f"{header} is not a header of this call ({rule.page} lists it not)"))
    if rule.content_type and request.method in ("POST", "PUT") and \
            media_type(request) != rule.content_type:
        code = next((_PARAMETER_CODES[p] for p in rule.body if p in _PARAMETER_CODES),
                    "invalid_request")
        _refuse(rule, code, f"The body must be {rule.content_type}")
    for name in rule.query:
        if not request.query_params.get(name):
            _refuse(rule, _PARAMETER_CODES.get(name, "invalid_request"), f"{name} is missing")


def identified_call(request: Request, sp_id: str) -> tuple[str, dict[str, Any]]:
    """A call for a device (its headers checked by `page_rules`): the service provider the
    token covers; returns the device's id and info."""
    service_provider(request, sp_id)
    return request.state.device_id or "", request.state.device_info


def is_absolute_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


# The single sign-on headers and the profile type a login made with each gives (the single
# sign-on flows and the Profiles pages: platformSSO, serviceTokenSSO).
_SSO_HEADERS = (("adobe-subject-token", "platformSSO", "amazon"),
                ("x-roku-reserved-roku-connect-token", "platformSSO", "roku"),
                ("ad-service-token", "serviceTokenSSO", "service"))


def _token_user(token: str) -> str | None:
    """The user a single sign-on token names: a JWS's `sub` (the simulator cannot check the
    platform's signature; the user is what tells two users apart); an opaque token is its
    own identity. A JWS whose payload cannot be read names no one."""
    parts = token.split(".")
    if len(parts) != 3:
        return None if len(parts) > 1 else hashlib.sha256(token.encode()).hexdigest()
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    sub = claims.get("sub") if isinstance(claims, dict) else None
    return sub if isinstance(sub, str) and sub else None


def sso_identities(request: Request) -> tuple[tuple[str, str], ...]:
    """(profile type, user) for each single sign-on header the request carries."""
    found = []
    for header, kind, source in _SSO_HEADERS:
        value = request.headers.get(header)
        user = _token_user(value) if value else None
        if user is not None:
            found.append((kind, f"{source}:{user}"))
    return tuple(found)
