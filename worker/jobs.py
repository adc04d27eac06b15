"""Jobs: accepting an event, running one step under a lease, dispatching the next, sweeping.

The SQL row is the source of truth, not the broker. A job names the step to run next
(`current_step`), when (`next_run_at`) and who runs it now (`lease_owner` until `lease_until`).
A task first claims the job with a conditional update; a redelivered or duplicate message finds
nothing to claim and stops. The outcome and the records a step made are committed together,
then the next step is sent to the broker. A periodic sweeper re-sends any step that is overdue,
so a lost message (a killed worker, Redis down at the wrong moment) only delays a job.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, bindparam, case, insert, or_, select, update
from sqlalchemy.orm import Session

from models import FINAL_STATUSES, Device, Event, Job, JobStatus, JobStep, StepStatus, utcnow
from passflow.events import EventIn, EventType
from worker.queues import Queue

log = logging.getLogger(__name__)

# A message may arrive a little before its countdown ends (clock skew between hosts).
EARLY_TOLERANCE = timedelta(seconds=1)
# Steps due within this are sent at once with a short countdown; later ones stay in the table
# until the due-step dispatcher sends them. Delayed Celery messages bypass the prefetch limit
# and sit in a worker's memory (and, on Redis, come back after visibility_timeout): thousands
# of polls must not live there.
DIRECT_DISPATCH_MAX_S = 1.0


@dataclass
class Outcome:
    """What a step decided. `next_step` None ends the job with `status`."""

    status: JobStatus
    next_step: str | None = None
    delay_s: float = 0.0
    result: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None


# A step split around its one upstream call: `plan(ctx)` reads and writes the database only and
# returns an Outcome when no call is needed, else (call, apply): `call()` makes the HTTP request
# and touches nothing else (it may run on another thread, beside other jobs' calls); `apply`
# takes its answer, or the exception it raised, and returns the Outcome (or raises).
Call = Callable[[], Any]
Apply = Callable[[Any], Outcome]
Plan = Callable[..., "Outcome | tuple[Call, Apply]"]


@dataclass(frozen=True)
class StepSpec:
    queue: Queue
    run: Callable[..., Outcome]
    plan: Plan | None = None  # set for steps a batch can run (worker.runner.run_batch)
    preload: tuple[Any, ...] = ()  # relationships of Job a batch loads with the jobs


STEPS: dict[str, StepSpec] = {}


def step(name: str, queue: Queue) -> Callable[[Callable[..., Outcome]], Callable[..., Outcome]]:
    """Register a service function as the step `name`, run on `queue`."""

    def register(fn: Callable[..., Outcome]) -> Callable[..., Outcome]:
        STEPS[name] = StepSpec(queue, fn)
        return fn

    return register


def planned_step(name: str, queue: Queue, *,
                 preload: tuple[Any, ...] = ()) -> Callable[[Plan], Plan]:
    """Register a split step (see `Plan`): run alone, or many at once by a batch."""

    def register(plan: Plan) -> Plan:
        def run(ctx: Any) -> Outcome:
            planned = plan(ctx)
            if isinstance(planned, Outcome):
                return planned
            call, apply = planned
            try:
                answer = call()
            except Exception as exc:  # handed to the step, which knows which ones it expects
                return apply(exc)
            return apply(answer)

        STEPS[name] = StepSpec(queue, run, plan, preload)
        return plan

    return register


FIRST_STEP: dict[EventType, str] = {
    EventType.PROFILES: "profiles.retrieve",
    EventType.AUTHENTICATION: "authentication.check_profiles",
    EventType.PREAUTHORIZATION: "decisions.preauthorize",
    EventType.AUTHORIZATION: "decisions.authorize",
    EventType.LOGOUT: "logout.initiate",
    EventType.TEMPPASS: "temppass.authorize",
}


# Accepting events --------------------------------------------------------------------------------

def find_job_for_event(session: Session, event_id: str) -> Job | None:
    return session.scalars(
        select(Job).join(Event, Job.event_pk == Event.id).where(Event.event_id == event_id)
    ).first()


def _upsert_device(session: Session, event: EventIn) -> None:
    """Insert or update the device in one statement: two first events of a device may arrive
    at the same moment."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    now = utcnow()
    values = {"last_info": dict(event.device.info), "last_ip": event.device.ip,
              "last_port": event.device.port, "updated_at": now}
    statement = insert(Device).values(id=event.device.id, created_at=now, **values)
    session.execute(statement.on_conflict_do_update(index_elements=[Device.id], set_=values))


def accept_event(session: Session, event: EventIn, *, default_service_provider: str) -> Job:
    """Store the event, its device and its job in the caller's transaction. The job is due now;
    the caller dispatches it after commit (and the sweeper does if that is lost)."""
    _upsert_device(session, event)
    record = Event(event_id=event.event_id, type=event.type,
                   payload=event.model_dump(mode="json"))
    now = utcnow()
    job = Job(
        event=record, type=event.type, status=JobStatus.QUEUED,
        service_provider=event.service_provider or default_service_provider,
        device_id=event.device.id, mvpd=event.mvpd, current_step=FIRST_STEP[event.type],
        next_run_at=now, result={}, state={}, created_at=now,
    )
    session.add_all([record, job])
    session.flush()
    return job


