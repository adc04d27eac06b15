"""Webhooks: each finished job, and each authentication job that starts waiting for the user, is
POSTed to PASSFLOW_WEBHOOK_URL, signed with HMAC-SHA256 over "<timestamp>.<body>".

The delivery row is written in the same transaction as the job's transition (an outbox), sent
after commit, retried with backoff, and re-sent by the sweeper if its message is lost.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from datetime import timedelta

import httpx
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from models import Job, WebhookDelivery, utcnow
from models.db import on_postgresql, session_scope
from passflow import logs
from passflow.settings import Settings, get_settings
from worker import metrics, policy

log = logs.get_logger(__name__)

SIGNATURE_HEADER = "X-Passflow-Signature"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """`t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes, *, tolerance_s: int = 300,
           now: float | None = None) -> bool:
    """What a receiver does: check the signature and refuse old (replayed) deliveries."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((now or time.time()) - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def record(session: Session, job_id: str, kind: str, settings: Settings | None = None) -> None:
    """Add the delivery to the caller's transaction (nothing when no webhook is configured)."""
    settings = settings or get_settings()
    if not settings.webhook_url:
        return
    exists = session.scalar(select(WebhookDelivery.id).where(
        WebhookDelivery.job_id == job_id, WebhookDelivery.kind == kind))
    if exists is None:
        session.add(WebhookDelivery(job_id=job_id, kind=kind, status="pending",
                                    next_attempt_at=utcnow()))


def pending_for_jobs(session: Session, job_ids: list[str]) -> list[int]:
    return list(session.scalars(select(WebhookDelivery.id).where(
        WebhookDelivery.job_id.in_(job_ids), WebhookDelivery.status == "pending")))


def overdue(session: Session, *, grace: timedelta, limit: int = 200) -> list[int]:
    now = utcnow()
    query = (select(WebhookDelivery.id)
             .where(WebhookDelivery.status == "pending",
                    or_(WebhookDelivery.next_attempt_at.is_(None),
                        WebhookDelivery.next_attempt_at <= now - grace))
             .order_by(WebhookDelivery.next_attempt_at).limit(limit))
    if on_postgresql(session):
        query = query.with_for_update(skip_locked=True)
    ids = list(session.scalars(query))
    for delivery in session.scalars(select(WebhookDelivery).where(WebhookDelivery.id.in_(ids))):
        delivery.next_attempt_at = now  # re-sent now; not again before the grace period
    return ids


def deliver(delivery_id: int, body_of, settings: Settings) -> float | None:
    """Attempt one delivery. Returns seconds until the next attempt, or None when done.

    As jobs are run: the row is claimed by a conditional update that also sets the attempt's
    lease (no other worker, and no sweep, takes it before the lease ends), committed; the POST
    is made with no transaction open and no row locked (a slow receiver holds nothing in the
    database); the outcome is recorded only if the claim still stands."""
    claim = _claim(delivery_id, settings)
    if claim is None:
        return None
    attempt, kind, job_id = claim
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None:  # the job was purged or forgotten: nothing left to say
            return None
        payload = {"event": kind, "delivery_id": delivery_id, "job": body_of(session, job)}
    body = json.dumps(payload, separators=(",", ":")).encode()
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else ""
    headers = {"Content-Type": "application/json", "X-Passflow-Event": kind,
               "X-Passflow-Delivery": str(delivery_id), "User-Agent": "passflow-webhooks"}
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, int(time.time()), body)
    status_code: int | None = None
    try:
        response = httpx.post(settings.webhook_url, content=body, headers=headers,
                              timeout=policy.WEBHOOK_TIMEOUT_S)
        status_code, ok = response.status_code, response.is_success
        error = None if ok else f"HTTP {response.status_code}"
    except httpx.HTTPError as exc:
        ok, error = False, type(exc).__name__
    log.log(logging.INFO if ok else logging.WARNING, "webhook_attempt",
            delivery_id=delivery_id, job_id=job_id, ok=ok, status=status_code, error=error)
    return _settle(delivery_id, attempt, ok=ok, status_code=status_code, error=error)


def _claim(delivery_id: int, settings: Settings) -> tuple[int, str, str] | None:
    """(this attempt's number, kind, job id), or None when the delivery is not due here: done,
    given up, no URL, or being attempted by another worker (its lease)."""
    if not settings.webhook_url:
        return None
    now = utcnow()
    table = WebhookDelivery.__table__
    with session_scope() as session:
        row = session.execute(
            table.update()
            .where(table.c.id == delivery_id, table.c.status == "pending",
                   or_(table.c.next_attempt_at.is_(None),
                       table.c.next_attempt_at <= now + timedelta(seconds=1)))
            .values(attempts=table.c.attempts + 1,
                    next_attempt_at=now + timedelta(seconds=policy.WEBHOOK_LEASE_S))
            .returning(table.c.attempts, table.c.kind, table.c.job_id)).first()
    return (row.attempts, row.kind, row.job_id) if row is not None else None


def _settle(delivery_id: int, attempt: int, *, ok: bool, status_code: int | None,
            error: str | None) -> float | None:
    given_up = not ok and attempt >= policy.WEBHOOK_MAX_ATTEMPTS
    wait = None if ok or given_up else policy.webhook_backoff(attempt)
    now = utcnow()
    values = {"last_status_code": status_code, "last_error": error,
              "status": "delivered" if ok else "failed" if given_up else "pending",
              "delivered_at": now if ok else None,
              "next_attempt_at": None if wait is None else now + timedelta(seconds=wait)}
    table = WebhookDelivery.__table__
    with session_scope() as session:
        settled = session.execute(table.update().where(
            table.c.id == delivery_id, table.c.attempts == attempt,
            table.c.status == "pending").values(**values)).rowcount
    if not settled:  # another attempt took over (this one outlived its lease)
        return None
    metrics.inc("passflow_webhook_deliveries_total",
                ("delivered" if ok else "failed" if given_up else "retry",))
    if given_up:
        log.error("webhook_failed", delivery_id=delivery_id, error=error)
    return wait
