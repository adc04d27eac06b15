"""The public surface's guards, as ASGI middleware in front of every route.

- Bodies are bounded before they are read: a declared Content-Length over the route's limit is
  answered 413 at once, and a body sent without one (chunked) is counted as it streams and cut
  at the limit. A request can never make the API hold more than the limit in memory.
- HTML pages carry security headers (a strict CSP, no framing, nosniff, no referrer).
- A POST to the pages from another origin (a form on someone else's site) is refused.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from api import problems

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

# The largest body of each kind of route: an event, a form of the activation pages, anything else.
EVENT_BYTES = 64 * 1024
FORM_BYTES = 4 * 1024
OTHER_BYTES = 16 * 1024

PAGE_HEADERS = [
    (b"content-security-policy",
     b"default-src 'none'; img-src 'self'; style-src 'self' 'unsafe-inline'; "
     b"script-src 'self'; "
     b"form-action 'self' https: http:; frame-ancestors 'none'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    # same-origin, not no-referrer: with no-referrer a browser sends "Origin: null" on its own
    # form posts, and they could not be told from forged ones.
    (b"referrer-policy", b"same-origin"),
]


def body_limit(path: str) -> int:
    if path == "/v1/events":
        return EVENT_BYTES
    if path.startswith("/activate"):
        return FORM_BYTES
    return OTHER_BYTES


class TooLarge(Exception):
    pass


async def _problem(send: Send, status: int, detail: str) -> None:
    body = json.dumps(problems.body(status, detail)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", problems.MEDIA_TYPE.encode()),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class Guards:
    """Body limits, page headers and the same-origin rule for page POSTs."""

    def __init__(self, app: App, *, public_url: str):
        self.app = app
        parts = urlsplit(public_url)
        self.origin = f"{parts.scheme}://{parts.netloc}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        headers = dict(scope["headers"])
        limit = body_limit(path)
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _problem(send, 413, f"request body larger than {limit} bytes")
            return
        page = path.startswith(("/activate", "/landing"))
        if page and scope["method"] == "POST":
            origin = headers.get(b"origin")
            if origin is not None and origin.decode("latin-1") != self.origin:
                await _problem(send, 403, "cross-origin form posts are refused")
                return
        seen = 0

        async def bounded() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise TooLarge
            return message

        started = False

        async def with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if page:
                    message = {**message, "headers": [*message.get("headers", []),
                                                      *PAGE_HEADERS]}
            await send(message)

        try:
            await self.app(scope, bounded, with_headers)
        except TooLarge:
            if not started:
                await _problem(send, 413, f"request body larger than {limit} bytes")
