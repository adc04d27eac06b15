"""The operations console: `/console`, pages for the people who answer "why can't this subscriber
watch?" (docs/operations.md, "The console").

- Sign-in with an API token: `read` may look (activation codes, IP addresses and profile
  attributes only with `personal`), `admin` may act. The browser keeps a signed, HttpOnly,
  SameSite=Strict cookie naming a session held in Redis (the token's hash, never the token):
  it expires after CONSOLE_SESSION_S, signing out ends it at once, and a revoked token ends
  every session made with it.
- Every POST carries the session's CSRF token (and the pages' same-origin rule applies); every
  action is audited as `console:<token name>` and shown on the job's page.
- Pages are server-rendered under the pages' CSP; the only script (`console.js`, from passflow's
  own origin) refreshes the overview's panels. Charts are SVG drawn here from the same figures
  `GET /v1/stats/...` answers, each with its numbers in a table.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import hmac
import io
import json
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from itsdangerous import BadSignature, URLSafeTimedSerializer
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from api import charts, stats
from api.activation import form_fields
from api.auth import GRANTS, TokenChecker, token_hash
from api.schemas import Instant
from models import Job, JobStatus, Profile, audit
from models.db import session_scope
from models.history import (
    BadCursor,
    HistoryQuery,
    JobQuery,
    find,
    history,
    jobs_page,
    login_times,
)
from models.stats import WINDOWS
from passflow import logs
from passflow.crypto import Cipher
from passflow.events import EventType
from passflow.reasons import REASONS
from passflow.settings import Settings
from worker import dispatch, jobs
from worker.runtime import runtime
from worker.views import job_view, profile_view

log = logs.get_logger(__name__)

templates = Jinja2Templates(directory=str(Path(__file__).with_name("templates") / "console"))

COOKIE = "passflow_console"
CONSOLE_SESSION_S = 8 * 3600  # a working shift; signing out ends it sooner
SIGN_IN_TRIES_PER_MINUTE = 20  # failed sign-ins per address (tokens are long: a flood guard)
TIMELINE_PAGE = 100
_SESSION_KEY = "passflow:console:session:"
_STATIC = Path(__file__).with_name("templates") / "console"

# Adobe's enhanced error `action`s (enhanced-error-codes.md), said to a person.
ACTIONS_IN_WORDS = {
    "none": "no remedy defined by Adobe: the answer stands (rarely, the request was wrong)",
    "configuration": "a configuration change is needed, usually in the Adobe Pass TVE Dashboard",
    "application-registration": "the application must register again",
    "authentication": "the user must sign in again with their TV provider",
    "authorization": "the app must ask again for authorization for this resource",
    "retry": "try again later",
}
_instant = TypeAdapter(Instant)


def action_in_words(action: str | None) -> str | None:
    if not action:
        return None
    return ACTIONS_IN_WORDS.get(action, action)


@dataclass(frozen=True)
class Viewer:
    """Who is signed in: the token's name and scope, and what it may do."""

    sid: str
    name: str
    scope: str
    csrf: str
    brands: frozenset[str] | None = None  # a token limited to brands sees only theirs

    def sees(self, service_provider: str) -> bool:
        return self.brands is None or service_provider in self.brands

    @property
    def personal(self) -> bool:
        return "personal" in GRANTS[self.scope]

    @property
    def admin(self) -> bool:
        return "admin" in GRANTS[self.scope]

    @property
    def actor(self) -> str:
        return f"console:{self.name}"


class NotSignedIn(Exception):
    """No valid console session: a page sends its viewer to the sign-in form."""


def install(app: Any) -> None:
    """The console's answer to a page asked without a session: the sign-in form."""
    async def to_sign_in(_: Request, __: Exception) -> Response:
        return RedirectResponse("/console", status_code=303)

    app.add_exception_handler(NotSignedIn, to_sign_in)


