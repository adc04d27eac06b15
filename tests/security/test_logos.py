"""The logo proxy: logo URLs come from third-party MVPD hosts (Adobe's configuration), so
every fetch is hostile until shown otherwise. Local hosts stand in for them: "localhost" is
trusted (a development host), 127.0.0.1 is not."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from api.logos import Refused, fetch
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


def _on(server: BackgroundServer, path: str) -> str:
    return f"http://localhost:{server.port}{path}"


def test_a_trusted_raster_logo_is_fetched(host):
    assert fetch(_on(host, "/ok.png"), trusted_hosts={"localhost"}).body == PNG


def test_a_redirect_to_an_internal_address_is_refused(host, fault_report):
    hits.clear()
    with pytest.raises(Refused, match="https only|not a public address"):
        fetch(_on(host, f"/to-internal?port={host.port}"), trusted_hosts={"localhost"})
    assert hits == []  # the internal service was never asked
    fault_report("a logo host redirects passflow to an internal address",
                 "refused before the second hop; nothing fetched from the internal address")


def test_plain_http_and_private_addresses_are_refused():
    with pytest.raises(Refused, match="https only"):
        fetch("http://logos.example/x.png")
    with pytest.raises(Refused, match="not a public address"):
        fetch("https://127.0.0.1/x.png")


@pytest.mark.parametrize("path,reason", [
    ("/evil.svg", "not a raster image"),
    ("/huge.png", "larger than"),
    ("/drip.png", "deadline"),
])
@pytest.mark.slow
def test_hostile_logos_are_refused(host, path, reason, fault_report):
    started = time.monotonic()
    with pytest.raises(Refused, match=reason):
        fetch(_on(host, path), trusted_hosts={"localhost"})
    assert time.monotonic() - started < 7  # one overall deadline
    fault_report(f"a logo host serves {path[1:]}", f"refused ({reason}); nothing served")
