"""An accepted event is never lost: Redis down between accept and enqueue."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import select

import models.db
from models import Job, JobStep
from tests.support import (
    ApiProcess,
    RedisServer,
    WorkerProcess,
    device_json,
    new_device,
    wait_for_status,
)


@pytest.mark.slow
def test_event_accepted_while_the_broker_is_down_runs_when_it_returns(
        database_url: str, pass_env: str, sim: httpx.Client, fault_report):
    # No in-process worker here: only the processes started below may run the job.
    broker = RedisServer().start()
    api = ApiProcess({"PASSFLOW_BROKER_URL": broker.url})
    worker = None
    try:
        broker.stop()
        device = new_device()
        body = {"event_id": f"evt-{uuid.uuid4()}", "type": "profiles.requested",
                "device": device_json(device)}
        headers = api.headers
        answer = httpx.post(api.url + "/v1/events", json=body, headers=headers, timeout=30)
        assert answer.status_code == 202
        job_id = answer.json()["job_id"]
        health = httpx.get(api.url + "/healthz", headers=headers, timeout=30)
        assert health.status_code == 503 and health.json()["broker"].startswith("failing")
        with models.db.session_scope() as session:
            assert session.get(Job, job_id).status == "queued"  # stored, not run

        broker.start()  # Redis is back; a worker (it sweeps) picks the job up
        worker = WorkerProcess("outbox",
                               env={"PASSFLOW_BROKER_URL": broker.url})
        assert wait_for_status(job_id, timeout=60) == "succeeded"
        with models.db.session_scope() as session:
            attempts = session.scalars(select(JobStep.attempts).where(
                JobStep.job_id == job_id)).all()
        assert attempts == [1]
        fault_report("Redis down when an event is accepted",
                     "202, event and job stored; /healthz 503; the job ran once when Redis came "
                     "back")
    finally:
        if worker is not None:
            worker.stop()
        api.stop()
        broker.stop()
