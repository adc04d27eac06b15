"""The logo proxy: logo URLs come from third-party MVPD hosts (Adobe's configuration), so
every fetch is hostile until shown otherwise. Local hosts stand in for them: "localhost" on the
test host's port is trusted (a development host), 127.0.0.1 is not."""

from __future__ import annotations

import asyncio
import gzip
import ipaddress
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from api.logos import DEADLINE_S, Refused, fetch, refused_address
from passflow.serving import BackgroundServer

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
hits: list[str] = []


def _host() -> FastAPI:
    app = FastAPI()

    @app.get("/ok.png")
    def ok() -> Response:
        return Response(PNG, media_type="image/png")

    @app.get("/to-internal")
    def to_internal(port: int) -> RedirectResponse:
        return RedirectResponse(f"http://127.0.0.1:{port}/secret")

    @app.get("/to-trusted")
    def to_trusted(port: int) -> RedirectResponse:
        return RedirectResponse(f"http://localhost:{port}/secret")

    @app.get("/secret")
    def secret() -> Response:
        hits.append("secret")
        return Response(PNG, media_type="image/png")

    @app.get("/evil.svg")
    def svg() -> Response:
        return Response(b"<svg><script>alert(1)</script></svg>", media_type="image/svg+xml")

    @app.get("/huge.png")
    def huge() -> Response:
        return Response(PNG + b"\x00" * 300_000, media_type="image/png")

    @app.get("/bomb.png")
    def bomb() -> Response:  # 50 MB of zeros in about 50 KB
        return Response(gzip.compress(b"\x00" * 50_000_000, compresslevel=9),
                        media_type="image/png", headers={"Content-Encoding": "gzip"})

    @app.get("/drip.png")
    def drip() -> StreamingResponse:
        def slowly() -> Iterator[bytes]:
            for _ in range(60):
                time.sleep(0.2)  # the hostile host's pace, not a wait in the test
                yield b"\x00"
        return StreamingResponse(slowly(), media_type="image/png")

    return app


@pytest.fixture(scope="module")
def host() -> Iterator[BackgroundServer]:
    with BackgroundServer(_host()) as server:
        yield server


