"""The second-screen activation page and the primary-screen landing page.

Cookbook step 3, option 2: a user types the code a TV shows. The code is checked with Adobe Pass
(GET /api/v2/{sp}/sessions/{code}) before anything else; a session without an MVPD gets the
provider picker and is resumed with the choice; then the browser goes to Adobe Pass
/api/v2/authenticate/{sp}/{code}. These pages are public: they carry no API token.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import re
from pathlib import Path
from urllib.parse import parse_qs, quote, urljoin, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from api import logos
from models import AuthSession, normal_code
from models import Device as DeviceRow
from models.db import session_scope
from passflow.device_info import is_browser
from passflow.serving import client_address
from passflow.settings import Settings
from worker import dispatch, jobs, policy
from worker.adobe_pass import (
    AdobePassError,
    APIStatusError,
    Device,
    RateLimitError,
    ThrottledError,
)
from worker.runtime import runtime

templates = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))

_CODE = re.compile(r"^[A-Z0-9]{4,16}$")
_PRINTABLE = re.compile(r"[^\x20-\x7e]")
# A service provider's or an MVPD's id, as Adobe Pass writes them ("." and ".." are not ids).
_ID = re.compile(r"^(?!\.{1,2}$)[A-Za-z0-9_.\-]{1,100}$")


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _client_key(request: Request) -> str:
    """Whom the tries are counted for: the IPv4 address (an IPv4-mapped IPv6 one counted as
    the IPv4 it is), or the /64 of an IPv6 address (one user's devices share a /64; a fresh
    address per try must not mean fresh tries)."""
    raw = _client_ip(request)
    address = client_address(raw)
    if address is None:
        return raw
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def _browser(request: Request) -> Device:
    """The user's browser, as Adobe Pass should see it (its own IP, its own bucket)."""
    ip = _client_ip(request)
    # A header's bytes are Latin-1 to the server; Adobe Pass gets printable ASCII only.
    agent = _PRINTABLE.sub("?", request.headers.get("user-agent", ""))
    ident = hashlib.sha256(f"{ip}|{agent}".encode()).hexdigest()[:32]
    # A browser sends no X-Device-Info: its User-Agent describes it (X-Device-Info page,
    # "Browsers"); `counted` turned away any other client before a call is made for it.
    return Device(id=f"activation-{ident}", ip=ip if ip != "unknown" else None,
                  user_agent=agent[:300])


async def form_fields(request: Request) -> dict[str, str]:
    """A page's url-encoded form (its size is bounded by api.limits before it is read)."""
    fields = parse_qs((await request.body()).decode("utf-8", "replace"))
    return {k: v[0] for k, v in fields.items()}


