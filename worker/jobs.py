"""Job state: the one module that writes a job's columns.

The SQL row is the source of truth, not the broker. A job names the step to run next
(`current_step`), when (`next_run_at`) and who runs it now (`lease_owner` until `lease_until`).
Every transition is a function here, run in the caller's transaction: accepting an event,
claiming a step (a conditional update: a redelivered or duplicate message finds nothing to
claim), releasing it to run again later, completing it with the step's outcome (conditional on
still holding the lease), cancelling, superseding a device's older sessions, and resuming
polling. Sending messages after commit is worker.dispatch's; running steps is worker.engine's.

Lock order: a transaction that writes an authentication session and its job locks the
session's row first, as a poll's run does (its records are flushed before its job settles);
taken crosswise, PostgreSQL aborts one of the two (tests/worker/jobs/test_locks.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Executable, and_, bindparam, case, insert, literal, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models import (
    FINAL_STATUSES,
    AuthSession,
    Device,
    Event,
    Job,
    JobStatus,
    JobStep,
    SessionStatus,
    StepStatus,
    utcnow,
)
from models.db import on_postgresql
from models.jobs import new_id
from passflow.crypto import Cipher, cipher_from_settings
from passflow.events import EventIn, needs_cipher, stored_payload
from passflow.flows import EventType
from worker import metrics, policy, webhooks
from worker.policy import EARLY_TOLERANCE_S
from worker.views import error_text

_FINAL = [s.value for s in FINAL_STATUSES]
# The jobs a transaction cancelled (session.info): a run settling many jobs skips them.
_CANCELLED_HERE = "passflow.jobs.cancelled"


@dataclass
class Outcome:
    """What a step decided. `next_step` None ends the job with `status`."""

    status: JobStatus
    next_step: str | None = None
    delay_s: float = 0.0
    result: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None


# The job state machine (docs/architecture.md, "Job states", shows this table): from each
# status, where one step's outcome may take a job. A final status goes nowhere: a cancelled or
# expired job stays so, and a failed one runs again only as a new job (`retry`). Outside a step
# a job only moves to cancelled (`cancel`: an operator, or a newer code superseding its
# session) or is released to run its step again, its status unchanged (`release`).
_ONGOING = frozenset({JobStatus.RUNNING, JobStatus.WAITING_FOR_USER, JobStatus.SUCCEEDED,
                      JobStatus.FAILED, JobStatus.EXPIRED, JobStatus.CANCELLED})
MOVES: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: _ONGOING,
    JobStatus.RUNNING: _ONGOING,
    JobStatus.WAITING_FOR_USER: _ONGOING,
    **{final: frozenset() for final in (JobStatus.SUCCEEDED, JobStatus.FAILED,
                                        JobStatus.EXPIRED, JobStatus.CANCELLED)},
}
assert set(MOVES) == set(JobStatus), "every status has its moves"


class IllegalMove(Exception):
    """A step decided what the state machine does not allow: a bug, the job fails alone."""


def check_move(current: str, outcome: Outcome) -> None:
    """Raises IllegalMove unless `outcome` is a legal move from `current`: a status the table
    allows, a next step exactly when the job goes on, and an error saying why a job failed (a
    code, or at least an HTTP status: a gateway's bare 502 has no code)."""
    to = JobStatus(outcome.status)
    if to not in MOVES[JobStatus(current)]:
        raise IllegalMove(f"a {current} job cannot become {to}")
    if (to in FINAL_STATUSES) != (outcome.next_step is None):
        raise IllegalMove(f"a {to} outcome {'with' if outcome.next_step else 'without'} a "
                          "next step")
    error = outcome.error or {}
    if to == JobStatus.FAILED and not (error.get("code") or error.get("status")):
        raise IllegalMove("a failed outcome without an error saying why")


@dataclass(frozen=True)
class Release:
    """The step runs again in `retry_in_s`: after a wait for request budget, or after an error
    counted against the step's retry budget: `counts` names the error class's counter
    ("failures": a retryable error; "rate_limited": Adobe answered 429)."""

    retry_in_s: float
    error: str
    counts: str | None = None
    # Requests the run also sent again after a 401's token refresh: counted as failures, in
    # the same budget.
    resent: int = 0

    @property
    def counted(self) -> bool:
        """Whether this release is counted against the step's retry budget (an error), not a
        wait for request budget."""
        return self.counts is not None


# Accepting events --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Accepted:
    job_id: str
    created: bool  # False: the event_id was seen before and this is its first job
    status: str


def accept(session: Session, events: list[EventIn], *, first_steps: Mapping[str, str],
           default_service_provider: str, mark_sent: bool = True,
           request_ids: Mapping[str, str] | None = None,
           ) -> tuple[list[Accepted], list[tuple[str, str]]]:
    """Store the events that are new, with their devices and jobs, in the caller's transaction:
    a statement per table. Returns one answer per event and the (job id, first step) of the
    jobs created. An event_id seen before (in the table, earlier in `events`, or committed at
    the same moment by another API process) answers with its first job and starts nothing.

    The jobs are marked sent (`mark_sent`) when the caller sends them after commit; if that
    send fails, the sweeper sends them once overdue (an outbox). Unmarked, the sweeper sends
    them at once."""
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
            job_id, first = new_id(), first_steps[event.type]
            created[event.event_id] = (job_id, first)
            job_rows.append({
                "id": job_id, "event_pk": event_pks[event.event_id], "type": event.type,
                "status": JobStatus.QUEUED, "device_id": event.device.id, "mvpd": event.mvpd,
                "service_provider": event.service_provider or default_service_provider,
                "request_id": (request_ids or {}).get(event.event_id),
                "current_step": first, "next_run_at": now,
                "dispatched_at": now if mark_sent else None,
                "result": {}, "state": {}, "created_at": now, "updated_at": now,
            })
        session.connection().execute(_built(session, _jobs_insert), job_rows)
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


def _jobs_insert(_dialect_insert) -> Executable:
    return insert(Job.__table__)


def _jobs_of_events(session: Session, event_ids: list[str]) -> dict[str, tuple[str, str]]:
    """event_id -> (job id, status) of the events already stored."""
    if not event_ids:
        return {}
    rows = session.execute(
        select(Event.event_id, Job.id, Job.status).join(Job, Job.event_pk == Event.id)
        .where(Event.event_id.in_(event_ids), Job.retry_of.is_(None)))
    return {event_id: (job_id, status) for event_id, job_id, status in rows}


# The statements of a play's path (accept, claim, complete), each built once per dialect with
# every value a bound parameter: building one costs more than running it (coercions, the cache
# key), and a statement built once keeps its cache key.
def _built(session: Session, build: Callable[[Any], Executable]) -> Executable:
    """The statement `build(dialect_insert)` makes for the session's dialect (its INSERT,
    for ON CONFLICT), built once."""
    return _build(session.get_bind().dialect.name, build)


@functools.cache
def _build(dialect: str, build: Callable[[Any], Executable]) -> Executable:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    return build(dialect_insert)


def _upsert_devices(session: Session, events: list[EventIn], now) -> None:
    """Insert or update the devices in one statement: two first events of a device may arrive
    at the same moment. A device named twice keeps its latest info; rows go in id order, so
    two batches lock shared devices in the same order."""
    latest = {event.device.id: event.device for event in events}
    session.connection().execute(
        _built(session, _devices_upsert),
        [{"id": device_id, "last_info": dict(device.info), "last_ip": device.ip,
          "last_port": device.port, "created_at": now, "updated_at": now}
         for device_id, device in sorted(latest.items())])


def _devices_upsert(dialect_insert) -> Executable:
    devices = Device.__table__
    statement = dialect_insert(devices)
    return statement.on_conflict_do_update(index_elements=[devices.c.id], set_={
        name: statement.excluded[name]
        for name in ("last_info", "last_ip", "last_port", "updated_at")})


def _insert_events(session: Session, events: list[EventIn], now) -> dict[str, str]:
    """event_id -> primary key of the events inserted here; an event_id another transaction
    stored first is skipped (PostgreSQL waits for that transaction to end)."""
    # The key only for events that carry a field their flow seals (passflow.flows).
    cipher = cipher_from_settings() if any(needs_cipher(e) for e in events) else None
    # In event_id order: two transactions storing the same events wait for each other in the
    # same order, never crosswise.
    rows = [{"id": new_id(), "event_id": event.event_id, "type": event.type,
             "payload": stored_payload(event, cipher), "received_at": now}
            for event in sorted(events, key=lambda e: e.event_id)]
    return dict(session.connection().execute(_built(session, _events_insert), rows).all())


def _events_insert(dialect_insert) -> Executable:
    table = Event.__table__
    return (dialect_insert(table).on_conflict_do_nothing(index_elements=[table.c.event_id])
            .returning(table.c.event_id, table.c.id))


# Running a step ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Claim:
    device_id: str
    failures: int  # retryable errors of this step so far
    attempts: int  # runs of this step, this one included
    rate_limited: int = 0  # Adobe's 429s of this step so far
    late_s: float = 0.0  # how long after its due time the job was claimed
    # When this step first ran: its waits for request budget count from here, not from the
    # event (a job that sat in a queue no worker consumed has spent none of it).
    step_started_at: datetime | None = None
    request_id: str | None = None  # the API request that accepted the job (logs)


def claim_many(session: Session, job_ids: list[str], step_name: str, owner: str, *,
               lease: timedelta) -> dict[str, Claim]:
    """Take the lease of every job of `job_ids` that is due for `step_name` and free, and count
    the run in its step row (a first run inserts it, a rerun counts one more): on PostgreSQL one
    statement (the UPDATE ... RETURNING feeding the step rows' upsert), on SQLite the same two
    statements one after the other."""
    now = utcnow()
    values = {"ids": job_ids, "step": step_name, "owner": owner, "now": now,
              "due_by": now + timedelta(seconds=EARLY_TOLERANCE_S), "lease_until": now + lease}
    if on_postgresql(session):
        rows = session.connection().execute(_built(session, _claim_counted), {
            **values, "running": StepStatus.RUNNING.value}).all()
    else:
        claimed = session.connection().execute(_built(session, _claim_update), values).all()
        counted = {job_id: (attempts, failures, limited, started)
                   for job_id, attempts, failures, limited, started in session.connection().execute(
            _built(session, _steps_upsert),
            [{"job_id": job_id, "step": step_name, "attempts": 1, "failures": 0,
              "rate_limited": 0, "status": StepStatus.RUNNING.value, "started_at": now}
             for job_id, *_ in claimed])} if claimed else {}
        rows = [(*row, *counted[row[0]]) for row in claimed]
    return {job_id: Claim(device_id=device_id, attempts=attempts, failures=failures,
                          rate_limited=limited, request_id=request_id, step_started_at=started,
                          late_s=0.0 if due is None else max(0.0, (now - due).total_seconds()))
            for job_id, device_id, due, request_id, attempts, failures, limited, started
            in rows}


def _claim_update(_dialect_insert) -> Executable:
    jobs = Job.__table__
    return (
        jobs.update()
        .where(
            jobs.c.id.in_(bindparam("ids", expanding=True)),
            jobs.c.current_step == bindparam("step"),
            jobs.c.status.not_in(_FINAL),
            or_(jobs.c.lease_until.is_(None), jobs.c.lease_until < bindparam("now")),
            or_(jobs.c.next_run_at.is_(None), jobs.c.next_run_at <= bindparam("due_by")),
        )
        .values(lease_owner=bindparam("owner"), lease_until=bindparam("lease_until"),
                updated_at=bindparam("now"),  # set here: no onupdate runs in a WITH
                status=case((jobs.c.status == JobStatus.QUEUED.value, JobStatus.RUNNING.value),
                            else_=jobs.c.status))
        .returning(jobs.c.id, jobs.c.device_id, jobs.c.next_run_at, jobs.c.request_id))


def _steps_upsert(dialect_insert) -> Executable:
    steps = JobStep.__table__
    return (dialect_insert(steps).on_conflict_do_update(
        index_elements=[steps.c.job_id, steps.c.step],
        set_={"attempts": steps.c.attempts + 1, "status": StepStatus.RUNNING.value})
        .returning(steps.c.job_id, steps.c.attempts, steps.c.failures, steps.c.rate_limited,
                   steps.c.started_at))


def _claim_counted(dialect_insert) -> Executable:
    """The claim and the step rows' counters in one statement (PostgreSQL: a data-modifying
    WITH). Rows as claim_many's: the job, its device, due time and request, then the step
    row's attempts, failures and 429s."""
    steps = JobStep.__table__
    claimed = _claim_update(dialect_insert).cte("claimed")
    counted = (dialect_insert(steps).from_select(
        ["job_id", "step", "status", "attempts", "failures", "rate_limited", "started_at"],
        select(claimed.c.id, bindparam("step", type_=steps.c.step.type),
               bindparam("running", type_=steps.c.status.type), literal(1), literal(0),
               literal(0), bindparam("now", type_=steps.c.started_at.type)))
        .on_conflict_do_update(index_elements=[steps.c.job_id, steps.c.step],
                               set_={"attempts": steps.c.attempts + 1,
                                     "status": StepStatus.RUNNING.value})
        .returning(steps.c.job_id, steps.c.attempts, steps.c.failures, steps.c.rate_limited,
                   steps.c.started_at)
        .cte("counted"))
    return (select(claimed.c.id, claimed.c.device_id, claimed.c.next_run_at,
                   claimed.c.request_id, counted.c.attempts, counted.c.failures,
                   counted.c.rate_limited, counted.c.started_at)
            .join_from(claimed, counted, counted.c.job_id == claimed.c.id))


def due_for(session: Session, step_name: str, *, limit: int) -> list[str]:
    """The ids of up to `limit` jobs due now for `step_name` and free, oldest first, to claim
    along with a batch's own (their messages, still queued, then find nothing to do). On
    PostgreSQL the rows are locked until the claim, and rows another worker is claiming are
    skipped. (A separate statement: in `UPDATE ... WHERE id IN (SELECT ... LIMIT n FOR UPDATE
    SKIP LOCKED)` PostgreSQL may run the subquery again and update more than n rows.)"""
    now = utcnow()
    query = (select(Job.id)
             .where(Job.current_step == step_name,
                    Job.status.not_in(_FINAL),
                    or_(Job.lease_until.is_(None), Job.lease_until < now),
                    Job.next_run_at <= now)
             .order_by(Job.next_run_at).limit(limit))
    if on_postgresql(session):
        query = query.with_for_update(skip_locked=True)
    return list(session.scalars(query))


class LeaseLost(Exception):
    """Another worker took the job over (this one was too slow): its work is rolled back."""


def settle(session: Session, step_name: str, owner: str,
           transitions: list[tuple[Job, Outcome | Release]]) -> set[str]:
    """Record what a run of `step_name` decided for each of its jobs, in the caller's
    transaction (the one holding the records the step made): complete it with its Outcome, or
    release it to run again. A job that this transaction cancelled (another job of the run
    superseded it) stays cancelled: returns those ids. Raises LeaseLost, and the caller rolls
    back, if any job's lease was taken over (the run was too slow)."""
    for job, t in transitions:
        if isinstance(t, Outcome):
            if job.status in FINAL_STATUSES:  # ended by another (an operator's cancel)
                raise LeaseLost(job.id)
            check_move(job.status, t)
    cancelled = set(session.info.pop(_CANCELLED_HERE, ()))
    _complete_many(session, step_name, owner,
                   [(job, t) for job, t in transitions if isinstance(t, Outcome)], cancelled)
    for job, t in transitions:
        if isinstance(t, Release) and job.id not in cancelled:
            release(session, job.id, step_name, owner, retry_in_s=t.retry_in_s, error=t.error,
                    counts=t.counts, resent=t.resent)
    return cancelled


def _complete_many(session: Session, step_name: str, owner: str,
                   done: list[tuple[Job, Outcome]], cancelled: set[str]) -> None:
    """The job rows and their step rows, run for every job (executemany): one statement on
    PostgreSQL, two on SQLite. A job in `cancelled` (by this transaction) keeps its job row;
    its step row still says how the step ended."""
    if not done:
        return
    session.flush()  # the records the steps added, before the jobs say they are done
    now = utcnow()
    job_rows: list[dict[str, Any]] = []
    step_rows: list[dict[str, Any]] = []
    for job, outcome in done:
        repeat = outcome.next_step == step_name
        step_rows.append({
            "_id": job.id,
            "status": StepStatus.RUNNING if repeat else (
                StepStatus.FAILED if outcome.status == JobStatus.FAILED
                else StepStatus.SUCCEEDED),
            "finished_at": None if repeat else now,
            "last_error": None if outcome.error is None else error_text(outcome.error)[:2000],
        })
        if job.id in cancelled:
            continue
        final = outcome.next_step is None
        job_rows.append({
            "_id": job.id,
            "status": outcome.status,
            "current_step": outcome.next_step,
            "next_run_at": None if final else now + timedelta(seconds=outcome.delay_s),
            "dispatched_at": (None if final or outcome.delay_s > policy.DIRECT_DISPATCH_MAX_S
                              else now),
            "result": {**(job.result or {}), **outcome.result},
            "state": {**(job.state or {}), **outcome.state},
            "error": outcome.error if outcome.error is not None else job.error,
            "finished_at": now if final else job.finished_at,
        })
        if final:
            webhooks.record(session, job.id, "job.finished")
            metrics.inc_on_commit(session, "passflow_jobs_finished_total", (
                job.type, outcome.status, metrics.mvpd_label(job.mvpd),
                str((outcome.error or {}).get("code") or ""), job.service_provider))
        elif (outcome.status == JobStatus.WAITING_FOR_USER
              and job.status != JobStatus.WAITING_FOR_USER):
            webhooks.record(session, job.id, "job.waiting_for_user")
    for row in job_rows:
        row.update(_owner=owner, _now=now)
    for row in step_rows:
        row["_step"] = step_name
    if job_rows and on_postgresql(session):
        # One statement per job for both rows (see _complete_both); the step rows of jobs
        # cancelled here after.
        of_job = {row["_id"]: row for row in step_rows}
        changed = session.connection().execute(_built(session, _complete_both), [
            {**row, "_step": step_name, **{f"step_{name}": value for name, value
                                           in of_job.pop(row["_id"]).items() if name[0] != "_"}}
            for row in job_rows]).rowcount
        step_rows = list(of_job.values())
    else:
        changed = session.connection().execute(
            _built(session, _complete_jobs), job_rows).rowcount if job_rows else 0
    if changed != len(job_rows):
        raise LeaseLost(", ".join(row["_id"] for row in job_rows))
    if step_rows:
        session.connection().execute(_built(session, _complete_steps), step_rows)


def _complete_jobs(_dialect_insert) -> Executable:
    jobs = Job.__table__
    return (jobs.update()
            .where(jobs.c.id == bindparam("_id"), jobs.c.lease_owner == bindparam("_owner"))
            .values({**{name: bindparam(name) for name in (
                "status", "current_step", "next_run_at", "dispatched_at", "result", "state",
                "error", "finished_at")},
                "lease_owner": None, "lease_until": None, "updated_at": bindparam("_now")}))


def _complete_steps(_dialect_insert) -> Executable:
    steps = JobStep.__table__
    return (steps.update()
            .where(steps.c.job_id == bindparam("_id"), steps.c.step == bindparam("_step"))
            .values({name: bindparam(name) for name in ("status", "finished_at", "last_error")}))


def _complete_both(_dialect_insert) -> Executable:
    """_complete_jobs and then _complete_steps in one statement (PostgreSQL: a data-modifying
    WITH). Its row count is the step rows updated: one per job whose lease this run still
    held, none for a job another worker took over (the caller raises LeaseLost)."""
    steps = JobStep.__table__
    done = _complete_jobs(_dialect_insert).returning(Job.__table__.c.id).cte("done")
    return (steps.update()
            .where(steps.c.job_id.in_(select(done.c.id)), steps.c.job_id == bindparam("_id"),
                   steps.c.step == bindparam("_step"))
            .values({name: bindparam(f"step_{name}")
                     for name in ("status", "finished_at", "last_error")}))


def release(session: Session, job_id: str, step_name: str, owner: str, *, retry_in_s: float,
            error: str, counts: str | None = None, resent: int = 0) -> None:
    """Give the lease back and set when the step is due again (see Release)."""
    now = utcnow()
    session.execute(
        update(Job).where(Job.id == job_id, Job.lease_owner == owner).values(
            lease_owner=None, lease_until=None,
            next_run_at=now + timedelta(seconds=retry_in_s),
            dispatched_at=now if retry_in_s <= policy.DIRECT_DISPATCH_MAX_S else None,
        ).execution_options(synchronize_session=False)
    )
    values: dict[str, Any] = {"last_error": error[:2000]}
    added = {counts: 1} if counts is not None else {}
    if resent:
        added["failures"] = added.get("failures", 0) + resent
    for counter, more in added.items():
        values[counter] = getattr(JobStep, counter) + more
    session.execute(
        update(JobStep).where(JobStep.job_id == job_id, JobStep.step == step_name)
        .values(**values).execution_options(synchronize_session=False)
    )


# Transitions from outside a step -----------------------------------------------------------------

def cancel(session: Session, job_ids: list[str], *, code: str = "cancelled",
           message: str | None = None) -> list[str]:
    """Cancel jobs that are not final by a row update (a pending poll finds its job final and
    stops); their pending sessions stop too. Returns the ids cancelled here."""
    if not job_ids:
        return []
    now = utcnow()
    # The sessions' rows before the jobs' (the order a poll's run locks them: see
    # start_polling).
    stop = SessionStatus.SUPERSEDED if code == "superseded" else SessionStatus.CANCELLED
    session.execute(
        update(AuthSession).where(AuthSession.job_id.in_(job_ids),
                                  AuthSession.status == SessionStatus.PENDING)
        .values(status=stop, stop_reason=message or code, next_poll_at=None)
        .execution_options(synchronize_session=False)
    )
    rows = session.execute(
        update(Job).where(Job.id.in_(job_ids), Job.status.not_in(_FINAL))
        .values(status=JobStatus.CANCELLED, current_step=None, next_run_at=None,
                lease_owner=None, lease_until=None, finished_at=now, updated_at=now,
                error={"status": None, "code": code, "action": "none",
                       "message": message or code})
        .returning(Job.id, Job.type, Job.mvpd, Job.service_provider)
        .execution_options(synchronize_session=False)
    ).all()
    cancelled = [row.id for row in rows]
    session.info.setdefault(_CANCELLED_HERE, set()).update(cancelled)
    for row in rows:
        metrics.inc_on_commit(session, "passflow_jobs_finished_total",
                              (row.type, JobStatus.CANCELLED, metrics.mvpd_label(row.mvpd),
                               code, row.service_provider))
    for job_id in cancelled:
        webhooks.record(session, job_id, "job.finished")
    return cancelled


def supersede_sessions(session: Session, *, device_id: str, service_provider: str,
                       by_job_id: str) -> list[str]:
    """A new code stops polling of the device's previous ones (checklist): their sessions end
    `superseded` and their jobs `cancelled`. Serialized on the device row (a row lock on
    PostgreSQL, the write lock on SQLite), so of two sessions created at once for one device,
    the later commit supersedes the earlier. Of two made in one run (one transaction), the later
    applied supersedes the earlier: the run's new sessions are flushed first to be seen."""
    session.execute(update(Device).where(Device.id == device_id).values(updated_at=utcnow()))
    if any(isinstance(new, AuthSession) and new.device_id == device_id for new in session.new):
        session.flush()
    older = list(session.scalars(select(AuthSession.job_id).where(
        AuthSession.device_id == device_id, AuthSession.service_provider == service_provider,
        AuthSession.status == SessionStatus.PENDING, AuthSession.job_id != by_job_id)))
    return cancel(session, older, code="superseded", message=f"superseded by job {by_job_id}")


def partner_answered(session: Session, *, device_id: str, service_provider: str,
                     by_job_id: str) -> list[str]:
    """The partner framework's response made a profile (job `by_job_id`): the device's partner
    requests waiting for it end succeeded, their result naming that job. Returns their ids."""
    waiting = session.scalars(select(Job).where(
        Job.device_id == device_id, Job.service_provider == service_provider,
        Job.type == EventType.PARTNER_REQUESTED,
        Job.current_step == "partner.wait",  # (worker.steps.StepName.PARTNER_WAIT)
        Job.status.not_in(_FINAL)).with_for_update()).all()
    now = utcnow()
    for job in waiting:
        job.status, job.current_step, job.next_run_at = JobStatus.SUCCEEDED, None, None
        job.lease_owner = job.lease_until = None
        job.finished_at = job.updated_at = now
        job.result = {**(job.result or {}), "profile_job": by_job_id}
        webhooks.record(session, job.id, "job.finished")
        metrics.inc_on_commit(session, "passflow_jobs_finished_total", (
            job.type, JobStatus.SUCCEEDED, metrics.mvpd_label(job.mvpd), "",
            job.service_provider))
    return [job.id for job in waiting]


def start_polling(session: Session, job_id: str) -> str | None:
    """The user reached the final page (primary-screen flow): the job's poll is due now.
    Returns the step to send, or None when the job is not waiting for a poll.

    The session's row is locked before the job's, in the order a poll's run writes them (its
    session's row, then the job's settle): taken the other way round, a user's return that
    met the job's poll being applied deadlocked, and the page answered 503."""
    auth = session.scalar(select(AuthSession).where(AuthSession.job_id == job_id)
                          .with_for_update())
    job = session.get(Job, job_id, with_for_update=True)
    if job is None or job.status in FINAL_STATUSES or job.current_step is None:
        return None
    if auth is None or auth.status != SessionStatus.PENDING:
        return None
    now = utcnow()
    auth.polling_started_at = auth.polling_started_at or now
    auth.next_poll_at = now
    if job.next_run_at is None or job.next_run_at > now:
        job.next_run_at = now
    job.dispatched_at = now
    return job.current_step


def provider_picked(session: Session, cipher: Cipher, *, service_provider: str, code: str,
                    mvpd: str, display_name: str | None = None,
                    logo_url: str | None = None) -> None:
    """The user picked an MVPD for the code on the activation page: the session and its job
    keep it, and the device its selection as the configuration shows it (checklist, TV
    Provider Selection Caching: id, display name, logo)."""
    auth = session.scalar(select(AuthSession).where(AuthSession.has_code(cipher, code),
                                                    AuthSession.service_provider ==
                                                    service_provider))
    if auth is None:
        return
    if auth.mvpd is None:
        auth.mvpd = mvpd
        session.execute(update(Job).where(Job.id == auth.job_id, Job.mvpd.is_(None))
                        .values(mvpd=mvpd).execution_options(synchronize_session=False))
    session.execute(update(Device).where(Device.id == auth.device_id).values(
        last_mvpd=mvpd, last_mvpd_name=display_name, last_mvpd_logo_url=logo_url)
        .execution_options(synchronize_session=False))


class NotRetryable(ValueError):
    pass


RETRYABLE = frozenset({JobStatus.FAILED})


def retry(session: Session, job_id: str, *, first_steps: Mapping[str, str],
          requested_by: str) -> Job:
    """A new job for a failed job's event, linked to it (`retry_of`) and saying who asked; due
    at once and marked sent (the caller sends it after commit; if that fails, the sweeper does
    once overdue, as for `accept`). The failed job stays as it was: both are in the history.
    Raises LookupError or NotRetryable, and stores nothing, otherwise."""
    old = session.get(Job, job_id, with_for_update=True)
    if old is None:
        raise LookupError("job not found")
    if old.status not in RETRYABLE:
        raise NotRetryable(f"job is {old.status}; only a failed job can be retried")
    later = session.scalar(select(Job.id).where(Job.retry_of == old.id))
    if later is not None:
        raise NotRetryable(f"job was retried already: job {later}")
    now = utcnow()
    new = Job(id=new_id(), event_pk=old.event_pk, type=old.type, status=JobStatus.QUEUED,
              service_provider=old.service_provider, device_id=old.device_id, mvpd=old.mvpd,
              current_step=first_steps[old.type], next_run_at=now, dispatched_at=now, result={},
              state={}, created_at=now, updated_at=now, retry_of=old.id,
              requested_by=requested_by[:200])
    try:
        with session.begin_nested():  # two operators at once: the unique retry_of decides
            session.add(new)
    except IntegrityError as exc:
        raise NotRetryable("job was retried already (at the same moment)") from exc
    return new


# Sweeping ----------------------------------------------------------------------------------------

def release_owners(session: Session, worker_ids: list[str]) -> list[str]:
    """The jobs leased by dead workers (worker.heartbeat): their lease ends now and they are due
    at once, to be sent to a live worker by this sweep. A worker thought dead that wakes finds
    its lease gone and its work rolled back (LeaseLost)."""
    if not worker_ids:
        return []
    now = utcnow()
    return list(session.execute(
        update(Job).where(or_(*(Job.lease_owner.like(f"{wid}:%") for wid in worker_ids)),
                          Job.lease_until > now, Job.status.not_in(_FINAL))
        .values(lease_owner=None, lease_until=None, next_run_at=now, dispatched_at=None,
                updated_at=now)
        .returning(Job.id).execution_options(synchronize_session=False)).scalars())


def due_jobs(session: Session, *, grace: timedelta, horizon: timedelta,
             limit: int) -> list[tuple[str, str, float]]:
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
    if on_postgresql(session):
        query = query.with_for_update(skip_locked=True)
    rows = [(job_id, step_name, max(0.0, (due - now).total_seconds()) if due else 0.0)
            for job_id, step_name, due in session.execute(query)]
    if rows:
        session.execute(
            update(Job).where(Job.id.in_([job_id for job_id, _, _ in rows]))
            .values(dispatched_at=now).execution_options(synchronize_session=False)
        )
    return rows