class Sessions:
    """Console sessions in Redis, named by a signed cookie."""

    def __init__(self, secret_keys: list[str], checker: TokenChecker):
        # One signing key per PASSFLOW_SECRET_KEY entry, derived (never the key itself): the
        # first signs, the others still verify while they are rotated out.
        derived = [hmac.new(k.encode(), b"passflow console session", hashlib.sha256).digest()
                   for k in secret_keys]
        self._signer = URLSafeTimedSerializer(list(reversed(derived)), salt="passflow-console")
        self._checker = checker

    def start(self, hashed: str) -> str:
        """A new session for the token with this hash: the cookie's value."""
        sid = secrets.token_urlsafe(32)
        record = {"token_hash": hashed, "csrf": secrets.token_urlsafe(32),
                  "at": time.time()}
        runtime().redis.set(_SESSION_KEY + _key(sid), json.dumps(record), ex=CONSOLE_SESSION_S)
        return self._signer.dumps(sid)

    def viewer(self, cookie: str | None) -> Viewer:
        if not cookie:
            raise NotSignedIn
        try:
            sid = self._signer.loads(cookie, max_age=CONSOLE_SESSION_S)
        except BadSignature as exc:
            raise NotSignedIn from exc
        raw = runtime().redis.get(_SESSION_KEY + _key(sid))
        if raw is None:
            raise NotSignedIn
        record = json.loads(raw)
        holder = self._checker.holder_of_hash(record["token_hash"])
        if holder is None or "read" not in GRANTS.get(holder[0], frozenset()):
            self.end(cookie)  # the token was revoked: its sessions end with it
            raise NotSignedIn
        return Viewer(sid=sid, name=holder.name, scope=holder.scope, csrf=record["csrf"],
                      brands=holder.brands)

    def end(self, cookie: str | None) -> None:
        try:
            sid = self._signer.loads(cookie or "", max_age=CONSOLE_SESSION_S)
        except BadSignature:
            return
        runtime().redis.delete(_SESSION_KEY + _key(sid))


