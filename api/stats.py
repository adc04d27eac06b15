"""`GET /v1/stats/...`: the figures behind each chart of the operations console, as JSON for any
tool (docs/api.md). The console draws the same dicts these routes answer (`figures`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis
from fastapi import APIRouter, HTTPException
from sqlalchemy.orm import Session

from api.schemas import Instant
from models import stats
from models.db import session_scope
from passflow.settings import Settings
from worker.heartbeat import live_workers
from worker.sweeper import last_sweep

# Each windowed figure: its name in the path, and the query that makes it.
WINDOWED: dict[str, Callable[[Session, stats.Span], dict[str, Any]]] = {
    "decisions": stats.decisions,
    "denies": stats.denies,
    "authentication": stats.authentication,
    "throttling": stats.throttling,
    "steps": stats.step_latency,
    "webhooks": stats.webhooks,
}


def span_of(since: Any, until: Any, window: str | None = None) -> stats.Span:
    """The window of a request: 422 when it is empty, reversed or too long."""
    try:
        if window is not None and since is None and until is None:
            return stats.Span.named(window)
        return stats.Span.of(since, until)
    except (ValueError, KeyError) as exc:
        raise HTTPException(422, str(exc)) from exc


def figures(name: str, span: stats.Span) -> dict[str, Any]:
    with session_scope() as session:
        return WINDOWED[name](session, span)


def backlog() -> dict[str, Any]:
    with session_scope() as session:
        return stats.backlog(session)


def sweeper(settings: Settings) -> dict[str, Any]:
    """Which worker holds the sweeper (it sends due polls and retries), how long ago it swept,
    and the workers alive."""
    client = redis.Redis.from_url(settings.broker_url, socket_timeout=2,
                                  socket_connect_timeout=2)
    try:
        swept = last_sweep(client, settings.database_url)
        alive = live_workers(client)
    finally:
        client.close()
    return {"held_by": swept.get("by"), "last_sweep_age_s": swept.get("age_s"),
            "status": swept.get("status"), "workers_alive": len(alive)}


def build_router(settings: Settings, dependencies: list[Any]) -> APIRouter:
    router = APIRouter(prefix="/v1/stats", dependencies=dependencies, tags=["stats"])

    def windowed(name: str, summary: str) -> None:
        def route(since: Instant | None = None, until: Instant | None = None) -> dict[str, Any]:
            return figures(name, span_of(since, until))

        route.__doc__ = (f"{summary} Window: `since`/`until` (ISO 8601 with a zone); the "
                         "last hour by default, at most 31 days.")
        router.add_api_route(f"/{name}", route, methods=["GET"], name=f"stats_{name}",
                             summary=summary)

    windowed("decisions", "Permits and Denies: totals and a series of bars (`bucket_s`).")
    windowed("denies", "Denies by provider and enhanced error code.")
    windowed("authentication", "The sign-in funnel and the time to log in.")
    windowed("throttling", "Adobe Pass's 429s and the jobs that failed on them.")
    windowed("steps", "Step latency p50/p99 per step.")
    windowed("webhooks", "Webhook deliveries by outcome.")

    @router.get("/backlog", summary="Due and running jobs per step, now.")
    def get_backlog() -> dict[str, Any]:
        """Per step: jobs due and free, the oldest due one's wait, jobs held by a worker."""
        return backlog()

    @router.get("/sweeper", summary="Which worker holds the sweeper.")
    def get_sweeper() -> dict[str, Any]:
        return sweeper(settings)

    return router
