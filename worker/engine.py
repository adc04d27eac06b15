"""The one driver of steps: claim, plan, call, apply and settle, then send what comes next.

A run takes one step for one job or many (a job run alone is a batch of one):

1. claim: the jobs' leases, in one conditional UPDATE; a run claimed late (the workers are
   behind) takes other due jobs of its step along, up to PASSFLOW_BATCH_SIZE. In the same
   transaction, each job's plan reads what its call needs. Committed before any call.
2. call: the upstream calls, side by side on the process' call pool, with no database session
   open, within a deadline below the lease.
3. apply: in one fresh transaction, each job's answer becomes records and an Outcome, or, by
   the policy below, a Release to run again later; the jobs' transitions commit with the
   records. If that transaction cannot commit for all (a bug in one job, a lease taken over),
   it is rolled back and each job is applied alone with its answer, so one job's fault is
   recorded with that job and costs the others nothing.
4. after commit: the next steps are sent, webhooks notified, metrics flushed.

The policy, applied here only (`_decide`): a call held back by the device's request budget
waits its turn (in order of arrival, worker.throttle) up to PASSFLOW_THROTTLE_DEADLINE_S after
the event; Adobe's 429 and retryable failures (a `retry` action, a gateway 5xx, a timeout,
Redis) are each an error class with PASSFLOW_STEP_RETRIES retries, counted in the step's row so
a re-sent message keeps the count; anything else fails the job with the enhanced error's code
and action. A database that is down rolls the run back; its leases expire and the sweeper resumes
the jobs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import Any

import redis
from sqlalchemy import Select, bindparam, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session, joinedload, selectinload

from models import FINAL_STATUSES, Job, JobStatus, utc_text, utcnow
from models.db import session_scope
from passflow import logs
from passflow.settings import Settings, get_settings
from worker import dispatch, jobs, metrics
from worker.adobe_pass import AdobePassError, RateLimitError, ThrottledError
from worker.jobs import Claim, IllegalMove, LeaseLost, Outcome, Release
from worker.policy import (
    CALL_SHARE_OF_LEASE,
    GATHER_WHEN_LATE_S,
    LATE_NOTICE_S,
    retry_backoff,
)
from worker.runtime import NotServed, Runtime, runtime
from worker.steps import STEPS, Step
from worker.steps.base import StepContext, error_of, forget_profiles, voided_by_adobe
from worker.views import delay_text

log = logs.get_logger(__name__)

# Errors of the database itself (unreachable, restarting, no pooled connection in time).
_DATABASE_DOWN = (DBAPIError, PoolTimeoutError)


def _database_away(exc: BaseException) -> bool:
    """The database is away, not the run's records at fault: a constraint a record breaks is
    the job's own fault (it failed again on every retry and held back the jobs batched with
    it), applied alone like a bug."""
    return isinstance(exc, _DATABASE_DOWN) and not isinstance(exc, IntegrityError)


class _Unexpected(Exception):
    """A step raised what the policy does not know: the job fails `internal_error`."""


@dataclass(frozen=True)
class _Settled:
    transition: Outcome | Release | None  # None: nothing recorded (lease lost, database down)
    note: str  # what happened, for logs and metrics

    @property
    def result(self) -> str:
        t = self.transition
        return self.note if not isinstance(t, Outcome) else str(t.status)


# A job that another job of its run cancelled (a newer code superseded its session): final.
_CANCELLED = Outcome(JobStatus.CANCELLED)


def run(step_name: str, job_ids: list[str], *, owner: str) -> dict[str, str]:
    """Run `step_name` for the jobs (and others due, when behind). Returns each job's result."""
    step = STEPS[step_name]
    settings, rt = get_settings(), runtime()
    logs.clear()
    logs.bind(step=step.name)
    try:
        planned = _claim_and_plan(step, job_ids, owner, settings, rt)
    except _DATABASE_DOWN as exc:
        log.warning("step_database_error", phase="claim", error=type(exc).__name__)
        return {}
    claims, answers = planned.claims, planned.plans
    if not claims:
        return {}
    started = time.perf_counter()
    calls = {job_id: call for job_id, call in answers.items() if callable(call)}
    deadline = time.monotonic() + settings.lease_s * CALL_SHARE_OF_LEASE
    called, resent = rt.call_all(calls, deadline=deadline, arrivals=planned.arrivals, resends={
        job_id: max(0, settings.step_retries - spent)
        for job_id, spent in planned.budgets.items()})
    answers.update(called)
    settled = _apply(step, owner, claims, answers, settings, rt, list(claims), resent,
                     planned.jobs if step.kept_for_apply else None)
    _after_commit(step, claims, settled, time.perf_counter() - started, rt)
    return {job_id: s.result for job_id, s in settled.items()}


