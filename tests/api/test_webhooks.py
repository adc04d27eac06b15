"""Webhooks: signed POSTs when a job waits for the user and when it finishes, retried, recorded."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from sqlalchemy import select

import models.db
from models import WebhookDelivery
from passflow.serving import BackgroundServer
from passflow.settings import get_settings
from tests.support import device_json, new_device, wait_for, wait_for_status
from worker.webhooks import SIGNATURE_HEADER, sign, verify

SECRET = "webhook-test-secret-0123456789-ABCDEF"


class Receiver:
    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.fail_first = 0
        self.holding = threading.Event()  # a POST is being held (a slow receiver)
        self.hold: threading.Event | None = None  # set: held until it is set
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> Response:
            if self.hold is not None:
                self.holding.set()
                await asyncio.get_running_loop().run_in_executor(None, self.hold.wait, 20)
            if self.fail_first > 0:
                self.fail_first -= 1
                return Response(status_code=503)
            self.received.append((dict(request.headers), await request.body()))
            return Response(status_code=204)

        self.app = app


@pytest.fixture
def receiver(api: httpx.Client) -> Iterator[Receiver]:
    hook = Receiver()
    with BackgroundServer(hook.app) as server:
        os.environ["PASSFLOW_WEBHOOK_URL"] = f"{server.url}/hook"
        os.environ["PASSFLOW_WEBHOOK_SECRET"] = SECRET
        get_settings.cache_clear()
        try:
            yield hook
        finally:
            del os.environ["PASSFLOW_WEBHOOK_URL"], os.environ["PASSFLOW_WEBHOOK_SECRET"]
            get_settings.cache_clear()


def _events(hook: Receiver, job_id: str) -> list[dict]:
    out = []
    for _, body in hook.received:
        payload = json.loads(body)
        if payload["job"]["job_id"] == job_id:
            out.append(payload)
    return out


def test_waiting_and_finished_jobs_are_posted_signed(api: httpx.Client, receiver: Receiver,
                                                     jobs_env: httpx.Client):
    device = new_device()
    body = {"event_id": f"evt-{uuid.uuid4()}", "type": "authentication.requested",
            "device": device_json(device), "mvpd": "Cablevision"}
    job_id = api.post("/v1/events", json=body).json()["job_id"]
    wait_for(lambda: _events(receiver, job_id))
    waiting = _events(receiver, job_id)[0]
    assert waiting["event"] == "job.waiting_for_user"
    assert waiting["job"]["status"] == "waiting_for_user" and waiting["job"]["result"]["code"]
    jobs_env.post("/_sim/login", json={"code": waiting["job"]["result"]["code"]})
    wait_for(lambda: len(_events(receiver, job_id)) == 2)
    finished = _events(receiver, job_id)[1]
    assert finished["event"] == "job.finished" and finished["job"]["status"] == "succeeded"
    for headers, raw in receiver.received:
        assert verify(SECRET, headers[SIGNATURE_HEADER.lower()], raw)
        assert not verify("other-secret", headers[SIGNATURE_HEADER.lower()], raw)
    def recorded() -> set:
        with models.db.session_scope() as session:
            rows = session.scalars(select(WebhookDelivery).where(
                WebhookDelivery.job_id == job_id)).all()
            return {(r.kind, r.status, r.attempts) for r in rows}

    expected = {("job.waiting_for_user", "delivered", 1), ("job.finished", "delivered", 1)}
    wait_for(lambda: recorded() == expected)


@pytest.mark.slow
def test_failed_deliveries_are_retried_with_backoff(api: httpx.Client, receiver: Receiver):
    receiver.fail_first = 2
    device = new_device()
    body = {"event_id": f"evt-{uuid.uuid4()}", "type": "profiles.requested",
            "device": device_json(device)}
    job_id = api.post("/v1/events", json=body).json()["job_id"]
    wait_for_status(job_id)
    wait_for(lambda: _events(receiver, job_id), timeout=30)

    def delivered() -> tuple | None:
        with models.db.session_scope() as session:
            row = session.scalars(select(WebhookDelivery).where(
                WebhookDelivery.job_id == job_id)).one()
            return (row.status, row.attempts, row.last_status_code) if (
                row.status == "delivered") else None

    assert wait_for(delivered) == ("delivered", 3, 204)
    assert len(_events(receiver, job_id)) == 1  # delivered once


def test_replayed_or_stale_signatures_are_refused(fault_report):
    body = b'{"event":"job.finished"}'
    now = int(time.time())
    assert verify(SECRET, sign(SECRET, now, body), body)
    assert not verify(SECRET, sign(SECRET, now - 3600, body), body)  # replay an hour later
    assert not verify(SECRET, sign(SECRET, now, body), body + b" ")  # tampered
    assert not verify(SECRET, "garbage", body)
    fault_report("a webhook replayed an hour later, or tampered with",
                 "the documented verification refuses both")


def test_a_slow_receiver_holds_nothing_in_the_database(api: httpx.Client, receiver: Receiver,
                                                       database_url: str):
    """While a receiver takes its time, the delivery's row is claimed by a lease, not locked:
    another transaction updates it at once; the POST ends and the delivery is recorded once."""
    from sqlalchemy import text, update

    receiver.hold = threading.Event()
    job_id = api.post("/v1/events", json={
        "event_id": f"evt-{uuid.uuid4()}", "type": "profiles.requested",
        "device": device_json(new_device())}).json()["job_id"]
    assert receiver.holding.wait(20)
    started = time.monotonic()
    with models.db.session_scope() as session:
        if database_url.startswith("postgresql"):
            session.execute(text("SET LOCAL lock_timeout = '2s'"))
        session.execute(update(WebhookDelivery).where(WebhookDelivery.job_id == job_id)
                        .values(last_error=None))
    assert time.monotonic() - started < 1.5  # not waiting behind the POST
    receiver.hold.set()

    def delivered() -> tuple | None:
        with models.db.session_scope() as session:
            row = session.scalars(select(WebhookDelivery).where(
                WebhookDelivery.job_id == job_id)).one()
            return (row.status, row.attempts) if row.status == "delivered" else None

    assert wait_for(delivered, timeout=30) == ("delivered", 1)
    assert len(_events(receiver, job_id)) == 1
