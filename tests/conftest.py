"""Session-scoped real services shared by every test package."""

from __future__ import annotations

import itertools
import os

# Test settings, before anything reads them. Redis database 15 is the tests' own.
TEST_ENV = {
    "PASSFLOW_BROKER_URL": os.environ.get("PASSFLOW_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
    "PASSFLOW_SECRET_KEY": "test-secret-key",
    "PASSFLOW_POLL_INTERVAL_S": "0.3",
    "PASSFLOW_LEASE_S": "6",
    "PASSFLOW_SWEEP_INTERVAL_S": "0.5",
    "PASSFLOW_SWEEP_GRACE_S": "1",
    "PASSFLOW_PUBLIC_URL": "http://127.0.0.1:8000",
}
os.environ.update(TEST_ENV)
from collections.abc import Iterator

import httpx
import pytest

from passflow.serving import BackgroundServer
from simulator import SimConfig, create_app
from simulator.fixtures import DEMO_SOFTWARE_STATEMENT
from worker.adobe_pass import AdobePass, Device

_ips = itertools.count(1)


@pytest.fixture(scope="session")
def simulator_server() -> Iterator[BackgroundServer]:
    """The Adobe Pass simulator, served by uvicorn on a free port, for the whole run."""
    with BackgroundServer(create_app(SimConfig.load())) as server:
        yield server


@pytest.fixture
def sim(simulator_server: BackgroundServer) -> Iterator[httpx.Client]:
    """A control client of a simulator reset to its fixtures (state, faults, throttle)."""
    with httpx.Client(base_url=simulator_server.url, timeout=10) as control:
        control.post("/_sim/reset").raise_for_status()
        yield control


@pytest.fixture
def pass_url(sim: httpx.Client) -> str:
    return str(sim.base_url).rstrip("/")


@pytest.fixture
def adobe(pass_url: str) -> Iterator[AdobePass]:
    with AdobePass(pass_url, software_statement=DEMO_SOFTWARE_STATEMENT) as client:
        yield client


def new_device(**info: object) -> Device:
    """A device with its own id and documentation-range IP (its own throttling bucket)."""
    n = next(_ips)
    return Device(
        id=f"device-{n:04d}",
        ip=f"198.51.{100 + n // 250}.{n % 250 + 1}",
        port=40000 + n,
        info={"primaryHardwareType": "SetTopBox", "model": "TV 5th Gen", "version": "5",
              "osName": "tvOS", "osVersion": "17.1", "connectionType": "LAN", **info},
    )


@pytest.fixture
def device() -> Device:
    return new_device()