@dataclass
class _Planned:
    claims: dict[str, Claim]
    # Each job's call, None (no call needed), or the exception its plan raised (handed to
    # apply as the answer).
    plans: dict[str, Any] = dataclasses.field(default_factory=dict)
    # When each job's event was accepted (its place in a busy device's queue).
    arrivals: dict[str, float] = dataclasses.field(default_factory=dict)
    # The requests each has already sent again (its retry budget spent).
    budgets: dict[str, int] = dataclasses.field(default_factory=dict)
    # The jobs as loaded for the plan, with their events and devices (detached).
    jobs: dict[str, Job] = dataclasses.field(default_factory=dict)


def _claim_and_plan(step: Step, job_ids: list[str], owner: str, settings: Settings,
                    rt: Runtime) -> _Planned:
    """Claim the jobs and plan their calls."""
    lease = timedelta(seconds=settings.lease_s)
    with session_scope() as session:
        claims = jobs.claim_many(session, job_ids, step.name, owner, lease=lease)
        room = settings.batch_size - len(claims)
        # A message whose jobs another run took finds nothing and takes nothing more.
        behind = any(c.late_s > GATHER_WHEN_LATE_S for c in claims.values())
        more = jobs.due_for(session, step.name, limit=room) if behind and room > 0 else []
        if more:
            claims.update(jobs.claim_many(session, more, step.name, owner, lease=lease))
        planned = _Planned(claims)
        for ctx in _contexts(session, step, claims, settings, rt):
            job_id = ctx.job.id
            planned.jobs[job_id] = ctx.job
            planned.arrivals[job_id] = ctx.job.created_at.timestamp()
            planned.budgets[job_id] = _retries_spent(claims[job_id], ctx.job)
            try:
                planned.plans[job_id] = step.plan(ctx)
            except Exception as exc:  # handed to apply, then to the policy
                planned.plans[job_id] = exc
    return planned


def _retries_spent(claim: Claim, job: Job) -> int:
    """Requests of the step already made again, whatever the cause (failures, 401 resends,
    429s, re-asks of a `retry` Deny): one budget (checklist: 2-3 requests)."""
    state = job.state or {}
    return (claim.failures + claim.rate_limited + state.get("retry_rounds", 0)
            + state.get("resent", 0))


def _contexts(session: Session, step: Step, job_ids: Iterable[str], settings: Settings,
              rt: Runtime, kept: dict[str, Job] | None = None) -> list[StepContext]:
    """The jobs with their events, devices and the step's relationships: one query a run. Or,
    for a step whose jobs' rows no one else writes during its call (Step.kept_for_apply), the
    jobs its claim loaded, joined to this session with no query."""
    if kept is not None:
        loaded = [kept[job_id] for job_id in job_ids if job_id in kept]
        session.add_all(loaded)
        return [StepContext(session, job, settings, rt) for job in loaded]
    loaded = session.scalars(_load_query(step.name), {"ids": list(job_ids)}).unique().all()
    return [StepContext(session, job, settings, rt) for job in loaded]


