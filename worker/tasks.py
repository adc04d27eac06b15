"""Thin Celery tasks: one per cookbook step, each taking a job id. The logic is in worker.steps;
claiming, retries and dispatching are in worker.runner."""

from __future__ import annotations

from datetime import timedelta

from celery import Task

import worker.steps  # noqa: F401  (registers the steps)
from models.db import session_scope
from passflow.settings import get_settings
from worker import jobs, webhooks
from worker.app import celery_app
from worker.queues import Queue
from worker.runner import batched, dispatch, dispatch_batch, run_alone, run_batch, run_step
from worker.runtime import runtime
from worker.views import job_view

_step = {"bind": True, "acks_late": True}
# The due times one batch message of the sweeper spans.
BATCH_WINDOW_S = 0.1


@celery_app.task(name="passflow.profiles.retrieve", **_step)
def retrieve_profiles(self: Task, job_id: str) -> str:
    return run_step(self, "profiles.retrieve", job_id)


@celery_app.task(name="passflow.authentication.check_profiles", **_step)
def check_profiles(self: Task, job_id: str) -> str:
    return run_step(self, "authentication.check_profiles", job_id)


@celery_app.task(name="passflow.configuration.retrieve", **_step)
def retrieve_configuration(self: Task, job_id: str) -> str:
    return run_step(self, "configuration.retrieve", job_id)


@celery_app.task(name="passflow.sessions.create", **_step)
def create_session(self: Task, job_id: str) -> str:
    return run_step(self, "sessions.create", job_id)


@celery_app.task(name="passflow.profiles.poll", **_step)
def poll_profile(self: Task, job_id: str) -> str:
    return run_step(self, "profiles.poll", job_id)


@celery_app.task(name="passflow.profiles.fetch", **_step)
def fetch_profile(self: Task, job_id: str) -> str:
    return run_step(self, "profiles.fetch", job_id)


@celery_app.task(name="passflow.decisions.preauthorize", **_step)
def preauthorize(self: Task, job_id: str) -> str:
    return run_step(self, "decisions.preauthorize", job_id)


@celery_app.task(name="passflow.decisions.authorize", **_step)
def authorize(self: Task, job_id: str) -> str:
    return run_step(self, "decisions.authorize", job_id)


@celery_app.task(name="passflow.temppass.authorize", **_step)
def temppass_authorize(self: Task, job_id: str) -> str:
    return run_step(self, "temppass.authorize", job_id)


@celery_app.task(name="passflow.logout.initiate", **_step)
def initiate_logout(self: Task, job_id: str) -> str:
    return run_step(self, "logout.initiate", job_id)


@celery_app.task(name="passflow.batch", **_step)
def run_steps(self: Task, step_name: str, job_ids: list[str]) -> str:
    """One split step (polls) for many jobs: their upstream calls side by side."""
    return run_batch(self, step_name, job_ids)


@celery_app.task(name="passflow.alone", **_step)
def run_step_alone(self: Task, step_name: str, job_id: str) -> str:
    """One job of a split step, never in a batch (a batch that failed hands its jobs here)."""
    return run_alone(self, step_name, job_id)


@celery_app.task(name="passflow.maintenance.sweep", acks_late=False)
def sweep() -> int:
    """Send every step that is due (polls, delayed retries) and re-send every overdue step and
    webhook (lost messages, killed workers, broker outages)."""
    settings = get_settings()
    grace = timedelta(seconds=settings.sweep_grace_s)
    horizon = timedelta(seconds=settings.sweep_interval_s + 0.1)
    with session_scope() as session:
        due = jobs.due_jobs(session, grace=grace, horizon=horizon)
    batches: dict[str, list[tuple[str, float]]] = {}
    for job_id, step_name, in_s in due:
        if batched(step_name):
            batches.setdefault(step_name, []).append((job_id, in_s))
        else:
            dispatch(job_id, step_name, countdown=min(in_s, jobs.DIRECT_DISPATCH_MAX_S))
    for step_name, rows in batches.items():  # in due order (due_jobs sorts them)
        for chunk in _chunks(rows, settings.batch_size):
            dispatch_batch(step_name, [job_id for job_id, _ in chunk],
                           countdown=min(chunk[0][1], jobs.DIRECT_DISPATCH_MAX_S))
    with session_scope() as session:
        deliveries = webhooks.overdue(session, grace=grace)
    for delivery_id in deliveries:
        deliver_webhook.apply_async(args=[delivery_id], queue=Queue.MAINTENANCE.value)
    return len(due) + len(deliveries)


def _chunks(rows: list[tuple[str, float]], size: int) -> list[list[tuple[str, float]]]:
    """Batches of due jobs, in due order: at most `size`, and each job due within
    BATCH_WINDOW_S of its batch's first, whose due time the batch's message is sent for (so no
    job runs much before its time: a throttled play would only be throttled again)."""
    chunks: list[list[tuple[str, float]]] = []
    for row in rows:
        if not chunks or len(chunks[-1]) >= size or row[1] - chunks[-1][0][1] > BATCH_WINDOW_S:
            chunks.append([])
        chunks[-1].append(row)
    return chunks


@celery_app.task(name="passflow.webhooks.deliver", acks_late=True)
def deliver_webhook(delivery_id: int) -> str:
    settings = get_settings()
    cipher = runtime().cipher
    with session_scope() as session:
        wait = webhooks.deliver(session, delivery_id,
                                lambda s, job: job_view(s, job, cipher), settings)
    if wait is not None:
        deliver_webhook.apply_async(args=[delivery_id], queue=Queue.MAINTENANCE.value,
                                    countdown=wait)
        return "retrying"
    return "done"


@celery_app.task(name="passflow.registration.refresh_token", acks_late=False)
def refresh_token() -> bool:
    """Keep the access token fresh so no play waits for a token request."""
    runtime().adobe.access_token()
    return True
