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
from models.jobs import new_id
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

def accept_event(session: Session, event: EventIn, *, default_service_provider: str) -> Job:
    """Store the event, its device and its job in the caller's transaction, not marked sent:
    the job is due now, and the sweeper sends it unless the caller does after commit. An
    event_id stored before gives its first job."""
    [accepted], _ = _accept_many(session, [event], default_service_provider, mark_sent=False)
    return session.get_one(Job, accepted.job_id)


@dataclass(frozen=True)
class Accepted:
    job_id: str
    created: bool  # False: the event_id was seen before and this is its first job
    status: str


def submit(event: EventIn, *, default_service_provider: str) -> tuple[str, bool]:
    """Accept one event (see `submit_many`). Returns (job id, created)."""
    accepted = submit_many([event], default_service_provider=default_service_provider)[0]
    return accepted.job_id, accepted.created


def submit_many(events: list[EventIn], *, default_service_provider: str) -> list[Accepted]:
    """Accept events in one transaction, then send their first steps: one answer per event.

    An event_id seen before (in the table, earlier in `events`, or committed at the same moment
    by another API process) answers with its first job and starts nothing. Jobs are marked sent
    in the same transaction; if the broker is down, the sweeper sends them once overdue (an
    outbox). Split steps (see `Plan`) of many new jobs go out as one batch message.
    """
    from models.db import session_scope

    with session_scope() as session:
        answers, new = _accept_many(session, events, default_service_provider)
    by_step: dict[str, list[str]] = {}
    for job_id, step_name in new:
        by_step.setdefault(step_name, []).append(job_id)
    _send_first_steps(by_step)
    return answers


def _accept_many(session: Session, events: list[EventIn], default_service_provider: str, *,
                 mark_sent: bool = True) -> tuple[list[Accepted], list[tuple[str, str]]]:
    """Store the events that are new, with their devices and jobs: a statement per table. The
    jobs are marked sent (`mark_sent`) when the caller sends them after commit."""
    now = utcnow()
    first_of: dict[str, EventIn] = {}
    for event in events:
        first_of.setdefault(event.event_id, event)
    fresh = list(first_of.values())
    # The events first: an event_id stored before (or by another process at the same moment)
    # is skipped here, and nothing else of it is written.
    event_pks = _insert_events(session, fresh, now)
    fresh = [event for event in fresh if event.event_id in event_pks]
    created: dict[str, tuple[str, str]] = {}  # event_id -> (job id, first step)
    if fresh:
        _upsert_devices(session, fresh, now)
        job_rows = []
        for event in fresh:
            job_id, first = new_id(), FIRST_STEP[event.type]
            created[event.event_id] = (job_id, first)
            job_rows.append({
                "id": job_id, "event_pk": event_pks[event.event_id], "type": event.type,
                "status": JobStatus.QUEUED, "device_id": event.device.id, "mvpd": event.mvpd,
                "service_provider": event.service_provider or default_service_provider,
                "current_step": first, "next_run_at": now,
                "dispatched_at": now if mark_sent else None,
                "result": {}, "state": {}, "created_at": now, "updated_at": now,
            })
        session.connection().execute(insert(Job.__table__), job_rows)
    known = _jobs_of_events(session, [event_id for event_id in first_of
                                      if event_id not in created])
    answers, seen = [], set()
    for event in events:
        if event.event_id in created:
            # The same event twice in one batch: the second hears "seen before".
            answers.append(Accepted(created[event.event_id][0], event.event_id not in seen,
                                    JobStatus.QUEUED))
        else:
            job_id, status = known[event.event_id]
            answers.append(Accepted(job_id, False, status))
        seen.add(event.event_id)
    return answers, list(created.values())


def _jobs_of_events(session: Session, event_ids: list[str]) -> dict[str, tuple[str, str]]:
    """event_id -> (job id, status) of the events already stored."""
    if not event_ids:
        return {}
    rows = session.execute(
        select(Event.event_id, Job.id, Job.status).join(Job, Job.event_pk == Event.id)
        .where(Event.event_id.in_(event_ids)))
    return {event_id: (job_id, status) for event_id, job_id, status in rows}


def _dialect_insert(session: Session):
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    return dialect_insert


def _upsert_devices(session: Session, events: list[EventIn], now) -> None:
    """Insert or update the devices in one statement: two first events of a device may arrive
    at the same moment. A device named twice keeps its latest info; rows go in id order, so
    two batches lock shared devices in the same order."""
    latest = {event.device.id: event.device for event in events}
    devices = Device.__table__
    statement = _dialect_insert(session)(devices)
    session.connection().execute(
        statement.on_conflict_do_update(index_elements=[devices.c.id], set_={
            name: statement.excluded[name]
            for name in ("last_info", "last_ip", "last_port", "updated_at")}),
        [{"id": device_id, "last_info": dict(device.info), "last_ip": device.ip,
          "last_port": device.port, "created_at": now, "updated_at": now}
         for device_id, device in sorted(latest.items())])