@functools.cache
def _load_query(step_name: str) -> Select[tuple[Job]]:
    """The query of a run's jobs for `step_name`, built once (its cache key with it)."""
    return select(Job).where(Job.id.in_(bindparam("ids", expanding=True))).options(
        joinedload(Job.event), joinedload(Job.device),
        *(selectinload(rel) for rel in STEPS[step_name].preload))


def _apply(step: Step, owner: str, claims: dict[str, Claim], answers: dict[str, Any],
           settings: Settings, rt: Runtime, job_ids: list[str],
           resent: dict[str, int], kept: dict[str, Job] | None = None) -> dict[str, _Settled]:
    """Apply the answers of `job_ids` and settle the jobs in one transaction; split it job by
    job when it cannot commit for all."""
    try:
        with session_scope() as session:
            transitions: list[tuple[Job, Outcome | Release]] = []
            # One flush for all the jobs' records (executemany), not one per job.
            with session.no_autoflush:
                for ctx in _contexts(session, step, job_ids, settings, rt, kept):
                    job_id = ctx.job.id
                    transition = _decide(step, ctx, claims[job_id], answers.get(job_id),
                                         resent.get(job_id, 0))
                    transitions.append((ctx.job, _forget_voided_profiles(ctx, transition)))
            cancelled = jobs.settle(session, step.name, owner, transitions)
        return {job.id: _Settled(_CANCELLED, "cancelled") if job.id in cancelled
                else _Settled(t, _note(t)) for job, t in transitions}
    except (*_DATABASE_DOWN, _Unexpected, LeaseLost, IllegalMove) as exc:
        if _database_away(exc):
            log.warning("step_database_error", phase="apply", jobs=len(job_ids),
                        error=type(exc).__name__)
            _release_quietly(step, owner, job_ids)
            return {job_id: _Settled(None, "database-error") for job_id in job_ids}
        if len(job_ids) > 1:
            settled: dict[str, _Settled] = {}
            for job_id in job_ids:
                # (Loaded again: the rollback expired what the claim had loaded.)
                settled.update(_apply(step, owner, claims, answers, settings, rt, [job_id],
                                      resent))
            return settled
        [job_id] = job_ids
        if isinstance(exc, LeaseLost):
            # What the database holds is the report: a job another transaction ended (a
            # cancel, or a newer code superseding it) says so, not what this run decided.
            ended = _final_status(job_id)
            if ended is None:
                log.warning("lease_lost", job_id=job_id)
            return {job_id: _Settled(None, ended or "lease-lost")}
        if isinstance(exc, IntegrityError):
            log.error("step_record_refused", job_id=job_id, constraint=_constraint(exc))
        if isinstance(exc, IllegalMove):
            log.error("step_illegal_move", job_id=job_id, step=step.name, move=str(exc))
        return {job_id: _fail_alone(step, owner, job_id, exc.__cause__ or exc)}


def _final_status(job_id: str) -> str | None:
    """The job's status if it is final now (ended by another transaction), else None."""
    with contextlib.suppress(*_DATABASE_DOWN), session_scope() as session:
        status = session.scalar(select(Job.status).where(Job.id == job_id))
        if status in FINAL_STATUSES:
            return str(status)
    return None


def _constraint(exc: IntegrityError) -> str:
    """The constraint a record broke, by name (never the values: they may be personal)."""
    diag = getattr(exc.orig, "diag", None)  # psycopg
    if diag is not None and diag.constraint_name:
        return str(diag.constraint_name)
    return str(exc.orig).split(":", 1)[-1].strip()[:200]  # SQLite names the columns only


def _decide(step: Step, ctx: StepContext, claim: Claim, answer: Any,
            resent: int = 0) -> Outcome | Release:
    """The retry and throttle policy: what the job's answer means for the job. `resent`:
    requests this run's call sent again after a 401, spent from the same budget."""
    transition = _late(step, ctx, claim, _decide_spent(step, ctx, claim, answer, resent))
    if resent and isinstance(transition, Release):
        return dataclasses.replace(transition, resent=resent)
    if resent and transition.next_step == step.name:  # asked again (a `retry` Deny)
        before = (ctx.job.state or {}).get("resent", 0)
        return dataclasses.replace(transition, state={**transition.state,
                                                      "resent": before + resent})
    return transition


