"""The public surface's guards, as ASGI middleware in front of every route.

- Bodies are bounded before they are read: a declared Content-Length over the route's limit is
  answered 413 at once, and a body sent without one (chunked) is counted as it streams and cut
  at the limit. A request can never make the API hold more than the limit in memory.
- HTML pages carry security headers (a strict CSP, no framing, nosniff, no referrer).
- A POST to the pages from another origin (a form on someone else's site) is refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from api import problems

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

_DOT_SEGMENT = re.compile(r"(^|/)\.{1,2}(/|$)")

# The largest body of each kind of route: an event, a form of the activation pages, anything else.
EVENT_BYTES = 64 * 1024
FORM_BYTES = 4 * 1024
OTHER_BYTES = 16 * 1024

PAGE_HEADERS = [
    (b"content-security-policy",
     b"default-src 'none'; img-src 'self'; style-src 'self' 'unsafe-inline'; "
     b"script-src 'self'; connect-src 'self'; "  # the console's refresh: its own origin
     b"form-action 'self' https: http:; frame-ancestors 'none'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    # same-origin, not no-referrer: with no-referrer a browser sends "Origin: null" on its own
    # form posts, and they could not be told from forged ones.
    (b"referrer-policy", b"same-origin"),
]


# The HTML pages: security headers on every answer, the same-origin rule on every POST.
PAGES = ("/activate", "/landing", "/console")


def body_limit(path: str) -> int:
    if path == "/v1/events":
        return EVENT_BYTES
    if path.startswith(("/activate", "/console")):
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


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


# The most distinct refused origins logged by one process (each once): forged ones are endless.
LOGGED_ORIGINS = 100


class Guards:
    """Body limits, page headers and the same-origin rule for page POSTs: from the configured
    public URL's origin when there is one, else from the host the browser itself addressed."""

    def __init__(self, app: App, *, public_url: str | None, on_refused_origin=None):
        self.app = app
        self.origin = origin_of(public_url) if public_url else None
        self.on_refused_origin = on_refused_origin
        self._logged: set[str] = set()

    def _refusal(self, origin: str, host: str) -> str | None:
        """Why a page POST from `origin` is refused, or None."""
        if self.origin is None:
            if urlsplit(origin).netloc.lower() == host.lower():
                return None
            return "cross-origin form posts are refused"
        if origin == self.origin:
            return None
        if self.on_refused_origin is not None and origin not in self._logged \
                and len(self._logged) < LOGGED_ORIGINS:
            self._logged.add(origin)
            self.on_refused_origin(origin, self.origin)
        return (f"cross-origin form posts are refused: this form was sent from {origin}, and "
                f"PASSFLOW_PUBLIC_URL says the pages are at {self.origin}; if users open them "
                "at the other address, set PASSFLOW_PUBLIC_URL to it")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if _DOT_SEGMENT.search(path):  # "/a/../b": never routed, never passed on upstream
            await _problem(send, 400, "a path with . or .. segments")
            return
        headers = dict(scope["headers"])
        limit = body_limit(path)
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _problem(send, 413, f"request body larger than {limit} bytes")
            return
        page = path.startswith(PAGES)
        if page and scope["method"] == "POST":
            origin = headers.get(b"origin")
            refusal = origin is not None and self._refusal(
                origin.decode("latin-1"), headers.get(b"host", b"").decode("latin-1"))
            if refusal:
                await _problem(send, 403, refusal)
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
