"""The HTTP API (docs/api.md): events in, jobs and history out, health and metrics."""

from __future__ import annotations

import json
import time
import uuid
from enum import Enum
from typing import Annotated, Any

import redis
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Info,
    ProcessCollector,
    generate_latest,
)
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    InterfaceError,
    OperationalError,
    ProgrammingError,
)
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from api import problems
from api.auth import TokenChecker, brand_allowed, brands_of, sees_personal_data
from api.context import RequestContext
from api.forwarded import TrustedProxies
from api.intake import Intake
from api.limits import Guards
from api.metrics import (
    FleetCollector,
    JobsCollector,
    PoolExporter,
    PoolOnly,
    RedisMetricsCollector,
    ReplicaCollector,
    SweeperCollector,
    WorkerProcessCollector,
)
from api.schemas import (
    PRINTABLE,
    Accepted,
    HistoryPage,
    Instant,
    JobsPage,
    JobView,
    Landed,
    RetryFilter,
    RetryReport,
    ValidationProblem,
)
from models import Job, JobStatus, Registration, audit
from models.db import session_scope
from models.history import (
    OUTCOME_KINDS,
    BadCursor,
    HistoryQuery,
    JobQuery,
    history,
    jobs_page,
)
from passflow import logs
from passflow.crypto import cipher_from_settings
from passflow.database import build_info, runs_on
from passflow.events import EventIn, EventType
from passflow.settings import DEFAULT_PUBLIC_URL, Settings, get_settings
from worker import dispatch, jobs, metrics
from worker.heartbeat import live_workers, queues_state, unconsumed
from worker.queues import ALL_QUEUES
from worker.runtime import runtime
from worker.sweeper import last_sweep
from worker.views import job_view

log = logs.get_logger(__name__)



Outcome = Enum("Outcome", {name: name for name in OUTCOME_KINDS}, type=str)  # type: ignore[misc]


# How long /readyz reuses its reading of the fleet's checks.
FLEET_FRESH_S = 5.0


def known_query(*names: str) -> Any:
    """A dependency refusing query parameters the route does not know (a typo in a filter
    must not silently return everything), and a filter given twice (one of the two would be
    dropped silently)."""
    allowed = frozenset(names)

    def check(request: Request) -> None:
        unknown = sorted(set(request.query_params) - allowed)
        repeated = sorted(name for name in set(request.query_params) & allowed
                          if len(request.query_params.getlist(name)) > 1)
        problems = [{"field": name, "type": "unknown_parameter",
                     "message": f"unknown parameter; known: {', '.join(sorted(allowed))}"}
                    for name in unknown]
        problems += [{"field": name, "type": "repeated_parameter",
                      "message": "given more than once: one value per filter"}
                     for name in repeated]
        if problems:
            raise HTTPException(422, problems)

    return Depends(check)


def _problems(exc: ValidationError) -> list[dict[str, str]]:
    return [{"field": ".".join(str(p) for p in err["loc"]) or "body", "message": err["msg"],
             "type": err["type"]} for err in exc.errors(include_url=False)]


def _unprocessable(problems: list[dict[str, str]]) -> JSONResponse:
    return JSONResponse(problems, status_code=422)


# Deeper than any event passflow reads (device info, a TempPass identity) nests.
MAX_JSON_DEPTH = 16
_TOO_DEEP = object()


