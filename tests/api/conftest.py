"""The API layer's fixtures: the API served by uvicorn on its own port, and a client of it with
the tests' token (the security tests use them too)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, sync_playwright

from passflow.serving import BackgroundServer, free_port
from passflow.settings import get_settings
from tests.support import TOKEN


@pytest.fixture(scope="module")
def api_server(pass_env: str) -> Iterator[BackgroundServer]:
    """The API on its own port; PASSFLOW_PUBLIC_URL points at it (landing page links)."""
    from api.app import create_app

    port = free_port()
    os.environ["PASSFLOW_PUBLIC_URL"] = f"http://127.0.0.1:{port}"
    get_settings.cache_clear()
    with BackgroundServer(create_app(get_settings(), tokens=[TOKEN]), port=port) as server:
        yield server


@pytest.fixture
def api(api_server: BackgroundServer, jobs_env: httpx.Client) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_server.url, timeout=10,
                      headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield client


@pytest.fixture
def activation_tries(redis_client) -> Iterator[None]:
    """The activation pages' try counters, and the request budget of the browsers' address,
    start empty and are emptied after the test (every test client is 127.0.0.1: one test's
    lockout or spent budget must not fall on the next)."""

    def clear() -> None:
        keys = [*redis_client.keys("passflow:activate:tries:*"),
                *redis_client.keys("passflow:throttle:*127.0.0.1*")]
        if keys:
            redis_client.delete(*keys)

    clear()
    yield
    clear()


# Debian's Chromium, driven by Playwright (`playwright install` downloads nothing here). Flags a
# root-run Chromium needs; the background ones keep it off the closed network.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Never skipped: without Chromium this fails and says how to get it."""
    assert os.access(CHROMIUM, os.X_OK), (
        f"{CHROMIUM} is missing: `make test` installs it (.ci/setup), or apt-get install chromium")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