def build_router(settings: Settings, public_url: str) -> APIRouter:
    """The pages; `public_url`: where users' browsers reach them."""
    router = APIRouter(include_in_schema=False)

    def page(request: Request, name: str, status: int = 200, **context) -> HTMLResponse:
        return templates.TemplateResponse(request, name, context, status_code=status)

    def message(request: Request, title: str, text: str, status: int, *,
                success: bool = False, retry: bool = True) -> HTMLResponse:
        return page(request, "message.html", status, title=title, message=text, success=success,
                    retry_url="/activate" if retry else None)

    def _try_keys(request: Request, code: str) -> list[str]:
        return [f"passflow:activate:tries:{_client_key(request)}",
                f"passflow:activate:tries:code:{hashlib.sha256(code.encode()).hexdigest()}"]

    def take_try(request: Request, code: str) -> bool:
        """Count this try, for the client's address and for the code, before any call to Adobe
        Pass: one atomic transaction, so parallel tries each see their own count. A try counts
        as failed until it succeeds (`give_back`)."""
        store = runtime().redis
        keys = _try_keys(request, code)
        # Already refused: nothing is written (a locked-out client's codes leave no keys).
        if any(int(count or 0) >= policy.ACTIVATION_MAX_FAILED_TRIES
               for count in store.mget(keys)):
            return False
        pipe = store.pipeline(transaction=True)
        for key in keys:
            pipe.incr(key)
            pipe.expire(key, policy.ACTIVATION_TRIES_WINDOW_S, nx=True)
        counts = pipe.execute()[::2]
        return all(count <= policy.ACTIVATION_MAX_FAILED_TRIES for count in counts)

    def give_back(request: Request, code: str) -> None:
        pipe = runtime().redis.pipeline(transaction=True)
        for key in _try_keys(request, code):
            pipe.decr(key)
        pipe.execute()

    def counted(request: Request, code: str, check, *args, **kwargs) -> Response:
        """Run a check of the code against Adobe Pass as a counted try: refused when the
        address or the code had too many; the try is given back unless the code was wrong. A
        client that is no browser is told so first: its calls to Adobe Pass would carry no
        X-Device-Info (only a browser's User-Agent may stand for it), and no MVPD login could
        follow anyway."""
        if not is_browser(request.headers.get("user-agent")):
            return message(request, "Open this page in a web browser",
                           "Signing in to your TV provider needs a web browser: open this "
                           "address in the browser of your phone or computer.", 400,
                           retry=False)
        if not take_try(request, code):
            return message(request, "Too many tries",
                           "Too many wrong codes from this device. Wait 15 minutes, then try "
                           "again with the code on your TV.", 429, retry=False)
        response = None
        try:
            response = check(request, code, *args, **kwargs)
        finally:  # a fault of ours (an exception) never costs the user a try
            if response is None or response.status_code != 400:
                give_back(request, code)  # only a wrong or expired code keeps its count
        return response

    def service_provider_of(code: str) -> str:
        with session_scope() as session:
            found = session.scalar(select(AuthSession.service_provider).where(
                AuthSession.has_code(runtime().cipher, code)).order_by(AuthSession.id.desc()))
        return found or settings.service_provider

    def authenticate_url(sp: str, code: str) -> str:
        return runtime().adobe_for(sp).sessions.authenticate_url(sp, code)

    def code_problem(request: Request, code: str, error: APIStatusError) -> HTMLResponse:
        if error.code == "invalid_authentication_session":
            text = ("This code has expired or was already used. Start again on your TV to get "
                    "a new code.")
        else:
            text = "We don't recognize that code. Check the code on your TV and try again."
        return page(request, "activate.html", 400, action="/activate", code=code, error=text)

    picker_js = (Path(__file__).with_name("templates") / "picker.js").read_bytes()

    @router.get("/activate/picker.js")
    def picker_script() -> Response:
        """The picker's search, from passflow's own origin (the pages' CSP allows no inline
        script)."""
        return Response(picker_js, media_type="text/javascript",
                        headers={"Cache-Control": "public, max-age=3600"})

    @router.get("/activate", response_class=HTMLResponse)
    def activate_form(request: Request, code: str = "") -> HTMLResponse:
        return page(request, "activate.html", action="/activate", code=code[:32], error=None)

    @router.post("/activate", response_class=HTMLResponse)
    async def activate(request: Request) -> Response:
        fields = await form_fields(request)
        raw = fields.get("code", "")
        code = normal_code(raw)
        if not _CODE.match(code):  # no call to Adobe Pass: not a try, nothing stored
            return page(request, "activate.html", 400, action="/activate", code=raw[:32],
                        error="That doesn't look like a code. Codes have letters and digits, "
                              "like 8ER640M.")
        return await run_in_threadpool(counted, request, code, _check_and_continue)

    def _check_and_continue(request: Request, code: str) -> Response:
        sp = service_provider_of(code)
        adobe = runtime().adobe_for(sp)
        try:
            info = adobe.sessions.retrieve(sp, code, device=_browser(request))
        except APIStatusError as exc:
            if exc.status_code == 400:
                return code_problem(request, code, exc)
            return _unavailable(request, exc)
        except AdobePassError as exc:
            return _unavailable(request, exc)
        if info.mvpd is None:
            return _picker(request, sp, code)
        if info.missing_parameters:
            return _resume_with(request, code, info.mvpd)
        return RedirectResponse(authenticate_url(sp, code), status_code=303)

    def _picker(request: Request, sp: str, code: str) -> Response:
        try:
            config = runtime().configuration(sp, device=_browser(request))
        except AdobePassError as exc:
            return _unavailable(request, exc)
        mvpds = [{"id": m.id, "name": m.display_name or m.id,
                  "logo": f"/activate/logos/{quote(sp, safe='')}/{quote(m.id, safe='')}"}
                 for m in config.mvpds if not m.is_temp_pass]
        mvpds.sort(key=lambda m: m["name"].lower())
        # Checklist, TV Provider Selection Caching: the provider this device chose last is
        # offered first (still one tap, so a user who changed provider is not signed in with
        # the old one).
        last = _last_mvpd(code, sp)
        remembered = next((m for m in mvpds if m["id"] == last), None)
        return page(request, "picker.html", action="/activate/provider", code=code, mvpds=mvpds,
                    remembered=remembered)

    def _last_mvpd(code: str, sp: str) -> str | None:
        with session_scope() as session:
            return session.scalar(select(DeviceRow.last_mvpd).join(
                AuthSession, AuthSession.device_id == DeviceRow.id).where(
                AuthSession.has_code(runtime().cipher, code),
                AuthSession.service_provider == sp)
                .order_by(AuthSession.id.desc()).limit(1))

    @router.post("/activate/provider", response_class=HTMLResponse)
    async def choose_provider(request: Request) -> Response:
        fields = await form_fields(request)
        code = normal_code(fields.get("code", ""))
        mvpd = fields.get("mvpd", "")
        if not _CODE.match(code) or not mvpd or len(mvpd) > 200:
            return message(request, "Something is missing",
                           "Pick a provider from the list.", 400)
        return await run_in_threadpool(counted, request, code, _resume_with, mvpd,
                                       picked=True)

    def _resume_with(request: Request, code: str, mvpd: str, *, picked: bool = False) -> Response:
        """Resume the session with `mvpd` and whatever else it lacks. The configuration is
        read only for what the user picked here (its name and logo, from the picker's cached
        list): the checklist's "only when requiring to prompt the user"."""
        sp = service_provider_of(code)
        browser = _browser(request)
        rt = runtime()
        try:
            adobe = rt.adobe_for(sp)
            info = adobe.sessions.retrieve(sp, code, device=browser)
            answer = adobe.sessions.resume(sp, code, device=browser, mvpd=mvpd,
                                           **_missing(sp, browser, info.missing_parameters))
            if answer.action_name == "retry" and answer.missing_parameters:
                # Adobe still lacks a parameter: given once more, not shown as an outage.
                answer = adobe.sessions.resume(
                    sp, code, device=browser, mvpd=mvpd,
                    **_missing(sp, browser, answer.missing_parameters))
            chosen = rt.configuration(sp, device=browser).mvpd(mvpd) if picked else None
        except APIStatusError as exc:
            if exc.status_code == 400 and exc.code != "invalid_parameter_mvpd":
                return code_problem(request, code, exc)
            if exc.code == "invalid_parameter_mvpd":
                return message(request, "Unknown provider", "Pick a provider from the list.",
                               400)
            return _unavailable(request, exc)
        except AdobePassError as exc:
            return _unavailable(request, exc)
        if picked:
            with session_scope() as session:
                jobs.provider_picked(session, rt.cipher, service_provider=sp, code=code,
                                     mvpd=mvpd,
                                     display_name=chosen.display_name if chosen else None,
                                     logo_url=chosen.logo_url if chosen else None)
        return _follow(request, sp, code, answer)

    def _missing(sp: str, browser: Device, missing: list[str]) -> dict[str, str]:
        """What passflow can give of the parameters a session lacks (besides the MVPD)."""
        extra = {}
        if "redirectUrl" in missing:
            extra["redirect_url"] = f"{public_url}/landing"
        if set(missing) & {"domainName", "domain"}:
            # The programmer's domain: the setting, or the one learned and kept.
            extra["domain_name"] = (settings.domain_name
                                    or runtime().domain_name(sp, device=browser)
                                    or urlsplit(public_url).hostname or "localhost")
        return extra

    def _follow(request: Request, sp: str, code: str, answer) -> Response:
        """Where the resume answer's actionName says the browser goes next."""
        if answer.action_name == "authenticate":
            url = (urljoin(runtime().adobe_for(sp).base_url + "/", answer.url) if answer.url
                   else authenticate_url(sp, code))
            return RedirectResponse(url, status_code=303)
        if answer.action_name == "authorize":
            # Already signed in, or temporary or degraded access: no MVPD login needed.
            return message(request, "You're all set",
                           "No sign-in is needed. You can go back to your TV: it will start in "
                           "a moment.", 200, success=True, retry=False)
        if answer.action_name == "retry":
            return message(request, "This code needs a fresh start",
                           "Adobe Pass still lacks something to sign you in with this code. "
                           "Start again on your TV to get a new code.", 400)
        return message(request, "Something went wrong",
                       "This code can't be used to sign in. Start again on your TV to get a "
                       "new code.", 400)

    def _unavailable(request: Request, error: Exception | None = None) -> HTMLResponse:
        if isinstance(error, ThrottledError | RateLimitError):  # ours, or Adobe's 429
            return message(request, "One moment",
                           "Too many requests from this network in a short time. Wait a few "
                           "seconds, then try again.", 429)
        return message(request, "Try again in a moment",
                       "Your TV provider's sign-in service did not answer. Please try again.",
                       503)

    inflight: dict[str, asyncio.Future] = {}

    @router.get("/activate/logos/{sp}/{mvpd}")
    async def logo(request: Request, sp: str, mvpd: str) -> Response:
        """An MVPD's logo from passflow's own origin. Only logos of a configuration passflow
        read from Adobe Pass (a provider picker it showed) are known: anything else is a 404
        that costs no call to Adobe Pass. A fetch (api.logos: hostile until shown otherwise)
        is made once per logo at a time, at most LOGO_FETCHES_PER_MINUTE per client address;
        a logo that cannot be had safely is a 404 for a minute."""
        if not (_ID.match(sp) and _ID.match(mvpd)):
            return Response(status_code=404)
        key = "passflow:logo:" + hashlib.sha256(f"{sp}\n{mvpd}".encode()).hexdigest()
        rt = runtime()
        cached = await run_in_threadpool(rt.redis.hgetall, key)
        if not cached:
            url = await run_in_threadpool(rt.logo_url, sp, mvpd)
            if url is None:
                return Response(status_code=404, headers={"Cache-Control": "max-age=60"})
            future = inflight.get(key)
            if future is None:
                if not await run_in_threadpool(_fetch_budget, request):
                    return Response(status_code=429, headers={"Retry-After": "60"})
                future = asyncio.ensure_future(_fetch_logo(rt.redis, key, url))
                inflight[key] = future
                future.add_done_callback(lambda _: inflight.pop(key, None))
            cached = await asyncio.shield(future)  # one fetch; every waiter gets its answer
        if b"body" not in cached:
            return Response(status_code=404, headers={"Cache-Control": "max-age=60"})
        return Response(cached[b"body"], media_type=cached[b"type"].decode(), headers={
            "Cache-Control": "public, max-age=86400",
            "Content-Security-Policy": "default-src 'none'",
            "X-Content-Type-Options": "nosniff"})

    def _fetch_budget(request: Request) -> bool:
        budget = f"passflow:logo-fetches:{_client_key(request)}"
        pipe = runtime().redis.pipeline(transaction=True)
        pipe.incr(budget)
        pipe.expire(budget, 60, nx=True)
        return pipe.execute()[0] <= policy.LOGO_FETCHES_PER_MINUTE

    async def _fetch_logo(store, key: str, url: str) -> dict[bytes, bytes]:
        try:
            found = await logos.fetch(url, trusted_hosts=settings.logo_trusted_hosts)
            cached = {b"type": found.media_type.encode(), b"body": found.body}
            ttl = 24 * 3600
        except logos.Refused:
            cached, ttl = {b"missing": b"1"}, 60  # failures cached briefly
        await run_in_threadpool(_keep, store, key, cached, ttl)
        return cached

    @router.get("/landing", response_class=HTMLResponse)
    def landing(request: Request, job: str | None = None) -> HTMLResponse:
        """The final page after the MVPD login: polling of the job starts (or resumes) now,
        the first time the page is reached for the job: anyone may load it, and a reload (or
        200) must not spend the device's Adobe budget on extra polls."""
        if job and len(job) <= 64 and runtime().redis.set(
                f"passflow:landed:{job}", 1, nx=True, ex=policy.DEFAULT_SESSION_S):
            start_polling(job)
        return message(request, "You're signed in",
                       "You are signed in with your TV provider. You can go back to your TV: it "
                       "will start in a moment.", 200, success=True, retry=False)

    return router


def _keep(store, key: str, cached: dict[bytes, bytes], ttl: int) -> None:
    pipe = store.pipeline(transaction=True)
    pipe.hset(key, mapping=cached)
    pipe.expire(key, ttl)
    pipe.execute()


def start_polling(job_id: str) -> bool:
    """The user reached the final page: poll now (checklist, primary-screen flows)."""
    with session_scope() as session:
        step = jobs.start_polling(session, job_id)
    if step is None:
        return False
    dispatch.send_step(step, [job_id])
    return True
