"""Sending work to the broker, always after the transition that made it due has committed.

A send that fails (the broker is down) is logged, not raised: the job rows say what is due, and
the sweeper sends it later. So the broker only ever carries copies of what SQL holds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from datetime import datetime
from itertools import groupby
from typing import Any

from models import JobStatus, audit, utc_text
from models.db import session_scope
from models.history import JobQuery, count_jobs, jobs_page
from passflow import logs
from passflow.events import EventIn
from passflow.settings import get_settings
from worker import jobs, policy, webhooks
from worker.app import celery_app
from worker.heartbeat import SENT_AT_HEADER
from worker.queues import Queue
from worker.steps import FIRST_STEP, STEPS

log = logs.get_logger(__name__)

WEBHOOK_TASK = "passflow.webhooks.deliver"
TOKEN_TASK = "passflow.registration.refresh_token"


def task_name(step_name: str) -> str:
    return f"passflow.{step_name}"


def send_step(step_name: str, job_ids: list[str], *, countdown: float = 0.0) -> bool:
    """One message for the jobs' run of `step_name` (worker.engine runs them together). Steps due
    later than DIRECT_DISPATCH_MAX_S stay in the table for the sweeper."""
    if not job_ids or countdown > policy.DIRECT_DISPATCH_MAX_S:
        return True
    try:
        celery_app.send_task(task_name(step_name), args=[job_ids],
                             queue=STEPS[step_name].queue.value,
                             countdown=countdown if countdown > 0 else None,
                             headers={SENT_AT_HEADER: time.time()})
        return True
    except Exception as exc:  # broker down: the jobs stay due in SQL
        log.warning("dispatch_failed", step=step_name, jobs=len(job_ids),
                    error=type(exc).__name__)
        return False


Due = tuple[str, str, float]  # (job id, step, seconds until due)


def chunks(due: list[Due], size: int) -> list[list[Due]]:
    """Messages for due rows: per step, in due order, up to `size` jobs whose due times span at
    most BATCH_WINDOW_S (each message is sent for its first job's due time, so none of its jobs
    runs much before its time)."""
    out: list[list[Due]] = []
    for _, rows in groupby(sorted(due, key=lambda r: (r[1], r[2])), key=lambda r: r[1]):
        chunk: list[Due] = []
        for row in rows:
            if chunk and (len(chunk) >= size or row[2] - chunk[0][2] > policy.BATCH_WINDOW_S):
                out.append(chunk)
                chunk = []
            chunk.append(row)
        out.append(chunk)
    return out


def send_steps(due: list[Due]) -> None:
    """Send due rows as messages (see `chunks`); rows due later than DIRECT_DISPATCH_MAX_S
    stay in the table for the sweeper."""
    soon = [row for row in due if row[2] <= policy.DIRECT_DISPATCH_MAX_S]
    for chunk in chunks(soon, get_settings().batch_size):
        send_step(chunk[0][1], [job_id for job_id, _, _ in chunk], countdown=chunk[0][2])


def submit(event: EventIn, *, default_service_provider: str) -> tuple[str, bool]:
    """Accept one event (see `submit_many`). Returns (job id, created)."""
    accepted = submit_many([event], default_service_provider=default_service_provider)[0]
    return accepted.job_id, accepted.created


def submit_many(events: list[EventIn], *, default_service_provider: str,
                request_ids: dict[str, str] | None = None) -> list[jobs.Accepted]:
    """Accept events in one transaction, then send the new jobs' first steps (one message per
    step and batch). Jobs are marked sent in the transaction; if the broker is down the sweeper
    sends them once overdue (an outbox)."""
    with session_scope() as session:
        answers, created = jobs.accept(session, events, first_steps=FIRST_STEP,
                                       default_service_provider=default_service_provider,
                                       request_ids=request_ids)
    send_steps([(job_id, step_name, 0.0) for job_id, step_name in created])
    return answers


def retry(job_id: str, *, requested_by: str) -> str:
    """Run a failed job again (`jobs.retry`), log who asked, and send its first step at once:
    the API and the CLI both retry here. Returns the new job's id; raises LookupError or
    jobs.NotRetryable."""
    with session_scope() as session:
        new = jobs.retry(session, job_id, first_steps=FIRST_STEP, requested_by=requested_by)
        audit.record(session, requested_by, "job.retry", job_id, new_job=new.id)
        sent = [(new.id, new.current_step, 0.0)]
    log.warning("job_retried", job_id=new.id, retry_of=job_id, requested_by=requested_by)
    send_steps(sent)
    return new.id


# The most failed jobs one bulk retry sends again (API, CLI and console alike); a larger
# incident is retried in rounds, each saying how many are left.
RETRY_MANY_LIMIT = 500


def retry_many(query: JobQuery, *, requested_by: str, dry_run: bool = False,
               limit: int = RETRY_MANY_LIMIT) -> dict[str, Any]:
    """Every failed job the query matches that no job retries yet, oldest failures last (at
    most `limit`, newest first), each retried as `retry` does; one audit row says who asked,
    with the filter and the counts. A dry run only counts: how many match, by error code.
    The API, the CLI and the console's "retry all" all come here."""
    query = dataclasses.replace(query, status=JobStatus.FAILED.value, not_retried=True,
                                cursor=None, limit=min(limit, RETRY_MANY_LIMIT))
    with session_scope() as session:
        by_code = count_jobs(session, query)
        chosen = [] if dry_run else [j["job_id"] for j in jobs_page(session, query)[0]]
    matched = sum(by_code.values())
    report: dict[str, Any] = {"dry_run": dry_run, "matched": matched,
                              "by_error_code": dict(sorted(by_code.items(),
                                                           key=lambda kv: -kv[1])),
                              "retried": [], "refused": []}
    if dry_run:
        report["would_retry"] = min(matched, query.limit)
        return report
    for job_id in chosen:
        try:
            report["retried"].append({"job_id": job_id,
                                      "new_job_id": retry(job_id, requested_by=requested_by)})
        except (LookupError, jobs.NotRetryable) as exc:  # retried meanwhile by someone else
            report["refused"].append({"job_id": job_id, "reason": str(exc)})
    report["left"] = max(0, matched - len(chosen))
    shown = {k: utc_text(v) if isinstance(v, datetime) else v
             for k, v in dataclasses.asdict(query).items()
             if v is not None and k not in ("limit", "cursor", "status", "not_retried",
                                            "service_providers")}
    with session_scope() as session:
        audit.record(session, requested_by, "jobs.retry_many", "jobs", filter=shown,
                     matched=matched, retried=len(report["retried"]),
                     refused=len(report["refused"]))
    return report


def notify(job_ids: list[str]) -> None:
    """Send the webhook deliveries the jobs' transitions recorded (none without a URL)."""
    if not job_ids or not get_settings().webhook_url:
        return
    with session_scope() as session:
        pending = webhooks.pending_for_jobs(session, job_ids)
    for delivery_id in pending:
        send_delivery(delivery_id)


def send_delivery(delivery_id: int, *, countdown: float | None = None) -> None:
    # A broker failure is fine: the sweeper re-sends pending deliveries.
    with contextlib.suppress(Exception):
        celery_app.send_task(WEBHOOK_TASK, args=[delivery_id], queue=Queue.MAINTENANCE.value,
                             countdown=countdown, headers={SENT_AT_HEADER: time.time()})


def send_token_upkeep() -> None:
    with contextlib.suppress(Exception):
        celery_app.send_task(TOKEN_TASK, queue=Queue.REGISTRATION.value, expires=60,
                             headers={SENT_AT_HEADER: time.time()})
