"""Real workers against real Redis, SQLite and PostgreSQL, and the simulator over sockets."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import redis
from sqlalchemy import delete

import models.db
from models import FINAL_STATUSES, Job, Registration
from passflow.database import upgrade
from passflow.events import EventIn
from passflow.serving import BackgroundServer
from passflow.settings import get_settings
from worker.runtime import reset_runtime

PG_ADMIN = os.environ.get(
    "PASSFLOW_TEST_PG_ADMIN", "host=127.0.0.1 port=5432 user=postgres password=postgres "
    "dbname=postgres")
PG_URL = os.environ.get(
    "PASSFLOW_TEST_PG_URL",
    "postgresql+psycopg://postgres:postgres@127.0.0.1:5432/passflow_test")


def _fresh_postgres() -> str:
    name = PG_URL.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return PG_URL


@pytest.fixture(scope="session")
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(os.environ["PASSFLOW_BROKER_URL"])
    client.flushdb()
    yield client
    client.close()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request, tmp_path_factory) -> Iterator[str]:
    """Each backend once, migrated with Alembic; the process' engine is bound to it."""
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("db") / "passflow.db"
        url = f"sqlite:///{path}"
    else:
        url = _fresh_postgres()
    upgrade(url)
    os.environ["PASSFLOW_DATABASE_URL"] = url
    get_settings.cache_clear()
    models.db.configure(url)
    reset_runtime()  # its credential cache belongs to the previous database
    yield url


@pytest.fixture(scope="session")
def pass_env(simulator_server: BackgroundServer) -> str:
    os.environ["PASSFLOW_PASS_BASE_URL"] = simulator_server.url
    get_settings.cache_clear()
    reset_runtime()
    return simulator_server.url


@pytest.fixture(scope="module")
def worker(pass_env: str, redis_client: redis.Redis) -> Iterator[None]:
    """A real Celery worker (threads pool) consuming every queue, in this process."""
    from celery.contrib.testing.worker import start_worker

    from worker.app import celery_app
    from worker.queues import ALL_QUEUES

    with start_worker(celery_app, pool="threads", concurrency=8, perform_ping_check=False,
                      queues=ALL_QUEUES, loglevel="WARNING", shutdown_timeout=10):
        yield


@pytest.fixture
def jobs_env(database_url: str, worker: None,
             simulator_server: BackgroundServer) -> Iterator[httpx.Client]:
    """Everything a job needs: a migrated database, Redis, a worker, and a simulator reset to
    its fixtures except for passflow's registration (as with the real Adobe Pass, which is not
    reset between jobs)."""
    with httpx.Client(base_url=simulator_server.url, timeout=10) as control:
        control.post("/_sim/reset", params={"keep_registrations": "true"}).raise_for_status()
        yield control


def wait_for(predicate: Callable[[], object], *, timeout: float = 20.0,
             interval: float = 0.1) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s")
        time.sleep(interval)


def job_status(job_id: str) -> str:
    with models.db.session_scope() as session:
        return session.get(Job, job_id).status


def wait_for_status(job_id: str, *statuses: str, timeout: float = 20.0) -> str:
    wanted = set(statuses) or {s.value for s in FINAL_STATUSES}

    def reached() -> str | None:
        status = job_status(job_id)
        return status if status in wanted else None

    return wait_for(reached, timeout=timeout)  # type: ignore[return-value]


def forget_registration() -> None:
    """Start without cached credentials (the simulator was reset too)."""
    with models.db.session_scope() as session:
        session.execute(delete(Registration))
    reset_runtime()


def make_event(event_id: str, type_: str, device, **fields) -> EventIn:
    return EventIn.model_validate({
        "event_id": event_id, "type": type_,
        "device": {"id": device.id, "ip": device.ip, "port": device.port,
                   "info": dict(device.info)},
        **fields,
    })


class WorkerProcess:
    """`passflow worker` in a subprocess, as operations run it."""

    def __init__(self, name: str, *, beat: bool = False, concurrency: int = 4,
                 queues: str | None = None):
        import subprocess
        import sys

        argv = [sys.executable, "-m", "passflow.cli", "worker", "--pool", "threads",
                "--concurrency", str(concurrency), "--hostname", f"{name}@%h",
                "--loglevel", "WARNING"]
        if beat:
            argv.append("--beat")
        if queues:
            argv += ["--queues", queues]
        self.name = name
        self.log = Path(os.environ.get("TMPDIR", "/tmp")) / f"passflow-{name}-{os.getpid()}.log"
        self._log = self.log.open("wb")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=dict(os.environ))

    def kill(self) -> None:
        import signal

        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except Exception:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log.close()


@pytest.fixture
def worker_processes(database_url: str, pass_env: str, redis_client: redis.Redis,
                     sim: httpx.Client) -> Iterator[Callable[..., WorkerProcess]]:
    """Start workers in subprocesses; all are stopped at the end of the test."""
    started: list[WorkerProcess] = []

    def start(name: str, **kwargs) -> WorkerProcess:
        proc = WorkerProcess(name, **kwargs)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()