def _key(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


def _client_key(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _when(value: str | None) -> datetime | None:
    """A filter's time from a form: ISO 8601 with a zone; a bare date-time is UTC."""
    if not value:
        return None
    text = value.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?", text):
        text += "Z"
    try:
        return _instant.validate_python(text)
    except ValidationError as exc:
        raise HTTPException(422, f"not a time: {value[:40]!r} (ISO 8601, e.g. "
                                 "2026-12-04T20:00Z)") from exc


def _visible(viewer: Viewer, job_id: str) -> bool:
    with session_scope() as session:
        brand = session.scalar(select(Job.service_provider).where(Job.id == job_id))
    return brand is not None and viewer.sees(brand)


def _audited(actor: str, action: str, scope: str) -> None:
    with session_scope() as session:
        audit.record(session, actor, action, actor.removeprefix("console:"), scope=scope)


def build_router(settings: Settings, checker: TokenChecker, cipher: Cipher,
                 secure_cookie: bool) -> APIRouter:
    router = APIRouter(prefix="/console", include_in_schema=False)
    secret = settings.secret_key.get_secret_value() if settings.secret_key else ""
    sessions = Sessions([k.strip() for k in secret.split(",") if k.strip()], checker)

    def page(request: Request, name: str, viewer: Viewer | None, status: int = 200,
             **context: Any) -> HTMLResponse:
        return templates.TemplateResponse(
            request, name, {"viewer": viewer, "in_words": action_in_words, "reasons": REASONS,
                            "seconds": _seconds, **context},
            status_code=status, headers={"Cache-Control": "no-store"})

    def signed_in(request: Request) -> Viewer:
        return sessions.viewer(request.cookies.get(COOKIE))

    def viewer_of(request: Request) -> Viewer:
        """The signed-in viewer of a page: a dependency; anyone else is sent to the sign-in
        form (NotSignedIn, answered by `install`)."""
        return signed_in(request)

    signed_in_viewer = Depends(viewer_of)

    async def acting(request: Request, *, admin: bool) -> tuple[Viewer, dict[str, str]]:
        """The viewer of a POST and its form, after the CSRF check (403 when it fails, or
        when the token may not act)."""
        await checker.fresh()
        try:
            viewer = await run_in_threadpool(signed_in, request)
        except NotSignedIn as exc:
            raise HTTPException(401, "sign in to the console first") from exc
        form = await form_fields(request)
        if not hmac.compare_digest(form.get("csrf", "").encode(), viewer.csrf.encode()):
            raise HTTPException(403, "the form's CSRF token is missing or wrong: reload the "
                                     "page and try again")
        if admin and not viewer.admin:
            raise HTTPException(403, f"this token's scope is {viewer.scope}; acting needs admin")
        return viewer, form

    # Sign-in and sign-out ---------------------------------------------------------------

    @router.get("", response_class=HTMLResponse)
    async def home(request: Request) -> Response:
        await checker.fresh()
        try:
            await run_in_threadpool(signed_in, request)
        except NotSignedIn:
            return page(request, "sign_in.html", None, error=None)
        return RedirectResponse("/console/overview", status_code=303)

    @router.post("/sign-in")
    async def sign_in(request: Request) -> Response:
        form = await form_fields(request)
        token = form.get("token", "").strip()[:200]
        tries = f"passflow:console:sign-in:{_client_key(request)}"
        client = runtime().redis

        def take_try() -> int:
            """A try is taken before the token is checked, atomically: concurrent tries
            cannot all read the count below the limit (it is given back on success)."""
            pipe = client.pipeline()
            pipe.incr(tries)
            pipe.expire(tries, 60, nx=True)
            return int(pipe.execute()[0])

        if await run_in_threadpool(take_try) > SIGN_IN_TRIES_PER_MINUTE:
            return page(request, "sign_in.html", None, 429,
                        error="Too many failed sign-ins from this address: wait a minute.")
        await checker.fresh()
        holder = checker.holder_of(token) if token else None
        if holder is None and token:  # a token made a moment ago: read them again (1/s)
            await checker.fresh(max_age_s=1.0)
            holder = checker.holder_of(token)
        if holder is None or "read" not in GRANTS.get(holder[0], frozenset()):
            why = ("That token is not valid (revoked, mistyped, or not a passflow API token)."
                   if holder is None else
                   f"That token's scope is {holder[0]}: the console needs read, personal or "
                   "admin.")
            log.info("console_sign_in_refused", scope=holder[0] if holder else None)
            return page(request, "sign_in.html", None, 401 if holder is None else 403,
                        error=why)
        await run_in_threadpool(client.decr, tries)  # a good token costs no try
        cookie = await run_in_threadpool(sessions.start, token_hash(token))
        await run_in_threadpool(_audited, f"console:{holder.name}", "console.sign_in",
                                holder.scope)
        log.info("console_signed_in", token_name=holder.name, scope=holder.scope)
        answer = RedirectResponse("/console/overview", status_code=303)
        answer.set_cookie(COOKIE, cookie, max_age=CONSOLE_SESSION_S, path="/console",
                          httponly=True, samesite="strict", secure=secure_cookie)
        return answer

    @router.post("/sign-out")
    async def sign_out(request: Request) -> Response:
        viewer, _ = await acting(request, admin=False)
        await run_in_threadpool(sessions.end, request.cookies.get(COOKIE))
        await run_in_threadpool(_audited, f"console:{viewer.name}", "console.sign_out",
                                viewer.scope)
        log.info("console_signed_out", token_name=viewer.name)
        answer = RedirectResponse("/console", status_code=303)
        answer.delete_cookie(COOKIE, path="/console", httponly=True, samesite="strict",
                             secure=secure_cookie)
        return answer

    # Static files -----------------------------------------------------------------------

    assets = {name: (_STATIC / name).read_bytes() for name in ("console.js", "console.css")}

    @router.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in assets:
            raise HTTPException(404, "no such file")
        media = "text/javascript" if name.endswith(".js") else "text/css"
        return Response(assets[name], media_type=media,
                        headers={"Cache-Control": "public, max-age=3600"})

    # Search -----------------------------------------------------------------------------

    @router.get("/search", response_class=HTMLResponse)
    def search(request: Request,
            viewer: Viewer = signed_in_viewer) -> Response:
        query = request.query_params.get("q", "").strip()[:200]
        if not query:
            return RedirectResponse("/console/overview", status_code=303)
        with session_scope() as session:
            found = find(session, query, cipher)
        target = None if found is None else f"/console/{found[0]}s/{found[1]}"
        if target is not None:
            return RedirectResponse(target, status_code=303)
        return page(request, "not_found.html", viewer, 404, query=query)

    # A device's timeline ----------------------------------------------------------------

    # Device ids may hold a slash (`{device_id:path}`): the export is routed first.
    @router.get("/devices/{device_id:path}/export.csv")
    def export(request: Request, device_id: str,
            viewer: Viewer = signed_in_viewer) -> Response:
        rows: list[dict[str, Any]] = []
        cursor = None
        while True:  # every page: a device's history is bounded by retention
            entries, cursor = _timeline(device_id, viewer, cursor, 500)
            rows.extend(entries)
            if cursor is None:
                break
        out = io.StringIO()
        columns = ["at", "kind", "outcome", "service_provider", "mvpd", "resource",
                   "error_code", "error_action", "action_in_words", "reason", "code",
                   "profile_type", "not_after", "time_to_log_in_s", "job_id"]
        writer = csv.DictWriter(out, columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_safe(row.get(k)) for k in columns})
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", device_id)[:80]
        return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": f'attachment; filename="passflow-{name}.csv"',
            "Cache-Control": "no-store"})

    def _timeline(device_id: str, viewer: Viewer, cursor: str | None,
                  limit: int) -> tuple[list[dict[str, Any]], str | None]:
        try:
            with session_scope() as session:
                entries, next_cursor = history(session, HistoryQuery(
                    device_id=device_id[:200], limit=limit, cursor=cursor,
                    service_providers=viewer.brands), cipher if viewer.personal else None)
                sessions_of = {e["job_id"] for e in entries if e["kind"] == "session"}
                logins = login_times(session, sessions_of)
                attributes = (_attributes(session, cipher, {
                    e["job_id"] for e in entries if e["kind"] == "profile"})
                    if viewer.personal else {})
        except BadCursor as exc:
            raise HTTPException(422, "that page link is not valid") from exc
        for entry in entries:
            entry["action_in_words"] = action_in_words(entry.get("error_action"))
            entry["time_to_log_in_s"] = logins.get(entry["job_id"]) \
                if entry["kind"] == "session" else None
            if entry["kind"] == "profile" and viewer.personal:
                entry["attributes"] = attributes.get(entry["job_id"])
        return entries, next_cursor


    @router.get("/devices/{device_id:path}", response_class=HTMLResponse)
    def device(request: Request, device_id: str,
            viewer: Viewer = signed_in_viewer) -> Response:
        cursor = request.query_params.get("cursor")
        entries, next_cursor = _timeline(device_id, viewer, cursor, TIMELINE_PAGE)
        return page(request, "device.html", viewer, device_id=device_id, entries=entries,
                    next_cursor=next_cursor)

    # Jobs -------------------------------------------------------------------------------

    @router.get("/jobs", response_class=HTMLResponse)
    def job_list(request: Request,
            viewer: Viewer = signed_in_viewer) -> Response:
        filters = _job_filters(request.query_params)
        query = JobQuery(**filters, limit=100, cursor=request.query_params.get("cursor"),
                         service_providers=viewer.brands)
        try:
            with session_scope() as session:
                found, next_cursor = jobs_page(session, query)
        except BadCursor as exc:
            raise HTTPException(422, "that page link is not valid") from exc
        for job in found:
            job["action_in_words"] = action_in_words(job.get("error_action"))
        shown = {k: request.query_params.get(k, "") for k in _FILTERS}
        more = urlencode({**_nonempty(shown), "cursor": next_cursor}) if next_cursor else None
        return page(request, "jobs.html", viewer, jobs=found, filters=shown,
                    statuses=[s.value for s in JobStatus], types=[t.value for t in EventType],
                    next_link=f"/console/jobs?{more}" if more else None,
                    retry_all=viewer.admin and filters.get("status") == JobStatus.FAILED.value)

    @router.get("/jobs/{job_id}", response_class=HTMLResponse)
    def job_page(request: Request, job_id: str,
            viewer: Viewer = signed_in_viewer) -> Response:
        with session_scope() as session:
            job = session.get(Job, job_id[:36])
            if job is None or not viewer.sees(job.service_provider):
                return page(request, "not_found.html", viewer, 404, query=job_id[:36])
            view = job_view(session, job, cipher if viewer.personal else None)
            payload = job.event.payload
        error = view.get("error") or {}
        return page(request, "job.html", viewer, job=view, error=error,
                    event=_event_shown(payload or {}, viewer), retries=view["retried_by"],
                    can_retry=viewer.admin and view["status"] == JobStatus.FAILED.value)

    @router.post("/jobs/{job_id}/retry")
    async def retry_one(request: Request, job_id: str) -> Response:
        viewer, _ = await acting(request, admin=True)
        if not await run_in_threadpool(_visible, viewer, job_id[:36]):
            raise HTTPException(404, "job not found")
        try:
            new_id = await run_in_threadpool(dispatch.retry, job_id[:36],
                                             requested_by=viewer.actor)
        except LookupError as exc:
            raise HTTPException(404, "job not found") from exc
        except jobs.NotRetryable as exc:
            raise HTTPException(409, str(exc)) from exc
        log.info("console_retry", job_id=job_id, new_job=new_id, token_name=viewer.name)
        return RedirectResponse(f"/console/jobs/{new_id}?retried={job_id}", status_code=303)

    @router.post("/jobs/retry")
    async def retry_all(request: Request) -> Response:
        """Every failed job of the filter not retried yet, retried as the API's and the CLI's
        bulk retry does (dispatch.retry_many: at most its limit, audited); the page lists the
        new jobs and says how many are left."""
        viewer, form = await acting(request, admin=True)
        filters = {k: v for k, v in _job_filters(form).items() if k != "status"}
        report = await run_in_threadpool(functools.partial(
            dispatch.retry_many, JobQuery(**filters, service_providers=viewer.brands),
            requested_by=viewer.actor))
        done = ([(r["job_id"], r["new_job_id"], None) for r in report["retried"]]
                + [(r["job_id"], None, r["reason"]) for r in report["refused"]])
        log.info("console_retry_all", jobs=len(done), token_name=viewer.name)
        return page(request, "retried.html", viewer, done=done, left=report["left"])

    # Overview ---------------------------------------------------------------------------

    @router.get("/overview", response_class=HTMLResponse)
    def overview(request: Request,
            viewer: Viewer = signed_in_viewer) -> Response:
        if viewer.brands is not None:  # the figures count every brand
            return page(request, "brands_only.html", viewer, brands=sorted(viewer.brands))
        window = _window(request)
        return page(request, "overview.html", viewer, window=window,
                    windows=list(WINDOWS), panels=_panels(window))

    @router.get("/overview/panels", response_class=HTMLResponse)
    def overview_panels(request: Request,
            viewer: Viewer = signed_in_viewer) -> Response:
        """The panels alone: what console.js swaps in every few seconds."""
        if viewer.brands is not None:
            raise HTTPException(403, "the figures count every brand")
        window = _window(request)
        return page(request, "panels.html", viewer, window=window, panels=_panels(window))

    def _panels(window: str) -> dict[str, Any]:
        span = stats.span_of(None, None, window)
        figures = {name: stats.figures(name, span) for name in stats.WINDOWED}
        figures["backlog"] = stats.backlog()
        try:
            figures["sweeper"] = stats.sweeper(settings)
        except Exception as exc:  # the broker is down: the page still shows the rest
            figures["sweeper"] = {"held_by": None, "status": f"unknown ({type(exc).__name__})"}
        query = urlencode({"since": span.describe()["since"], "until": span.describe()["until"]})
        return {"figures": figures, "query": query,
                "decisions_svg": charts.stacked_bars(
                    figures["decisions"]["series"], ("Permit", "Deny"),
                    title="Decisions per bar of the window, Permit and Deny"),
                "denies_svg": charts.horizontal_bars(
                    [(f"{d['mvpd']}: {d['error_code'] or 'no code'}", d["count"])
                     for d in figures["denies"]["by_provider"][:10]],
                    title="Denies by provider and code"),
                "funnel_svg": charts.horizontal_bars(
                    [(label, figures["authentication"][key]) for key, label in _FUNNEL],
                    title="Authentication funnel")}

    return router


