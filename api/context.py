"""Each request's context: its id and its timing.

The id is the caller's X-Request-ID when it is a plain token, else a new one; it is bound to
every log line of the request, answered in X-Request-ID, and kept by the jobs the request
creates, so the steps' log lines carry it too. The time the request took goes to
passflow_api_request_seconds by route template, method and status class (pool-wide, like the
workers' metrics)."""

from __future__ import annotations

import re
import time
import uuid

from passflow import logs
from worker import metrics

_PLAIN = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
HEADER = b"x-request-id"


class RequestContext:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        given = dict(scope.get("headers", ())).get(HEADER, b"").decode("latin-1")
        request_id = given if _PLAIN.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        # Each request runs in its own task: the binding ends with it.
        logs.clear()
        logs.bind(request_id=request_id)
        status = 500

        async def tagged(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []),
                                      (HEADER, request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, tagged)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            metrics.observe("passflow_api_request_seconds",
                            (route, scope.get("method", ""), f"{status // 100}xx"),
                            time.perf_counter() - started)
