"""Runs one step of one job: claim, call the service, commit, dispatch the next step."""

from __future__ import annotations

import random
import time
import uuid
from datetime import timedelta

import redis
import sqlalchemy.exc
from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import joinedload, selectinload

from models import Job, JobStatus
from models.db import session_scope
from passflow import logs
from passflow.settings import get_settings
from worker import jobs, metrics
from worker.adobe_pass import AdobePassError, RateLimitError, ThrottledError
from worker.jobs import STEPS, LeaseLost, Outcome
from worker.runtime import runtime
from worker.steps.base import StepContext, error_of

log = logs.get_logger(__name__)

# A step rescheduled this many times for want of request budget (ours or Adobe's 429) fails.
MAX_THROTTLED_RUNS = 30
# A batch whose jobs were claimed this late is behind: it takes the other due jobs along.
GATHER_WHEN_LATE_S = 0.025


def dispatch(job_id: str, step_name: str, *, countdown: float = 0.0) -> bool:
    """Send a step to its queue. A failure is logged, not raised: the sweeper re-sends.

    Steps due later than DIRECT_DISPATCH_MAX_S are left in the table for the due-step
    dispatcher (see worker.jobs.due_jobs).
    """
    if countdown > jobs.DIRECT_DISPATCH_MAX_S:
        return True
    return _send(f"passflow.{step_name}", [job_id], step_name, countdown, job_id=job_id)


def dispatch_batch(step_name: str, job_ids: list[str], *, countdown: float = 0.0) -> bool:
    """Send one message for many jobs of a split step (see worker.jobs.Plan)."""
    return _send("passflow.batch", [step_name, job_ids], step_name, countdown,
                 jobs=len(job_ids))


def dispatch_alone(job_id: str, step_name: str) -> bool:
    """Send a job of a split step to run by itself, never in a batch (see `run_batch`)."""
    return _send("passflow.alone", [step_name, job_id], step_name, 0.0, job_id=job_id)


def _send(task: str, args: list, step_name: str, countdown: float, **context: object) -> bool:
    from worker.app import celery_app

    try:
        celery_app.send_task(task, args=args, queue=STEPS[step_name].queue.value,
                             countdown=countdown if countdown > 0 else None)
        return True
    except Exception as exc:  # broker down: the jobs stay due in SQL
        log.warning("dispatch_failed", step=step_name, error=type(exc).__name__, **context)
        return False


def _backoff(retries: int) -> float:
    return min(30.0, 2.0 ** (retries + 1)) * random.uniform(0.8, 1.2)


def _release(job_id: str, step_name: str, owner: str, retry_in: float, error: str,
             failed: bool = False) -> None:
    with session_scope() as session:
        jobs.release(session, job_id, step_name, owner, retry_in_s=retry_in, error=error,
                     failed=failed)


def batched(step_name: str) -> bool:
    """Whether the step's jobs run in batches (a split step, PASSFLOW_BATCH_SIZE over 1)."""
    return get_settings().batch_size > 1 and STEPS[step_name].plan is not None


def run_step(task: Task, step_name: str, job_id: str) -> str:
    """Run the step for the job: alone, or, for a split step, as a batch (of one, or with the
    other due jobs of the step when the workers are behind: see `run_batch`)."""
    if batched(step_name):
        return run_batch(task, step_name, [job_id])
    return run_alone(task, step_name, job_id)


def run_alone(task: Task, step_name: str, job_id: str) -> str:
    logs.clear()
    logs.bind(job_id=job_id, step=step_name, attempt=task.request.retries)
    result = _run_step(task, step_name, job_id)
    log.info("step_run", result=result)
    return result


