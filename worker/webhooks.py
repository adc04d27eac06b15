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
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    ids = list(session.scalars(query))
    for delivery in session.scalars(select(WebhookDelivery).where(WebhookDelivery.id.in_(ids))):
        delivery.next_attempt_at = now  # re-sent now; not again before the grace period
    return ids


def deliver(session: Session, delivery_id: int, body_of, settings: Settings) -> float | None:
    """Attempt one delivery. Returns seconds until the next attempt, or None when done."""
    delivery = session.get(WebhookDelivery, delivery_id, with_for_update=True)
    if delivery is None or delivery.status != "pending" or not settings.webhook_url:
        return None
    job = session.get(Job, delivery.job_id)
    payload = {"event": delivery.kind, "delivery_id": delivery.id, "job": body_of(session, job)}
    body = json.dumps(payload, separators=(",", ":")).encode()
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else ""
    headers = {"Content-Type": "application/json", "X-Passflow-Event": delivery.kind,
               "X-Passflow-Delivery": str(delivery.id), "User-Agent": "passflow-webhooks"}
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, int(time.time()), body)
    delivery.attempts += 1
    try:
        response = httpx.post(settings.webhook_url, content=body, headers=headers, timeout=10)
        delivery.last_status_code = response.status_code
        ok = response.is_success
        delivery.last_error = None if ok else f"HTTP {response.status_code}"
    except httpx.HTTPError as exc:
        ok = False
        delivery.last_error = type(exc).__name__
    log.log(logging.INFO if ok else logging.WARNING, "webhook_attempt",
            delivery_id=delivery.id, job_id=delivery.job_id, ok=ok,
            status=delivery.last_status_code, error=delivery.last_error)
    given_up = not ok and delivery.attempts >= policy.WEBHOOK_MAX_ATTEMPTS
    metrics.inc("passflow_webhook_deliveries_total",
                ("delivered" if ok else "failed" if given_up else "retry",))
    if ok:
        delivery.status = "delivered"
        delivery.delivered_at = utcnow()
        delivery.next_attempt_at = None
        return None
    if given_up:
        delivery.status = "failed"
        delivery.next_attempt_at = None
        log.error("webhook_failed", delivery_id=delivery.id, job_id=delivery.job_id,
                    error=delivery.last_error)
        return None
    wait = policy.webhook_backoff(delivery.attempts)
    delivery.next_attempt_at = utcnow() + timedelta(seconds=wait)
    return wait