_FUNNEL = (("sessions_created", "sessions created"), ("logged_in", "users logged in"),
           ("profiles_received", "profiles received"), ("expired", "expired"))
_FILTERS = ("status", "type", "step", "mvpd", "service_provider", "device_id", "event_id",
            "since", "until")


def _nonempty(values: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in values.items() if v}


def _job_filters(params: Any) -> dict[str, Any]:
    """The jobs filters of a query string or a form, checked: 422 on an unknown status or
    type, or a bad time."""
    out: dict[str, Any] = {}
    for name in ("status", "type", "step", "mvpd", "service_provider", "device_id",
                 "event_id"):
        value = (params.get(name) or "").strip()[:200]
        if value:
            out[name] = value
    if "status" in out and out["status"] not in {s.value for s in JobStatus}:
        raise HTTPException(422, f"no such status: {out['status']}")
    if "type" in out and out["type"] not in {t.value for t in EventType}:
        raise HTTPException(422, f"no such job type: {out['type']}")
    for name in ("since", "until"):
        at = _when(params.get(name))
        if at is not None:
            out[name] = at
    return out


def _window(request: Request) -> str:
    window = request.query_params.get("window", "hour")
    if window not in WINDOWS:
        raise HTTPException(422, f"window is one of {', '.join(WINDOWS)}")
    return window


