"""The HTTP API (docs/api.md): the application and its routers, one per resource: events
(api.events), jobs (api.jobs), history (api.history), health (api.health), metrics
(api.metrics), figures (api.stats), the activation page (api.activation) and the console
(api.console). Who may call what is api.auth's `Access`; errors are api.problems'."""

from __future__ import annotations

from typing import Any

import redis
from fastapi import FastAPI

from api import console, events, health, history, jobs, problems, stats
from api import metrics as metrics_routes
from api.activation import build_router as activation_router
from api.auth import Access, TokenChecker
from api.context import RequestContext
from api.forwarded import TrustedProxies
from api.limits import Guards
from passflow import logs
from passflow.crypto import cipher_from_settings
from passflow.database import build_info
from passflow.settings import DEFAULT_PUBLIC_URL, Settings, get_settings
from worker import metrics
from worker.runtime import runtime

log = logs.get_logger(__name__)


def create_app(settings: Settings | None = None, *, tokens: list[str] | None = None,
               served_at: str | None = None) -> FastAPI:
    """The API. `served_at`: the URL this process listens on, the public URL when
    PASSFLOW_PUBLIC_URL is unset (published for the workers' redirect URLs)."""
    settings = settings or get_settings()
    public_url = _public_url(settings, served_at)
    if tokens is None:
        tokens = [settings.api_token.get_secret_value()] if settings.api_token else []
    checker = TokenChecker(tokens)
    access, cipher = Access(checker), cipher_from_settings()
    app = _application(settings, access)
    for router in (events.build_router(settings, access), jobs.build_router(access, cipher),
                   history.build_router(access, cipher), health.build_router(settings, access),
                   metrics_routes.build_router(settings, access),
                   activation_router(settings, public_url),
                   stats.build_router(settings, access.every_brand),
                   console.build_router(settings, checker, cipher,
                                        secure_cookie=public_url.startswith("https://"))):
        app.include_router(router)
    console.install(app)
    events.document_event_schema(app)
    return app


def _public_url(settings: Settings, served_at: str | None) -> str:
    """The public URL: the setting, else where this process listens (published in Redis for
    the workers), else the default."""
    if served_at and not settings.public_url:
        try:
            runtime().publish_public_url(served_at)
        except redis.RedisError as exc:
            log.warning("public_url_not_published", error=type(exc).__name__)
    return settings.public_url or served_at or DEFAULT_PUBLIC_URL


def _application(settings: Settings, access: Access) -> FastAPI:
    """The application with its middleware (outermost last) and its error answers."""
    public_docs, build = settings.api_docs, build_info()
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
        @app.get("/openapi.json", dependencies=access.read, include_in_schema=False)
        def openapi_document() -> dict[str, Any]:
            return app.openapi()
    return app
