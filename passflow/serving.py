"""Serve an ASGI app with uvicorn: the HTTP protocol every passflow server uses (a request's head
bounded), and a server in a background thread on a port the OS picks."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# The most a request line and headers together may take. httptools (uvicorn's fast parser)
# has no such limit: an endless URL or header grew the process by 1 MB per MB sent.
MAX_HEAD_BYTES = 32 * 1024
_TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain\r\n"
              b"connection: close\r\ncontent-length: 36\r\n\r\n"
              b"request line and headers over 32 KiB")


class BoundedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing a request whose head (request line and headers)
    exceeds MAX_HEAD_BYTES: the bytes are counted as they arrive, before the parser keeps
    them. Bodies are bounded by the app (api.limits)."""

    _awaiting_head = True
    _head_bytes = 0

    def data_received(self, data: bytes) -> None:
        # Counted before, judged after the parser saw the chunk: a chunk may end the head and
        # carry the start of the body (asyncio reads at most 256 KiB at a time).
        if self._awaiting_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._awaiting_head and self._head_bytes > MAX_HEAD_BYTES \
                and not self.transport.is_closing():
            self._awaiting_head = False  # nothing more is read from this connection
            self.transport.write(_TOO_LARGE)
            self.transport.close()

    def on_headers_complete(self) -> None:
        self._awaiting_head, self._head_bytes = False, 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._awaiting_head = True  # the next request on this connection


def server_config(app: Any, **options: Any) -> uvicorn.Config:
    """uvicorn's configuration for a passflow server: its bounded protocol (no access log
    unless asked)."""
    options.setdefault("access_log", False)
    return uvicorn.Config(app, http=BoundedHttpProtocol, **options)


class BackgroundServer:
    """`with BackgroundServer(app) as server: httpx.get(server.url + "/...")`."""

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0,
                 log_level: str = "warning"):
        # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose proto
        # says TCP; with proto 0, Nagle meets delayed ACK and every answer waits ~40 ms.
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.host, self.port = self._sock.getsockname()[:2]
        self.url = f"http://{self.host}:{self.port}"
        config = server_config(app, log_level=log_level, lifespan="off",
                               timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True,
            name=f"uvicorn-{self.port}",
        )

    def start(self, timeout: float = 10.0) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"server on {self.url} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def free_port(host: str = "127.0.0.1") -> int:
    """A port free right now (for a process that binds it itself)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_until(predicate, *, timeout: float, what: str = "a condition",
               interval: float = 0.1):
    """Call `predicate` until it returns something true; TimeoutError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