def _late(step: Step, ctx: StepContext, claim: Claim,
          transition: Outcome | Release) -> Outcome | Release:
    """A step no worker took for a long while after it was due: an outage of the pool (a
    queue nobody consumed, every worker down), said as such where the job's story is read,
    and in a failure's reason, so the history does not point at Adobe or the device."""
    if claim.late_s < LATE_NOTICE_S or not isinstance(transition, Outcome):
        return transition
    late = {"step": str(step.name), "queue": str(step.queue), "late_s": round(claim.late_s),
            "at": utc_text(utcnow())}
    state = {**transition.state, "delays": [*(ctx.job.state or {}).get("delays", []), late]}
    error = transition.error
    if error is not None:
        error = {**error, "message": f"{error.get('message') or error.get('code')} ("
                 f"{delay_text(late)})"}
    return dataclasses.replace(transition, state=state, error=error)


def _decide_spent(step: Step, ctx: StepContext, claim: Claim, answer: Any,
                  resent: int) -> Outcome | Release:
    settings = ctx.settings
    ctx.retries_spent = _retries_spent(claim, ctx.job) + resent
    try:
        return step.apply(ctx, answer)
    except ThrottledError as exc:
        # No request was sent: the device's budget (or the pool's registration) is busy. The
        # job waits its turn, up to the deadline.
        metrics.inc("passflow_throttled_total", ("local",))
        # Counted from the step's first run: time in a queue no worker consumed is an outage
        # of ours, not a wait for the device's budget at Adobe.
        since = claim.step_started_at or ctx.job.created_at
        since = since if since.tzinfo else since.replace(tzinfo=UTC)
        waited = (utcnow() - since).total_seconds()
        if step.budget_deadline and waited + exc.retry_after > settings.throttle_deadline_s:
            return _rate_limited(step, exc, f"waited {waited:.0f} s for the device's request "
                                 f"budget (PASSFLOW_THROTTLE_DEADLINE_S="
                                 f"{settings.throttle_deadline_s:g})")
        return Release(exc.retry_after, str(exc))
    except RateLimitError as exc:
        # Adobe answered 429: an error class with its own count, waited out (>= 1 s).
        if not ctx.may_retry():
            return _rate_limited(step, exc, f"Adobe Pass answered 429 (request "
                                 f"{ctx.retries_spent + 1} of at most "
                                 f"{settings.step_retries + 1})")
        return Release(exc.retry_after, str(exc), counts="rate_limited")
    except NotServed as exc:  # retired and forgotten, or never added: nothing to call with
        return Outcome(JobStatus.FAILED, error={
            "status": None, "code": "service_provider_not_served", "action": "none",
            "message": str(exc)})
    except (AdobePassError, redis.RedisError) as exc:
        retryable = not isinstance(exc, AdobePassError) or exc.retryable
        if retryable and ctx.may_retry():
            return Release(retry_backoff(claim.failures), _reason(exc), counts="failures")
        return Outcome(JobStatus.FAILED, error=error_of(exc))
    except Exception as exc:
        raise _Unexpected(type(exc).__name__) from exc


def _forget_voided_profiles(ctx: StepContext, transition: Outcome | Release) -> Outcome | Release:
    """A job that failed because Adobe Pass said the device's authentication is gone: its
    stored profiles and the Permits under them are forgotten, and the job says so."""
    if not (isinstance(transition, Outcome) and transition.status == JobStatus.FAILED
            and voided_by_adobe(transition.error)):
        return transition
    forgotten = forget_profiles(ctx, ctx.job.mvpd)
    if not forgotten:
        return transition
    note = (f" (passflow forgot {forgotten} stored profile(s) of this device: the user must "
            "sign in again)")
    error = dict(transition.error or {})
    error["message"] = f"{error.get('message') or ''}{note}"
    error["profiles_forgotten"] = forgotten
    return dataclasses.replace(transition, error=error)


