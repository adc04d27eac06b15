"""Group commit of events (api.intake): requests waiting together are stored in one transaction,
and an event that cannot be stored fails alone."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

import models.db
from api.intake import Intake
from models import Event, Job
from passflow.database import upgrade
from passflow.serving import free_port
from tests.support import (
    ApiProcess,
    TcpProxy,
    device_json,
    fresh_postgres,
    make_event,
    new_device,
    wait_for_status,
)
from worker import dispatch, jobs


def _events(n: int) -> list:
    return [make_event(f"evt-{uuid.uuid4()}", "profiles.requested", new_device())
            for _ in range(n)]


def _submit_all(intake: Intake, events: list) -> list:
    async def main() -> list:
        return await asyncio.gather(*(intake.submit(e) for e in events),
                                    return_exceptions=True)

    return asyncio.run(main())


@pytest.fixture
def transactions(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many events each call of `submit_many` (one transaction) was given."""
    sizes: list[int] = []
    original = dispatch.submit_many

    def recording(events, **kwargs):
        sizes.append(len(events))
        return original(events, **kwargs)

    monkeypatch.setattr(dispatch, "submit_many", recording)
    return sizes


def test_waiting_events_are_stored_in_one_transaction(jobs_env: httpx.Client, transactions):
    events = _events(10)
    answers = _submit_all(Intake(default_service_provider="REF30"), events)
    # All ten were waiting when the first transaction began.
    assert transactions == [10]
    assert all(a.created and a.status == "queued" for a in answers)
    for event, answer in zip(events, answers, strict=True):
        with models.db.session_scope() as session:
            job = session.get(Job, answer.job_id)
            assert job.event.event_id == event.event_id and job.device_id == event.device.id
        assert wait_for_status(answer.job_id) == "succeeded"


def _submit_spaced(intake: Intake, events: list, gap_s: float) -> list:
    """Each event `gap_s` after the one before, as requests arriving one by one."""
    async def main() -> list:
        async def one(n: int, event):
            await asyncio.sleep(n * gap_s)
            return await intake.submit(event)

        return await asyncio.gather(*(one(n, e) for n, e in enumerate(events)))

    return asyncio.run(main())


def test_events_arriving_close_together_wait_for_company(jobs_env: httpx.Client, transactions):
    """Five requests 5 ms apart: the first, alone, is stored at once; the four close behind it
    wait for each other and share a transaction (and a message, and the worker's run)."""
    answers = _submit_spaced(Intake(default_service_provider="REF30", linger_s=0.2),
                             _events(5), gap_s=0.005)
    assert transactions == [1, 4]
    assert all(wait_for_status(a.job_id) == "succeeded" for a in answers)


def test_a_lone_event_waits_for_nobody(jobs_env: httpx.Client, transactions):
    """Events further apart than the linger are each stored the moment they arrive."""
    intake = Intake(default_service_provider="REF30", linger_s=5.0)
    started = time.monotonic()
    _submit_all(intake, _events(1))
    assert time.monotonic() - started < 2.5
    assert transactions == [1]


def test_an_event_that_cannot_be_stored_fails_alone(jobs_env: httpx.Client,
                                                   monkeypatch: pytest.MonkeyPatch):
    events = _events(5)
    poison = events[2].event_id
    original = dispatch.submit_many

    def failing(batch, **kwargs):
        if any(e.event_id == poison for e in batch):
            raise ValueError("this event cannot be stored")
        return original(batch, **kwargs)

    monkeypatch.setattr(dispatch, "submit_many", failing)
    answers = _submit_all(Intake(default_service_provider="REF30"), events)
    assert isinstance(answers[2], ValueError)
    others = [a for i, a in enumerate(answers) if i != 2]
    assert all(isinstance(a, jobs.Accepted) and a.created for a in others)
    with models.db.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Event).where(
            Event.event_id == poison)) == 0
    assert all(wait_for_status(a.job_id) == "succeeded" for a in others)


def test_an_unreachable_database_fails_the_waiting_events_at_once(
        database_url: str, transactions):
    """No retry one by one when the database itself is down: each caller hears at once."""
    models.db.configure(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nowhere")
    try:
        answers = _submit_all(Intake(default_service_provider="REF30"), _events(5))
    finally:
        models.db.configure(database_url)
    assert transactions == [5]
    assert all(isinstance(a, OperationalError) for a in answers)


def test_the_api_answers_503_while_the_database_is_down(pass_env: str):
    """The database drops off the network under a running API: "retry shortly", not a 500
    (the API would not have started without it: tests/test_startup.py)."""
    url = make_url(fresh_postgres("passflow_dbdown"))
    upgrade(url.render_as_string(hide_password=False))
    proxy = TcpProxy((url.host, url.port or 5432))
    through = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    api = ApiProcess({"PASSFLOW_DATABASE_URL": through})
    try:
        proxy.cut()
        device = new_device()
        answer = httpx.post(api.url + "/v1/events", timeout=30,
                            headers=api.headers,
                            json={"event_id": f"evt-{uuid.uuid4()}", "type": "profiles.requested",
                                  "device": device_json(device)})
    finally:
        api.stop()
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "2"
    assert "database" in answer.json()["detail"]
    assert answer.headers["content-type"] == "application/problem+json"


@pytest.mark.slow
def test_metrics_answer_while_the_database_is_down(pass_env: str, tmp_path):
    """One replica cut off from its database: /metrics still answers, with
    passflow_database_up 0, so the alert that names the outage can fire (a 503 would leave
    the series absent, not 0)."""
    url = make_url(fresh_postgres("passflow_metricsdown"))
    upgrade(url.render_as_string(hide_password=False))
    proxy = TcpProxy((url.host, url.port or 5432))
    through = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    api = ApiProcess({"PASSFLOW_DATABASE_URL": through}, log=tmp_path / "api.log")
    try:
        assert "passflow_database_up 1.0" in httpx.get(api.url + "/metrics", timeout=30,
                                                       headers=api.headers).text
        proxy.cut()
        # Past the tokens' re-read (5 s): every answer meanwhile, and after, is the metrics.
        answers = []
        until = time.monotonic() + 7
        while time.monotonic() < until:
            answers.append(httpx.get(api.url + "/metrics", timeout=60, headers=api.headers))
    finally:
        api.stop()
    assert {a.status_code for a in answers} == {200}, answers[-1].text[:300]
    assert all("passflow_database_up 0.0" in a.text for a in answers)
