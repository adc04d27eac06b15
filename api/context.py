"""Each request's id: the caller's X-Request-ID when it is a plain token, else a new one; bound
to every log line of the request, answered in X-Request-ID, and kept by the jobs the request
creates, so the steps' log lines carry it too."""

from __future__ import annotations

import re
import uuid

from passflow import logs

_PLAIN = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
HEADER = b"x-request-id"



class RequestContext:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers", ())).get(HEADER, b"").decode("latin-1")
        request_id = given if _PLAIN.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        # Each request runs in its own task: the binding ends with it.
        logs.clear()
        logs.bind(request_id=request_id)

        async def tagged(message):
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (HEADER, request_id.encode())]
            await send(message)

        await self.app(scope, receive, tagged)
