"""After a job's transition is committed: send its webhook deliveries."""

from __future__ import annotations

import contextlib

from models.db import session_scope
from worker import webhooks


def send_deliveries(job_id: str) -> None:
    from worker.app import celery_app
    from worker.queues import Queue

    with session_scope() as session:
        pending = webhooks.pending_for_job(session, job_id)
    for delivery_id in pending:
        # A broker failure is fine: the sweeper re-sends pending deliveries.
        with contextlib.suppress(Exception):
            celery_app.send_task("passflow.webhooks.deliver", args=[delivery_id],
                                 queue=Queue.MAINTENANCE.value)
