"""The HTTP API served by uvicorn over a real socket, with a real worker behind it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from passflow.serving import BackgroundServer
from passflow.settings import get_settings

TOKEN = "test-api-token"


@pytest.fixture(scope="module")
def api_server(pass_env: str) -> Iterator[BackgroundServer]:
    from api.app import create_app

    with BackgroundServer(create_app(get_settings(), tokens=[TOKEN])) as server:
        yield server


@pytest.fixture
def api(api_server: BackgroundServer, jobs_env: httpx.Client) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_server.url, timeout=10,
                      headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield client