def _run_step(task: Task, step_name: str, job_id: str) -> str:
    settings = get_settings()
    owner = task.request.id or str(uuid.uuid4())
    with session_scope() as session:
        claimed = jobs.claim(session, job_id, step_name, owner,
                             lease=timedelta(seconds=settings.lease_s))
    if claimed is None:
        return "skipped"
    logs.bind(device_id=claimed.device_id)
    started = time.perf_counter()
    rt = runtime()
    try:
        with session_scope() as session:
            # The job with its event and device in one query: each round trip counts here.
            job = session.scalars(select(Job).where(Job.id == job_id).options(
                joinedload(Job.event), joinedload(Job.device))).one()
            ctx = StepContext(session, job, settings, rt.adobe, rt.cipher, rt.redis)
            try:
                outcome = STEPS[step_name].run(ctx)
            except (ThrottledError, RateLimitError):
                raise
            except AdobePassError as exc:
                # Counted in the step's row, not in the message: a step re-sent by the sweeper
                # keeps its count.
                if exc.retryable and claimed.failures < settings.step_retries:
                    raise
                outcome = Outcome(JobStatus.FAILED, error=error_of(exc))
            jobs.complete(session, job, step_name, owner, outcome)
    except (ThrottledError, RateLimitError) as exc:
        if isinstance(exc, ThrottledError):
            metrics.inc("passflow_throttled_total", ("local",))
        if step_name != "profiles.poll" and claimed.attempts >= MAX_THROTTLED_RUNS:
            # A 429 storm that does not end: fail clearly rather than wait for ever.
            _fail(job_id, step_name, owner, exc, code="rate_limited")
            _notify(job_id)
            return "failed"
        _release(job_id, step_name, owner, exc.retry_after, str(exc))
        dispatch(job_id, step_name, countdown=exc.retry_after)
        return "throttled"
    except (AdobePassError, SoftTimeLimitExceeded, redis.RedisError,
            sqlalchemy.exc.TimeoutError) as exc:
        # Retryable Adobe errors, a step over its time limit, Redis slow or restarting, no
        # database connection free in time.
        if claimed.failures >= settings.step_retries:  # a step that keeps timing out
            _fail(job_id, step_name, owner, exc, code=type(exc).__name__)
            _notify(job_id)
            return "failed"
        countdown = _backoff(claimed.failures)
        _release(job_id, step_name, owner, countdown, str(exc), failed=True)
        metrics.observe("passflow_step_seconds", (step_name, "retry"),
                        time.perf_counter() - started)
        dispatch(job_id, step_name, countdown=countdown)
        return "retrying"
    except LeaseLost:
        log.warning("lease_lost")
        return "lease-lost"
    except DBAPIError as exc:
        # The database is unreachable or restarting: try again; the lease, if it was taken,
        # expires and the sweeper resumes the job.
        raise task.retry(countdown=_backoff(task.request.retries), max_retries=10) from exc
    except Exception as exc:
        # The type only: an exception's text may quote an answer, and answers hold personal data.
        log.error("step_crashed", error=type(exc).__name__)
        _fail(job_id, step_name, owner, exc)
        metrics.observe("passflow_step_seconds", (step_name, "failed"),
                        time.perf_counter() - started)
        _notify(job_id)
        return "failed"
    metrics.observe("passflow_step_seconds", (step_name, str(outcome.status)),
                    time.perf_counter() - started)
    metrics.flush(rt.redis)
    if outcome.next_step is not None:
        dispatch(job_id, outcome.next_step, countdown=outcome.delay_s)
    _notify(job_id)
    return str(outcome.status)


# Batches -----------------------------------------------------------------------------------------

class _Unexpected(Exception):
    """A step of the batch failed in a way only the one-job path knows how to report."""


