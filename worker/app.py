"""The Celery app, configured from settings.

Pitfalls designed around (see worker.jobs): with Redis a delayed message held by a killed worker
only returns after `visibility_timeout`; `max_retries` defaults to 3; revocations live in worker
memory. So the SQL row, not the broker, says what is due, and beat runs a sweeper.
"""

from __future__ import annotations

from celery import Celery, signals
from kombu import Queue as KombuQueue

from passflow.settings import Settings, get_settings
from worker.queues import ALL_QUEUES, Queue


def make_celery(settings: Settings | None = None) -> Celery:
    s = settings or get_settings()
    app = Celery("passflow", broker=s.broker_url, include=["worker.tasks"])
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
        # Soft below hard, both below the job lease, so a stuck step never outlives its lease.
        task_soft_time_limit=s.lease_s * 0.6,
        task_time_limit=s.lease_s * 0.8,
        # Countdowns stay far below this; a message of a dead worker comes back after it.
        broker_transport_options={"visibility_timeout": 300, "socket_connect_timeout": 3},
        # Publishing (the API accepting an event) must not hang when Redis is down: the event
        # is stored and the sweeper sends it later.
        task_publish_retry_policy={"max_retries": 1, "interval_start": 0,
                                   "interval_step": 0.2, "interval_max": 0.5},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        beat_schedule={
            "sweep-overdue-steps": {
                "task": "passflow.maintenance.sweep",
                "schedule": s.sweep_interval_s,
                "options": {"queue": Queue.MAINTENANCE.value,
                            "expires": max(1.0, s.sweep_interval_s * 2)},
            },
            "keep-access-token-fresh": {
                "task": "passflow.registration.refresh_token",
                "schedule": 60.0,
                "options": {"queue": Queue.REGISTRATION.value, "expires": 60},
            },
        },
    )
    return app


celery_app = make_celery()


@signals.setup_logging.connect
def _json_logs(**_: object) -> None:
    """Workers log JSON lines through passflow.logs instead of Celery's text format."""
    from passflow import logs

    logs.configure()
