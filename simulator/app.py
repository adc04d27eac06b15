"""The simulator's ASGI app: DCR, REST API V2, the simulated MVPD pages and test controls."""

from __future__ import annotations

import asyncio
import random

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response

from simulator.config import SimConfig
from simulator.errors import DcrError, PassError, error_object
from simulator.headers import client_identity
from simulator.rules import FEATURE_HEADERS
from simulator.state import SimState

# Paths behind Adobe's edge: throttled (throttling-mechanism.md lists /o/client/* and /api/v2/)
# and subject to the fault knobs.
_API_PREFIXES = ("/o/client/", "/api/v2/")

# The sample 429 of throttling-mechanism.md: an HTML body, no Retry-After header.
_THROTTLED_BODY = (
    "<html>\r\n<head><title>429 Too Many Requests</title></head>\r\n<body>\r\n"
    "<center><h1>429 Too Many Requests</h1></center>\r\n<hr><center>openresty</center>\r\n"
    "</body>\r\n</html>\r\n"
)


# The headers a call's record names (their presence; values stay out of the log).
_FEATURES = frozenset(h.lower() for h in FEATURE_HEADERS)
_LOGGED = ("authorization", "ap-device-identifier", "x-device-info", "x-forwarded-for",
           "ap-visitor-identifier", *sorted(_FEATURES))


def create_app(config: SimConfig | None = None) -> FastAPI:
    from simulator import control, dcr, rest_v2

    config = config or SimConfig.load()
    app = FastAPI(
        title="passflow Adobe Pass simulator",
        version="1",
        description=(
            "A stand-in for Adobe Pass Dynamic Client Registration and REST API V2, following "
            "the reference pages. Endpoints under /_sim are test controls, not Adobe's."
        ),
    )
    app.state.sim = SimState(config)

    @app.middleware("http")
    async def edge(request: Request, call_next):
        sim: SimState = request.app.state.sim
        path = request.url.path
        behind_edge = path.startswith(_API_PREFIXES) and not path.startswith(
            "/api/v2/authenticate/"
        )
        if behind_edge:
            sim.stats["requests"] += 1
            if sim.config.throttle.enabled:
                who = client_identity(
                    request.headers.get("x-forwarded-for"),
                    request.client.host if request.client else None,
                )
                if not sim.throttle.take(who):
                    sim.stats["throttled"] += 1
                    return HTMLResponse(_THROTTLED_BODY, status_code=429)
            faults = sim.config.faults
            if faults.throttle_rate and random.random() < faults.throttle_rate:
                sim.stats["throttled"] += 1
                return HTMLResponse(_THROTTLED_BODY, status_code=429)
            if faults.latency_ms:
                # "in_flight": requests held by the latency knob now (a test kills a worker
                # while its call is here).
                sim.stats["in_flight"] += 1
                try:
                    await asyncio.sleep(faults.latency_ms / 1000)
                finally:
                    sim.stats["in_flight"] -= 1
            if faults.timeout_rate and random.random() < faults.timeout_rate:
                sim.stats["faults_timeout"] += 1
                await asyncio.sleep(faults.timeout_s)
            if faults.error_rate and random.random() < faults.error_rate:
                sim.stats["faults_error"] += 1
                if not faults.error_code:
                    return PlainTextResponse("upstream failure", status_code=faults.error_status)
                body = error_object(faults.error_code)
                body["status"] = faults.error_status
                if faults.error_action:
                    body["action"] = faults.error_action
                return JSONResponse(body, status_code=faults.error_status)
            if faults.malformed_rate and random.random() < faults.malformed_rate:
                sim.stats["faults_malformed"] += 1
                return PlainTextResponse(faults.malformed_body, status_code=200,
                                         media_type="application/json")
        response: Response = await call_next(request)
        if behind_edge:
            route = request.scope.get("route")
            name = getattr(route, "name", None) or "unmatched"
            sim.stats[f"{name} {response.status_code}"] += 1
            carried = sorted(h for h in _LOGGED if h in request.headers)
            for header in carried:
                if header in _FEATURES:
                    sim.stats[f"{name} {header}"] += 1  # which calls carried it
            sim.requests.append({"endpoint": name, "status": response.status_code,
                                 "headers": carried,
                                 # the pages' rules refused it (simulator.rules), and why
                                 "refused": getattr(request.state, "refused_by_rules", None),
                                 "user_agent": request.headers.get("user-agent")})
        return response

    @app.exception_handler(PassError)
    async def pass_error(_: Request, exc: PassError) -> JSONResponse:
        return JSONResponse(error_object(exc.code, details=exc.details),
                            status_code=exc.http_status)

    @app.exception_handler(DcrError)
    async def dcr_error(_: Request, exc: DcrError) -> JSONResponse:
        return JSONResponse({"error": exc.error}, status_code=400)

    app.include_router(dcr.router)
    app.include_router(rest_v2.router)
    app.include_router(control.router)
    return app
