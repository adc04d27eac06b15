"""The entitlement history: sessions, profiles, decisions and logouts, newest first, paged by an
opaque cursor. One query per record kind, merged in order of (time, kind, id)."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.orm import Session, aliased

from models.base import in_utc, utc_text
from models.entitlements import AuthSession, Decision, Logout, Profile
from models.jobs import Event, Job, JobStatus, JobStep
from passflow.crypto import Cipher
from passflow.reasons import reason_class

# The rank breaks ties between kinds at the same instant, so paging is stable.
_KINDS: dict[str, tuple[int, type]] = {
    "session": (0, AuthSession),
    "profile": (1, Profile),
    "decision": (2, Decision),
    "logout": (3, Logout),
    "job": (4, Job),  # an attempt that failed, expired or was cancelled, with its reason
}
_JOB_RANK = _KINDS["job"][0]
_UNSUCCESSFUL = (JobStatus.FAILED, JobStatus.EXPIRED, JobStatus.CANCELLED)


def _time_field(model: type) -> str:
    """When an entry happened: a job's end (its outcome), any other record's creation."""
    return "finished_at" if model is Job else "created_at"


# Which kind of entry an outcome filter selects.
OUTCOME_KINDS: dict[str, tuple[str, ...]] = {
    "Permit": ("decision",), "Deny": ("decision",),
    "failed": ("job", "session"), "expired": ("job", "session"), "cancelled": ("job", "session"),
    "pending": ("session",), "authenticated": ("session",), "superseded": ("session",)}


class BadCursor(ValueError):
    pass


@dataclass(frozen=True, kw_only=True)
class Window:
    """A time window, and one page of it (newest first) after `cursor`."""

    since: datetime | None = None
    until: datetime | None = None
    limit: int = 50
    cursor: str | None = None


@dataclass(frozen=True, kw_only=True)
class HistoryQuery(Window):
    device_id: str | None = None
    service_provider: str | None = None
    mvpd: str | None = None
    resource: str | None = None
    job_id: str | None = None
    # The brands a token is limited to (None: every brand).
    service_providers: frozenset[str] | None = None
    # An entry's outcome: Permit or Deny (decisions), failed, expired or cancelled (attempts),
    # a session's status (pending, authenticated, ...).
    outcome: str | None = None


_RANKS = frozenset(rank for rank, _ in _KINDS.values())


def _pack(*parts: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(parts)).encode()).decode().rstrip("=")


def _unpack(cursor: str, check: Callable[[list[Any]], tuple[Any, ...]]) -> tuple[Any, ...]:
    """A cursor's time and its other parts, everything checked as if hostile: the time has its
    zone and is in range once in UTC, `check` vets (and returns) the rest."""
    try:
        at, *rest = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return (in_utc(datetime.fromisoformat(at)), *check(rest))
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise BadCursor("cursor is not one this API gave out") from exc


_JOB_ID = re.compile(r"[0-9a-fA-F-]{1,36}")


def _job_id(value: Any) -> str:
    if type(value) is not str or not _JOB_ID.fullmatch(value):
        raise ValueError("not a job id")
    return value


def _encode_cursor(at: datetime, rank: int, row_id: int | str) -> str:
    return _pack(at.isoformat(), rank, row_id)


_MAX_ID = 2**63 - 1  # the largest key either database stores


def _entry_key(rest: list[Any]) -> tuple[int, int | str]:
    """A rank this module gives and an id a database can compare."""
    rank, row_id = rest
    if type(rank) is not int or rank not in _RANKS:
        raise ValueError("not a rank")
    if rank == _JOB_RANK:
        return rank, _job_id(row_id)
    if type(row_id) is not int or not 0 <= row_id <= _MAX_ID:
        raise ValueError("not a record id")
    return rank, row_id


def _decode_cursor(cursor: str) -> tuple[datetime, int, int | str]:
    return _unpack(cursor, _entry_key)


def _entry(kind: str, at: datetime, row: Any, resource: str | None,
           cipher: Cipher | None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "kind": kind,
        "device_id": row.device_id,
        "service_provider": row.service_provider,
        "mvpd": row.mvpd,
        "resource": resource,
        "at": utc_text(at),
        "job_id": row.id if kind == "job" else row.job_id,
    }
    if kind == "session":
        entry.update(outcome=row.status, reason=row.stop_reason)
        if cipher is not None:  # the activation code is personal data
            entry["code"] = row.code(cipher)
    elif kind == "profile":
        entry.update(outcome="authenticated", profile_type=row.type,
                     not_after=utc_text(row.not_after))
    elif kind == "decision":
        entry.update(resource=row.resource, outcome=row.decision, decision_kind=row.kind,
                     error_code=row.error_code, error_action=row.error_action,
                     reason=(row.error or {}).get("message") if row.error else None,
                     reason_class=reason_class(row.error or (
                         {"code": row.error_code, "action": row.error_action}
                         if row.error_code else None)))
    elif kind == "job":
        error = row.error or {}
        entry.update(outcome=row.status, job_type=row.type, error_code=error.get("code"),
                     error_action=error.get("action"), reason=error.get("message"),
                     reason_class=reason_class(row.error), retry_of=row.retry_of)
    else:
        entry.update(outcome=row.action_name, action_type=row.action_type,
                     single_logout=row.single_sign_on)
    return entry


def history(session: Session, query: HistoryQuery, cipher: Cipher | None = None,
            ) -> tuple[list[dict[str, Any]], str | None]:
    """One page of entries and the cursor of the next page (None on the last). Sessions show
    their activation code only given the `cipher` (for a reader allowed personal data)."""
    after = _decode_cursor(query.cursor) if query.cursor else None
    rows: list[tuple[datetime, int, int | str, str, Any, str | None]] = []
    # A failed play's resource is its event's (the job row has none).
    event_resource = Event.payload["resource"].as_string()
    for kind, (rank, model) in _KINDS.items():
        if query.resource is not None and kind not in ("decision", "job"):
            continue  # only decisions and attempts (plays) concern a resource
        if query.outcome is not None and kind not in OUTCOME_KINDS.get(query.outcome, ()):
            continue
        field = _time_field(model)
        at_ = getattr(model, field)
        stmt = select(model)
        if model is Job:
            stmt = (select(Job, event_resource).join(Event, Event.id == Job.event_pk)
                    .where(Job.status.in_(_UNSUCCESSFUL), Job.finished_at.is_not(None)))
        if query.device_id is not None:
            stmt = stmt.where(model.device_id == query.device_id)
        if query.mvpd is not None:
            stmt = stmt.where(model.mvpd == query.mvpd)
        if query.service_provider is not None:
            stmt = stmt.where(model.service_provider == query.service_provider)
        if query.service_providers is not None:
            stmt = stmt.where(model.service_provider.in_(query.service_providers))
        if query.resource is not None:
            stmt = stmt.where((event_resource if model is Job else model.resource)
                              == query.resource)
        if query.job_id is not None:
            stmt = stmt.where((model.id if model is Job else model.job_id) == query.job_id)
        if query.outcome is not None:
            stmt = stmt.where(_outcome_column(model) == query.outcome)
        if query.since is not None:
            stmt = stmt.where(at_ >= query.since)
        if query.until is not None:
            stmt = stmt.where(at_ < query.until)
        if after is not None:
            # Strictly after the cursor in (time, rank, id) descending order.
            at, c_rank, c_id = after
            if rank < c_rank:
                stmt = stmt.where(at_ <= at)
            elif rank == c_rank:
                stmt = stmt.where(or_(at_ < at, and_(at_ == at, model.id < c_id)))
            else:
                stmt = stmt.where(at_ < at)
        stmt = stmt.order_by(at_.desc(), model.id.desc()).limit(query.limit + 1)
        found = (session.execute(stmt).all() if model is Job
                 else ((row, None) for row in session.scalars(stmt)))
        rows.extend((getattr(row, field), rank, row.id, kind, row, resource)
                    for row, resource in found)
    rows.sort(key=lambda r: (r[0], r[1], r[2]), reverse=True)
    page = rows[:query.limit]
    cursor = None
    if len(rows) > query.limit and page:
        last = page[-1]
        cursor = _encode_cursor(last[0], last[1], last[2])
    return [_entry(kind, at, row, resource, cipher)
            for at, _, _, kind, row, resource in page], cursor


def _outcome_column(model: type):
    return {AuthSession: AuthSession.status, Decision: Decision.decision,
            Job: Job.status}[model]


# Jobs as operations look for them -------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class JobQuery(Window):
    status: str | None = None
    type: str | None = None
    service_provider: str | None = None
    device_id: str | None = None
    event_id: str | None = None
    step: str | None = None  # a step the job ran or is at
    mvpd: str | None = None
    service_providers: frozenset[str] | None = None  # a token's brands (None: every one)
    error_code: str | None = None  # a failed job's error code
    not_retried: bool = False  # only jobs no later job retries


def _decode_job_cursor(cursor: str) -> tuple[datetime, str]:
    return _unpack(cursor, lambda rest: (_job_id(*rest),))


def job_summary(job: Job, event_id: str) -> dict[str, Any]:
    error = job.error or {}
    return {
        "job_id": job.id, "event_id": event_id, "type": job.type, "status": job.status,
        "device_id": job.device_id, "service_provider": job.service_provider, "mvpd": job.mvpd,
        "step": job.current_step,
        "created_at": utc_text(job.created_at), "finished_at": utc_text(job.finished_at),
        "error_code": error.get("code"), "error_action": error.get("action"),
        "reason": error.get("message"), "retry_of": job.retry_of,
    }


def _jobs_where(stmt: Any, query: JobQuery) -> Any:
    """`stmt` (of jobs joined to their events) narrowed to the query's filters."""
    for column, value in ((Job.status, query.status), (Job.type, query.type),
                          (Job.device_id, query.device_id), (Event.event_id, query.event_id),
                          (Job.service_provider, query.service_provider),
                          (Job.mvpd, query.mvpd)):
        if value is not None:
            stmt = stmt.where(column == value)
    if query.service_providers is not None:
        stmt = stmt.where(Job.service_provider.in_(query.service_providers))
    if query.step is not None:  # the step it is at, or ran (a failed job: where it failed)
        stmt = stmt.where(exists().where(JobStep.job_id == Job.id, JobStep.step == query.step))
    if query.since is not None:
        stmt = stmt.where(Job.created_at >= query.since)
    if query.until is not None:
        stmt = stmt.where(Job.created_at < query.until)
    if query.error_code is not None:
        stmt = stmt.where(Job.error["code"].as_string() == query.error_code)
    if query.not_retried:
        later = aliased(Job)
        stmt = stmt.where(~exists().where(later.retry_of == Job.id))
    return stmt


