"""`GET /v1/stats/...`: the figures behind each chart of the operations console, as JSON for any
tool (docs/api.md). The console draws the same dicts these routes answer (`figures`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, HTTPException
from sqlalchemy.orm import Session

from api.schemas import Instant
from models import stats
from models.base import utcnow
from models.db import session_scope
from passflow.settings import Settings
from worker.broker import brief_client
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


# A figure is asked again and again (every open console refreshes every few seconds): each
# answer is kept this long, per figure and window; and at most this many figures are computed
# at once in a process, any more answered 503 at once rather than queued behind them.
CACHE_S = 5.0
AT_ONCE = 2


def span_of(since: Any, until: Any, window: str | None = None) -> stats.Span:
    """The window of a request: 422 when it is empty, reversed or too long. A window that
    ends now ends at the next CACHE_S mark, so that requests a moment apart share an answer
    (kept CACHE_S at most: a figure is never older than that)."""
    try:
        if since is None and until is None:
            now = utcnow()
            until = now + timedelta(seconds=CACHE_S - now.timestamp() % CACHE_S)
            return stats.Span.of(None, until, default=window or "hour")
        return stats.Span.of(since, until)
    except (ValueError, KeyError) as exc:
        raise HTTPException(422, str(exc)) from exc


class _Costly:
    """The cache and the gate of the costly reads (one per process)."""

    def __init__(self) -> None:
        self._gate = threading.BoundedSemaphore(AT_ONCE)
        self._kept: dict[tuple[Any, ...], tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def read(self, key: tuple[Any, ...], compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        now = time.monotonic()
        with self._lock:
            kept = self._kept.get(key)
        if kept is not None and now - kept[0] < CACHE_S:
            return kept[1]
        if not self._gate.acquire(timeout=0.2):
            raise HTTPException(503, f"{AT_ONCE} figures are being computed already: ask "
                                     "again in a few seconds", headers={"Retry-After": "2"})
        try:
            value = compute()
        finally:
            self._gate.release()
        with self._lock:
            self._kept = {k: v for k, v in self._kept.items() if now - v[0] < CACHE_S}
            self._kept[key] = (time.monotonic(), value)
        return value


_COSTLY = _Costly()


def figures(name: str, span: stats.Span) -> dict[str, Any]:
    def compute() -> dict[str, Any]:
        with session_scope() as session:
            return WINDOWED[name](session, span)

    return _COSTLY.read((name, span.since, span.until), compute)


def backlog() -> dict[str, Any]:
    def compute() -> dict[str, Any]:
        with session_scope() as session:
            return stats.backlog(session)

    return _COSTLY.read(("backlog",), compute)


def sweeper(settings: Settings) -> dict[str, Any]:
    """Which worker holds the sweeper (it sends due polls and retries), how long ago it swept,
    and the workers alive."""
    with brief_client(settings.broker_url) as client:
        swept = last_sweep(client, settings.database_url)
        alive = live_workers(client)
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