# Running a step ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Claim:
    device_id: str
    failures: int  # retryable errors of this step so far
    attempts: int  # runs of this step, this one included


def claim(session: Session, job_id: str, step_name: str, owner: str, *,
          lease: timedelta) -> Claim | None:
    """Take the job's lease for `step_name`, or None when there is nothing to do."""
    return claim_many(session, [job_id], step_name, owner, lease=lease).get(job_id)


def claim_many(session: Session, job_ids: list[str], step_name: str, owner: str, *,
               lease: timedelta) -> dict[str, Claim]:
    """Take the lease of every job of `job_ids` that is due for `step_name` and free: one
    UPDATE ... RETURNING (PostgreSQL and SQLite >= 3.35), then the step rows' counters."""
    now = utcnow()
    claimed = dict(session.execute(
        update(Job)
        .where(
            Job.id.in_(job_ids),
            Job.current_step == step_name,
            Job.status.not_in([s.value for s in FINAL_STATUSES]),
            or_(Job.lease_until.is_(None), Job.lease_until < now),
            or_(Job.next_run_at.is_(None), Job.next_run_at <= now + EARLY_TOLERANCE),
        )
        .values(lease_owner=owner, lease_until=now + lease,
                status=case((Job.status == JobStatus.QUEUED.value, JobStatus.RUNNING.value),
                            else_=Job.status))
        .returning(Job.id, Job.device_id)
        .execution_options(synchronize_session=False)
    ).all())
    if not claimed:
        return {}
    counters = {job_id: (attempts, failures) for job_id, attempts, failures in session.execute(
        select(JobStep.job_id, JobStep.attempts, JobStep.failures)
        .where(JobStep.job_id.in_(claimed), JobStep.step == step_name))}
    if counters:
        session.execute(
            update(JobStep).where(JobStep.job_id.in_(counters), JobStep.step == step_name)
            .values(attempts=JobStep.attempts + 1, status=StepStatus.RUNNING)
            .execution_options(synchronize_session=False))
    new = [{"job_id": job_id, "step": step_name, "attempts": 1, "failures": 0,
            "status": StepStatus.RUNNING, "started_at": now}
           for job_id in claimed if job_id not in counters]
    if new:
        session.execute(insert(JobStep), new)
    return {job_id: Claim(device_id=device_id, failures=counters.get(job_id, (0, 0))[1] or 0,
                          attempts=(counters.get(job_id, (0, 0))[0] or 0) + 1)
            for job_id, device_id in claimed.items()}


class LeaseLost(Exception):
    """Another worker took the job over (this one was too slow): its work is rolled back."""


def complete(session: Session, job: Job, step_name: str, owner: str, outcome: Outcome) -> None:
    """Record the outcome in the caller's transaction, conditional on still holding the lease."""
    complete_many(session, step_name, owner, [(job, outcome)])


def complete_many(session: Session, step_name: str, owner: str,
                  done: list[tuple[Job, Outcome]]) -> None:
    """Record the outcomes of many jobs of one step: two statements, each run for every job
    (executemany). Raises LeaseLost, and the caller rolls back, if any lease was taken over."""
    if not done:
        return
    from worker import webhooks

    session.flush()  # the records the steps added, before the jobs say they are done
    now = utcnow()
    jobs_table, steps_table = Job.__table__, JobStep.__table__
    job_rows, step_rows = [], []
    for job, outcome in done:
        final = outcome.next_step is None
        job_rows.append({
            "_id": job.id,
            "status": outcome.status,
            "current_step": outcome.next_step,
            "next_run_at": None if final else now + timedelta(seconds=outcome.delay_s),
            "dispatched_at": None if final or outcome.delay_s > DIRECT_DISPATCH_MAX_S else now,
            "result": {**(job.result or {}), **outcome.result},
            "state": {**(job.state or {}), **outcome.state},
            "error": outcome.error if outcome.error is not None else job.error,
            "finished_at": now if final else job.finished_at,
        })
        repeat = outcome.next_step == step_name
        step_rows.append({
            "_id": job.id,
            "status": StepStatus.RUNNING if repeat else (
                StepStatus.FAILED if outcome.status == JobStatus.FAILED
                else StepStatus.SUCCEEDED),
            "finished_at": None if repeat else now,
            "last_error": None if outcome.error is None else str(outcome.error)[:2000],
        })
        if final:
            webhooks.record(session, job.id, "job.finished")
        elif (outcome.status == JobStatus.WAITING_FOR_USER
              and job.status != JobStatus.WAITING_FOR_USER):
            webhooks.record(session, job.id, "job.waiting_for_user")
    changed = session.connection().execute(
        jobs_table.update()
        .where(jobs_table.c.id == bindparam("_id"), jobs_table.c.lease_owner == owner)
        .values({**{name: bindparam(name) for name in job_rows[0] if name != "_id"},
                 "lease_owner": None, "lease_until": None, "updated_at": now}),
        job_rows,
    ).rowcount
    if changed != len(job_rows):
        raise LeaseLost(", ".join(job.id for job, _ in done))
    session.connection().execute(
        steps_table.update()
        .where(steps_table.c.job_id == bindparam("_id"), steps_table.c.step == step_name)
        .values({name: bindparam(name) for name in step_rows[0] if name != "_id"}),
        step_rows,
    )


