"""Operations on stored data: key rotation, retention, and forgetting a device."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from models import (
    FINAL_STATUSES,
    AuthSession,
    Decision,
    Device,
    Event,
    Job,
    JobStep,
    Logout,
    Profile,
    Registration,
    ServiceProvider,
    WebhookDelivery,
    audit,
    utcnow,
)
from models.db import session_scope
from passflow import flows
from passflow.crypto import Cipher, cipher_from_settings
from passflow.flows import FLOWS, EventType

# (model, encrypted columns): everything stored encrypted with PASSFLOW_SECRET_KEY.
ENCRYPTED = [
    (Registration, ("client_secret_enc", "access_token_enc")),
    (Profile, ("attributes_enc",)),
    (Decision, ("media_token_enc",)),
    (ServiceProvider, ("software_statement_enc",)),
]


def rotate_key(batch: int = 500) -> dict[str, int]:
    """Re-encrypt every stored secret with the first key of PASSFLOW_SECRET_KEY ("NEW,OLD")."""
    cipher = cipher_from_settings()
    counts: dict[str, int] = {}
    for model, columns in ENCRYPTED:

        def rotate(_: Session, row: Any, columns: tuple[str, ...] = columns) -> bool:
            for column in columns:
                value = getattr(row, column)
                if value:
                    setattr(row, column, cipher.rotate(value))
            return True

        counts[model.__tablename__] = _each_row(model, batch, rotate)
    counts["events"] = _each_row(Event, batch, lambda _, event: _reseal_event(cipher, event))
    counts["auth_sessions"] = _each_row(AuthSession, batch,
                                        lambda session, auth: _reseal_session(cipher, session,
                                                                              auth))
    return counts


def _each_row(model: Any, batch: int, visit: Callable[[Session, Any], bool]) -> int:
    """`visit` every row of `model`, `batch` rows a transaction in the order of their ids (a
    long rotation holds no table for long); how many it said it changed."""
    done, last_id = 0, None
    while True:
        with session_scope() as session:
            query = select(model).order_by(model.id).limit(batch)
            if last_id is not None:
                query = query.where(model.id > last_id)
            rows = session.scalars(query).all()
            for row in rows:
                last_id = row.id
                done += bool(visit(session, row))
        if len(rows) < batch:
            return done


def _reseal_session(cipher: Cipher, session: Session, auth: AuthSession) -> bool:
    """An activation code and URL sealed (digest included) under the first key, and sealed
    where a release before 0.5.0 stored them in the clear (in the session, and in its job's
    result)."""
    auth.seal(cipher, auth.code(cipher), auth.url(cipher) or "")
    job = session.get(Job, auth.job_id)
    if job is not None and {"code", "url"} & set(job.result or {}):
        job.result = {k: v for k, v in job.result.items() if k not in ("code", "url")}
    return True


def _reseal_event(cipher: Cipher, event: Event) -> bool:
    """An event's sealed fields (passflow.flows: single sign-on tokens, TempPass identities):
    re-encrypted, and sealed where an earlier version stored them in the clear."""
    resealed = flows.reseal(FLOWS[EventType(event.type)], dict(event.payload), cipher)
    if resealed is None:
        return False
    event.payload = resealed
    return True


def parse_age(text: str) -> timedelta:
    match = re.fullmatch(r"\s*(\d{1,6})\s*([dhm])\s*", text)
    if not match:
        raise ValueError(f"{text!r} is not an age: give one like 90d, 12h or 30m")
    value, unit = int(match.group(1)), match.group(2)
    return {"d": timedelta(days=value), "h": timedelta(hours=value),
            "m": timedelta(minutes=value)}[unit]


def _delete_jobs(session: Session, job_ids: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    if not job_ids:
        return counts
    for model in (WebhookDelivery, Decision, Profile, Logout, AuthSession, JobStep):
        counts[model.__tablename__] = session.execute(
            delete(model).where(model.job_id.in_(job_ids))).rowcount
    event_ids = list(session.scalars(select(Job.event_pk).where(Job.id.in_(job_ids))))
    counts["jobs"] = session.execute(delete(Job).where(Job.id.in_(job_ids))).rowcount
    # An event goes with its last job (a retry of a purged job may still be recent).
    counts["events"] = session.execute(delete(Event).where(
        Event.id.in_(event_ids), ~Event.id.in_(select(Job.event_pk)))).rowcount
    return counts


def _add(total: dict[str, int], part: dict[str, int]) -> None:
    for key, value in part.items():
        total[key] = total.get(key, 0) + value


MIN_PURGE_AGE = timedelta(days=1)


@dataclass(frozen=True)
class PurgePlan:
    cutoff: datetime
    jobs: int  # finished jobs created before the cutoff, deleted with their records
    newest: datetime | None  # the newest of them


def _purgeable(older_than: timedelta) -> tuple[datetime, tuple[Any, ...]]:
    """The cutoff, and which jobs go: finished ones created before it. Refuses an age under
    MIN_PURGE_AGE: audit data is not one mistyped age from gone."""
    if older_than < MIN_PURGE_AGE:
        raise ValueError(f"--older-than must be at least {MIN_PURGE_AGE.days}d (audit data is "
                         "kept at least that long). Nothing changed.")
    cutoff = utcnow() - older_than
    return cutoff, (Job.created_at < cutoff, Job.status.in_([s.value for s in FINAL_STATUSES]))


def purge_plan(*, older_than: timedelta) -> PurgePlan:
    """What `purge` would delete, counted; nothing changed."""
    cutoff, finished = _purgeable(older_than)
    with session_scope() as session:
        count, newest = session.execute(
            select(func.count(), func.max(Job.created_at)).where(*finished)).one()
    return PurgePlan(cutoff=cutoff, jobs=count, newest=newest)


def purge(*, older_than: timedelta, batch: int = 1000) -> dict[str, int]:
    """Delete finished jobs (and their records) created before now - older_than, and devices
    with nothing left that were last seen before then (`_purgeable`: at least MIN_PURGE_AGE)."""
    cutoff, finished = _purgeable(older_than)
    total: dict[str, int] = {}
    while True:
        with session_scope() as session:
            ids = list(session.scalars(select(Job.id).where(*finished).limit(batch)))
            _add(total, _delete_jobs(session, ids))
        if len(ids) < batch:
            break
    with session_scope() as session:
        idle = select(Device.id).where(Device.updated_at < cutoff, ~Device.id.in_(
            select(Job.device_id)))
        total["devices"] = session.execute(delete(Device).where(Device.id.in_(idle))).rowcount
    return total


def forget_device(device_id: str, *, dry_run: bool = False,
                  actor: str | None = None) -> dict[str, int]:
    """Delete every record of a device: jobs, events, sessions, profiles, decisions, logouts,
    webhook deliveries, and the device itself. Running jobs are cancelled by their deletion.
    `dry_run`: the same deletions, counted, then rolled back (what would go, exactly). A real
    one is audited (who, what was deleted) in the same transaction."""
    with session_scope() as session:
        ids = list(session.scalars(select(Job.id).where(Job.device_id == device_id)))
        total = _delete_jobs(session, ids)
        total["devices"] = session.execute(delete(Device).where(Device.id == device_id)).rowcount
        if dry_run:
            session.rollback()
        else:
            audit.record(session, actor or "unknown", "device.forget", device_id,
                         deleted={k: n for k, n in total.items() if n})
    return total
