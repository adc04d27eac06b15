"""Step tests: one cookbook step at a time, through its context, against the simulator over
real sockets; records built with the factories. No broker and no worker: `through` plans, calls
and applies the step as the engine does, without claiming the job."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from models import Job
from models.db import session_scope
from passflow.serving import BackgroundServer
from passflow.settings import get_settings
from tests.factories import DeviceFactory
from worker.jobs import Outcome
from worker.runtime import runtime
from worker.steps import Step
from worker.steps.base import StepContext

# The step's logic is the same on both backends (the engine's tests run on both): each module
# runs on SQLite with `pytestmark = ON_SQLITE`.
ON_SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def step_env(database_url: str, pass_env: str, factories_bound: None,
             simulator_server: BackgroundServer) -> Iterator[httpx.Client]:
    """A simulator reset to its fixtures, keeping passflow's registration (as Adobe Pass does
    between jobs), and passflow registered before the test builds its records, as in a running
    deployment: new client credentials end every stored profile, so a registration made during
    the test (the first of a run on a fresh database) would end the profiles it built. Yields
    the simulator's control client."""
    with httpx.Client(base_url=simulator_server.url, timeout=10) as control:
        control.post("/_sim/reset", params={"keep_registrations": "true"}).raise_for_status()
        runtime().adobe_for(get_settings().service_provider).access_token()
        yield control


@pytest.fixture
def logged_in(step_env: httpx.Client):
    """A device with a Cablevision profile at Adobe Pass (no call made from the device)."""
    device = DeviceFactory()
    step_env.post("/_sim/profiles", json={"service_provider": "REF30", "mvpd": "Cablevision",
                                          "device_ids": [device.id]}).raise_for_status()
    return device


def through(step: Step, job_id: str) -> Outcome:
    """Plan, call and apply `step` for the job, as worker.engine does: plan in one session, the
    call with none open, apply in a fresh transaction that commits the records."""
    settings, rt = get_settings(), runtime()
    with session_scope() as session:
        call = step.plan(StepContext(session, session.get_one(Job, job_id), settings, rt))
    try:
        answer = call() if call is not None else None
    except Exception as exc:  # as the engine hands it to apply
        answer = exc
    with session_scope() as session:
        return step.apply(StepContext(session, session.get_one(Job, job_id), settings, rt),
                          answer)