def _too_deep(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether parsed JSON nests deeper than `limit`: iterative, so no depth overflows it."""
    level = [value]
    for _ in range(limit + 1):
        level = [child for item in level if isinstance(item, dict | list)
                 for child in (item.values() if isinstance(item, dict) else item)]
        if not level:
            return False
    return True


def _schema_missing(exc: Exception) -> bool:
    """A permanent fault said as a transient one by the driver: SQLite reports a missing table
    as an OperationalError (PostgreSQL's UndefinedTable is a ProgrammingError)."""
    text_ = str(getattr(exc, "orig", exc))
    return isinstance(exc, ProgrammingError) or text_.startswith(("no such table",
                                                                   "no such column"))


def create_app(settings: Settings | None = None, *, tokens: list[str] | None = None,
               served_at: str | None = None) -> FastAPI:
    """The API. `served_at`: the URL this process listens on, the public URL when
    PASSFLOW_PUBLIC_URL is unset (published for the workers' redirect URLs)."""
    settings = settings or get_settings()
    public_url = settings.public_url or served_at or DEFAULT_PUBLIC_URL
    if served_at and not settings.public_url:
        try:
            runtime().publish_public_url(served_at)
        except redis.RedisError as exc:
            log.warning("public_url_not_published", error=type(exc).__name__)
    if tokens is None:
        tokens = [settings.api_token.get_secret_value()] if settings.api_token else []
    checker = TokenChecker(tokens)
    event_context = {"devices_share_address": settings.devices_share_address}
    intake = Intake(default_service_provider=settings.service_provider,
                    linger_s=settings.intake_linger_ms / 1000)
    cipher = cipher_from_settings()
    ingest = [Depends(checker.require("ingest"))]
    authorized = [Depends(checker.require("read"))]
    monitoring = [Depends(checker.require_every_brand("metrics"))]
    every_brand = [Depends(checker.require_every_brand("read"))]
    admin = [Depends(checker.require("admin"))]

    public_docs = settings.api_docs
    build = build_info()
    app = FastAPI(title="passflow", version=f"{build['version']} (schema {build['schema']})",
                  description="Adobe Pass REST API V2 cookbook steps as jobs (docs/api.md). "
                              "Errors are RFC 9457 problem details.",
                  responses=problems.RESPONSES,
                  # "/landing/" is a 404, not a redirect built from the request's Host header
                  # (an open redirect for anyone who can set it).
                  redirect_slashes=False,
                  **({} if public_docs else {"docs_url": None, "redoc_url": None,
                                             "openapi_url": None}))
    app.add_middleware(Guards, public_url=settings.public_url, on_refused_origin=lambda got,
                       expected: log.warning("page_post_from_another_origin", origin=got,
                                             expected=expected, setting="PASSFLOW_PUBLIC_URL"))
    app.add_middleware(RequestContext)  # every line of the request has its id
    app.add_middleware(TrustedProxies, trusted=settings.trusted_proxies)  # outermost
    metrics.start_reporter(lambda: runtime().redis)  # counts reach Redis off the event loop
    problems.install(app)

    if not public_docs:
        @app.get("/openapi.json", dependencies=authorized, include_in_schema=False)
        def openapi_document() -> dict[str, Any]:
            return app.openapi()

    @app.get("/livez", include_in_schema=True)
    def livez() -> dict[str, str]:
        """The process answers (no token: for a load balancer or an orchestrator)."""
        return {"status": "ok"}

    async def database_error(_: Request, exc: Exception) -> JSONResponse:
        """Only a database that cannot be reached is "retry shortly" (503); a value it refuses
        is the request's fault (422); a missing schema or anything else is a fault of ours,
        said as one (500). Nothing was stored either way: the transaction failed whole."""
        cause = exc.orig if isinstance(exc, DBAPIError) else exc
        if _schema_missing(exc):
            log.error("database_schema_missing", error=str(cause).splitlines()[0])
            return problems.problem(500, "the database lacks passflow's tables or columns "
                                         "(run `passflow db upgrade`); retrying will not help")
        if isinstance(exc, OperationalError | InterfaceError | SQLAlchemyTimeoutError):
            log.warning("database_unavailable", error=type(cause).__name__)
            return problems.problem(503, "the database is unavailable; retry shortly",
                                    headers={"Retry-After": "2"})
        if isinstance(exc, DataError):
            return problems.problem(422, "a value the database cannot store or compare (e.g. "
                                         "a NUL character, a number out of range)")
        log.error("database_error", error=type(cause).__name__)
        return problems.problem(500, "the request failed in the database; this is a fault of "
                                     "passflow's, not of the request")

    async def bad_cursor(_: Request, exc: Exception) -> JSONResponse:
        return problems.problem(422, "the request has 1 problem(s)", errors=[
            {"field": "query.cursor", "type": "cursor", "message": str(exc)}])

    async def client_left(request: Request, _: Exception) -> Response:
        """The client went away before its body arrived (closed, or evicted as the slowest
        when every place was taken): nothing to answer, nothing of ours failed. One INFO line,
        no traceback, and no 5xx for an alert to count (nginx's 499)."""
        log.info("client_left", path=request.url.path)
        return Response(status_code=499)

    app.add_exception_handler(BadCursor, bad_cursor)
    app.add_exception_handler(ClientDisconnect, client_left)
    # A failed statement or connection, or no pooled connection free in time.
    app.add_exception_handler(DBAPIError, database_error)
    app.add_exception_handler(SQLAlchemyTimeoutError, database_error)

    registry = CollectorRegistry()
    exporter = PoolExporter(settings.broker_url, replica=uuid.uuid4().hex)
    for pool_wide in (JobsCollector(), SweeperCollector(settings.broker_url, settings.database_url),
                      WorkerProcessCollector(settings.broker_url),
                      FleetCollector(settings.broker_url, settings.lease_s),
                      RedisMetricsCollector(settings.broker_url)):
        registry.register(PoolOnly(pool_wide, exporter))
    registry.register(ReplicaCollector(settings.broker_url, exporter))
    app.router.on_shutdown.append(exporter.release)
    ProcessCollector(registry=registry)  # this API process: memory, CPU, open files
    Info("passflow_build", "The version of passflow and the schema revision it needs",
         registry=registry).info(build)

    @app.post("/v1/events", status_code=202, dependencies=ingest,
              responses={200: {"model": Accepted, "description": "event_id seen before"},
                         202: {"model": Accepted}, 401: {}, 403: {}, 413: {},
                         422: {"model": list[ValidationProblem]}},
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": {"$ref": "#/components/schemas/EventIn"}}}}})
    async def post_event(request: Request) -> Response:
        raw = await request.body()  # bounded by api.limits.Guards before it is read
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return _unprocessable([{"field": "body", "message": "not valid JSON",
                                    "type": "json_invalid"}])
        except RecursionError:
            data = _TOO_DEEP  # nested beyond the parser's own limit
        if data is _TOO_DEEP or _too_deep(data):
            return _unprocessable([{"field": "body", "type": "json_too_deep", "message":
                                    f"nested deeper than {MAX_JSON_DEPTH} levels"}])
        if not isinstance(data, dict):
            return _unprocessable([{"field": "body", "message": "must be a JSON object",
                                    "type": "object_type"}])
        try:
            event = EventIn.model_validate(data, context=event_context)
        except ValidationError as exc:
            return _unprocessable(_problems(exc))
        brand = event.service_provider or settings.service_provider
        if not brand_allowed(request, brand):
            return JSONResponse({"detail": f"this token may not send events of {brand}"},
                                status_code=403)
        if brand != settings.service_provider and not await run_in_threadpool(
                runtime().served, brand):
            return _unprocessable([{
                "field": "service_provider", "type": "not_served", "message":
                    "not a service provider this deployment serves (`passflow "
                    "service-providers list`; `add` one with its software statement)"}])
        accepted = await intake.submit(event, request.state.request_id)
        metrics.inc("passflow_events_total",
                           (event.type, "accepted" if accepted.created else "repeated"))
        # Routine (debug): the event's row and passflow_events_total already say it.
        log.debug("event_accepted" if accepted.created else "event_repeated",
                 event_id=event.event_id, job_id=accepted.job_id, type=event.type,
                 device_id=event.device.id)
        answer: dict[str, Any] = {"job_id": accepted.job_id, "status": accepted.status}
        if event.warnings:
            answer["warnings"] = event.warnings
            log.warning("event_warnings", event_id=event.event_id, warnings=event.warnings)
        return JSONResponse(answer, status_code=202 if accepted.created else 200)

    @app.get("/v1/jobs/{job_id}", dependencies=authorized)
    def get_job(job_id: str, request: Request) -> JobView:
        with session_scope() as session:
            job = session.get(Job, job_id)
            if job is None or not brand_allowed(request, job.service_provider):
                raise HTTPException(404, "job not found")
            return JobView.model_validate(
                job_view(session, job, cipher if sees_personal_data(request) else None))

    @app.delete("/v1/jobs/{job_id}", dependencies=admin)
    def cancel_job(job_id: str, request: Request) -> JobView:
        """Cancel a job that is not final yet (a pending poll stops at once); audited, and the
        job's error says who cancelled it."""
        who = f"api:{getattr(request.state, 'token_name', 'unknown')}"
        with session_scope() as session:
            job = session.get(Job, job_id)
            if job is None or not brand_allowed(request, job.service_provider):
                raise HTTPException(404, "job not found")
            if not jobs.cancel(session, [job_id], message=f"cancelled by {who}"):
                raise HTTPException(409, f"job is already {job.status}")
            audit.record(session, who, "job.cancel", job_id)
        with session_scope() as session:
            return JobView.model_validate(job_view(session, session.get(Job, job_id), cipher))

    @app.get("/v1/history", dependencies=[*authorized, known_query(
        "device_id", "mvpd", "resource", "job_id", "outcome", "since", "until", "limit",
        "cursor", "service_provider")])
    def get_history(
        request: Request,
        device_id: Annotated[str | None, Query(max_length=200, pattern=PRINTABLE)] = None,
        service_provider: Annotated[str | None, Query(max_length=200,
                                                      pattern=PRINTABLE)] = None,
        mvpd: Annotated[str | None, Query(max_length=200, pattern=PRINTABLE)] = None,
        resource: Annotated[str | None, Query(max_length=500, pattern=PRINTABLE)] = None,
        job_id: Annotated[str | None, Query(max_length=36, pattern=PRINTABLE)] = None,
        outcome: Outcome | None = None,
        since: Instant | None = None,
        until: Instant | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: Annotated[str | None, Query(max_length=200)] = None,
    ) -> HistoryPage:
        """Entitlement history, newest first: sessions, profiles, decisions, logouts, and the
        attempts that failed, expired or were cancelled (`kind: job`) with their error code,
        action and reason."""
        query = HistoryQuery(device_id=device_id, mvpd=mvpd, resource=resource, since=since,
                             until=until, limit=limit, cursor=cursor, job_id=job_id,
                             outcome=outcome, service_provider=service_provider,
                             service_providers=brands_of(request))
        with session_scope() as session:
            entries, next_cursor = history(session, query,
                                           cipher if sees_personal_data(request) else None)
        return HistoryPage(entries=entries, next_cursor=next_cursor)

    @app.get("/v1/jobs", dependencies=[*authorized, known_query(
        "status", "type", "device_id", "event_id", "since", "until", "limit", "cursor",
        "service_provider", "step", "mvpd")])
    def list_jobs(
        request: Request,
        status: JobStatus | None = None,
        type: EventType | None = None,  # noqa: A002 (the contract's name)
        service_provider: Annotated[str | None, Query(max_length=200,
                                                      pattern=PRINTABLE)] = None,
        device_id: Annotated[str | None, Query(max_length=200, pattern=PRINTABLE)] = None,
        event_id: Annotated[str | None, Query(max_length=200, pattern=PRINTABLE)] = None,
        step: Annotated[str | None, Query(max_length=64, pattern=PRINTABLE)] = None,
        mvpd: Annotated[str | None, Query(max_length=200, pattern=PRINTABLE)] = None,
        since: Instant | None = None,
        until: Instant | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: Annotated[str | None, Query(max_length=200)] = None,
    ) -> JobsPage:
        """Jobs newest first; an event id finds its first job and every retry of it; `step`:
        jobs that ran that step or are at it (a failed job: the steps it ran)."""
        query = JobQuery(status=status, type=type, device_id=device_id, event_id=event_id,
                         since=since, until=until, limit=limit, cursor=cursor,
                         service_provider=service_provider, step=step, mvpd=mvpd,
                         service_providers=brands_of(request))
        with session_scope() as session:
            found, next_cursor = jobs_page(session, query)
        return JobsPage(jobs=found, next_cursor=next_cursor)

    @app.post("/v1/jobs/retry", dependencies=admin)
    def retry_jobs(given: RetryFilter, request: Request) -> RetryReport:
        """Run again every failed job the filter matches that no job retries yet (at most
        `limit` a call, newest first; `left` says how many more match): each retried as one
        job is, and the whole act audited with its filter and counts. `dry_run` only counts
        them, by error code."""
        who = f"api:{getattr(request.state, 'token_name', 'unknown')}"
        fields = given.model_dump(exclude={"dry_run", "limit"})
        query = JobQuery(**fields, service_providers=brands_of(request))
        return RetryReport.model_validate(dispatch.retry_many(
            query, requested_by=who, dry_run=given.dry_run, limit=given.limit))

    @app.post("/v1/jobs/{job_id}/retry", status_code=201, dependencies=admin)
    def retry_job(job_id: str, request: Request) -> JobView:
        """Run a failed job again: a new job for the same event, linked to it (`retry_of`)
        and saying who asked (`requested_by`); the failed one stays in the history."""
        who = f"api:{getattr(request.state, 'token_name', 'unknown')}"
        with session_scope() as session:
            job = session.get(Job, job_id)
            if job is None or not brand_allowed(request, job.service_provider):
                raise HTTPException(404, "job not found")
        try:
            new_id = dispatch.retry(job_id, requested_by=who)
        except LookupError as exc:
            raise HTTPException(404, "job not found") from exc
        except jobs.NotRetryable as exc:
            raise HTTPException(409, str(exc)) from exc
        with session_scope() as session:
            return JobView.model_validate(job_view(
                session, session.get(Job, new_id), cipher if sees_personal_data(request) else None))

    def readiness() -> dict[str, Any]:
        """This process can serve: its database answers with passflow's schema at a revision
        this code runs on, and its broker answers. Nothing about the fleet: a load balancer
        acting on it must not pull every replica for a fault no replica can fix."""
        checks: dict[str, Any] = {"database": "ok", "broker": "ok"}
        try:
            with session_scope() as session:
                problem = runs_on(session.connection())
            if problem is not None:
                checks["database"] = f"schema {problem}"
        except Exception as exc:
            checks["database"] = (f"failing: {type(exc).__name__}"
                                  + (" (no passflow schema: run `passflow db upgrade`)"
                                     if _schema_missing(exc) else ""))
        client = redis.Redis.from_url(settings.broker_url, socket_timeout=2,
                                      socket_connect_timeout=2)
        try:
            client.ping()
        except redis.RedisError as exc:
            checks["broker"] = f"failing: {type(exc).__name__}"
        finally:
            client.close()
        return checks

    readiness_names = ("database", "broker")
    fleet_seen: list[Any] = [[], float("-inf")]  # the fleet's failing checks, when read

    def health() -> tuple[list[str], dict[str, Any]]:
        """The failing checks' names, and every check: this process's (readiness), then the
        fleet's: the registration, and the age of the last sweep (stale: no worker is
        sweeping, so polls and retries are not sent)."""
        checks: dict[str, Any] = {**readiness(), "registration": "ok",
                                  "sweeper": {"status": "unknown"}}
        try:
            with session_scope() as session:
                problem = session.execute(
                    select(Registration.problem, Registration.problem_at).where(
                        Registration.base_url == settings.pass_base_url,
                        Registration.problem.is_not(None))).first()
            if problem is not None:
                checks["registration"] = (
                    f"failing since {problem.problem_at:%Y-%m-%d %H:%M} UTC: {problem.problem}; "
                    "run `passflow register`")
        except Exception as exc:
            checks["registration"] = f"unknown: {type(exc).__name__}"
        client = redis.Redis.from_url(settings.broker_url, socket_timeout=2,
                                      socket_connect_timeout=2)
        try:
            checks["sweeper"] = last_sweep(client, settings.database_url)
            idle = unconsumed(queues_state(client, ALL_QUEUES))
            checks["queues"] = ("ok" if not idle else "work waiting with no worker consuming: "
                                + ", ".join(idle) + " (start a worker with --queues for it)")
        except redis.RedisError as exc:
            checks["sweeper"] = {"status": "unknown", "error": type(exc).__name__}
        finally:
            client.close()
        failing = [name for name, value in checks.items()
                   if (value.get("status") if isinstance(value, dict) else value) != "ok"]
        return failing, checks

    @app.get("/healthz", dependencies=monitoring)
    def healthz() -> JSONResponse:
        """Every check with its detail; 503 when any fails."""
        failing, checks = health()
        return JSONResponse({"status": "failing" if failing else "ok", **build, **checks},
                            status_code=503 if failing else 200)

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        """Ready for traffic (no token: for a load balancer): 503 only when this process's
        database (with a schema it runs on) or broker fails. The fleet's failing checks (the
        sweeper, the registration, a queue with no consumer) are named in `fleet` and never
        fail the probe. Only names are said; their detail is in /healthz."""
        failing = [name for name, value in readiness().items() if value != "ok"]
        # The fleet's problems are named (a queue with no consumer, no sweeper, a refused
        # registration) but never fail this replica's probe: no replica can fix them. Read at
        # most every FLEET_FRESH_S: an anonymous probe must not cost a scan each time.
        now = time.monotonic()
        if now - fleet_seen[1] > FLEET_FRESH_S:
            failing_now, _ = health()
            fleet_seen[:] = [[n for n in failing_now if n not in readiness_names], now]
        fleet = fleet_seen[0]
        return JSONResponse({"status": "failing" if failing else "ok", "failing": failing,
                             "fleet": fleet}, status_code=503 if failing else 200)

    @app.get("/v1/workers", dependencies=every_brand)
    def workers() -> dict[str, Any]:
        """The live workers (id, name, host, pid, queues, pool, last beat) and, per queue, the
        messages waiting, its consumers and its oldest message's age: a job's lease owner
        starts with the id of the worker holding it."""
        client = redis.Redis.from_url(settings.broker_url, socket_timeout=2,
                                      socket_connect_timeout=2)
        try:
            return {"workers": live_workers(client), "queues": queues_state(client, ALL_QUEUES)}
        finally:
            client.close()

    @app.get("/metrics", dependencies=monitoring, response_class=Response)
    def metrics_page() -> Response:
        metrics.flush(runtime().redis, min_interval_s=0.0)  # this process's counts first
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    from api import console, stats
    from api.activation import build_router, start_polling

    app.include_router(build_router(settings, public_url))
    app.include_router(stats.build_router(settings, every_brand))
    app.include_router(console.build_router(
        settings, checker, cipher, secure_cookie=public_url.startswith("https://")))

    @app.post("/v1/jobs/{job_id}/landed", dependencies=ingest)
    def landed(job_id: str) -> Landed:
        """The app's own redirect page was reached: start polling now (primary screen)."""
        with session_scope() as session:
            if session.get(Job, job_id) is None:
                raise HTTPException(404, "job not found")
        return Landed(job_id=job_id, polling=start_polling(job_id))

    _document_event_schema(app)
    return app


def _document_event_schema(app: FastAPI) -> None:
    """The event body is parsed by hand (size limit, the 422 list), so its schema is added to
    the OpenAPI document here."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            schema = EventIn.model_json_schema(ref_template="#/components/schemas/{model}")
            components = document.setdefault("components", {}).setdefault("schemas", {})
            components.update(schema.pop("$defs", {}))
            components["EventIn"] = schema
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
