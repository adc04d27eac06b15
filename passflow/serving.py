"""Serve an ASGI app with uvicorn: the HTTP protocol every passflow server uses, which bounds
what one client can make the process hold, and a server in a background thread on a port the OS
picks.

uvicorn's httptools protocol, as it comes, reads without limit: a head of any size (httptools
keeps it all), trailers of any size, pipelined requests queued without end, and connections kept
for ever by clients that send half a head or nothing at all. BoundedHttpProtocol adds:
- a head (request line, headers, and trailers with them) of at most MAX_HEAD_BYTES, however the
  bytes arrive, and at most MAX_FRAMING_BYTES of a request that are not its body;
- at most MAX_PIPELINED requests waiting behind the one being answered;
- a deadline for a head (HEAD_TIMEOUT_S from its first byte, or from the connection) and for a
  body (BODY_TIMEOUT_S from the end of the head); idle keep-alive ends after IDLE_TIMEOUT_S;
- at most Limits.max_per_client connections from one client (an IPv4 address, an IPv6 /64: one
  user's devices share a /64; proxies trusted for X-Forwarded-For excepted), and
  Limits.max_connections in all (below the process' file limit): when every place is taken,
  the connection that has waited longest for a whole request (idle, a head or a body still
  arriving) makes room for the new one;
- no protocol upgrade (WebSocket or other): answered 400 and closed, so a connection never
  leaves the protocol (and its counts) behind.
A refused request gets a short answer and the connection is closed.

What this relies on in uvicorn's HttpToolsProtocol is pinned (pyproject) and checked by
tests/security/test_serving_internals.py, so an upgrade of uvicorn cannot silently remove a
protection.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import resource
import socket
import threading
import time
import weakref
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 32 * 1024
MAX_FRAMING_BYTES = 64 * 1024
MAX_PIPELINED = 8
HEAD_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 30.0
IDLE_TIMEOUT_S = 5
# File handles kept for everything but client connections (database and Redis pools, logs).
RESERVED_FILES = 128


@dataclass(frozen=True)
class Limits:
    max_connections: int = 1000
    max_per_client: int = 256  # a NAT (an office, a carrier) puts many users behind one
    # Peers that may hold many connections (trusted proxies); None: every peer.
    unlimited: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None = ()
    head_timeout_s: float = HEAD_TIMEOUT_S
    body_timeout_s: float = BODY_TIMEOUT_S

    def per_client_key(self, peer: str | None) -> str | None:
        """Whose connections are counted together (None: not counted)."""
        if peer is None or self.unlimited is None:
            return None
        address = client_address(peer)
        if address is None:
            return peer
        if any(address in network for network in self.unlimited):
            return None
        if address.version == 6:  # one user's devices share a /64; a fresh address is free
            return str(ipaddress.ip_network(f"{address}/64", strict=False))
        return str(address)


def client_address(raw: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """A client's address, an IPv4-mapped IPv6 one as the IPv4 address it is (a dual-stack
    proxy writes every IPv4 client so); None when `raw` is no address."""
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


_MAPPED = ipaddress.ip_network("::ffff:0:0/96")


def networks(items: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Addresses or networks (not "*") as networks, IPv4-mapped ones as the IPv4 they map."""
    found = []
    for item in items:
        network = ipaddress.ip_network(item, strict=False)
        if network.version == 6 and network.prefixlen >= 96 and network.subnet_of(_MAPPED):
            network = ipaddress.ip_network(
                (int(network.network_address) & 0xFFFFFFFF, network.prefixlen - 96))
        found.append(network)
    return found


def _answer(status: str, text: str) -> bytes:
    body = text.encode()
    return (f"HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\n"
            f"connection: close\r\ncontent-length: {len(body)}\r\n\r\n").encode() + body


_HEAD_TOO_LARGE = _answer("431 Request Header Fields Too Large",
                          "request line and headers over 32 KiB")
_TOO_MUCH_FRAMING = _answer("431 Request Header Fields Too Large",
                            "request framing (chunk lines, trailers) over 64 KiB")
_TOO_MANY_PIPELINED = _answer("429 Too Many Requests",
                              f"more than {MAX_PIPELINED} requests sent ahead of their answers")
_TOO_SLOW = _answer("408 Request Timeout", "the request did not arrive in time")
_TOO_MANY_CONNECTIONS = _answer("503 Service Unavailable", "too many connections")
_NO_UPGRADE = _answer("400 Bad Request", "protocol upgrades are not served")


class _Refused(Exception):
    """Raised from a parser callback to stop parsing what remains of the bytes read."""


@dataclass
class _Shared:
    """What every connection of one server counts together: connections per client, and
    those that wait for a request (oldest first), to make room when every place is taken."""

    per_client: Counter[str] = field(default_factory=Counter)
    waiting: dict[BoundedHttpProtocol, None] = field(default_factory=dict)


class BoundedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the bounds of this module's docstring."""

    limits: ClassVar[Limits] = Limits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        shared = getattr(self.server_state, "passflow_limits", None)
        if shared is None:
            shared = _Shared()
            self.server_state.passflow_limits = shared  # type: ignore[attr-defined]
        self._shared: _Shared = shared
        self._client_key: str | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._awaiting_head = True
        self._head_bytes = 0  # request line and header fields, as the parser hands them over
        self._read = 0  # bytes read for this request
        self._body = 0  # of which body
        self._refused = False
        self._cycles: weakref.WeakSet[Any] = weakref.WeakSet()  # this connection's requests

    # The connection ----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        key = self.limits.per_client_key(self.client[0] if self.client else None)
        if key is not None and self._shared.per_client[key] >= self.limits.max_per_client:
            self._refuse(_TOO_MANY_CONNECTIONS)
            return
        if len(self.connections) > self.limits.max_connections:
            # Every place is taken: the connection that has waited longest for a request
            # (idle, or sending a head slowly) makes room; if all are being answered, this one
            # is refused.
            if not self._shared.waiting:
                self._refuse(_TOO_MANY_CONNECTIONS)
                return
            next(iter(self._shared.waiting))._refuse(_TOO_SLOW)
        if key is not None:
            self._client_key = key
            self._shared.per_client[key] += 1
        self._wait()
        self._arm(self.limits.head_timeout_s)

    def _wait(self) -> None:
        """This connection now waits for a request: last in the line of those to evict."""
        self._shared.waiting.pop(self, None)
        self._shared.waiting[self] = None

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.pipeline and self._awaiting_head:
            self._wait()

    def connection_lost(self, exc: Exception | None) -> None:
        self._shared.waiting.pop(self, None)
        self._disarm()
        if self._client_key is not None:
            counts = self._shared.per_client
            counts[self._client_key] -= 1
            if counts[self._client_key] <= 0:
                del counts[self._client_key]
            self._client_key = None
        super().connection_lost(exc)

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._too_slow)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _too_slow(self) -> None:
        self._timer = None
        self._refuse(_TOO_SLOW)

    def _refuse(self, answer: bytes) -> None:
        """Answer `answer` (unless an answer is under way) and close: nothing more is read."""
        self._disarm()
        self._shared.waiting.pop(self, None)
        if self._refused or self.transport.is_closing():
            return
        self._refused = True
        if self.cycle is None or self.cycle.response_complete or not self.cycle.response_started:
            self.transport.write(answer)
        # The app may still answer a request it holds (the one being answered while others were
        # pipelined behind it): its send must find the cycle over, not a closed transport (a
        # traceback per refused connection otherwise).
        for cycle in self._cycles:
            cycle.disconnected = True
        self.transport.close()

    # Reading -----------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._refused or self.transport.is_closing():
            return
        self._read += len(data)
        if self._awaiting_head and self._timer is None:
            self._arm(self.limits.head_timeout_s)  # the first byte of a new request
        super().data_received(data)
        # Counted before, judged after the parser saw the bytes: a head or trailer that never
        # ends is refused here, whatever the parser has made of it so far.
        if self._read - self._body > MAX_FRAMING_BYTES:
            self._refuse(_HEAD_TOO_LARGE if self._awaiting_head else _TOO_MUCH_FRAMING)

    def send_400_response(self, msg: str) -> None:
        if self._refused:  # a callback refused the request and has answered
            self.transport.close()
            return
        super().send_400_response(msg)

    def _count_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > MAX_HEAD_BYTES:
            self._refuse(_HEAD_TOO_LARGE)
            raise _Refused

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._awaiting_head, self._head_bytes = True, 0

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        # After the head, these are trailers: counted with it.
        self._count_head(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._awaiting_head = False
        if self.parser.should_upgrade():
            # uvicorn would hand the transport to another protocol (never calling this one's
            # connection_lost: the client's place would leak) or log a warning per request.
            self._refuse(_NO_UPGRADE)
            raise _Refused
        # Still evictable until the body has arrived: a body sent a byte a second must not
        # hold a place the way an answered request does.
        self._arm(self.limits.body_timeout_s)
        super().on_headers_complete()
        if self.cycle is not None:
            self._cycles.add(self.cycle)
        if len(self.pipeline) > MAX_PIPELINED:
            self._refuse(_TOO_MANY_PIPELINED)
            raise _Refused

    def on_body(self, body: bytes) -> None:
        self._body += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._shared.waiting.pop(self, None)  # a whole request: answered, not evicted
        self._disarm()  # the app has the request; idle time counts again after its answer
        self._awaiting_head, self._read, self._body = True, 0, 0


def _file_limit() -> int:
    """The soft limit on open files, raised to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft


def limits_for(trusted_proxies: list[str] | None = None, *,
               max_connections: int = Limits.max_connections,
               max_per_client: int = Limits.max_per_client) -> Limits:
    """The bounds of a server: connections below the file limit; trusted proxies ("*": any
    peer) may hold more than one client's share."""
    files = _file_limit()
    unlimited: tuple | None = ()
    if trusted_proxies:
        unlimited = None if "*" in trusted_proxies else tuple(networks(trusted_proxies))
    return Limits(max_connections=max(16, min(max_connections, files - RESERVED_FILES)),
                  max_per_client=max_per_client, unlimited=unlimited)


def server_config(app: Any, *, limits: Limits | None = None, **options: Any) -> uvicorn.Config:
    """uvicorn's configuration for a passflow server: its bounded protocol, idle keep-alive
    connections closed after IDLE_TIMEOUT_S, no proxy headers (no access log unless asked)."""
    options.setdefault("access_log", False)
    options.setdefault("timeout_keep_alive", IDLE_TIMEOUT_S)
    # X-Forwarded-For is the app's to believe or not (api.forwarded), never uvicorn's default.
    options.setdefault("proxy_headers", False)
    options["ws"] = "none"  # no WebSocket: upgrades are refused (BoundedHttpProtocol)
    protocol = type("BoundedHttpProtocol", (BoundedHttpProtocol,),
                    {"limits": limits or limits_for()})
    return uvicorn.Config(app, http=protocol, **options)


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
        config = server_config(app, log_level=log_level, lifespan="auto",
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