def _rate_limited(step: Step, exc: AdobePassError, why: str) -> Outcome:
    return Outcome(JobStatus.FAILED, error={
        "status": getattr(exc, "status_code", None), "code": "rate_limited", "action": "retry",
        "message": f"{step.name}: {why}"})


def _reason(exc: Exception) -> str:
    # The type only for non-Adobe errors: an exception's text may quote an answer.
    return str(exc) if isinstance(exc, AdobePassError) else type(exc).__name__


def _failure(step: Step, exc: BaseException) -> Outcome:
    """A bug (an exception the policy does not know, a move the state machine refuses) ends
    the job with a clear error, never a crash loop."""
    return Outcome(JobStatus.FAILED, error={
        "status": getattr(exc, "status_code", None), "code": "internal_error", "action": None,
        "message": f"{type(exc).__name__} in step {step.name}"})


def _note(transition: Outcome | Release) -> str:
    if isinstance(transition, Outcome):
        return str(transition.status)
    return "retrying" if transition.counted else "throttled"


def _fail_alone(step: Step, owner: str, job_id: str, exc: BaseException) -> _Settled:
    log.error("step_crashed", job_id=job_id, error=type(exc).__name__)
    outcome = _failure(step, exc)
    try:
        with session_scope() as session:
            job = session.get(Job, job_id)
            if job is not None:
                jobs.settle(session, step.name, owner, [(job, outcome)])
    except LeaseLost:
        return _Settled(None, "lease-lost")
    except IllegalMove:  # final meanwhile (cancelled by an operator): it stays so
        return _Settled(None, "final")
    except _DATABASE_DOWN:
        return _Settled(None, "database-error")
    return _Settled(outcome, "failed")


def _release_quietly(step: Step, owner: str, job_ids: list[str]) -> None:
    """Give the leases back if the database is back already; else they expire and the sweeper
    resumes the jobs."""
    with contextlib.suppress(*_DATABASE_DOWN), session_scope() as session:
        for job_id in job_ids:
            jobs.release(session, job_id, step.name, owner, retry_in_s=0,
                         error="database unavailable")


def _after_commit(step: Step, claims: dict[str, Claim], settled: dict[str, _Settled],
                  elapsed: float, rt: Runtime) -> None:
    due: list[tuple[str, str, float]] = []
    notify: list[str] = []
    for job_id, s in settled.items():
        t = s.transition
        metrics.observe("passflow_step_seconds", (step.name, s.result), elapsed)
        error = (t.error or {}) if isinstance(t, Outcome) else {}
        # A job that fails is a warning with its code; a retry, a throttled wait, a lost lease
        # is information; a step done is routine, a debug line: the job's rows and the metrics
        # (passflow_step_seconds, passflow_jobs_finished_total) already say it, and at a
        # kick-off one line per play is CPU the plays need.
        level = (logging.WARNING if s.result == "failed"
                 else logging.DEBUG if isinstance(t, Outcome) else logging.INFO)
        log.log(level, "step_run",
                job_id=job_id, device_id=claims[job_id].device_id,
                request_id=claims[job_id].request_id, result=s.result, jobs=len(settled),
                **({"error_code": error.get("code"), "error_action": error.get("action")}
                   if error else {}),
                **({"retry_in_s": round(t.retry_in_s, 2), "reason": t.error}
                   if isinstance(t, Release) else {}))
        if isinstance(t, Release):
            due.append((job_id, step.name, t.retry_in_s))
        elif isinstance(t, Outcome):
            notify.append(job_id)
            if t.next_step is not None:
                due.append((job_id, t.next_step, t.delay_s))
    metrics.flush(rt.redis)
    dispatch.send_steps(due)  # those due later stay in the table for the sweeper
    dispatch.notify(notify)
