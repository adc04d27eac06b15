"""Celery tasks, registered on the app explicitly by `register` (a worker calls it at start):
one per step of the registry, thin, each running the engine for a list of job ids; webhook
deliveries; token upkeep; and the sweeper thread every worker runs (worker.sweeper)."""

from __future__ import annotations

import os
import socket
import threading
import uuid

import redis
from celery import Celery, Task, bootsteps, signals

from passflow import logs
from passflow.heap import freeze_startup_heap
from passflow.settings import get_settings
from worker import dispatch, engine, metrics, webhooks
from worker.adobe_pass import AdobePassError, RegistrationRequired
from worker.heartbeat import Heartbeat, owner_of
from worker.runtime import runtime
from worker.steps import STEPS
from worker.steps.dcr import keep_token_fresh
from worker.sweeper import Sweeper
from worker.views import job_view

log = logs.get_logger(__name__)


def register(app: Celery) -> None:
    """Register every task and the sweeper bootstep on `app` (idempotent)."""
    if getattr(app, "_passflow_registered", False):
        return
    for step_name in STEPS:
        app.task(name=dispatch.task_name(step_name), bind=True, acks_late=True)(
            _step_task(step_name))
    app.task(name=dispatch.WEBHOOK_TASK, acks_late=True)(deliver_webhook)
    app.task(name=dispatch.TOKEN_TASK, acks_late=False)(refresh_token)
    app.steps["worker"].add(SweeperStep)
    app._passflow_registered = True  # type: ignore[attr-defined]


def _step_task(step_name: str):
    def run_step(self: Task, job_ids: list[str] | str) -> dict[str, str]:
        # acks_late: a step is idempotent through its job's lease and conditional claim.
        ids = [job_ids] if isinstance(job_ids, str) else list(job_ids)
        return engine.run(step_name, ids, owner=owner_of(self.request.hostname,
                                                         self.request.id or str(uuid.uuid4())))

    run_step.__name__ = run_step.__qualname__ = f"run_{step_name.replace('.', '_')}"
    return run_step


def deliver_webhook(delivery_id: int) -> str:
    settings = get_settings()
    cipher = runtime().cipher
    wait = webhooks.deliver(delivery_id, lambda s, job: job_view(s, job, cipher), settings)
    if wait is not None:
        dispatch.send_delivery(delivery_id, countdown=wait)
        return "retrying"
    return "done"


def refresh_token() -> bool:
    try:
        keep_token_fresh(runtime())
    except RegistrationRequired as exc:  # /healthz says so; jobs fail with it
        log.warning("registration_unusable", problem=exc.problem)
        return False
    except (AdobePassError, redis.RedisError) as exc:  # the next upkeep tries again
        log.warning("token_upkeep_failed", error=type(exc).__name__)
        return False
    return True


def _redis() -> redis.Redis:
    return runtime().redis


@signals.worker_process_init.connect(weak=False)
def _child_started(**_: object) -> None:
    """A prefork child reports its own counts and figures (as HOST:PID); the parent's reporter,
    like its sweeper, stays in the parent. It freezes its own start-up heap: it was forked
    before the parent froze its own (passflow.heap)."""
    metrics.start_reporter(_redis, name=f"{socket.gethostname()}:{os.getpid()}")
    log.debug("worker_child_started", pid=os.getpid(), frozen_objects=freeze_startup_heap())


def _queues_of(parent) -> list[str]:
    """The queues this worker consumes (its -Q selection)."""
    try:
        queues = parent.app.amqp.queues
        return sorted(queues.consume_from or queues)
    except AttributeError:
        return []


class SweeperStep(bootsteps.StartStopStep):
    """Runs this worker's Sweeper thread from start to shutdown, started after the pool (the
    prefork pool forks its children before the thread exists)."""

    requires = ("celery.worker.components:Pool",)

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self, parent) -> None:
        hostname = getattr(parent, "hostname", None) or socket.gethostname()
        metrics.start_reporter(_redis, name=hostname)
        sweeper = Sweeper(runtime().redis, name=hostname)
        pool = getattr(parent, "pool", None)
        heartbeat = Heartbeat(runtime().redis, hostname=hostname, queues=_queues_of(parent),
                              pool=type(pool).__module__.rsplit(".", 1)[-1] if pool else "?",
                              concurrency=getattr(parent, "concurrency", None))
        self._threads = [
            threading.Thread(target=sweeper.run, args=(self._stop,), daemon=True,
                             name="passflow-sweeper"),
            threading.Thread(target=heartbeat.run, args=(self._stop,), daemon=True,
                             name="passflow-heartbeat")]
        for thread in self._threads:
            thread.start()

    def stop(self, parent) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    # Warm shutdowns call stop, cold ones (and the test worker) terminate.
    terminate = shutdown = stop
