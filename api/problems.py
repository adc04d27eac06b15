"""Every 4xx and 5xx of the API in one shape: RFC 9457 problem details
(`application/problem+json`: `type`, `title`, `status`, `detail`, and `errors`, a list of
`{field, message, type}`, where the request had several faults). The one exception is the
contract's: a bad event is a 422 whose body is the list itself (docs/api.md, "Errors")."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from passflow import logs

MEDIA_TYPE = "application/problem+json"
log = logs.get_logger(__name__)


class FieldProblem(BaseModel):
    field: str
    message: str
    type: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[FieldProblem] | None = None


def body(status: int, detail: str, *, errors: list[dict[str, str]] | None = None
         ) -> dict[str, Any]:
    problem: dict[str, Any] = {"type": "about:blank", "title": HTTPStatus(status).phrase,
                               "status": status, "detail": detail}
    if errors:
        problem["errors"] = errors
    return problem


def problem(status: int, detail: str, *, errors: list[dict[str, str]] | None = None,
            headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body(status, detail, errors=errors), status_code=status,
                        media_type=MEDIA_TYPE, headers=headers)


def field_problems(errors: list[Any]) -> list[dict[str, str]]:
    """FastAPI's validation errors, said as fields: `query.since`, `path.job_id`, `body`."""
    return [{"field": ".".join(str(p) for p in err.get("loc", ())) or "body",
             "message": str(err.get("msg", "invalid")), "type": str(err.get("type", "invalid"))}
            for err in errors]


# The OpenAPI document's word on every error answer.
RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "content": {MEDIA_TYPE: {}}, "description": HTTPStatus(code).phrase}
    for code in (401, 403, 404, 409, 413, 422, 500, 503)}


def install(app: FastAPI) -> None:
    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        detail, errors = exc.detail, None
        if isinstance(detail, list):  # several faults of the request, each named
            errors, detail = detail, f"the request has {len(detail)} problem(s)"
        return problem(exc.status_code, str(detail), errors=errors,
                       headers=getattr(exc, "headers", None))

    async def invalid(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = field_problems(list(exc.errors()))
        return problem(422, f"the request has {len(errors)} problem(s)", errors=errors)

    async def crashed(_: Request, exc: Exception) -> JSONResponse:
        log.error("request_failed", error=type(exc).__name__)
        return problem(500, "the request failed; this is a fault of passflow's, not of the "
                            "request (see the API's log)")

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(Exception, crashed)