def count_jobs(session: Session, query: JobQuery) -> dict[str, int]:
    """How many jobs the query's filters match (its page and cursor aside), by error code
    ("" for none)."""
    code = func.coalesce(Job.error["code"].as_string(), "")
    stmt = _jobs_where(select(code, func.count()).select_from(Job)
                       .join(Event, Event.id == Job.event_pk), query).group_by(code)
    return {str(c): int(n) for c, n in session.execute(stmt)}


def jobs_page(session: Session, query: JobQuery) -> tuple[list[dict[str, Any]], str | None]:
    """Jobs newest first, by status, type, device or event id (its first job and retries)."""
    stmt = _jobs_where(select(Job, Event.event_id).join(Event, Event.id == Job.event_pk), query)
    if query.cursor:
        at, job_id = _decode_job_cursor(query.cursor)
        stmt = stmt.where(or_(Job.created_at < at, and_(Job.created_at == at, Job.id < job_id)))
    rows = session.execute(stmt.order_by(Job.created_at.desc(), Job.id.desc())
                           .limit(query.limit + 1)).all()
    page = rows[:query.limit]
    cursor = None
    if len(rows) > query.limit and page:
        last = page[-1][0]
        cursor = _pack(last.created_at.isoformat(), last.id)
    return [job_summary(job, event_id) for job, event_id in page], cursor


