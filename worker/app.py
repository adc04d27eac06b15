"""The Celery app, configured from settings. Its tasks are registered by worker.tasks.register.

Pitfalls designed around (see worker.jobs): with Redis a delayed message held by a killed worker
only returns after `visibility_timeout`; revocations live in worker memory; time limits hold
only on the prefork and gevent pools. So the SQL row, not the broker, says what is due, the
sweeper (worker.sweeper) re-sends what was lost, and per-call timeouts and the job's lease bound
a step on any pool.
"""

from __future__ import annotations

from celery import Celery, signals
from kombu import Queue as KombuQueue

from passflow.settings import Settings, get_settings
from worker.queues import ALL_QUEUES, Queue


def make_celery(settings: Settings | None = None) -> Celery:
    s = settings or get_settings()
    app = Celery("passflow", broker=s.broker_url)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,  # nothing reads results: jobs live in SQL
        result_backend=None,
        task_acks_late=True,  # tasks are idempotent through their job's lease
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_queues=[KombuQueue(name) for name in ALL_QUEUES],
        task_default_queue=Queue.MAINTENANCE.value,
        # Countdowns stay far below this; a message of a dead worker comes back after it.
        broker_transport_options={"visibility_timeout": 300, "socket_connect_timeout": 3},
        # Publishing (the API accepting an event) must not hang when Redis is down: the event
        # is stored and the sweeper sends it later.
        task_publish_retry_policy={"max_retries": 1, "interval_start": 0,
                                   "interval_step": 0.2, "interval_max": 0.5},
        # kombu's Redis transport, mended so a broker that dies does not end the worker.
        broker_transport="worker.broker:Transport",
        broker_connection_retry_on_startup=True,
        # A worker waits for its broker for as long as it is away, never exits for it.
        broker_connection_max_retries=None,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    return app


celery_app = make_celery()


@signals.setup_logging.connect
def _passflow_logs(loglevel: object = None, **_: object) -> None:
    """Workers log through passflow.logs (JSON, or text in a terminal) in one stream with
    Celery's own lines. A task received and succeeded is said by the engine's `step_run` line
    already: Celery's two lines for it (many a second on an idle poller) are kept for debug."""
    import logging

    from passflow import logs

    level = loglevel if isinstance(loglevel, int) else logging.INFO
    logs.configure(level)
    if level > logging.DEBUG:
        for chatty in ("celery.app.trace", "celery.worker.strategy"):
            logging.getLogger(chatty).setLevel(logging.WARNING)


@signals.task_prerun.connect
def _fresh_log_context(**_: object) -> None:
    """No job's or device's ids on the next task's lines (threads run many tasks)."""
    from passflow import logs

    logs.clear()


@signals.worker_ready.connect
def _ready(sender: object = None, **_: object) -> None:
    """The banner's facts in one line of the same stream (Celery's banner is turned off),
    once the start-up heap is frozen (passflow.heap). `sender` is the worker's consumer."""
    from passflow import logs
    from passflow.heap import freeze_startup_heap

    task_consumer = getattr(sender, "task_consumer", None)
    queues = sorted(q.name for q in task_consumer.queues) if task_consumer else []
    pool = getattr(sender, "pool", None)
    logs.get_logger("worker").info(
        "worker_ready", hostname=getattr(sender, "hostname", None), queues=queues,
        pool=type(pool).__module__.rsplit(".", 1)[-1] if pool is not None else None,
        concurrency=getattr(pool, "limit", None), frozen_objects=freeze_startup_heap())
