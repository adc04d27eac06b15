"""Health for machines and people: /livez (the process answers), /readyz (this replica can
serve), /healthz (every check with its detail), /v1/workers (the live workers and the queues)
(docs/operations.md, "Health")."""

from __future__ import annotations

import time
from typing import Any

import redis
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import select

from api.auth import Access
from api.problems import schema_missing
from models import Registration
from models.db import session_scope
from passflow.database import build_info, runs_on
from passflow.settings import Settings
from worker.broker import brief_client
from worker.heartbeat import live_workers, queues_state, unconsumed
from worker.queues import ALL_QUEUES
from worker.sweeper import last_sweep

# How long /readyz reuses its reading of the fleet's checks.
FLEET_FRESH_S = 5.0
# This replica's own checks; the others are the fleet's.
READINESS = ("database", "broker")


class Health:
    """The checks: this replica's (readiness) and the fleet's (registration, sweeper,
    queues)."""

    def __init__(self, settings: Settings):
        self._settings = settings
        self._fleet: tuple[list[str], float] = ([], float("-inf"))  # failing, when read

    def readiness(self) -> dict[str, Any]:
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
                                     if schema_missing(exc) else ""))
        try:
            with brief_client(self._settings.broker_url) as client:
                client.ping()
        except redis.RedisError as exc:
            checks["broker"] = f"failing: {type(exc).__name__}"
        return checks

    def everything(self) -> tuple[list[str], dict[str, Any]]:
        """The failing checks' names, and every check: this process's (readiness), then the
        fleet's: the registration, and the age of the last sweep (stale: no worker is
        sweeping, so polls and retries are not sent)."""
        checks: dict[str, Any] = {**self.readiness(), "registration": "ok",
                                  "sweeper": {"status": "unknown"}}
        try:
            with session_scope() as session:
                problem = session.execute(
                    select(Registration.problem, Registration.problem_at).where(
                        Registration.base_url == self._settings.pass_base_url,
                        Registration.problem.is_not(None))).first()
            if problem is not None:
                checks["registration"] = (
                    f"failing since {problem.problem_at:%Y-%m-%d %H:%M} UTC: {problem.problem}; "
                    "run `passflow register`")
        except Exception as exc:
            checks["registration"] = f"unknown: {type(exc).__name__}"
        try:
            with brief_client(self._settings.broker_url) as client:
                checks["sweeper"] = last_sweep(client, self._settings.database_url)
                idle = unconsumed(queues_state(client, ALL_QUEUES))
            checks["queues"] = ("ok" if not idle else "work waiting with no worker consuming: "
                                + ", ".join(idle) + " (start a worker with --queues for it)")
        except redis.RedisError as exc:
            checks["sweeper"] = {"status": "unknown", "error": type(exc).__name__}
        failing = [name for name, value in checks.items()
                   if (value.get("status") if isinstance(value, dict) else value) != "ok"]
        return failing, checks

    def fleet_failing(self) -> list[str]:
        """The fleet's failing checks, read at most every FLEET_FRESH_S: an anonymous probe
        must not cost a scan each time."""
        failing, read_at = self._fleet
        now = time.monotonic()
        if now - read_at > FLEET_FRESH_S:
            failing = [n for n in self.everything()[0] if n not in READINESS]
            self._fleet = (failing, now)
        return failing

    def workers(self) -> dict[str, Any]:
        with brief_client(self._settings.broker_url) as client:
            return {"workers": live_workers(client), "queues": queues_state(client, ALL_QUEUES)}


def build_router(settings: Settings, access: Access) -> APIRouter:
    router = APIRouter(tags=["health"])
    health = Health(settings)
    build = build_info()

    @router.get("/livez", include_in_schema=True)
    def livez() -> dict[str, str]:
        """The process answers (no token: for a load balancer or an orchestrator)."""
        return {"status": "ok"}

    @router.get("/healthz", dependencies=access.monitoring)
    def healthz() -> JSONResponse:
        """Every check with its detail; 503 when any fails."""
        failing, checks = health.everything()
        return JSONResponse({"status": "failing" if failing else "ok", **build, **checks},
                            status_code=503 if failing else 200)

    @router.get("/readyz")
    def readyz() -> JSONResponse:
        """Ready for traffic (no token: for a load balancer): 503 only when this process's
        database (with a schema it runs on) or broker fails. The fleet's failing checks (the
        sweeper, the registration, a queue with no consumer) are named in `fleet` and never
        fail the probe: no replica can fix them. Only names are said; their detail is in
        /healthz."""
        failing = [name for name, value in health.readiness().items() if value != "ok"]
        return JSONResponse({"status": "failing" if failing else "ok", "failing": failing,
                             "fleet": health.fleet_failing()},
                            status_code=503 if failing else 200)

    @router.get("/v1/workers", dependencies=access.every_brand)
    def workers() -> dict[str, Any]:
        """The live workers (id, name, host, pid, queues, pool, last beat) and, per queue, the
        messages waiting, its consumers and its oldest message's age: a job's lease owner
        starts with the id of the worker holding it."""
        return health.workers()

    return router
