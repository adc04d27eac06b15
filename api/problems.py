"""Every 4xx and 5xx of the API in one shape: RFC 9457 problem details
(`application/problem+json`: `type`, `title`, `status`, `detail`, and `errors`, a list of
`{field, message, type}`, where the request had several faults). The one exception is the
contract's: a bad event is a 422 whose body is the list itself (docs/api.md, "Errors")."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    InterfaceError,
    OperationalError,
    ProgrammingError,
)
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from models.history import BadCursor
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

    async def database_error(_: Request, exc: Exception) -> JSONResponse:
        """Only a database that cannot be reached is "retry shortly" (503); a value it refuses
        is the request's fault (422); a missing schema or anything else is a fault of ours,
        said as one (500). Nothing was stored either way: the transaction failed whole."""
        cause = exc.orig if isinstance(exc, DBAPIError) else exc
        if schema_missing(exc):
            log.error("database_schema_missing", error=str(cause).splitlines()[0])
            return problem(500, "the database lacks passflow's tables or columns (run "
                                "`passflow db upgrade`); retrying will not help")
        if isinstance(exc, OperationalError | InterfaceError | SQLAlchemyTimeoutError):
            log.warning("database_unavailable", error=type(cause).__name__)
            return problem(503, "the database is unavailable; retry shortly",
                           headers={"Retry-After": "2"})
        if isinstance(exc, DataError):
            return problem(422, "a value the database cannot store or compare (e.g. a NUL "
                                "character, a number out of range)")
        log.error("database_error", error=type(cause).__name__)
        return problem(500, "the request failed in the database; this is a fault of "
                            "passflow's, not of the request")

    async def bad_cursor(_: Request, exc: Exception) -> JSONResponse:
        return problem(422, "the request has 1 problem(s)", errors=[
            {"field": "query.cursor", "type": "cursor", "message": str(exc)}])

    async def client_left(request: Request, _: Exception) -> Response:
        """The client went away before its body arrived (closed, or evicted as the slowest
        when every place was taken): nothing to answer, nothing of ours failed. One INFO line,
        no traceback, and no 5xx for an alert to count (nginx's 499)."""
        log.info("client_left", path=request.url.path)
        return Response(status_code=499)

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(Exception, crashed)
    app.add_exception_handler(BadCursor, bad_cursor)
    app.add_exception_handler(ClientDisconnect, client_left)
    # A failed statement or connection, or no pooled connection free in time.
    app.add_exception_handler(DBAPIError, database_error)
    app.add_exception_handler(SQLAlchemyTimeoutError, database_error)


def schema_missing(exc: Exception) -> bool:
    """A permanent fault said as a transient one by the driver: SQLite reports a missing table
    as an OperationalError (PostgreSQL's UndefinedTable is a ProgrammingError)."""
    text = str(getattr(exc, "orig", exc))
    return isinstance(exc, ProgrammingError) or text.startswith(("no such table",
                                                                 "no such column"))