_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_CODE = re.compile(r"^[A-Za-z0-9 ._-]{4,24}$")
_ID_START = re.compile(r"^[0-9a-f]{6,8}(-[0-9a-f-]{0,27})?$")


def find(session: Session, query: str, cipher: Cipher) -> tuple[str, str] | None:
    """What a search names: ("job", id) for a job id, an event id (its newest job), an
    activation code (its authentication job) or the start of one job's id (8 characters, as the
    console shows them); ("device", id) for a device with any job."""
    if _UUID.match(query.lower()) and session.get(Job, query.lower()) is not None:
        return "job", query.lower()
    job_id = session.scalar(select(Job.id).join(Event, Event.id == Job.event_pk)
                            .where(Event.event_id == query)
                            .order_by(Job.created_at.desc()).limit(1))
    if job_id is None and _CODE.match(query):
        job_id = session.scalar(select(AuthSession.job_id)
                                .where(AuthSession.has_code(cipher, query))
                                .order_by(AuthSession.created_at.desc()).limit(1))
    if job_id is not None:
        return "job", job_id
    if _ID_START.match(query.lower()):  # the 8 characters the console and the demo show
        starting = list(session.scalars(select(Job.id).where(Job.id.startswith(query.lower()))
                                        .order_by(Job.id).limit(2)))
        if len(starting) == 1:
            return "job", starting[0]
    if session.scalar(select(Job.id).where(Job.device_id == query).limit(1)) is not None:
        return "device", query
    return None


def login_times(session: Session, job_ids: set[str]) -> dict[str, float]:
    """Seconds from each authentication session's creation to its profile, by job."""
    if not job_ids:
        return {}
    rows = session.execute(select(AuthSession.job_id, AuthSession.created_at,
                                  Profile.created_at)
                           .join(Profile, Profile.job_id == AuthSession.job_id)
                           .where(AuthSession.job_id.in_(job_ids))).all()
    return {job_id: round(max(0.0, (got - made).total_seconds()), 1)
            for job_id, made, got in rows}
