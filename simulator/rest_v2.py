"""REST API V2: configuration, sessions, profiles, decisions, logout.

Sources: rest-apis/rest-api-v2/apis/**.md; TempPass per
rest-apis/rest-api-v2/flows/temporary-access-flows/rest-api-v2-access-temporary-flows.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import random
import re
import uuid
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from simulator import signing
from simulator.common import (
    FORM,
    JSON,
    form_fields,
    identified_call,
    is_absolute_url,
    json_body,
    page_rules,
    service_provider,
    sim,
    sso_identities,
)
from simulator.config import Mvpd
from simulator.errors import PassError, error_object
from simulator.state import CURRENT_CLIENT, AuthSession, SimState

router = APIRouter(tags=["REST API V2"], dependencies=[Depends(page_rules)])

_SESSION_BODY = {"requestBody": {"content": {FORM: {"schema": {
    "type": "object",
    "properties": {"mvpd": {"type": "string"}, "domainName": {"type": "string"},
                   "redirectUrl": {"type": "string"}}}}}}}
_DECISIONS_BODY = {"requestBody": {"required": True, "content": {JSON: {"schema": {
    "type": "object", "required": ["resources"],
    "properties": {"resources": {"type": "array", "items": {"type": "string"}}}}}}}}


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def _mvpd(state: SimState, mvpd_id: str | None) -> Mvpd:
    cfg = state.config.mvpd(mvpd_id) if mvpd_id else None
    if cfg is None:
        raise PassError("invalid_parameter_mvpd")
    return cfg


def _temppass_identity(request: Request) -> str | None:
    """AP-TempPass-Identity: Base64-encoded user identity information (appendix)."""
    raw = request.headers.get("ap-temppass-identity")
    if not raw:
        return None
    try:
        decoded = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True).decode()
    except ValueError:
        return None
    return decoded or None


# Configuration ---------------------------------------------------------------------------------

@router.get("/api/v2/{serviceProvider}/configuration", name="configuration",
            summary="Retrieve configuration for specific service provider")
async def configuration(serviceProvider: str, request: Request) -> JSONResponse:
    sp = service_provider(request, serviceProvider)
    info = request.state.device_info
    state = sim(request)
    base = str(request.base_url).rstrip("/")
    mvpds = []
    platform = info.get("primaryHardwareType")
    for m in state.config.mvpds:
        if m.platforms is not None and platform not in m.platforms:
            continue  # not boarded for this platform
        item: dict[str, Any] = {
            "id": m.id,
            "displayName": m.displayName,
            "logoUrl": m.logoUrl if "://" in m.logoUrl else base + m.logoUrl,
        }
        if m.temppass:
            item["isTempPass"] = True
            item["authPerAggregator"] = True
        mvpds.append(item)
    return JSONResponse({
        "device": info.get("primaryHardwareType", "unknown"),
        "clientType": "html5",
        "os": info.get("osName", "Unknown"),
        "requestor": {
            "id": sp.id,
            "name": sp.name,
            "domains": [{"name": d, "mvpdInitiated": False} for d in sp.domains],
            "mvpds": mvpds,
        },
    })


# Sessions --------------------------------------------------------------------------------------

def _session_params(fields: dict[str, list[str]]) -> dict[str, str]:
    return {k: fields[k][0] for k in AuthSession.REQUIRED if fields.get(k) and fields[k][0]}


def _check_session_params(state: SimState, params: dict[str, str]) -> None:
    if "mvpd" in params:
        _mvpd(state, params["mvpd"])
    if "redirectUrl" in params and not is_absolute_url(params["redirectUrl"]):
        raise PassError("invalid_parameter_redirect_url")


def _live_session(state: SimState, sp_id: str, code: str) -> AuthSession:
    session = state.sessions.get(code)
    if session is None or session.service_provider != sp_id:
        raise PassError("invalid_parameter_code")
    if session.not_after <= state.now():
        raise PassError("invalid_authentication_session", details="The session has expired")
    return session


def _session_answer(state: SimState, session: AuthSession, *, missing_action: str) -> dict:
    """The next action for a session: resume/retry, authorize, or authenticate."""
    sp, mvpd_id = session.service_provider, session.params.get("mvpd")
    base = {"sessionId": session.session_id, "serviceProvider": sp}
    if mvpd_id:
        cfg = _mvpd(state, mvpd_id)
        base["mvpd"] = mvpd_id
        authorize_url = f"/api/v2/{sp}/decisions/authorize/{mvpd_id}"
        if cfg.temppass:
            if cfg.temppass == "basic":
                state.temppass_use(sp, mvpd_id, session.device_id, start=True)
            return {"actionName": "authorize", "actionType": "direct",
                    "reasonType": "temporary", "url": authorize_url, **base}
        if cfg.degradation == "authn_all":
            return {"actionName": "authorize", "actionType": "direct",
                    "reasonType": "degraded", "url": authorize_url, **base}
        profile = state.profile(sp, session.device_id, mvpd_id, session.sso)
        if profile is not None and profile.not_after > state.now():
            return {"actionName": "authorize", "actionType": "direct",
                    "reasonType": "authenticated", "url": authorize_url, **base}
    timing = {"code": session.code, "notBefore": str(_ms(session.not_before)),
              "notAfter": str(_ms(session.not_after))}
    if session.missing:
        return {"actionName": missing_action, "actionType": "direct", "reasonType": "none",
                "url": f"/api/v2/{sp}/sessions/{session.code}",
                "missingParameters": session.missing, **timing, **base}
    return {"actionName": "authenticate", "actionType": "interactive", "reasonType": "none",
            "url": f"/api/v2/authenticate/{sp}/{session.code}", **timing, **base}


@router.post("/api/v2/{serviceProvider}/sessions", name="sessions.create",
             summary="Create authentication session", openapi_extra=_SESSION_BODY)
async def create_session(serviceProvider: str, request: Request) -> JSONResponse:
    device, info = identified_call(request, serviceProvider)
    fields = await form_fields(request)
    if fields is None:
        raise PassError("invalid_parameter_mvpd", details="The body must be form-urlencoded")
    state = sim(request)
    params = _session_params(fields)
    _check_session_params(state, params)
    session = state.new_session(service_provider=serviceProvider, device_id=device,
                                device_info=info, params=params)
    session.sso = sso_identities(request)
    return JSONResponse(_session_answer(state, session, missing_action="resume"))


@router.post("/api/v2/{serviceProvider}/sessions/{code}", name="sessions.resume",
             summary="Resume authentication session", openapi_extra=_SESSION_BODY)
async def resume_session(serviceProvider: str, code: str, request: Request) -> JSONResponse:
    service_provider(request, serviceProvider)
    fields = await form_fields(request)
    if fields is None:
        raise PassError("invalid_parameter_mvpd", details="The body must be form-urlencoded")
    state = sim(request)
    session = _live_session(state, serviceProvider, code)
    if session.completed_mvpd:
        raise PassError("invalid_authentication_session", details="The code was already used")
    params = _session_params(fields)
    _check_session_params(state, params)
    session.params.update(params)
    return JSONResponse(_session_answer(state, session, missing_action="retry"))


def _device_description(info: dict[str, Any]) -> dict[str, Any]:
    zero = {"major": 0, "minor": 0, "patch": 0, "profile": ""}
    return {
        "type": info.get("primaryHardwareType", "Unknown"),
        "model": info.get("model"),
        "version": zero,
        "hardware": {"name": None, "vendor": info.get("vendor"), "version": zero,
                     "manufacturer": info.get("manufacturer")},
        "operatingSystem": {"name": info.get("osName"), "family": info.get("osFamily"),
                            "vendor": info.get("osVendor"), "version": zero},
        "browser": None,
        "display": {"width": info.get("displayWidth", 0), "height": info.get("displayHeight", 0),
                    "ppi": info.get("displayPpi", 0), "name": "DISPLAY", "vendor": None,
                    "version": None, "diagonalSize": info.get("diagonalScreenSize")},
        "applicationId": info.get("applicationId"),
        "connection": {"ipAddress": info.get("connectionIp"),
                       "port": str(info["connectionPort"]) if "connectionPort" in info else None,
                       "secure": info.get("connectionSecure"),
                       "type": info.get("connectionType")},
    }


@router.get("/api/v2/{serviceProvider}/sessions/{code}", name="sessions.retrieve",
            summary="Retrieve authentication session using code")
async def retrieve_session(serviceProvider: str, code: str, request: Request) -> JSONResponse:
    service_provider(request, serviceProvider)
    state = sim(request)
    session = _live_session(state, serviceProvider, code)
    if session.completed_mvpd:
        raise PassError("invalid_authentication_session", details="The code was already used")
    body: dict[str, Any] = {
        "existingParameters": {**session.params, "serviceProvider": serviceProvider},
        "device": _device_description(session.device_info),
        "notBefore": str(_ms(session.not_before)),
        "notAfter": str(_ms(session.not_after)),
    }
    if session.missing:
        body["missingParameters"] = session.missing
    return JSONResponse(body)


def _error_page(message: str, status: int = 400) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><title>Adobe Pass</title><h1>Authentication error</h1><p>{message}</p>",
        status_code=status,
    )


@router.get("/api/v2/authenticate/{serviceProvider}/{code}", name="authenticate",
            summary="Perform authentication in user agent", response_class=HTMLResponse,
            status_code=302)
async def authenticate(serviceProvider: str, code: str, request: Request):
    state = sim(request)
    session = state.sessions.get(code)
    if session is None or session.service_provider != serviceProvider:
        return _error_page("The code parameter value is missing or invalid.")
    if session.not_after <= state.now():
        return _error_page("The authentication session has expired.")
    if session.completed_mvpd:
        return _error_page("The authentication session was already completed.")
    if session.missing:
        return _error_page("The authentication session misses: " + ", ".join(session.missing))
    query = urlencode({"code": code})
    return RedirectResponse(f"/_sim/mvpd/{quote(session.params['mvpd'])}/login?{query}",
                            status_code=302)


# Profiles --------------------------------------------------------------------------------------

def _temppass_profiles(request: Request, state: SimState, sp: str, cfg: Mvpd,
                       device: str) -> dict[str, Any]:
    if cfg.temppass == "promotional":
        who = _temppass_identity(request)
        if who is None:
            raise PassError("invalid_header_identity_for_temporary_access")
    else:
        who = device
    use = state.temppass_use(sp, cfg.id, who, start=False)
    if use is None:
        return {}
    if use.expires_at <= state.now():
        raise PassError("temporary_access_duration_limit_exceeded")
    if cfg.temppass == "promotional" and len(use.resources) >= cfg.temppass_max_resources:
        raise PassError("temporary_access_resources_limit_exceeded")
    return {cfg.id: state.temppass_profile(cfg.id, who, use)}


@router.get("/api/v2/{serviceProvider}/profiles", name="profiles.list",
            summary="Retrieve profiles")
async def profiles(serviceProvider: str, request: Request) -> JSONResponse:
    device, _ = identified_call(request, serviceProvider)
    state = sim(request)
    now = state.now()
    found = {mvpd: p.as_json() for mvpd, p in state.sso_profiles_of(sso_identities(request))
             .items() if state.config.mvpd(mvpd) is not None}
    found.update({
        p.mvpd: p.as_json() for (sp, dev, _), p in state.profiles.items()
        if sp == serviceProvider and dev == device and p.not_after > now and p.visible()
    })
    for (sp, mvpd_id, who), use in state.temppass.items():
        if sp == serviceProvider and who == device and use.expires_at > now:
            found[mvpd_id] = state.temppass_profile(mvpd_id, who, use)
    return JSONResponse({"profiles": found})


@router.get("/api/v2/{serviceProvider}/profiles/code/{code}", name="profiles.code",
            summary="Retrieve profile for specific code")
async def profile_for_code(serviceProvider: str, code: str, request: Request) -> JSONResponse:
    service_provider(request, serviceProvider)
    state = sim(request)
    session = _live_session(state, serviceProvider, code)
    found: dict[str, Any] = {}
    if session.completed_mvpd:
        profile = state.profile(serviceProvider, session.device_id, session.completed_mvpd)
        if profile is not None and profile.not_after > state.now():
            found[profile.mvpd] = profile.as_json()
    elif session.params.get("mvpd"):
        cfg = _mvpd(state, session.params["mvpd"])
        if cfg.temppass:
            found = _temppass_profiles(request, state, serviceProvider, cfg, session.device_id)
    return JSONResponse({"profiles": found})


@router.get("/api/v2/{serviceProvider}/profiles/{mvpd}", name="profiles.mvpd",
            summary="Retrieve profile for specific mvpd")
async def profile_for_mvpd(serviceProvider: str, mvpd: str, request: Request) -> JSONResponse:
    device, _ = identified_call(request, serviceProvider)
    state = sim(request)
    cfg = _mvpd(state, mvpd)
    if cfg.temppass:
        return JSONResponse({"profiles": _temppass_profiles(request, state, serviceProvider,
                                                            cfg, device)})
    profile = state.profile(serviceProvider, device, mvpd, sso_identities(request))
    found = {mvpd: profile.as_json()} if profile and profile.not_after > state.now() else {}
    if not found and cfg.degradation == "authn_all":
        found = {mvpd: _degraded_profile(state, mvpd, device)}
    return JSONResponse({"profiles": found})


def _degraded_profile(state: SimState, mvpd: str, device: str) -> dict[str, Any]:
    """The profile Adobe issues while AuthNAll degradation applies (issuer Adobe, type
    degraded, a userID with the degradation prefix)."""
    now = state.now()
    user = "95cf93bcd183214a" + hashlib.sha256(f"{mvpd}:{device}".encode()).hexdigest()[:40]
    return {"notBefore": _ms(now), "notAfter": _ms(now + 60), "issuer": "Adobe",
            "type": "degraded", "attributes": {"userID": {"value": user, "state": "plain"}}}


# Decisions -------------------------------------------------------------------------------------

def _media_token(sp: str, mvpd: str, resource: str, device: str, issued: float,
                 ttl: float) -> str:
    auth_token = (
        f"<authToken><sessionGUID>{uuid.uuid4()}</sessionGUID><requestorID>{sp}</requestorID>"
        f"<resourceID>{escape(resource)}</resourceID><ttl>{int(ttl * 1000)}</ttl>"
        f"<issueTime>{_ms(issued)}</issueTime><mvpdId>{mvpd}</mvpdId>"
        f"<deviceId>{hashlib.sha256(device.encode()).hexdigest()}</deviceId></authToken>"
    )
    return signing.sign(auth_token)


async def _resources(request: Request, limit: int) -> list[str]:
    body = await json_body(request)
    resources = body.get("resources") if isinstance(body, dict) else None
    if (not isinstance(resources, list) or not resources
            or not all(isinstance(r, str) and r for r in resources)):
        raise PassError("invalid_parameter_resources")
    if len(resources) > limit:
        raise PassError("too_many_resources")
    return resources


def _decide(request: Request, kind: str, sp: str, mvpd: str, device: str,
            resources: list[str]) -> list[dict[str, Any]]:
    state = sim(request)
    cfg = _mvpd(state, mvpd)
    now = state.now()
    ttl = state.config.ttl
    decisions = []
    for resource in resources:
        item: dict[str, Any] = {"resource": resource, "serviceProvider": sp, "mvpd": mvpd}
        error = None
        if cfg.temppass:
            item["source"] = "temppass"
            error = _temppass_decision(request, state, sp, cfg, device, resource,
                                       consume=kind == "authorize")
        elif cfg.degradation:
            item["source"] = "degradation"
            if cfg.degradation == "authz_none":
                error = error_object("authorization_denied_by_degradation_rule")
        else:
            item["source"] = "mvpd"
            profile = state.profile(sp, device, mvpd, sso_identities(request))
            assert profile is not None  # checked by the caller
            error = _mvpd_decision(state, kind, mvpd, profile.username, resource)
        if error:
            item.update(authorized=False, error=error)
            state.stats[f"decisions.{kind}.deny"] += 1
        else:
            item["authorized"] = True
            state.stats[f"decisions.{kind}.permit"] += 1
            if kind == "authorize":
                item["token"] = {
                    "notBefore": _ms(now), "notAfter": _ms(now + ttl.media_token_s),
                    "serializedToken": _media_token(sp, mvpd, resource, device, now,
                                                    ttl.media_token_s),
                }
        if kind == "authorize" and not (error and cfg.temppass):
            item.update(notBefore=_ms(now), notAfter=_ms(now + ttl.decision_s))
        decisions.append(item)
    return decisions


def _temppass_decision(request: Request, state: SimState, sp: str, cfg: Mvpd, device: str,
                       resource: str, *, consume: bool) -> dict[str, Any] | None:
    if cfg.temppass == "promotional":
        who = _temppass_identity(request)
        if who is None:
            return error_object("invalid_header_identity_for_temporary_access")
    else:
        who = device
    use = state.temppass_use(sp, cfg.id, who, start=True)
    if use.expires_at <= state.now():
        return error_object("temporary_access_duration_limit_exceeded")
    if cfg.temppass == "promotional" and resource not in use.resources:
        if len(use.resources) >= cfg.temppass_max_resources:
            return error_object("temporary_access_resources_limit_exceeded")
        if consume:
            use.resources.append(resource)
    return None


def _mvpd_decision(state: SimState, kind: str, mvpd: str, username: str | None,
                   resource: str) -> dict[str, Any] | None:
    retry_rate = state.config.faults.retry_deny_rate
    if retry_rate and random.random() < retry_rate:
        return error_object("network_received_error")
    for rule in state.config.deny_rules:
        if rule.resource != resource or rule.mvpd not in ("*", mvpd):
            continue
        if rule.username and rule.username != username:
            continue
        if kind == "preauthorize":
            code = "preauthorization_denied_by_mvpd"
        else:
            code = rule.code or "authorization_denied_by_mvpd"
        return error_object(code, details=rule.details)
    return None


async def _decisions(request: Request, kind: str, sp_id: str, mvpd: str) -> JSONResponse:
    device, _ = identified_call(request, sp_id)
    state = sim(request)
    cfg = _mvpd(state, mvpd)
    limits = state.config.limits
    resources = await _resources(
        request, limits.preauthorize_resources if kind == "preauthorize"
        else limits.authorize_resources,
    )
    if not cfg.temppass and cfg.degradation != "authn_all":
        profile = state.profile(sp_id, device, mvpd, sso_identities(request))
        if profile is None:
            raise PassError("authenticated_profile_missing")
        if profile.not_after <= state.now():
            raise PassError("authenticated_profile_expired")
    return JSONResponse({"decisions": _decide(request, kind, sp_id, mvpd, device, resources)})


@router.post("/api/v2/{serviceProvider}/decisions/preauthorize/{mvpd}",
             name="decisions.preauthorize", openapi_extra=_DECISIONS_BODY,
             summary="Retrieve preauthorization decisions using specific mvpd")
async def preauthorize(serviceProvider: str, mvpd: str, request: Request) -> JSONResponse:
    return await _decisions(request, "preauthorize", serviceProvider, mvpd)


@router.post("/api/v2/{serviceProvider}/decisions/authorize/{mvpd}",
             name="decisions.authorize", openapi_extra=_DECISIONS_BODY,
             summary="Retrieve authorization decisions using specific mvpd")
async def authorize(serviceProvider: str, mvpd: str, request: Request) -> JSONResponse:
    return await _decisions(request, "authorize", serviceProvider, mvpd)


# Partner single sign-on (Apple) -----------------------------------------------------------------

PARTNERS = ("Apple",)
SAML_ATTRIBUTES = ["uid", "NameID", "uniqueId"]


def _partner_status(request: Request) -> dict[str, Any] | None:
    """AP-Partner-Framework-Status as the header page defines it, or None when missing or not
    readable."""
    raw = request.headers.get("ap-partner-framework-status")
    if not raw:
        return None
    try:
        value = json.loads(base64.b64decode(raw, validate=True))
    except (ValueError, binascii.Error):
        return None
    return value if isinstance(value, dict) else None


def _partner_mvpd(state: SimState, status: dict[str, Any] | None) -> tuple[str | None, bool]:
    """The MVPD the partner framework names (when Adobe knows it), and whether it may be used
    for partner sign-on: access granted and the provider information not expired."""
    if status is None:
        return None, False
    permission = status.get("frameworkPermissionInfo") or {}
    provider = status.get("frameworkProviderInfo") or {}
    mvpd = provider.get("id") if state.config.mvpd(provider.get("id")) is not None else None
    expires = str(provider.get("expirationDate") or "")
    granted = (permission.get("accessStatus") == "granted" and expires.isdigit()
               and int(expires) > _ms(state.now()))
    return mvpd, granted and mvpd is not None


@router.post("/api/v2/{serviceProvider}/sessions/sso/{partner}", name="partner.sessions",
             summary="Retrieve partner authentication request", openapi_extra=_SESSION_BODY)
async def partner_request(serviceProvider: str, partner: str, request: Request) -> JSONResponse:
    device, info = identified_call(request, serviceProvider)
    if partner not in PARTNERS:
        raise PassError("invalid_parameter_partner")
    fields = await form_fields(request)
    if fields is None:
        raise PassError("invalid_parameter_mvpd", details="The body must be form-urlencoded")
    state = sim(request)
    params = _session_params(fields)
    mvpd, granted = _partner_mvpd(state, _partner_status(request))
    fallback = "pfs_fallback" if not granted else (
        "configuration_fallback" if not _mvpd(state, mvpd).partner_sso else None)
    if mvpd is not None:
        params.setdefault("mvpd", mvpd)
    session = state.new_session(service_provider=serviceProvider, device_id=device,
                                device_info=info, params=params)
    if fallback or session.missing:
        answer = _session_answer(state, session, missing_action="resume")
        if answer["actionName"] in ("authenticate", "resume"):
            answer["reasonType"] = fallback or "missing_parameters_fallback"
        return JSONResponse(answer)
    del state.sessions[session.code]  # no code: the partner signs the user in
    existing = state.profile(serviceProvider, device, mvpd)
    base = {"sessionId": session.session_id, "mvpd": mvpd, "serviceProvider": serviceProvider}
    if existing is not None and existing.not_after > state.now():
        return JSONResponse({
            "actionName": "authorize", "actionType": "direct",
            "reasonType": "authenticatedSSO" if existing.type == "appleSSO" else "authenticated",
            "url": f"/api/v2/{serviceProvider}/decisions/authorize/{mvpd}", **base})
    request_id = f"_{uuid.uuid4().hex}"
    state.partner_requests[request_id] = (serviceProvider, device, mvpd, CURRENT_CLIENT.get())
    saml = (f'<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
            f'ID="{request_id}" Version="2.0" ProviderName="{escape(mvpd)}"/>')
    return JSONResponse({
        "actionName": "partner_profile", "actionType": "direct", "reasonType": "none",
        "url": f"/api/v2/{serviceProvider}/profiles/sso/{partner}", **base,
        "authenticationRequest": {"type": "saml",
                                  "request": base64.b64encode(saml.encode()).decode(),
                                  "attributesNames": SAML_ATTRIBUTES}})


_IN_RESPONSE_TO = re.compile(r'InResponseTo="([^"]{1,200})"')
_NAME_ID = re.compile(r"<saml:NameID>([^<]{1,200})</saml:NameID>")


@router.post("/api/v2/{serviceProvider}/profiles/sso/{partner}", name="partner.profiles",
             summary="Retrieve profile using partner authentication response")
async def partner_profile(serviceProvider: str, partner: str, request: Request) -> JSONResponse:
    device, _ = identified_call(request, serviceProvider)
    if partner not in PARTNERS:
        raise PassError("invalid_parameter_partner")
    status = _partner_status(request)
    if status is not None and (status.get("frameworkPermissionInfo") or {}).get(
            "accessStatus") != "granted":
        raise PassError("invalid_header_pfs_permission_access_not_granted")
    fields = await form_fields(request)
    raw = (fields or {}).get("SAMLResponse", [""])[0]
    try:
        saml = base64.b64decode(raw, validate=True).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise PassError("invalid_parameter_saml_response") from None
    answered, user = _IN_RESPONSE_TO.search(saml), _NAME_ID.search(saml)
    state = sim(request)
    pending = state.partner_requests.get(answered.group(1)) if answered else None
    if pending is None or user is None or pending[:2] != (serviceProvider, device):
        raise PassError("invalid_parameter_saml_response")
    del state.partner_requests[answered.group(1)]
    mvpd = pending[2]
    profile = state.partner_login(serviceProvider, device, mvpd, user.group(1), pending[3])
    return JSONResponse({"profiles": {mvpd: profile.as_json()}}, status_code=201)


# Logout ----------------------------------------------------------------------------------------

@router.get("/api/v2/{serviceProvider}/logout/{mvpd}", name="logout",
            summary="Initiate logout for specific mvpd")
async def logout(serviceProvider: str, mvpd: str, request: Request,
                 redirectUrl: str | None = None) -> JSONResponse:
    device, _ = identified_call(request, serviceProvider)
    if not redirectUrl or not is_absolute_url(redirectUrl):
        raise PassError("invalid_parameter_redirect_url")
    state = sim(request)
    cfg = _mvpd(state, mvpd)
    answer: dict[str, Any] = {"mvpd": mvpd}
    profile = state.profile(serviceProvider, device, mvpd)
    # The single logout flow: the regular and the single sign-on profiles both deleted.
    single = state.single_logout(mvpd, sso_identities(request))
    if cfg.temppass:
        answer.update(actionName="complete", actionType="none")
    elif (profile is None or profile.not_after <= state.now()) and not single:
        if profile is not None:
            state.profiles.pop((serviceProvider, device, mvpd), None)
        answer.update(actionName="invalid", actionType="none")
    else:
        state.profiles.pop((serviceProvider, device, mvpd), None)
        if profile is not None and profile.type == "appleSSO":
            # The logout page: the user must also log out at the partner (system) level.
            answer.update(actionName="partner_logout", actionType="partner_interactive")
        elif cfg.logout_endpoint:
            query = urlencode({"requestor_id": serviceProvider, "redirect_url": redirectUrl})
            # A URL relative to Adobe Pass, as answers may give one: the client resolves it.
            answer.update(actionName="logout", actionType="interactive",
                          url=f"/_sim/mvpd/{quote(mvpd)}/logout?{query}")
        else:
            answer.update(actionName="complete", actionType="none")
    return JSONResponse({"logouts": {mvpd: answer}})