def release(session: Session, job_id: str, step_name: str, owner: str, *, retry_in_s: float,
            error: str, failed: bool = False) -> None:
    """Give the lease back and set when the step is due again: after a wait for request
    budget, or after a retryable failure (`failed`, counted against PASSFLOW_STEP_RETRIES)."""
    now = utcnow()
    session.execute(
        update(Job).where(Job.id == job_id, Job.lease_owner == owner).values(
            lease_owner=None, lease_until=None,
            next_run_at=now + timedelta(seconds=retry_in_s),
            dispatched_at=now if retry_in_s <= DIRECT_DISPATCH_MAX_S else None,
        ).execution_options(synchronize_session=False)
    )
    values: dict[str, Any] = {"last_error": error[:2000]}
    if failed:
        values["failures"] = JobStep.failures + 1
    session.execute(
        update(JobStep).where(JobStep.job_id == job_id, JobStep.step == step_name)
        .values(**values).execution_options(synchronize_session=False)
    )


def cancel(session: Session, job_id: str, *, reason: str = "cancelled") -> bool:
    """Cancel a job by a row update: a pending poll finds it final and stops."""
    from models import AuthSession, SessionStatus

    now = utcnow()
    changed = session.execute(
        update(Job).where(Job.id == job_id,
                          Job.status.not_in([s.value for s in FINAL_STATUSES]))
        .values(status=JobStatus.CANCELLED, current_step=None, next_run_at=None,
                lease_owner=None, lease_until=None, finished_at=now,
                error={"code": reason, "action": "none"})
        .execution_options(synchronize_session=False)
    ).rowcount
    session.execute(
        update(AuthSession).where(AuthSession.job_id == job_id,
                                  AuthSession.status == SessionStatus.PENDING)
        .values(status=SessionStatus.CANCELLED, stop_reason=reason, next_poll_at=None)
        .execution_options(synchronize_session=False)
    )
    if changed:
        from worker import webhooks

        webhooks.record(session, job_id, "job.finished")
    return bool(changed)


# Sweeping ----------------------------------------------------------------------------------------

def due_jobs(session: Session, *, grace: timedelta, horizon: timedelta,
             limit: int = 2000) -> list[tuple[str, str, float]]:
    """Claim (job id, step, seconds until due) for every step to send now, marking it sent:

    - steps due within `horizon` that were never handed to the broker (polls, delayed retries,
      events accepted while the broker was down);
    - steps overdue by more than `grace` whose message was lost (a killed worker, an outage).

    On PostgreSQL, FOR UPDATE SKIP LOCKED lets several dispatchers share the work.
    """
    now = utcnow()
    query = (
        select(Job.id, Job.current_step, Job.next_run_at)
        .where(
            Job.current_step.is_not(None),
            or_(Job.lease_until.is_(None), Job.lease_until < now),
            or_(
                and_(Job.dispatched_at.is_(None), Job.next_run_at <= now + horizon),
                and_(Job.dispatched_at < now - grace, Job.next_run_at <= now - grace),
            ),
        )
        .order_by(Job.next_run_at)
        .limit(limit)
    )
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    rows = [(job_id, step_name, max(0.0, (due - now).total_seconds()) if due else 0.0)
            for job_id, step_name, due in session.execute(query)]
    if rows:
        session.execute(
            update(Job).where(Job.id.in_([job_id for job_id, _, _ in rows]))
            .values(dispatched_at=now).execution_options(synchronize_session=False)
        )
    return rows


def submit(event: EventIn, *, default_service_provider: str) -> tuple[str, bool]:
    """Accept an event in one transaction and send its first step after commit.

    Returns (job id, created). The same event_id again returns the first job and starts nothing.
    The job is marked sent in the same transaction; if the broker is down, the sweeper sends it
    again once it is overdue by the grace period (an outbox).
    """
    from sqlalchemy.exc import IntegrityError

    from models.db import session_scope
    from worker.runner import dispatch

    try:
        with session_scope() as session:
            existing = find_job_for_event(session, event.event_id)
            if existing is not None:
                return existing.id, False
            job = accept_event(session, event, default_service_provider=default_service_provider)
            job.dispatched_at = job.next_run_at
            job_id, first = job.id, job.current_step
    except IntegrityError:
        # The same event_id accepted concurrently: answer with that job.
        with session_scope() as session:
            existing = find_job_for_event(session, event.event_id)
            if existing is None:
                raise
            return existing.id, False
    if first is not None:
        dispatch(job_id, first)
    return job_id, True
