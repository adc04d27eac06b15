"""POST /v1/events: an event in, its job out (docs/api.md, "Events"). The body is parsed here,
not by FastAPI: its size is bounded before it is read (api.limits), its depth before it is
validated, and every problem is answered as one 422 list."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from api.auth import Access, brand_allowed
from api.intake import Intake
from api.schemas import Accepted, ValidationProblem
from passflow import logs
from passflow.events import EventIn
from passflow.settings import Settings
from worker import metrics
from worker.runtime import runtime

log = logs.get_logger(__name__)

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


def _problems(exc: ValidationError) -> list[dict[str, str]]:
    return [{"field": ".".join(str(p) for p in err["loc"]) or "body", "message": err["msg"],
             "type": err["type"]} for err in exc.errors(include_url=False)]


def _unprocessable(problems: list[dict[str, str]]) -> JSONResponse:
    return JSONResponse(problems, status_code=422)


def _parsed(raw: bytes) -> dict[str, Any] | JSONResponse:
    """The body as a JSON object, or the 422 saying why it is not one."""
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
    return data


def build_router(settings: Settings, access: Access) -> APIRouter:
    router = APIRouter()
    context = {"devices_share_address": settings.devices_share_address}
    intake = Intake(default_service_provider=settings.service_provider,
                    linger_s=settings.intake_linger_ms / 1000)

    @router.post("/v1/events", status_code=202, dependencies=access.ingest,
                 responses={200: {"model": Accepted, "description": "event_id seen before"},
                            202: {"model": Accepted}, 401: {}, 403: {}, 413: {},
                            422: {"model": list[ValidationProblem]}},
                 openapi_extra={"requestBody": {"required": True, "content": {
                     "application/json": {"schema": {"$ref": "#/components/schemas/EventIn"}}}}})
    async def post_event(request: Request) -> Response:
        data = _parsed(await request.body())  # bounded by api.limits.Guards before it is read
        if isinstance(data, JSONResponse):
            return data
        try:
            event = EventIn.model_validate(data, context=context)
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

    return router


def document_event_schema(app: FastAPI) -> None:
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
