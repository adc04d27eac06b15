"""The baseline a team would write in a day: one Celery task per play, an ORM insert per decision.

No event table, no job state, no lease, no throttle, no retry policy, no batch: the load
generator posts each play to its HTTP API (`api`: FastAPI on uvicorn, as passflow's), which
publishes one task per play and answers 202; each task makes its authorize call with a shared
httpx.Client, then adds one row with the ORM and commits. `make bench` runs it as its own API
process and worker processes, the same pool and count as passflow's, on the same simulator,
PostgreSQL and Redis.

Run by bench.run: the API is `uvicorn bench.one_task:api`, the worker
`celery -A bench.one_task worker`.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime

import httpx
from celery import Celery
from fastapi import FastAPI
from pydantic import BaseModel
from sqlalchemy import String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from bench.stack import ONE_TASK_BROKER, PG_URL
from simulator.fixtures import DEMO_SOFTWARE_STATEMENT

BROKER_URL = os.environ.get("BENCH_ONE_TASK_BROKER", ONE_TASK_BROKER)
DATABASE_URL = os.environ.get("BENCH_ONE_TASK_DATABASE", PG_URL)
SIMULATOR_URL = os.environ.get("BENCH_ONE_TASK_SIMULATOR", "http://127.0.0.1:0")

app = Celery("one_task", broker=BROKER_URL)
app.conf.update(task_acks_late=True, worker_prefetch_multiplier=4,
                worker_hijack_root_logger=False, broker_connection_retry_on_startup=True)


class Base(DeclarativeBase):
    pass


class PlayDecision(Base):
    __tablename__ = "one_task_decisions"

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[str] = mapped_column(String(200))
    resource: Mapped[str] = mapped_column(String(200))
    decision: Mapped[str] = mapped_column(String(8))
    accepted_at: Mapped[datetime]
    decided_at: Mapped[datetime]


engine = create_engine(DATABASE_URL, pool_size=12, max_overflow=4)
_client = httpx.Client(base_url=SIMULATOR_URL, timeout=30,
                       limits=httpx.Limits(max_connections=16))
_token: list[str] = []
_token_lock = threading.Lock()


def access_token(device_info: str) -> str:
    """Registered once per process (what a team would do first)."""
    with _token_lock:
        if not _token:
            headers = {"X-Device-Info": device_info}
            creds = _client.post("/o/client/register", headers=headers,
                                 json={"software_statement": DEMO_SOFTWARE_STATEMENT}).json()
            _token.append(_client.post("/o/client/token", headers=headers, data={
                "client_id": creds["client_id"], "client_secret": creds["client_secret"],
                "grant_type": "client_credentials"}).json()["access_token"])
        return _token[0]


@app.task(name="bench.authorize")
def authorize(service_provider: str, mvpd: str, resource: str, device_id: str,
              headers: dict[str, str], accepted_at: float) -> None:
    token = access_token(headers["X-Device-Info"])
    answer = _client.post(f"/api/v2/{service_provider}/decisions/authorize/{mvpd}",
                          json={"resources": [resource]},
                          headers={**headers, "Authorization": f"Bearer {token}"})
    answer.raise_for_status()
    decision = answer.json()["decisions"][0]
    with Session(engine) as session:
        session.add(PlayDecision(
            device_id=device_id, resource=resource,
            decision="Permit" if decision.get("authorized") else "Deny",
            accepted_at=datetime.fromtimestamp(accepted_at, UTC).replace(tzinfo=None),
            decided_at=datetime.now(UTC).replace(tzinfo=None)))
        session.commit()


api = FastAPI(title="one task per play")


class Play(BaseModel):
    service_provider: str
    mvpd: str
    resource: str
    device_id: str
    headers: dict[str, str]


@api.post("/plays", status_code=202)
def play(body: Play) -> dict[str, bool]:
    """Accept a play: its task is published, its decision comes later."""
    authorize.delay(body.service_provider, body.mvpd, body.resource, body.device_id,
                    body.headers, time.time())
    return {"accepted": True}