def run_batch(task: Task, step_name: str, job_ids: list[str]) -> str:
    """Run a split step for many jobs at once: one claim, one load, the upstream calls side by
    side on the process' call pool, one transaction for every outcome, then the next steps.

    The batch takes its own jobs and, when they were claimed late (the workers are behind),
    up to PASSFLOW_BATCH_SIZE other jobs due for the same step, whose messages are still queued
    (they then find nothing to do). So batches grow with the backlog: under load each job costs
    a fraction of a transaction, and a lone job waits for nobody. Anything the batch cannot
    settle by itself (a bug, an unexpected answer) rolls the batch back and hands each job to
    the one-job path, which reports it.
    """
    logs.clear()
    logs.bind(step=step_name)
    settings = get_settings()
    spec = STEPS[step_name]
    assert spec.plan is not None, f"{step_name} cannot run in a batch"
    owner = task.request.id or str(uuid.uuid4())
    lease = timedelta(seconds=settings.lease_s)
    with session_scope() as session:
        claims = jobs.claim_many(session, job_ids, step_name, owner, lease=lease)
        room = settings.batch_size - len(claims)
        # A message whose jobs another batch took finds nothing and takes nothing more.
        behind = any(c.late_s > GATHER_WHEN_LATE_S for c in claims.values())
        more = jobs.due_for(session, step_name, limit=room) if behind and room > 0 else []
        if more:
            claims.update(jobs.claim_many(session, more, step_name, owner, lease=lease))
    if not claims:
        return "skipped"
    logs.bind(batch_size=len(claims))
    started = time.perf_counter()
    rt = runtime()
    later: list[tuple[str, str, float]] = []  # (job, step, countdown) sent after the commit
    results: dict[str, str] = {}
    try:
        with session_scope() as session:
            loaded = session.scalars(select(Job).where(Job.id.in_(list(claims))).options(
                joinedload(Job.event), joinedload(Job.device),
                *(selectinload(rel) for rel in spec.preload))).all()
            contexts = {job.id: StepContext(session, job, settings, rt.adobe, rt.cipher,
                                            rt.redis) for job in loaded}
            done: list[tuple[Job, Outcome]] = []
            # One flush for all the jobs' records (executemany), not one per job.
            with session.no_autoflush:
                plans = {job_id: spec.plan(ctx) for job_id, ctx in contexts.items()}
                calls = {job_id: plan[0] for job_id, plan in plans.items()
                         if not isinstance(plan, Outcome)}
                answers = rt.call_all(calls)
                for job_id, ctx in contexts.items():
                    outcome = _settle_in_batch(session, ctx, step_name, owner, claims[job_id],
                                               plans[job_id], answers.get(job_id), later)
                    if isinstance(outcome, Outcome):
                        done.append((ctx.job, outcome))
                        results[job_id] = str(outcome.status)
                        if outcome.next_step is not None:
                            later.append((job_id, outcome.next_step, outcome.delay_s))
                    else:
                        results[job_id] = outcome
            jobs.complete_many(session, step_name, owner, done)
    except (_Unexpected, LeaseLost):
        # Nothing of the batch was committed; each job runs alone, where a failure is
        # recorded with its job.
        later.clear()
        with session_scope() as session:
            for job_id in claims:
                jobs.release(session, job_id, step_name, owner, retry_in_s=0,
                             error="batch handed over")
        for job_id in claims:
            dispatch_alone(job_id, step_name)
        log.warning("batch_handed_over", jobs=len(claims))
        return "handed-over"
    except DBAPIError as exc:
        # The leases expire and the sweeper sends the jobs again.
        log.warning("batch_database_error", error=type(exc).__name__)
        return "database-error"
    elapsed = time.perf_counter() - started
    for job_id, result in results.items():
        metrics.observe("passflow_step_seconds", (step_name, result), elapsed)
        log.info("step_run", job_id=job_id, device_id=claims[job_id].device_id, result=result)
    metrics.flush(rt.redis)
    for job_id, next_step, countdown in later:
        dispatch(job_id, next_step, countdown=countdown)
    for job_id in results:
        _notify(job_id)
    return f"{len(results)} run"


def _settle_in_batch(session, ctx: StepContext, step_name: str, owner: str, claimed: jobs.Claim,
                     plan, answer, later: list[tuple[str, str, float]]) -> Outcome | str:
    """One job's outcome in the batch, as the one-job path would record it: an Outcome to
    complete the job with, or what was done instead (the job released to run again)."""
    settings = ctx.settings
    job_id = ctx.job.id
    try:
        return plan if isinstance(plan, Outcome) else plan[1](answer)
    except (ThrottledError, RateLimitError) as exc:
        if isinstance(exc, ThrottledError):
            metrics.inc("passflow_throttled_total", ("local",))
        if step_name != "profiles.poll" and claimed.attempts >= MAX_THROTTLED_RUNS:
            return _failure(exc, step_name, code="rate_limited")
        jobs.release(session, job_id, step_name, owner, retry_in_s=exc.retry_after,
                     error=str(exc))
        later.append((job_id, step_name, exc.retry_after))
        return "throttled"
    except AdobePassError as exc:
        if exc.retryable and claimed.failures < settings.step_retries:
            countdown = _backoff(claimed.failures)
            jobs.release(session, job_id, step_name, owner, retry_in_s=countdown,
                         error=str(exc), failed=True)
            later.append((job_id, step_name, countdown))
            return "retrying"
        return Outcome(JobStatus.FAILED, error=error_of(exc))
    except Exception as exc:
        raise _Unexpected from exc


def _failure(exc: Exception, step_name: str, code: str = "internal_error") -> Outcome:
    """A bug, an unexpected answer or an endless 429 storm ends the job with a clear error,
    never a crash loop."""
    return Outcome(JobStatus.FAILED, error={
        "status": getattr(exc, "status_code", None), "code": code, "action": None,
        "message": f"{type(exc).__name__} in step {step_name}"})


def _fail(job_id: str, step_name: str, owner: str, exc: Exception,
          code: str = "internal_error") -> None:
    try:
        with session_scope() as session:
            job = session.get(Job, job_id)
            jobs.complete(session, job, step_name, owner, _failure(exc, step_name, code))
    except LeaseLost:
        pass


def _notify(job_id: str) -> None:
    """Send the webhook deliveries the step's transaction recorded (none without a URL)."""
    if not get_settings().webhook_url:
        return
    from worker import notify

    notify.send_deliveries(job_id)


__all__ = ["batched", "dispatch", "dispatch_alone", "dispatch_batch", "run_alone", "run_batch",
           "run_step"]