class SlowHeaders:
    """A logo host that sends its status line and then one header line every 2 s."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 200 OK\r\n")
                for n in range(60):
                    if self.stop.wait(2):  # the hostile host's pace, not a wait in the test
                        return
                    conn.sendall(f"X-Slow-{n}: 1\r\n".encode())
            except OSError:
                return

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture
def slow_headers() -> Iterator[SlowHeaders]:
    server = SlowHeaders()
    yield server
    server.close()


def _on(server, path: str) -> str:
    return f"http://localhost:{server.port}{path}"


def _fetch(url: str, trusted: set[str] | None = None):
    return asyncio.run(fetch(url, trusted_hosts=trusted or set()))


def test_a_trusted_raster_logo_is_fetched(host):
    assert _fetch(_on(host, "/ok.png"), {f"localhost:{host.port}"}).body == PNG


def test_a_trusted_host_is_trusted_on_its_port_only(host):
    with pytest.raises(Refused, match="https only"):
        _fetch(_on(host, "/ok.png"), {"localhost"})  # no port: its scheme's default only
    with pytest.raises(Refused, match="https only"):
        _fetch(_on(host, "/ok.png"), {f"localhost:{host.port + 1}"})


def test_redirects_to_internal_or_trusted_hosts_are_refused(host, fault_report):
    hits.clear()
    trusted = {f"localhost:{host.port}"}
    for path in (f"/to-internal?port={host.port}", f"/to-trusted?port={host.port}"):
        with pytest.raises(Refused, match="https only|not a public address"):
            _fetch(_on(host, path), trusted)
    assert hits == []  # the internal service was never asked
    fault_report("a logo host redirects passflow to an internal address, or to a trusted host",
                 "refused before the second hop; nothing fetched from either")


def test_plain_http_and_private_addresses_are_refused():
    with pytest.raises(Refused, match="https only"):
        _fetch("http://logos.example/x.png")
    with pytest.raises(Refused, match="not a public address"):
        _fetch("https://127.0.0.1/x.png")


@pytest.mark.parametrize("address", [
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "64:ff9b:1::7f00:1",  # local-use NAT64
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    "::ffff:169.254.169.254",  # IPv4-mapped metadata address
    "::ffff:10.1.2.3",
])
def test_addresses_that_embed_another_are_refused(address):
    assert refused_address(ipaddress.ip_address(address))


def test_a_public_address_is_not_refused():
    assert refused_address(ipaddress.ip_address("93.184.216.34")) is None
    assert refused_address(ipaddress.ip_address("2606:2800:220:1:248:1893:25c8:1946")) is None


@pytest.mark.parametrize("path,reason", [
    ("/evil.svg", "not a raster image"),
    ("/huge.png", "larger than"),
    ("/bomb.png", "compressed"),
    ("/drip.png", "deadline"),
])
@pytest.mark.slow
def test_hostile_logos_are_refused(host, path, reason, fault_report):
    started = time.monotonic()
    with pytest.raises(Refused, match=reason):
        _fetch(_on(host, path), {f"localhost:{host.port}"})
    assert time.monotonic() - started < DEADLINE_S + 1  # one overall deadline
    fault_report(f"a logo host serves {path[1:]}", f"refused ({reason}); nothing served")


@pytest.mark.slow
def test_a_host_that_sends_its_headers_slowly_is_cut_at_the_deadline(slow_headers, fault_report):
    started = time.monotonic()
    with pytest.raises(Refused, match="deadline"):
        _fetch(_on(slow_headers, "/logo.png"), {f"localhost:{slow_headers.port}"})
    took = time.monotonic() - started
    assert took < DEADLINE_S + 1, took
    fault_report("a logo host sends one header line every 2 s",
                 f"cut at {took:.1f} s (the deadline covers headers, not only the body)")


def test_the_picker_never_asks_adobe_for_a_logo_it_was_not_shown(api_server,
                                                                 jobs_env: httpx.Client,
                                                                 fault_report):
    """Logos come only from configurations passflow read: made-up service providers and
    MVPDs, and dot segments, cost no call to Adobe Pass."""
    paths = [f"/activate/logos/NOPE{n}/Made-Up-{n}" for n in range(28)]
    paths += ["/activate/logos/../X", "/activate/logos/REF30/.."]
    with httpx.Client(base_url=api_server.url) as browser:
        for path in paths:
            answer = browser.get(path)
            assert answer.status_code == 404, (path, answer.status_code)
        for raw in (b"/activate/logos/../X", b"/activate/logos/%2e%2e/configuration"):
            with socket.create_connection(("127.0.0.1", api_server.port)) as sock:
                sock.sendall(b"GET " + raw + b" HTTP/1.1\r\nHost: x\r\n\r\n")
                assert sock.recv(64).split(b" ")[1] in (b"400", b"404")
    stats = jobs_env.get("/_sim/stats").json()
    # (the worker's sweeper may renew passflow's token meanwhile: DCR is not asked for logos)
    asked = {name: n for name, n in stats.items() if " " in name and not name.startswith("dcr.")}
    assert asked == {}, asked
    fault_report("30 logo requests for made-up providers, and `..` paths",
                 "404, no call to Adobe Pass")


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # no dialect's
def test_slow_logo_hosts_hold_no_thread_that_serves_requests(pass_env, jobs_env, slow_headers,
                                                             redis_client, fault_report):
    """100 requests for 5 logos whose host is slow (60 of them for one): /livez keeps answering
    at once (the fetches wait on the event loop, one per logo at a time)."""
    from concurrent.futures import ThreadPoolExecutor

    from api.app import create_app
    from passflow.settings import get_settings
    from tests.support import TOKEN
    from worker.runtime import runtime

    rt = runtime()
    rt.redis.hset(rt._logos_key("REF30"), mapping={
        f"Slow{n}": f"http://localhost:{slow_headers.port}/{n}.png" for n in range(5)})
    for key in redis_client.keys("passflow:logo*"):
        if not key.startswith(b"passflow:logo-urls:"):
            redis_client.delete(key)
    settings = get_settings().model_copy(
        update={"logo_trusted_hosts": [f"localhost:{slow_headers.port}"]})
    worst = 0.0
    with BackgroundServer(create_app(settings, tokens=[TOKEN])) as api:
        def get(n: int) -> int:
            which = 0 if n < 60 else n % 5
            return httpx.get(f"{api.url}/activate/logos/REF30/Slow{which}",
                             timeout=30).status_code

        with ThreadPoolExecutor(100) as pool:
            answers = pool.map(get, range(100))
            for _ in range(20):
                started = time.monotonic()
                assert httpx.get(api.url + "/livez", timeout=5).status_code == 200
                worst = max(worst, time.monotonic() - started)
            answered = list(answers)
    assert set(answered) <= {404, 429}, set(answered)
    # A fetch holding a serving thread would hold /livez for the 5 s fetch deadline; 100
    # client threads in this process share its CPU with the server, hence the margin.
    assert worst < 2.5, worst
    fault_report("100 requests for 5 logos whose host sends a header line every 2 s",
                 f"/livez at worst {worst * 1000:.0f} ms; each logo fetched once at a time, "
                 "cut at the deadline, then a 404")
