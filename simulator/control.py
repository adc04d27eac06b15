"""What is not Adobe's: the simulated MVPD login and logout pages, logos, and test controls.

`POST /_sim/login` finishes a user's MVPD login without a browser (tests and the demo only).
"""

from __future__ import annotations

import colorsys
import gc
import hashlib
import struct
import zlib
from html import escape
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel

from simulator import signing
from simulator.common import sim
from simulator.config import TTL, Faults
from simulator.state import AuthSession, Profile, SimState

router = APIRouter(prefix="/_sim", tags=["Simulator controls (not Adobe Pass)"])

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
 body {{ font-family: system-ui, sans-serif; max-width: 28rem; margin: 2rem auto; padding: 0 1rem;
        color: #111; }}
 label {{ display: block; margin-top: 1rem; font-weight: 600; }}
 input {{ width: 100%; padding: .6rem; font-size: 1rem; box-sizing: border-box; }}
 button {{ margin-top: 1.2rem; padding: .7rem 1.2rem; font-size: 1rem; background: #0b57d0;
          color: #fff; border: 0; border-radius: .3rem; }}
 .error {{ color: #a50e0e; font-weight: 600; }}
</style></head>
<body>{body}</body></html>"""


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(_PAGE.format(title=escape(title), body=body), status_code=status)


def _pending_session(state: SimState, mvpd: str, code: str) -> AuthSession | None:
    session = state.sessions.get(code)
    if (session is None or session.params.get("mvpd") != mvpd or session.missing
            or session.completed_mvpd or session.not_after <= state.now()):
        return None
    return session


def _login_form(mvpd_name: str, mvpd: str, code: str, error: str = "") -> str:
    error_html = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    return (
        f"<h1>Sign in to {escape(mvpd_name)}</h1>{error_html}"
        f'<form method="post" action="/_sim/mvpd/{escape(mvpd)}/login">'
        f'<input type="hidden" name="code" value="{escape(code)}">'
        '<label for="username">Username</label>'
        '<input id="username" name="username" autocomplete="username" required>'
        '<label for="password">Password</label>'
        '<input id="password" name="password" type="password" autocomplete="current-password" '
        "required>"
        '<button type="submit">Sign in</button></form>'
    )


@router.get("/mvpd/{mvpd}/login", response_class=HTMLResponse, summary="Simulated MVPD login")
async def mvpd_login_page(mvpd: str, code: str, request: Request) -> HTMLResponse:
    state = sim(request)
    cfg = state.config.mvpd(mvpd)
    if cfg is None or _pending_session(state, mvpd, code) is None:
        return _page("Sign in", "<h1>This sign-in link is no longer valid.</h1>", 400)
    return _page(f"Sign in to {cfg.displayName}", _login_form(cfg.displayName, mvpd, code))


@router.post("/mvpd/{mvpd}/login", response_class=HTMLResponse, summary="Simulated MVPD login")
async def mvpd_login_submit(mvpd: str, request: Request) -> Response:
    fields = parse_qs((await request.body()).decode("utf-8", "replace"))
    code = fields.get("code", [""])[0]
    username = fields.get("username", [""])[0]
    password = fields.get("password", [""])[0]
    state = sim(request)
    cfg = state.config.mvpd(mvpd)
    session = _pending_session(state, mvpd, code)
    if cfg is None or session is None:
        return _page("Sign in", "<h1>This sign-in link is no longer valid.</h1>", 400)
    user = state.config.user(mvpd, username)
    if user is None or user.password != password:
        return _page(f"Sign in to {cfg.displayName}",
                     _login_form(cfg.displayName, mvpd, code, "Wrong username or password."),
                     401)
    state.complete_login(session, user.username, user.attributes)
    return RedirectResponse(session.params["redirectUrl"], status_code=302)


@router.get("/mvpd/{mvpd}/logout", response_class=HTMLResponse, summary="Simulated MVPD logout")
async def mvpd_logout(mvpd: str, redirect_url: str | None = None) -> Response:
    if redirect_url:
        return RedirectResponse(redirect_url, status_code=302)
    return _page("Signed out", f"<h1>You are signed out of {escape(mvpd)}.</h1>")


@router.get("/logos/{name}.svg", summary="MVPD logo")
async def logo(name: str) -> Response:
    hue = int(hashlib.sha256(name.encode()).hexdigest()[:2], 16) * 360 // 256
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="112" height="33" viewBox="0 0 112 33">'
        f'<rect width="112" height="33" rx="4" fill="hsl({hue},55%,30%)"/>'
        '<text x="56" y="21" font-family="sans-serif" font-size="13" fill="#fff" '
        f'text-anchor="middle">{escape(name[:14])}</text></svg>'
    )
    return Response(svg, media_type="image/svg+xml")


@router.get("/logos/{name}.png", summary="MVPD logo (raster)")
async def logo_png(name: str) -> Response:
    """A block of the MVPD's colour: logos a client may serve, being raster (an SVG may carry
    script)."""
    hue = int(hashlib.sha256(name.encode()).hexdigest()[:2], 16) / 256
    rgb = bytes(int(c * 255) for c in colorsys.hls_to_rgb(hue, 0.3, 0.55))
    width, height = 112, 33
    rows = b"".join(b"\x00" + rgb * width for _ in range(height))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    png = (b"\x89PNG\r\n\x1a\n"
           + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    return Response(png, media_type="image/png")


class LoginRequest(BaseModel):
    code: str
    username: str | None = None
    password: str | None = None


@router.post("/login", summary="Finish an MVPD login without a browser")
async def login(body: LoginRequest, request: Request) -> JSONResponse:
    state = sim(request)
    session = state.sessions.get(body.code)
    mvpd = session.params.get("mvpd") if session else None
    if session is None or mvpd is None or _pending_session(state, mvpd, body.code) is None:
        return JSONResponse({"error": "no pending session with an mvpd for that code"}, 400)
    users = [u for u in state.config.users if u.mvpd == mvpd]
    user = next((u for u in users if u.username == body.username), None) if body.username else (
        users[0] if users else None)
    if user is None or (body.password is not None and body.password != user.password):
        return JSONResponse({"error": "unknown user or wrong password"}, 401)
    state.complete_login(session, user.username, user.attributes)
    return JSONResponse({"mvpd": mvpd, "redirectUrl": session.params["redirectUrl"]})


def _seeded() -> None:
    """What a bulk seeding made lives until a reset: frozen out of the collector's walks (as
    passflow freezes its start-up heap), so a benchmark's seeding of tens of thousands of
    records does not turn into pauses of Adobe Pass' stand-in during the measurement."""
    gc.collect()
    gc.freeze()


class SeedProfiles(BaseModel):
    service_provider: str
    mvpd: str
    device_ids: list[str]
    username: str = "user1"


@router.post("/profiles", summary="Create logged-in profiles in bulk (benchmarks)")
async def seed_profiles(body: SeedProfiles, request: Request) -> dict[str, int]:
    state = sim(request)
    user = state.config.user(body.mvpd, body.username)
    attributes = user.attributes if user else {}
    now = state.now()
    for device_id in body.device_ids:
        state.profiles[(body.service_provider, device_id, body.mvpd)] = Profile(
            service_provider=body.service_provider, device_id=device_id, mvpd=body.mvpd,
            not_before=now, not_after=now + state.config.ttl.profile_s, issuer=body.mvpd,
            type="regular", attributes=dict(attributes), username=body.username)
    _seeded()
    return {"profiles": len(body.device_ids)}


class SeedSessions(BaseModel):
    service_provider: str
    mvpd: str
    device_ids: list[str]


@router.post("/sessions", summary="Create pending authentication sessions in bulk (benchmarks)")
async def seed_sessions(body: SeedSessions, request: Request) -> dict[str, Any]:
    """Sessions as `POST /api/v2/{serviceProvider}/sessions` would create them with an mvpd,
    domainName and redirectUrl: a user has yet to log in to each."""
    state = sim(request)
    created = {}
    for device_id in body.device_ids:
        session = state.new_session(
            service_provider=body.service_provider, device_id=device_id, device_info={},
            params={"mvpd": body.mvpd, "domainName": "bench.example",
                    "redirectUrl": "https://bench.example/done"})
        created[device_id] = {"code": session.code, "notAfter": int(session.not_after * 1000)}
    _seeded()
    return {"sessions": created}


@router.get("/faults", summary="Current fault knobs")
async def get_faults(request: Request) -> Faults:
    return sim(request).config.faults


@router.put("/faults", summary="Replace the fault knobs")
async def put_faults(faults: Faults, request: Request) -> Faults:
    sim(request).config.faults = faults
    return faults


@router.put("/ttl", summary="Replace the lifetimes (access tokens, sessions, profiles, ...)")
async def put_ttl(body: TTL, request: Request) -> TTL:
    sim(request).config.ttl = body
    return body


class MetadataKey(BaseModel):
    public_key: str | None  # PEM; None: attributes are sent plain


@router.put("/metadata-key", summary="Configure the programmer's user metadata certificate")
async def put_metadata_key(body: MetadataKey, request: Request) -> dict[str, bool]:
    sim(request).config.metadata_public_key = body.public_key
    return {"encrypting": body.public_key is not None}


class PlatformsUpdate(BaseModel):
    mvpd: str
    platforms: list[str] | None


@router.put("/platforms", summary="The platforms an MVPD integration is boarded for")
async def put_platforms(body: PlatformsUpdate, request: Request) -> dict[str, Any]:
    cfg = sim(request).config.mvpd(body.mvpd)
    if cfg is None:
        raise HTTPException(404, "unknown mvpd")
    cfg.platforms = body.platforms
    return {"mvpd": body.mvpd, "platforms": body.platforms}


class DegradationUpdate(BaseModel):
    mvpd: str
    rule: str | None  # authn_all | authz_all | authz_none | None (lifted)


@router.put("/degradation", summary="Apply or lift a degradation rule for an MVPD")
async def put_degradation(body: DegradationUpdate, request: Request) -> dict[str, Any]:
    cfg = sim(request).config.mvpd(body.mvpd)
    if cfg is None:
        raise HTTPException(404, "unknown mvpd")
    cfg.degradation = body.rule  # type: ignore[assignment]
    return {"mvpd": body.mvpd, "rule": body.rule}


class ThrottleUpdate(BaseModel):
    enabled: bool
    # False: the burst refills (the lenient reading), for a benchmark that wants it.
    one_time_burst: bool = True


@router.put("/throttle", summary="Turn throttling on or off; the burst once, or refilling")
async def put_throttle(body: ThrottleUpdate, request: Request) -> dict[str, bool]:
    state = sim(request)
    state.config.throttle.enabled = body.enabled
    state.config.throttle.one_time_burst = body.one_time_burst
    state.throttle.reset()
    state.throttle.one_time_burst = body.one_time_burst
    return {"enabled": body.enabled, "one_time_burst": body.one_time_burst}


class Software(BaseModel):
    software_id: str
    service_providers: list[str]


@router.put("/software", summary="Approve a software statement for some service providers")
def software(body: Software, request: Request) -> dict[str, Any]:
    """What the TVE Dashboard does for a brand: its application's statement (software_id) is
    approved, and its tokens cover only the service providers listed (a token of one is
    refused on another's paths). Until /_sim/reset."""
    config = sim(request).config
    if body.software_id not in config.approved_software_ids:
        config.approved_software_ids.append(body.software_id)
    config.software_service_providers[body.software_id] = list(body.service_providers)
    return {"software_id": body.software_id, "service_providers": body.service_providers}


class Disabled(BaseModel):
    software_id: str
    disabled: bool = True


@router.put("/software/disabled", summary="Refuse (or accept again) an application's tokens")
def disable_software(body: Disabled, request: Request) -> dict[str, Any]:
    """The application is disabled in the TVE Dashboard: DCR still issues its tokens, every REST
    API V2 call with one answers 401 invalid_access_token_client_application (action
    application-registration). Until /_sim/reset."""
    disabled = sim(request).disabled_software
    (disabled.add if body.disabled else disabled.discard)(body.software_id)
    return {"software_id": body.software_id, "disabled": body.disabled}


class PartnerSignIn(BaseModel):
    request: str  # the authenticationRequest's `request` Adobe handed the device
    username: str = "apple-user-1"


@router.post("/partner/respond", summary="The partner framework (Apple) answers a request")
def partner_respond(body: PartnerSignIn) -> dict[str, str]:
    """What Apple's framework gives the app once the user is signed in with the provider at
    the system level: a SAML response to Adobe's request (Base64), for the second event."""
    import base64
    import re

    try:
        saml = base64.b64decode(body.request, validate=True).decode()
    except ValueError:
        raise HTTPException(400, "not Adobe's partner request") from None
    found = re.search(r'ID="([^"]{1,200})"', saml)
    if found is None:
        raise HTTPException(400, "not Adobe's partner request")
    response = (f'<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
                f'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" '
                f'InResponseTo="{found.group(1)}"><saml:Assertion><saml:Subject>'
                f"<saml:NameID>{escape(body.username)}</saml:NameID></saml:Subject>"
                f"</saml:Assertion></samlp:Response>")
    return {"SAMLResponse": base64.b64encode(response.encode()).decode()}


@router.get("/media-token-certificate", summary="The certificate media tokens verify with (PEM)")
def media_token_certificate() -> Response:
    return Response(signing.certificate_pem(), media_type="application/x-pem-file")


@router.get("/stats", summary="Counters: requests, 429s, registrations, decisions, ...")
async def stats(request: Request) -> dict[str, Any]:
    return dict(sim(request).stats)


@router.get("/requests", summary="The last calls behind the edge: endpoint, status, headers")
async def requests(request: Request, endpoint: str | None = None) -> list[dict[str, Any]]:
    """Each call's endpoint (its route's name), its answer's status, which of the headers
    Adobe's pages name it carried (never their values) and its User-Agent; oldest first."""
    return [r for r in sim(request).requests if endpoint in (None, r["endpoint"])]


class ClockAdvance(BaseModel):
    seconds: float


@router.post("/clock", summary="Move the simulator's clock forward (expiry tests)")
async def advance_clock(body: ClockAdvance, request: Request) -> dict[str, float]:
    state = sim(request)
    state.clock_offset += body.seconds
    return {"offset_s": state.clock_offset}


@router.post("/revoke-tokens", summary="Invalidate every access token (401 tests)")
async def revoke_tokens(request: Request) -> dict[str, int]:
    state = sim(request)
    count = len(state.tokens)
    state.tokens.clear()
    return {"revoked": count}


@router.post("/forget-clients", summary="Forget registered clients (invalid_client tests)")
async def forget_clients(request: Request) -> dict[str, int]:
    state = sim(request)
    count = len(state.clients)
    state.clients.clear()
    state.tokens.clear()
    return {"forgotten": count}


@router.post("/reset", summary="Back to the start: no state, zero counters, fixtures as loaded")
async def reset(request: Request, keep_registrations: bool = False) -> dict[str, bool]:
    sim(request).reset(keep_registrations=keep_registrations)
    return {"reset": True}
