"""Cookbook step 4: poll for the profile with the code until authenticated, expired or
superseded. One poll per run; the next is due `poll_interval_s` later (with jitter)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from models import AuthSession, JobStatus, SessionStatus, utcnow
from worker import metrics
from worker.adobe_pass import BadRequestError
from worker.jobs import Outcome, step
from worker.queues import Queue
from worker.steps.base import StepContext, save_profile

_STOPPED = {
    SessionStatus.SUPERSEDED: JobStatus.CANCELLED,
    SessionStatus.CANCELLED: JobStatus.CANCELLED,
    SessionStatus.EXPIRED: JobStatus.EXPIRED,
    SessionStatus.AUTHENTICATED: JobStatus.SUCCEEDED,
    SessionStatus.FAILED: JobStatus.FAILED,
}


def _expire(auth: AuthSession, reason: str) -> Outcome:
    auth.status = SessionStatus.EXPIRED
    auth.stop_reason = reason
    auth.next_poll_at = None
    return Outcome(JobStatus.EXPIRED, error={
        "status": None, "code": "authentication_session_expired", "action": "authentication",
        "message": f"the user did not log in before the code expired ({reason})"})


@step("profiles.poll", Queue.POLLING)
def poll(ctx: StepContext) -> Outcome:
    auth = ctx.session.scalars(select(AuthSession).where(AuthSession.job_id == ctx.job.id)).one()
    if auth.status != SessionStatus.PENDING:
        return Outcome(_STOPPED[SessionStatus(auth.status)])
    now = utcnow()
    if auth.polling_started_at is not None and ctx.job.next_run_at is not None:
        metrics.observe("passflow_poll_drift_seconds", (),
                        max(0.0, (now - ctx.job.next_run_at).total_seconds()))
    if now >= auth.not_after:
        return _expire(auth, "notAfter reached")
    try:
        profiles = ctx.adobe.profiles.for_code(ctx.sp, auth.code, device=ctx.device)
    except BadRequestError as exc:
        if exc.code in ("invalid_authentication_session", "invalid_parameter_code"):
            return _expire(auth, exc.code)
        raise
    auth.polls += 1
    found = profiles.get(auth.mvpd) if auth.mvpd else next(iter(profiles), None)
    if found is not None:
        save_profile(ctx, found)
        auth.status = SessionStatus.AUTHENTICATED
        auth.mvpd = found.mvpd
        auth.stop_reason = "profile found"
        auth.next_poll_at = None
        return Outcome(JobStatus.SUCCEEDED)
    # The last poll lands on notAfter, so an expiry is noticed on time.
    delay = min(ctx.poll_delay(), max(0.0, (auth.not_after - now).total_seconds()))
    auth.next_poll_at = now + timedelta(seconds=delay)
    return Outcome(JobStatus.WAITING_FOR_USER, next_step="profiles.poll", delay_s=delay)