def _insert_events(session: Session, events: list[EventIn], now) -> dict[str, str]:
    """event_id -> primary key of the events inserted here; an event_id another transaction
    stored first is skipped (PostgreSQL waits for that transaction to end)."""
    table = Event.__table__
    statement = (_dialect_insert(session)(table)
                 .on_conflict_do_nothing(index_elements=[table.c.event_id])
                 .returning(table.c.event_id, table.c.id))
    # In event_id order: two transactions storing the same events wait for each other in the
    # same order, never crosswise.
    rows = [{"id": new_id(), "event_id": event.event_id, "type": event.type,
             "payload": event.model_dump(mode="json"), "received_at": now}
            for event in sorted(events, key=lambda e: e.event_id)]
    return dict(session.connection().execute(statement, rows).all())


def _send_first_steps(by_step: dict[str, list[str]]) -> None:
    from passflow.settings import get_settings
    from worker.runner import batched, dispatch, dispatch_batch

    batch_size = get_settings().batch_size
    for step_name, job_ids in by_step.items():
        if len(job_ids) > 1 and batched(step_name):
            for start in range(0, len(job_ids), batch_size):
                dispatch_batch(step_name, job_ids[start:start + batch_size])
        else:
            for job_id in job_ids:
                dispatch(job_id, step_name)


# Running a step ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Claim:
    device_id: str
    failures: int  # retryable errors of this step so far
    attempts: int  # runs of this step, this one included
    late_s: float = 0.0  # how long after its due time the job was claimed


def claim(session: Session, job_id: str, step_name: str, owner: str, *,
          lease: timedelta) -> Claim | None:
    """Take the job's lease for `step_name`, or None when there is nothing to do."""
    return claim_many(session, [job_id], step_name, owner, lease=lease).get(job_id)


def claim_many(session: Session, job_ids: list[str], step_name: str, owner: str, *,
               lease: timedelta) -> dict[str, Claim]:
    """Take the lease of every job of `job_ids` that is due for `step_name` and free: one
    UPDATE ... RETURNING (PostgreSQL and SQLite >= 3.35), then the step rows' counters."""
    now = utcnow()
    rows = session.execute(
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
        .returning(Job.id, Job.device_id, Job.next_run_at)
        .execution_options(synchronize_session=False)
    ).all()
    claimed = {job_id: device_id for job_id, device_id, _ in rows}
    late = {job_id: 0.0 if due is None else max(0.0, (now - due).total_seconds())
            for job_id, _, due in rows}
    if not claimed:
        return {}
    # The step rows' counters in one statement: a first run inserts, a rerun counts one more.
    # (Core executemany: a cached statement, sent as one multi-row INSERT.)
    steps = JobStep.__table__
    statement = _dialect_insert(session)(steps)
    counters = {job_id: (attempts, failures) for job_id, attempts, failures in
                session.connection().execute(
        statement.on_conflict_do_update(
            index_elements=[steps.c.job_id, steps.c.step],
            set_={"attempts": steps.c.attempts + 1, "status": StepStatus.RUNNING.value})
        .returning(steps.c.job_id, steps.c.attempts, steps.c.failures),
        [{"job_id": job_id, "step": step_name, "attempts": 1, "failures": 0,
          "status": StepStatus.RUNNING.value, "started_at": now} for job_id in claimed])}
    return {job_id: Claim(device_id=device_id, failures=counters[job_id][1],
                          attempts=counters[job_id][0], late_s=late[job_id])
            for job_id, device_id in claimed.items()}


def due_for(session: Session, step_name: str, *, limit: int) -> list[str]:
    """The ids of up to `limit` jobs due now for `step_name` and free, oldest first, to claim
    along with a batch's own (their messages, still queued, then find nothing to do). On
    PostgreSQL the rows are locked until the claim, and rows another worker is claiming are
    skipped. (A separate statement: in `UPDATE ... WHERE id IN (SELECT ... LIMIT n FOR UPDATE
    SKIP LOCKED)` PostgreSQL may run the subquery again and update more than n rows.)"""
    now = utcnow()
    query = (select(Job.id)
             .where(Job.current_step == step_name,
                    Job.status.not_in([s.value for s in FINAL_STATUSES]),
                    or_(Job.lease_until.is_(None), Job.lease_until < now),
                    Job.next_run_at <= now)
             .order_by(Job.next_run_at).limit(limit))
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list(session.scalars(query))


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