def _attributes(session: Any, cipher: Cipher, job_ids: set[str]) -> dict[str, Any]:
    """The profiles' attributes (decrypted) by job, for a viewer who may see them."""
    if not job_ids:
        return {}
    return {p.job_id: profile_view(p, cipher).get("attributes")
            for p in session.scalars(select(Profile).where(Profile.job_id.in_(job_ids)))}


def _event_shown(payload: dict[str, Any], viewer: Viewer) -> dict[str, Any]:
    """The event as it came, minus what the viewer may not see: secrets always (sealed
    fields are stored encrypted, apart from the payload), the device's address without
    `personal`."""
    shown = json.loads(json.dumps(payload))
    if not viewer.personal and isinstance(shown.get("device"), dict):
        for key in ("ip", "port"):
            if key in shown["device"]:
                shown["device"][key] = "(personal)"
    return shown


def _seconds(value: float | None) -> str:
    """A duration as a person reads it: 15 ms, 2.4 s, 95 s."""
    if value is None:
        return "–"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    return f"{value:.1f} s" if value < 10 else f"{value:.0f} s"


def _csv_safe(value: Any) -> Any:
    """No spreadsheet formula from a cell: a value starting with = + - @ is quoted."""
    # Spreadsheets skip leading blanks before a formula: " =1+1" is one too.
    if isinstance(value, str) and value.lstrip(" \t\r\n")[:1] in ("=", "+", "-", "@") \
            or isinstance(value, str) and value[:1] in ("\t", "\r"):
        return "'" + value
    return value

